#!/usr/bin/env bash
# Measures the Kurento protocol path of a release rkms on loopback:
# requests per second and latency of ping (baseline), invoke and
# create+release from 1 and 50 clients, and RSS per live PassThrough.
# Usage: scripts/bench-protocol.sh [SECONDS] [JSON_OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
json=${2:-target/bench-protocol.json}
cargo build --release -p rkms-server
log=$(mktemp)
target/release/rkms --bind 127.0.0.1 --port 0 --log warn >"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
    grep -q 'listening on' "$log" && break
    sleep 0.1
done
url=$(grep -o 'ws://[^ ]*' "$log" | head -1)
target/release/rkms loadtest rpc --url "$url" --clients 1,50 --seconds "$seconds" \
    --elements 10000 --json "$json"
echo "server CPU over the run: $(ps -o cputime= -p $pid)"
echo "report written to $json"
