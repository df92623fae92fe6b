#!/usr/bin/env bash
# Side-by-side relay benchmark: the same turnutils_uclient load against
# coturn's turnserver and `rkms turn`, started with the same coturn flags.
# Prints relayed packets per second, each server's CPU seconds, loss, and
# the ratio of CPU per relayed packet (rkms / coturn; below 1 is better).
#
#   scripts/bench-turn.sh [CLIENTS] [MESSAGES] [BYTES] [INTERVAL_MS] [udp|tcp|tcp-relay]
#   (defaults 100 clients x 1000 messages x 1000 bytes, every 2 ms, UDP)
#
# tcp-relay runs uclient's RFC 6062 mode (-T): pairs of TCP allocations
# connected to each other through the relay, every message crossing it twice
# (into one allocation's peer connection, out of the other's data connection).
#
# RKMS_BIN=path/to/rkms uses that binary's `turn` subcommand; otherwise the
# relay's example binary is built in release mode and used. ROUNDS=N (default
# 3) alternates the two servers N times; the ratio is over the sums, which
# evens out a machine shared with other work.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${1:-100}
MESSAGES=${2:-1000}
BYTES=${3:-1000}
INTERVAL=${4:-2}
TRANSPORT=${5:-udp}
CLIENT_TRANSPORT=()
case "$TRANSPORT" in
    tcp) CLIENT_TRANSPORT=(-t) ;;
    tcp-relay) CLIENT_TRANSPORT=(-T) ;;
esac

for p in turnserver turnutils_uclient turnutils_peer; do
    command -v "$p" >/dev/null || { echo "missing $p: apt-get install coturn" >&2; exit 1; }
done

if [ -n "${RKMS_BIN:-}" ]; then
    RKMS=("$RKMS_BIN" turn)
else
    cargo build --release -q -p rkms-turn --example turn
    RKMS=("${CARGO_TARGET_DIR:-target}/release/examples/turn")
fi

# As root, the servers and clients run at a raised priority so that other
# work on the machine disturbs both servers less (and equally).
PRIO=()
[ "$(id -u)" -eq 0 ] && PRIO=(nice -n -10)

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# utime + stime of a process, in seconds.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

PEER_PORT=$(free_port)
"${PRIO[@]}" turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PEER_PID=$!
trap 'kill $PEER_PID 2>/dev/null || true' EXIT
sleep 0.5

run_one() { # name, command...
    local name=$1; shift
    local port; port=$(free_port)
    local flags=(-n --no-cli --log-file=/dev/null --simple-log -L 127.0.0.1 -p "$port" --relay-ip 127.0.0.1
                 --min-port 40000 --max-port 49999 --lt-cred-mech --user user:pass --realm bench
                 --no-tls --no-dtls --allow-loopback-peers --no-multicast-peers)
    "${PRIO[@]}" "$@" "${flags[@]}" >/dev/null 2>&1 &
    local pid=$!
    sleep 1
    kill -0 "$pid" || { echo "$name did not start: $* ${flags[*]}" >&2; exit 1; }
    local cpu0; cpu0=$(cpu_seconds "$pid")
    local t0; t0=$(date +%s.%N)
    local out
    out=$("${PRIO[@]}" turnutils_uclient "${CLIENT_TRANSPORT[@]}" -c -u user -w pass -p "$port" -e 127.0.0.1 -r "$PEER_PORT" -X \
        -m "$CLIENTS" -n "$MESSAGES" -l "$BYTES" -z "$INTERVAL" 127.0.0.1 2>&1) || true  # no totals is reported below
    local t1; t1=$(date +%s.%N)
    local cpu1; cpu1=$(cpu_seconds "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local totals; totals=$(grep 'start_mclient: tot_send_msgs=' <<<"$out" | tail -1 || true)
    if [ -z "$totals" ]; then
        echo "$name: uclient reported no totals; its last lines:" >&2
        tail -5 <<<"$out" >&2
        return 0
    fi
    local sent recv
    sent=$(sed -E 's/.*tot_send_msgs=([0-9]+).*/\1/' <<<"$totals")
    recv=$(sed -E 's/.*tot_recv_msgs=([0-9]+).*/\1/' <<<"$totals")
    # Each echoed message crosses the relay twice (client -> peer, peer -> client).
    awk -v n="$name" -v s="$sent" -v r="$recv" -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" 'BEGIN {
        relayed = s + r; cpu = c1 - c0; wall = t1 - t0;
        printf "%-8s sent %d received %d loss %.3f%%  relayed %.0f pkt/s  server CPU %.2f s  %.2f us/pkt\n",
            n, s, r, (s ? 100 * (s - r) / s : 0), relayed / wall, cpu, (relayed ? 1e6 * cpu / relayed : 0) }'
    echo "$name $sent $recv $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{print b-a}')" >>"$RESULTS"
}

RESULTS=$(mktemp)
echo "load: $CLIENTS clients x $MESSAGES messages x $BYTES bytes every $INTERVAL ms ($TRANSPORT)"
for _ in $(seq "${ROUNDS:-3}"); do
    run_one coturn turnserver
    run_one rkms "${RKMS[@]}"
done
awk '{ sent[$1] += $2; relayed[$1] += $2 + $3; cpu[$1] += $4 }
     END { for (n in relayed)
             printf "total %-8s relayed %d packets, loss %.3f%%, CPU %.2f s, %.2f us/pkt\n", n, relayed[n],
                 100 * (2 * sent[n] - relayed[n]) / (sent[n] ? sent[n] : 1), cpu[n], 1e6 * cpu[n] / relayed[n]
           if (relayed["coturn"] && relayed["rkms"] && cpu["coturn"] > 0)
             printf "CPU per relayed packet, rkms / coturn: %.2f\n",
                 (cpu["rkms"] / relayed["rkms"]) / (cpu["coturn"] / relayed["coturn"]) }' "$RESULTS"
rm -f "$RESULTS"
