#!/usr/bin/env bash
# Runs every rkms test on a fresh Debian machine with Rust: installs the real
# peers the tests drive (Chromium, coturn, ffmpeg, Janus, the npm
# kurento-client, aiortc from PyPI), builds the server, then runs the Rust and end-to-end suites.
set -euo pipefail
cd "$(dirname "$0")/.."

# The RTSP camera of the PlayerEndpoint tests: GStreamer's RTSP server through Debian's python3-gi.
APT_PACKAGES=(cmake nasm pkg-config libvpx-dev chromium chromium-driver coturn ffmpeg janus
    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)

install_debian_packages() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # Another apt-get on the machine can delete downloaded .debs mid-install: retry.
    for attempt in 1 2 3; do
        if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
            return 0
        fi
        echo "apt-get install failed (attempt $attempt), retrying" >&2
        sleep 5
    done
    return 1
}

install_debian_packages
(cd tests/e2e && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
python3 -m pip install --quiet --disable-pip-version-check aiortc==1.16.0  # second WebRTC stack of the e2e tests

# A one-off build gains nothing from incremental caches, and they cost disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | tail -1
cargo build --release -p rkms-server
cargo test --workspace
df -h . | tail -1
RKMS_BIN="$PWD/target/release/rkms" node --test --test-concurrency=1 tests/e2e/
