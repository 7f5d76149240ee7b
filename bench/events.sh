#!/usr/bin/env bash
# Benchmark of event ingestion, as issue 8 asks: sustained acknowledged events per second from
# simulated devices (QoS 1, TLS, certificate + password, every PUBACK after the commit) into
# SQLite and into PostgreSQL, against each database's own bulk load of the same rows in the same
# run: the `sqlite3` shell's `.import` and `psql`'s `\copy`. Warden runs on core 0, the load
# generator (`warden device simulate`) on core 1; the bulk loads run on core 0.
#   - sustained: the per-device rate grows by half each step until a step fails (a message not
#     acknowledged, the rate not held within 5 %, or p99 publish-to-PUBACK latency over 15 ms);
#     the last good step's rate and p99 are Warden's figures;
#   - the peer: every row Warden stored, exported to CSV and loaded into an empty table with the
#     same definition (same unique key and indexes, same database, same durability settings).
# Run by hand (not part of the tests):
#   bench/events.sh [devices, default 200] [seconds per step, default 15] [sqlite|postgres|both]
# Needs: sqlite3, PostgreSQL's server programs, psql, python3, taskset; builds what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${1:-200}
seconds=${2:-15}
backends=${3:-both}
[ "$backends" = both ] && backends="sqlite postgres"
for tool in sqlite3 psql python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install sqlite3 postgresql-client python3 util-linux" >&2; exit 1; }
done
pg_bin=$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)")
cargo build --release -q -p cli
warden=$PWD/target/release/warden

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/pg/postmaster.pid" ] && as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; v=json.load(open('$1')); print(eval('v' + sys.argv[1]))" "$2"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
seconds_of() { python3 -c "import time,subprocess,sys; t=time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(time.perf_counter()-t)" "$@"; }

# start_warden NAME: Warden on core 0 with DEVICES devices, on the database WARDEN_DATABASE_URL
# names (SQLite in its data directory when unset); sets $port.
start_warden() {
  local name=$1
  WARDEN_LOG_LEVEL=warn taskset -c 0 "$warden" serve --data-dir "$work/$name" --listen 127.0.0.1:0 \
    --device-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$work/$name.log" 2>&1 &
  warden_pid=$!
  pids+=("$warden_pid")
  for _ in $(seq 1 300); do [ -f "$work/$name/addresses.json" ] && break; sleep 0.1; done
  port=$(python3 -c "import json; print(json.load(open('$work/$name/addresses.json'))['mqtt'].rsplit(':',1)[1])")
  "$warden" admin device create --data-dir "$work/$name" --model bench --count "$devices" \
    --out "$work/$name-bundles" >/dev/null
}

# sustained NAME: the highest rate Warden holds; writes NAME-rate and NAME-p99.
sustained() {
  local name=$1 rate=1 best=0 best_p99=0 out
  while :; do
    out="$work/$name-$rate.json"
    taskset -c 1 "$warden" device simulate --bundle "$work/$name-bundles" --broker "localhost:$port" \
      --rate "$rate" --duration "$seconds" --json >"$out" 2>"$out.log"
    local sent acked p99 achieved
    sent=$(field "$out" "['sent']"); acked=$(field "$out" "['acknowledged']")
    p99=$(field "$out" "['latency_ms']['p99']")
    achieved=$(field "$out" "['steady_rate'] or 0" | xargs printf '%.0f')
    echo "  $name: $rate/s per device: sent $sent, acknowledged $acked, $achieved events/s, p99 ${p99} ms" >&2
    if [ "$sent" = "$acked" ] && python3 -c "import sys; sys.exit(0 if $p99 <= 15 and $achieved >= 0.95 * $rate * $devices else 1)"; then
      best=$achieved; best_p99=$p99
      rate=$(python3 -c "import math; print(max($rate + 1, math.ceil($rate * 1.5)))")
    else
      break
    fi
  done
  echo "$best" >"$work/$name-rate"
  echo "$best_p99" >"$work/$name-p99"
}

# The peer table: the migration's own definition under another name.
peer_schema() { # peer_schema sqlite|postgres
  sed -e 's/device_events/peer_events/g' "crates/store/migrations/$1/0011_events.sql"
}
columns="device_id, message_id, topic, received_at, device_time, content_type, body_json, body_bytes"
ratio() { python3 -c "print(f'{float($1)/float($2):.2f}' if float($2) else 'n/a')"; }
results=()

for backend in $backends; do
  case $backend in
  sqlite)
    start_warden sqlite
    sustained sqlite
    kill "$warden_pid"; wait "$warden_pid" 2>/dev/null || true
    db="$work/sqlite/warden.db"
    # .import fills every column, so the rows keep their sequence numbers; the shell's CSV has
    # no NULL, so empty device times and bodies load as empty text (the same bytes to write).
    sqlite3 "$db" ".mode csv" ".once $work/sqlite.csv" "SELECT sequence, $columns FROM device_events"
    rows=$(wc -l <"$work/sqlite.csv")
    peer_schema sqlite | sqlite3 "$db"
    # WAL and FULL synchronous, as Warden runs it; .import loads in one transaction.
    peer=$(seconds_of taskset -c 0 sqlite3 "$db" "PRAGMA synchronous = FULL" ".mode csv" ".import $work/sqlite.csv peer_events")
    ;;
  postgres)
    mkdir "$work/pg" "$work/pg-log"
    [ "$(id -u)" = 0 ] && chown postgres "$work/pg" "$work/pg-log"
    pg_port=$(free_port)
    as_postgres "$pg_bin/initdb" -D "$work/pg" -U warden --auth=trust >/dev/null
    as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" \
      -l "$work/pg-log/postgres.log" -w start >/dev/null
    url="postgres://warden@127.0.0.1:$pg_port/postgres"
    WARDEN_DATABASE_URL=$url start_warden postgres
    sustained postgres
    kill "$warden_pid"; wait "$warden_pid" 2>/dev/null || true
    psql -q "$url" -c "\\copy (SELECT $columns FROM device_events) TO '$work/pg.csv' CSV"
    rows=$(wc -l <"$work/pg.csv")
    peer_schema postgres | psql -q "$url"
    peer=$(seconds_of taskset -c 0 psql -q "$url" -c "\\copy peer_events ($columns) FROM '$work/pg.csv' CSV")
    ;;
  *) echo "unknown backend $backend: sqlite, postgres or both" >&2; exit 1 ;;
  esac
  peer_rate=$(python3 -c "print(round($rows / $peer))")
  rate=$(cat "$work/$backend-rate"); p99=$(cat "$work/$backend-p99")
  results+=("$backend: Warden $rate acknowledged events/s (p99 PUBACK $p99 ms), bulk load $peer_rate rows/s ($rows rows in $(printf '%.2f' "$peer") s), ratio $(ratio "$rate" "$peer_rate")")
done

echo
echo "$devices devices, QoS 1 events over TLS with certificate + password, PUBACK after commit"
printf '%s\n' "${results[@]}"
echo "goals: ratio >= 0.6 on PostgreSQL (against psql \\copy), >= 0.5 on SQLite (against sqlite3 .import), p99 <= 15 ms"
