#!/usr/bin/env bash
# Builds rkms (installing the C build tools its codecs need on Debian) and
# runs it with its embedded defaults: ws://0.0.0.0:8888/kurento.
# Extra arguments go to rkms, e.g. `scripts/run.sh --port 9999`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in cmake nasm pkg-config; do
    command -v "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo build --release -p rkms-server
exec target/release/rkms "$@"
