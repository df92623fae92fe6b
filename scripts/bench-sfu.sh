#!/usr/bin/env bash
# The forwarding benchmark: rkms and Janus, one after the other in the same run, under the same
# `one2many` load (1 publisher, 1.5 Mbps video + 64 kbps opus-sized audio, N subscribers),
# driven by `rkms loadtest` with the same peers and media; plus the floor (one SRTP protect +
# one UDP send of the same packet) measured in the same run. Prints, per server and N: server
# CPU-µs per forwarded packet, loss, latency p99, RSS per subscriber, and rkms/Janus ratios.
#
#   scripts/bench-sfu.sh                      # N = 50 200 500, 10 s windows
#   SUBSCRIBERS="50 200" DURATION=5 scripts/bench-sfu.sh
#   RKMS_BIN=target/release/rkms SERVERS=janus scripts/bench-sfu.sh
#   RKMS_SERVER_BIN=/path/to/other/rkms scripts/bench-sfu.sh   # measure another rkms build
#
# Needs root (Janus runs in a network namespace: it offers no loopback candidates) and
# Debian's `janus`. Results (JSON, SVG plots, logs) go to $OUT (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS="${SUBSCRIBERS:-50 200 500}"
DURATION="${DURATION:-10}"
SERVERS="${SERVERS:-rkms janus}"
OUT="${OUT:-$(mktemp -d /tmp/bench-sfu.XXXXXX)}"
THREADS="${THREADS:-1}"
mkdir -p "$OUT"
export RUST_LOG="${RUST_LOG:-error}"

if [ -z "${RKMS_BIN:-}" ]; then
    cargo build --release -p rkms-server
    RKMS_BIN="${CARGO_TARGET_DIR:-target}/release/rkms"
fi
RKMS_BIN="$(realpath "$RKMS_BIN")"
RKMS_SERVER_BIN="$(realpath "${RKMS_SERVER_BIN:-$RKMS_BIN}")"
source scripts/janus-netns.sh

LOAD=(--publishers 1 --video-bitrate 1500000 --audio-bitrate 64000 --fps 30 --packet-size 1100
      --duration "$DURATION" --warmup 2 --ramp-rate 100 --setup-timeout 60 --threads "$THREADS")

echo "== floor: SRTP protect + UDP send" >&2
"$RKMS_BIN" loadtest floor --json "$OUT/floor.json" >&2

RKMS_PID=""
cleanup() {
    if [ -n "$RKMS_PID" ]; then kill "$RKMS_PID" 2>/dev/null; wait "$RKMS_PID" 2>/dev/null || true; fi
    janus_netns_down
}
trap cleanup EXIT

start_rkms() {
    local conf="$OUT/kurento.conf.json"
    echo '{"rkms": {"turn": {"listening_port": 0}}}' > "$conf"
    KMS_NETWORK_INTERFACES=lo "$RKMS_SERVER_BIN" --bind 127.0.0.1 --port 0 --config "$conf" \
        > "$OUT/rkms-$1.log" 2>&1 &
    RKMS_PID=$!
    for _ in $(seq 1 100); do
        RKMS_URL="$( (grep -o 'listening on ws://[^ ]*' "$OUT/rkms-$1.log" 2>/dev/null || true) \
            | head -1 | cut -d' ' -f3)"
        [ -n "$RKMS_URL" ] && return 0
        sleep 0.1
    done
    echo "rkms did not start: $(cat "$OUT/rkms-$1.log")" >&2
    return 1
}

for n in $SUBSCRIBERS; do
    for server in $SERVERS; do
        echo "== $server, $n subscribers" >&2
        case "$server" in
        rkms)
            start_rkms "$n"
            "$RKMS_BIN" loadtest one2many "${LOAD[@]}" --subscribers "$n" --url "$RKMS_URL" \
                --server-pid "$RKMS_PID" --json "$OUT/rkms-$n.json" --plot "$OUT/rkms-$n.svg" >&2 \
                || echo "rkms run failed (see above)" >&2
            kill "$RKMS_PID"; wait "$RKMS_PID" 2>/dev/null || true; RKMS_PID=""
            ;;
        janus)
            janus_netns_up
            ip netns exec "$JANUS_NS" "$RKMS_BIN" loadtest one2many "${LOAD[@]}" --subscribers "$n" \
                --target janus --janus-url "$JANUS_WS_URL" --local-ip "$JANUS_IP" \
                --server-pid "$JANUS_PID" --json "$OUT/janus-$n.json" --plot "$OUT/janus-$n.svg" >&2 \
                || echo "janus run failed (see above)" >&2
            janus_netns_down
            ;;
        esac
    done
done

python3 scripts/bench-sfu-table.py "$OUT" $SUBSCRIBERS
echo "results in $OUT" >&2
