#!/usr/bin/env bash
# Benchmark of the OAuth server against nginx on the same machine, as issue 3 asks:
#   - client-credentials tokens per second and introspections per second, Warden on one core
#     against nginx answering `return 200` on the same core, both over TLS, same load generator
#     (wrk pinned to the other core), same request;
#   - logins per second against the Argon2id bound (cores / time per hash).
# Prints ratios; run by hand (not part of the tests): bench/oauth.sh [seconds per run]
#   - login latency (p99) at 80 % of the hash bound, held by `paced-load` (crates/testkit).
# Needs: nginx, wrk, curl (apt-get install nginx wrk curl); builds what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
seconds=${1:-10}
for tool in nginx wrk curl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx wrk curl util-linux" >&2; exit 1; }
done
cargo build --release -q -p cli
cargo build -q -p testkit --bin paced-load
cargo bench -q -p accounts --bench argon2 | tee /tmp/warden-bench-argon2.txt

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Warden on core 0, without the shipped rules' per-address limits: every request here comes
# from one address, and the limits are the gateway benchmark's business (bench/gateway.sh).
unthrottled_rules target/release/warden "$work/rules.yaml"
export WARDEN_GATEWAY_RULES_FILE="$work/rules.yaml"
WARDEN_LOG_LEVEL=warn taskset -c 0 target/release/warden serve --data-dir "$work/data" --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$work/warden.log" 2>&1 &
warden_pid=$!
pids+=("$warden_pid")
for _ in $(seq 1 100); do [ -f "$work/data/addresses.json" ] && break; sleep 0.1; done
warden=$(sed -n 's/.*"https": "\(.*\)".*/\1/p' "$work/data/addresses.json")
ca="$work/data/tls/ca.crt"

# A confidential client (the service asking for tokens) and one that introspects.
create() { target/release/warden admin clients create --data-dir "$work/data" --name "$1" --scope "devices:read"; }
out=$(create bench); id=$(sed -n 's/^client_id: *//p' <<<"$out"); secret=$(sed -n 's/^client_secret: *//p' <<<"$out")
basic=$(printf '%s:%s' "$id" "$secret" | base64 -w0)
token=$(curl -s --cacert "$ca" --resolve "localhost:${warden##*:}:127.0.0.1" -u "$id:$secret" \
  -d grant_type=client_credentials "https://localhost:${warden##*:}/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')

# nginx on core 0, same certificate and TLS versions.
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/data/tls/server.crt;
    ssl_certificate_key $work/data/tls/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "ok"; }
  }
}
CONF
taskset -c 0 nginx -c "$work/nginx.conf" &
pids+=($!)
sleep 1

post() { # post URL BODY AUTH-HEADER -> requests per second
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "$3"
LUA
  taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -s "$work/post.lua" "$1" >"$work/wrk.txt"
  sed -n 's/^Requests\/sec: *//p' "$work/wrk.txt"
}

tokens=$(post "https://localhost:${warden##*:}/oauth2/token" "grant_type=client_credentials" "Basic $basic")
nginx_tokens=$(post "https://localhost:$nginx_port/oauth2/token" "grant_type=client_credentials" "Basic $basic")
introspections=$(post "https://localhost:${warden##*:}/oauth2/introspect" "token=$token" "Basic $basic")
# The ceiling of Warden's HTTP stack on this core: a handler that does nothing.
healthz=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" "https://localhost:${warden##*:}/healthz" | sed -n 's/^Requests\/sec: *//p')
nginx_introspections=$(post "https://localhost:$nginx_port/oauth2/introspect" "token=$token" "Basic $basic")

# Logins: one account, a fixed CSRF token in cookie and form. Warden starts again on every core,
# since the bound assumes every core hashes (and Warden sizes its hashing to the cores it has).
kill "$warden_pid"; wait "$warden_pid" 2>/dev/null || true
rm -f "$work/data/addresses.json"
WARDEN_LOG_LEVEL=warn target/release/warden serve --data-dir "$work/data" --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$work/warden.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -f "$work/data/addresses.json" ] && break; sleep 0.1; done
warden=$(sed -n 's/.*"https": "\(.*\)".*/\1/p' "$work/data/addresses.json")
curl -s -o /dev/null --cacert "$ca" --resolve "localhost:${warden##*:}:127.0.0.1" \
  -b "__Host-warden_csrf=bench-csrf-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
  -d "email=bench@example.com&password=correct+horse+battery+staple&csrf=bench-csrf-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
  "https://localhost:${warden##*:}/signup"
cat >"$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "email=bench@example.com&password=correct+horse+battery+staple&csrf=bench-csrf-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa&next=/account"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "__Host-warden_csrf=bench-csrf-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
LUA
wrk -t1 -c8 -d"${seconds}s" --latency -s "$work/login.lua" "https://localhost:${warden##*:}/login" >"$work/login.txt"
logins=$(sed -n 's/^Requests\/sec: *//p' "$work/login.txt")
login_p99=$(awk '/ 99%/ {print $2}' "$work/login.txt")
bound=$(sed -n 's/^hash bound: \([0-9.]*\).*/\1/p' /tmp/warden-bench-argon2.txt)
one_hash_ms=$(sed -n 's/.*: \([0-9.]*\) ms per verification alone.*/\1/p' /tmp/warden-bench-argon2.txt)

# Logins at 80 % of the bound, sent at a fixed rate by an open-loop generator (a request every
# 1/rate s, each latency counted from when it was due), so a queue in the server shows up.
rate=$(python3 -c "print(f'{0.8 * float($bound):.2f}')")
target/debug/paced-load "https://localhost:${warden##*:}/login" "$rate" "$seconds" "$ca" \
  "email=bench@example.com&password=correct+horse+battery+staple&csrf=bench-csrf-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa&next=/account" \
  "Cookie: __Host-warden_csrf=bench-csrf-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa" >"$work/paced.txt"
paced_rate=$rate
paced_p99_ms=$(sed -n 's/.* p99 \([0-9.]*\) .*/\1/p' "$work/paced.txt")
paced_statuses=$(sed -n 's/^statuses: //p' "$work/paced.txt")

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }
echo
echo "client-credentials tokens/s: Warden $tokens, nginx $nginx_tokens, ratio $(ratio "$tokens" "$nginx_tokens") (goal >= 0.35)"
echo "introspections/s:            Warden $introspections, nginx $nginx_introspections, ratio $(ratio "$introspections" "$nginx_introspections") (goal >= 0.6)"
echo "reference, /healthz:         Warden $healthz, nginx $nginx_introspections, ratio $(ratio "$healthz" "$nginx_introspections") (the HTTP stack alone)"
echo "logins/s:                    Warden $logins, hash bound $bound, ratio $(ratio "$logins" "$bound") (goal >= 0.9); p99 $login_p99 at full load"
echo "login p99 at 80 % load:      ${paced_p99_ms} ms at ${paced_rate}/s, one hash ${one_hash_ms} ms, ratio $(ratio "$paced_p99_ms" "$one_hash_ms") (goal <= 3); statuses ${paced_statuses}"
