#!/usr/bin/env python3
"""Prints the table of scripts/bench-sfu.sh from the JSON reports in a folder:
per server and subscriber count, CPU-us per forwarded packet (and x floor), loss, latency p99,
RSS per subscriber; then rkms/Janus ratios where both ran."""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(v, spec, unit=""):
    return "n/a" if v is None else format(v, spec) + unit


def main():
    out, counts = sys.argv[1], sys.argv[2:]
    floor = load(os.path.join(out, "floor.json"))
    floor_us = None
    if floor:
        for p in floor["profiles"]:
            print(f"floor {p['profile']:>24}: protect {p['protect_us']:.2f} us, "
                  f"protect + send {p['protect_send_us']:.2f} us")
        floor_us = floor["profiles"][0]["protect_send_us"]
    print()
    head = ("server", "subs", "us/pkt", "x floor", "loss %", "p99 ms", "KiB/sub", "recv pkt/s",
            "failed", "client cores", "drops srv", "drops cli")
    print("{:<6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>6} {:>12} {:>9} {:>9}".format(*head))
    rows = {}
    for n in counts:
        for server in ("rkms", "janus"):
            r = load(os.path.join(out, f"{server}-{n}.json"))
            if r is None:
                continue
            rows[(server, n)] = r
            us = r.get("server_cpu_us_per_forwarded_packet")
            rss = r.get("server_rss_per_subscriber_bytes")
            # Receive-buffer drops in the window at the server's and at the client's sockets.
            print("{:<6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10.0f} {:>6} {:>12.2f} {:>9} {:>9}".format(
                server, n, fmt(us, ".2f"),
                fmt(us / floor_us if us and floor_us else None, ".1f"),
                fmt(r["loss_ratio"] * 100, ".3f"), fmt(r["latency_ms"]["p99"], ".2f"),
                fmt(rss / 1024 if rss is not None else None, ".0f"),
                r["packets_received"] / max(r["duration_s"], 1e-3), r["sessions_failed"],
                r["client_cpu_s"] / max(r["duration_s"], 1e-3),
                fmt(r.get("server_socket_drops"), "d"), fmt(r.get("client_socket_drops"), "d")))
    print()
    for n in counts:
        a, b = rows.get(("rkms", n)), rows.get(("janus", n))
        if not a or not b:
            continue
        ua, ub = a.get("server_cpu_us_per_forwarded_packet"), b.get("server_cpu_us_per_forwarded_packet")
        ra, rb = a.get("server_rss_per_subscriber_bytes"), b.get("server_rss_per_subscriber_bytes")
        print(f"{n} subscribers: rkms/Janus CPU per packet {fmt(ua / ub if ua and ub else None, '.3f')}"
              f" (Janus/rkms {fmt(ub / ua if ua and ub else None, '.1f')}x), RSS per subscriber "
              f"{fmt(ra / rb if ra and rb else None, '.3f')}, p99 "
              f"{a['latency_ms']['p99']:.2f} vs {b['latency_ms']['p99']:.2f} ms")


if __name__ == "__main__":
    main()
