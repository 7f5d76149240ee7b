#!/usr/bin/env bash
# Benchmark of the gateway, as issue 9 asks: proxied requests per second through Warden's gateway
# with JWT validation (verified-token cache) and throttling, against nginx `proxy_pass` without
# any auth, to the same upstream, on the same core, with the same load generator; and the
# latency each adds.
#   - the upstream: nginx answering `return 200` over plain HTTP (keep-alive), on core 1;
#   - the peer: nginx, one worker on core 0, TLS with Warden's own server certificate,
#     `proxy_pass` to the upstream over kept-alive connections;
#   - Warden on core 0 with the shipped rules (their per-address limits removed, since every
#     request here comes from one address) plus `bench` (jwt + a per-user throttle) and
#     `bench-open` (noop: no authentication, no throttle), both to the upstream;
#   - wrk on core 1: one thread, 32 connections, the same Bearer token on every request.
# Each run also reports how busy each core was (from /proc/stat): the comparison holds only while
# core 0, the proxy's, is the one at 100 %; a busy core 1 means wrk and the upstream set the pace.
# Run by hand (not part of the tests): bench/gateway.sh [seconds per run, default 10]
# Needs: nginx, wrk, curl, python3, taskset (apt-get install nginx wrk curl); builds what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
seconds=${1:-10}
for tool in nginx wrk curl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx wrk curl python3 util-linux" >&2; exit 1; }
done
cargo build --release -q -p cli
warden=$PWD/target/release/warden

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The upstream, on core 1 beside the load generator.
upstream_port=$(free_port)
cat >"$work/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/upstream-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$upstream_port;
    location / { return 200 "ok"; }
  }
}
CONF
taskset -c 1 nginx -c "$work/upstream.conf" &
pids+=($!)

# Warden on core 0.
unthrottled_rules "$warden" "$work/rules.yaml"
cat >>"$work/rules.yaml" <<RULES
  - id: bench
    match: { url: "/bench/<.*>", methods: [GET] }
    authenticators: [{ handler: jwt }]
    authorizer: { handler: allow }
    upstream: { url: "http://127.0.0.1:$upstream_port", strip_path: /bench }
    throttle:
      limits:
        - { per: user, rate: 100000000/second }
  - id: bench-open
    match: { url: "/open/<.*>", methods: [GET] }
    authenticators: [{ handler: noop }]
    authorizer: { handler: allow }
    upstream: { url: "http://127.0.0.1:$upstream_port", strip_path: /open }
RULES
"$warden" gateway check-rules "$work/rules.yaml" >/dev/null
WARDEN_LOG_LEVEL=warn WARDEN_GATEWAY_RULES_FILE="$work/rules.yaml" taskset -c 0 "$warden" serve \
  --data-dir "$work/data" --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
  >"$work/warden.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -f "$work/data/addresses.json" ] && break; sleep 0.1; done
warden_port=$(python3 -c "import json; print(json.load(open('$work/data/addresses.json'))['https'].rsplit(':',1)[1])")
ca="$work/data/tls/ca.crt"

# A service's token, from the client-credentials grant.
out=$("$warden" admin clients create --data-dir "$work/data" --name bench --scope "devices:read")
id=$(sed -n 's/^client_id: *//p' <<<"$out"); secret=$(sed -n 's/^client_secret: *//p' <<<"$out")
token=$(curl -s --cacert "$ca" --resolve "localhost:$warden_port:127.0.0.1" -u "$id:$secret" \
  -d grant_type=client_credentials "https://localhost:$warden_port/oauth2/token" |
  sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "no token from Warden" >&2; exit 1; }

# The peer: nginx proxy_pass on core 0, same certificate and TLS versions, no auth.
nginx_port=$(free_port)
cat >"$work/proxy.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/proxy.pid;
error_log $work/proxy-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$upstream_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/data/tls/server.crt;
    ssl_certificate_key $work/data/tls/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
taskset -c 0 nginx -c "$work/proxy.conf" &
pids+=($!)
sleep 1

# Every answer must be a 200 through the upstream, for all three; and `bench` must really ask
# for the token.
for url in "https://localhost:$warden_port/bench/x" "https://localhost:$warden_port/open/x" "https://localhost:$nginx_port/x"; do
  body=$(curl -s --cacert "$ca" -H "Authorization: Bearer $token" "$url")
  [ "$body" = ok ] || { echo "$url answered: $body" >&2; exit 1; }
done
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "https://localhost:$warden_port/bench/x")
[ "$status" = 401 ] || { echo "/bench/x without a token answered $status, not 401" >&2; exit 1; }

# Idle and total ticks of cores 0 and 1 (steal counts as busy: time the core was not ours).
core_ticks() { awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d ", $5 + $6, t }' /proc/stat; }
# busy_between BEFORE AFTER: percent busy of cores 0 and 1 between two core_ticks.
busy_between() {
  python3 -c "b = [int(x) for x in '$1'.split()]; a = [int(x) for x in '$2'.split()]
print(' '.join(f'{100 * (1 - (a[i] - b[i]) / (a[i + 1] - b[i + 1])):.0f}' for i in (0, 2)))"
}
# load URL NAME: wrk with the token; writes NAME.txt and NAME.busy (percent busy of cores 0 and 1),
# prints requests per second.
load() {
  local before after
  before=$(core_ticks)
  taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$1" >"$work/$2.txt"
  after=$(core_ticks)
  busy_between "$before" "$after" >"$work/$2.busy"
  if grep -q -e "Non-2xx" -e "Socket errors" "$work/$2.txt"; then
    echo "$2: some requests failed or were not answered 2xx:" >&2; cat "$work/$2.txt" >&2; exit 1
  fi
  sed -n 's/^Requests\/sec: *//p' "$work/$2.txt"
}
busy() { read -r core0 core1 <"$work/$1.busy"; echo "cores busy: 0 ${core0} %, 1 ${core1} %"; }
# Latency percentile P of run NAME, in ms.
percentile() {
  awk -v p="$2%" '$1 == p {
    v = $2; unit = v; gsub(/[0-9.]/, "", unit); sub(/[a-z]+$/, "", v);
    if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000;
    printf "%.2f", v }' "$work/$1.txt"
}

# The cores must be idle before the runs, or someone else's work is in the figures.
before=$(core_ticks); sleep 2; busy_between "$before" "$(core_ticks)" >"$work/idle.busy"

warden_rate=$(load "https://localhost:$warden_port/bench/x" warden)
nginx_rate=$(load "https://localhost:$nginx_port/x" nginx)
open_rate=$(load "https://localhost:$warden_port/open/x" open)

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }
minus() { python3 -c "print(f'{float($1)-float($2):.2f}')"; }
echo
echo "proxied requests/s, 32 connections, ${seconds} s each:"
echo "  Warden, jwt + throttle:  $warden_rate  (p50 $(percentile warden 50) ms, p99 $(percentile warden 99) ms; $(busy warden))"
echo "  Warden, no auth:         $open_rate  (p50 $(percentile open 50) ms, p99 $(percentile open 99) ms; $(busy open))"
echo "  nginx proxy_pass:        $nginx_rate  (p50 $(percentile nginx 50) ms, p99 $(percentile nginx 99) ms; $(busy nginx))"
read -r idle0 idle1 <"$work/idle.busy"
if [ "$idle0" -gt 5 ] || [ "$idle1" -gt 5 ]; then
  echo "  warning: before the runs, with nothing under load, $(busy idle): other work on this machine is in these figures"
fi
echo "ratio Warden (jwt + throttle) / nginx: $(ratio "$warden_rate" "$nginx_rate") (goal >= 1.0)"
echo "added latency against nginx: p50 $(minus "$(percentile warden 50)" "$(percentile nginx 50)") ms, p99 $(minus "$(percentile warden 99)" "$(percentile nginx 99)") ms"
