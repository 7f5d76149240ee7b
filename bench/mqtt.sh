#!/usr/bin/env bash
# Benchmark of the built-in MQTT broker against Mosquitto on the same machine, as issue 7 asks.
# Both brokers run on core 0 with TLS, client certificates from Warden's CA, a password per device
# and a per-topic ACL (Mosquitto: `pattern readwrite devices/%u/#`); the same load generator
# (`warden device simulate`, rumqttc) runs on core 1 with the same devices and bundles.
#   - memory per idle connection: the broker's RSS with DEVICES idle sessions minus before;
#   - authorized CONNECTs per second: DEVICES devices connecting at once;
#   - the highest sustained rate (QoS 1 events, DEVICES sessions) with every message
#     acknowledged, the rate held within 5 % once all are connected, and p99 publish-to-PUBACK
#     latency <= 10 ms.
# Prints each broker's figures and the ratios; run by hand (not part of the tests):
#   bench/mqtt.sh [devices, default 1000] [seconds per step, default 15]
# Needs: mosquitto (apt-get install mosquitto), python3, taskset; builds what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${1:-1000}
seconds=${2:-15}
for tool in mosquitto mosquitto_passwd python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install mosquitto python3 util-linux" >&2; exit 1; }
done
cargo build --release -q -p cli
warden=target/release/warden

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
field() { python3 -c "import json,sys; v=json.load(open('$1')); print(eval('v' + sys.argv[1]))" "$2"; }

# Warden on core 0, its devices and their bundles.
WARDEN_LOG_LEVEL=warn taskset -c 0 "$warden" serve --data-dir "$work/data" --listen 127.0.0.1:0 \
  --device-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$work/warden.log" 2>&1 &
warden_pid=$!
pids+=("$warden_pid")
for _ in $(seq 1 100); do [ -f "$work/data/addresses.json" ] && break; sleep 0.1; done
warden_port=$(python3 -c "import json; print(json.load(open('$work/data/addresses.json'))['mqtt'].rsplit(':',1)[1])")
left=$devices
while [ "$left" -gt 0 ]; do
  batch=$(( left < 1000 ? left : 1000 ))
  "$warden" admin device create --data-dir "$work/data" --model bench --count "$batch" --out "$work/bundles" >/dev/null 2>&1
  left=$(( left - batch ))
done

# Mosquitto on core 0: the same server certificate, Warden's CA for clients, each device's
# password (hashed by mosquitto_passwd), the same topic rule.
mosquitto_port=$(free_port)
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
with open(f"{work}/passwords", "w") as out:
    for name in sorted(os.listdir(f"{work}/bundles")):
        device = json.load(open(f"{work}/bundles/{name}/device.json"))
        out.write(f"{device['device_id']}:{device['mqtt_password']}\n")
PY
mosquitto_passwd -U "$work/passwords"
cat >"$work/acl" <<'ACL'
pattern readwrite devices/%u/#
ACL
cat >"$work/mosquitto.conf" <<CONF
per_listener_settings false
set_tcp_nodelay true
user $(id -un)
allow_anonymous false
password_file $work/passwords
acl_file $work/acl
persistence false
log_dest stderr
log_type error
max_queued_messages 1000
listener $mosquitto_port 127.0.0.1
cafile $work/data/tls/ca.crt
certfile $work/data/tls/server.crt
keyfile $work/data/tls/server.key
require_certificate true
CONF
taskset -c 0 mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
mosquitto_pid=$!
pids+=("$mosquitto_pid")
sleep 1
kill -0 "$mosquitto_pid" 2>/dev/null || { echo "mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }

simulate() { # simulate PORT RATE SECONDS OUT.json
  taskset -c 1 "$warden" device simulate --bundle "$work/bundles" --broker "localhost:$1" \
    --rate "$2" --duration "$3" --json >"$4" 2>"$4.log"
}

# Idle sessions: memory, and how fast they all connected.
idle() { # idle NAME PID PORT
  local before after
  before=$(rss_kib "$2")
  simulate "$3" 0 $(( 10 + devices / 200 )) "$work/$1-idle.json" &
  local sim=$!
  sleep $(( 8 + devices / 200 ))
  after=$(rss_kib "$2")
  wait "$sim"
  echo "$(( (after - before) * 1024 / devices ))" >"$work/$1-bytes-per-connection"
  python3 -c "import json; v=json.load(open('$work/$1-idle.json')); s=v['all_connected_seconds']; print(f'{$devices / s:.0f}' if s else 0)" >"$work/$1-connects"
}
idle warden "$warden_pid" "$warden_port"
idle mosquitto "$mosquitto_pid" "$mosquitto_port"

# The highest sustained rate: events per device per second doubled until a step fails, then
# the last good total.
sustained() { # sustained NAME PORT
  local rate=1 best=0 out
  while :; do
    out="$work/$1-$rate.json"
    simulate "$2" "$rate" "$seconds" "$out"
    local sent acked p99 achieved
    sent=$(field "$out" "['sent']"); acked=$(field "$out" "['acknowledged']"); p99=$(field "$out" "['latency_ms']['p99']")
    achieved=$(field "$out" "['steady_rate'] or 0" | xargs printf '%.0f')
    echo "  $1: $rate/s per device: sent $sent, acknowledged $acked, $achieved msg/s, p99 ${p99} ms" >&2
    if [ "$sent" = "$acked" ] && python3 -c "import sys; sys.exit(0 if $p99 <= 10 and $achieved >= 0.95 * $rate * $devices else 1)"; then
      best=$achieved
      rate=$(( rate * 2 ))
    else
      break
    fi
  done
  echo "$best" >"$work/$1-sustained"
}
sustained warden "$warden_port"
sustained mosquitto "$mosquitto_port"

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}' if float($2) else 'n/a')"; }
w_rate=$(cat "$work/warden-sustained"); m_rate=$(cat "$work/mosquitto-sustained")
w_mem=$(cat "$work/warden-bytes-per-connection"); m_mem=$(cat "$work/mosquitto-bytes-per-connection")
w_conn=$(cat "$work/warden-connects"); m_conn=$(cat "$work/mosquitto-connects")
echo
echo "$devices device sessions, TLS + client certificate + password + per-topic ACL, QoS 1"
echo "sustained msg/s (p99 <= 10 ms, none lost): Warden $w_rate, Mosquitto $m_rate, ratio $(ratio "$w_rate" "$m_rate") (goal >= 1.8)"
echo "bytes per idle connection:                 Warden $w_mem, Mosquitto $m_mem, ratio $(ratio "$w_mem" "$m_mem") (goal: Warden <= 2048)"
echo "authorized CONNECTs/s:                     Warden $w_conn, Mosquitto $m_conn, ratio $(ratio "$w_conn" "$m_conn")"
