#!/usr/bin/env bash
# Runs the MQTT conformance suite against a private Mosquitto 2.x on a free loopback port.
#
# Mosquitto is the reference broker the suite was developed against. Its configuration
# matches what the suite expects of the broker under test: plain TCP, anonymous, every
# topic allowed except those under devices/ (refused to subscribe, publish and receive,
# through the dynamic-security plugin, since an acl_file cannot refuse a SUBSCRIBE).
# Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
command -v mosquitto >/dev/null || { echo "mosquitto is not installed (Debian: apt-get install mosquitto)" >&2; exit 2; }
plugin="$(find /usr/lib /usr/local/lib -name 'mosquitto_dynamic_security.so' 2>/dev/null | head -n 1)"
[ -n "$plugin" ] || { echo "mosquitto_dynamic_security.so not found" >&2; exit 2; }

workdir="$(mktemp -d /tmp/mqtt-conformance.XXXXXX)"
chmod 755 "$workdir"  # Mosquitto started as root reads its files as the mosquitto user
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
denied="${MQTT_DENIED_FILTER:-devices/#}"

cat >"$workdir/dynamic-security.json" <<JSON
{
  "defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true, "subscribe": true, "unsubscribe": true},
  "clients": [],
  "groups": [{"groupname": "anonymous", "roles": [{"rolename": "denied-topics"}]}],
  "roles": [{
    "rolename": "denied-topics",
    "acls": [
      {"acltype": "subscribePattern", "topic": "devices/#", "priority": 0, "allow": false},
      {"acltype": "subscribePattern", "topic": "$denied", "priority": 0, "allow": false},
      {"acltype": "publishClientSend", "topic": "devices/#", "priority": 0, "allow": false},
      {"acltype": "publishClientReceive", "topic": "devices/#", "priority": 0, "allow": false}
    ]
  }],
  "anonymousGroup": "anonymous"
}
JSON
cat >"$workdir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
plugin $plugin
plugin_opt_config_file $workdir/dynamic-security.json
persistence false
log_dest stderr
log_type error
log_type warning
CONF
chmod 644 "$workdir"/*

mosquitto -c "$workdir/mosquitto.conf" 2>"$workdir/mosquitto.log" &
mosquitto_pid=$!
cleanup() {
  kill "$mosquitto_pid" 2>/dev/null || true
  wait "$mosquitto_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

for _ in $(seq 50); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

# Where Mosquitto 2.0.11 departs from the specification (README.md, "Mosquitto"), the test
# still asserts the specification and is marked as an expected failure for this broker only.
version="$( (mosquitto -h 2>/dev/null || true) | sed -n "s/^mosquitto version \([0-9.]*\).*/\1/p")"
if [ "$version" = "2.0.11" ]; then
  export MQTT_KNOWN_DEVIATIONS="${MQTT_KNOWN_DEVIATIONS-test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives,test_receive_maximum_limits_unacknowledged_messages_in_flight}"
fi

MQTT_HOST=127.0.0.1 MQTT_PORT="$port" MQTT_DENIED_FILTER="$denied" python3 -m pytest "$here" "$@"
