#!/usr/bin/env bash
# Janus in a network namespace of its own, for the load test (see docs on real peers: Janus
# offers no loopback candidates, so it gets a veth address that stays inside the namespace).
#
#   source scripts/janus-netns.sh
#   janus_netns_up            # sets JANUS_NS, JANUS_IP, JANUS_WS_URL, JANUS_PID; logs in $JANUS_DIR
#   ip netns exec "$JANUS_NS" target/release/rkms loadtest one2many --target janus \
#       --janus-url "$JANUS_WS_URL" --local-ip "$JANUS_IP" --server-pid "$JANUS_PID" ...
#   janus_netns_down
#
# Needs root (network namespaces) and Debian's `janus` package.

JANUS_NS="${JANUS_NS:-rkmslt$$}"
JANUS_IP="${JANUS_IP:-10.77.0.2}"
JANUS_WS_PORT="${JANUS_WS_PORT:-8188}"

janus_netns_up() {
    command -v janus >/dev/null || { echo "janus is not installed (apt-get install janus)" >&2; return 1; }
    [ "$(id -u)" -eq 0 ] || { echo "network namespaces need root" >&2; return 1; }
    JANUS_DIR="$(mktemp -d /tmp/rkms-janus.XXXXXX)"
    local veth_a="vA${JANUS_NS: -8}" veth_b="vB${JANUS_NS: -8}"
    JANUS_VETH="$veth_a"
    ip netns add "$JANUS_NS"
    ip link add "$veth_a" type veth peer name "$veth_b"
    ip link set "$veth_b" netns "$JANUS_NS"
    ip link set "$veth_a" up
    ip netns exec "$JANUS_NS" sh -c "ip link set lo up; ip addr add $JANUS_IP/24 dev $veth_b; ip link set $veth_b up"

    local lib=/usr/lib/x86_64-linux-gnu/janus
    [ -d "$lib" ] || lib="$(dirname "$(dirname "$(find /usr/lib -name libjanus_videoroom.so -print -quit)")")"
    cat > "$JANUS_DIR/janus.jcfg" <<CFG
general: {
	configs_folder = "$JANUS_DIR"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 3
	session_timeout = 120
}
media: {
	rtp_port_range = "20000-60000"
}
nat: {
	nice_debug = false
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
events: {
	broadcast = false
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
CFG
    cat > "$JANUS_DIR/janus.transport.websockets.jcfg" <<CFG
general: {
	json = "plain"
	ws = true
	ws_port = $JANUS_WS_PORT
	ws_ip = "127.0.0.1"
	wss = false
}
admin: {
	admin_ws = false
	admin_wss = false
}
CFG
    printf 'general: {\n}\n' > "$JANUS_DIR/janus.plugin.videoroom.jcfg"
    printf 'general: {\n}\n' > "$JANUS_DIR/janus.plugin.echotest.jcfg"
    ip netns exec "$JANUS_NS" janus -C "$JANUS_DIR/janus.jcfg" -F "$JANUS_DIR" -r 20000-60000 \
        -E "$veth_b" > "$JANUS_DIR/janus.log" 2>&1 &
    JANUS_PID=$!
    JANUS_WS_URL="ws://127.0.0.1:$JANUS_WS_PORT/"
    for _ in $(seq 1 50); do
        if ip netns exec "$JANUS_NS" ss -ltn 2>/dev/null | grep -q "127.0.0.1:$JANUS_WS_PORT "; then
            return 0
        fi
        kill -0 "$JANUS_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "Janus did not start; log: $JANUS_DIR/janus.log" >&2
    tail -20 "$JANUS_DIR/janus.log" >&2
    return 1
}

janus_netns_down() {
    if [ -n "${JANUS_PID:-}" ]; then
        kill "$JANUS_PID" 2>/dev/null || true
        wait "$JANUS_PID" 2>/dev/null || true
        JANUS_PID=""
    fi
    # Deleting the namespace usually takes the veth pair with it; callers may run `set -e`.
    ip netns del "$JANUS_NS" 2>/dev/null || true
    ip link del "${JANUS_VETH:-none}" 2>/dev/null || true
}
