#!/usr/bin/env bash
# Start-up and audit against history: a ledger of SALES closed, cleaned and trimmed sales of
# ORDERS orders each, then the same live sale on every ledger, then `flashsale audit` and a
# newly started `flashsale ingest` measured against them in alternating rounds.
#
#   history.sh setup DIR SALES ORDERS   make a ledger in DIR: its own redis-server (random port,
#                                       AOF appendfsync always), its own database on the MariaDB
#                                       at 127.0.0.1:3306 (root, no password), a file archive;
#                                       `serve -retain 1m` sells, closes and trims the SALES
#                                       sales, then `serve -retain 24h` sells the live sale
#                                       (stock 1000, 1500 requests: sold out) and stops
#   history.sh measure ROUNDS DIR...    per round and per DIR: `flashsale audit` wall time; a new
#                                       `flashsale ingest`'s time from its start to its first
#                                       sold-out answer given from memory (polled on /metrics
#                                       after each purchase of the sold-out live item), and its
#                                       RSS 5 s after its start
#   history.sh stop DIR...              stop DIR's redis-server and drop its database
#
# Environment: FLASHSALE_BIN (bin/flashsale), LOADTEST_BIN (bin/loadtest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
FS="${FLASHSALE_BIN:-$ROOT/bin/flashsale}"
LT="${LOADTEST_BIN:-$ROOT/bin/loadtest}"

sql() { mysql_root 3306 "$@"; }

# use DIR: export the addresses of DIR's ledger.
use() {
  # shellcheck disable=SC1091
  . "$1/env"
  export FLASHSALE_REDIS_ADDR FLASHSALE_MYSQL_DSN FLASHSALE_ARCHIVE FLASHSALE_HTTP_ADDR FLASHSALE_GRPC_ADDR FLASHSALE_CONSUMER
}

rcli() { redis-cli -p "${FLASHSALE_REDIS_ADDR##*:}" "$@"; }

# serve_bg DIR RETAIN: start serve in the background; prints its pid.
serve_bg() {
  "$FS" serve -retain "$2" -trim-interval 5s -archive-segment-age 1s >>"$1/serve.log" 2>&1 &
  echo $!
  wait_for 30 "" curl -sf "http://$FLASHSALE_HTTP_ADDR/ready" || die "serve did not get ready (see $1/serve.log)"
}

# settled: on every partition the projector group has nothing pending and nothing undelivered.
settled() {
  local key
  for key in $(rcli --scan --pattern 'fs:*:events'); do
    rcli --no-raw xinfo groups "$key" | tr -d '\r' | awk '
      /"name"/ { getline; g = $0 } /"pending"/ { getline; if (g ~ /projector/ && $NF + 0 != 0) bad = 1 }
      /"lag"/ { getline; if (g ~ /projector/ && $NF + 0 != 0) bad = 1 } END { exit bad }' || return 1
  done
}

# trimmed SALES: every sale is cleaned and no partition stream holds more than 32 entries.
trimmed() {
  local n=$1 i key
  for ((i = 1; i <= n; i++)); do
    key="$(rcli --scan --pattern "fs:*:rules:sale-$i" | head -n 1)"
    [ "$(rcli hget "$key" cleaned)" = 1 ] || return 1
  done
  for key in $(rcli --scan --pattern 'fs:*:events'); do
    [ "$(rcli xlen "$key")" -le 32 ] || return 1
  done
}

now_ms() { date +%s%3N; }

# stop_pid PID: SIGTERM a process this script started and wait until it is gone.
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  while kill -0 "$1" 2>/dev/null; do sleep 0.2; done
}

setup() {
  local dir=$1 sales=$2 orders=$3 rport db pid i
  mkdir -p "$dir/redis"
  dir="$(cd "$dir" && pwd)"
  rport="$(free_port)"
  redis-server --daemonize yes --port "$rport" --bind 127.0.0.1 --appendonly yes --appendfsync always \
    --maxmemory-policy noeviction --dir "$dir/redis" --logfile "$dir/redis/redis.log" --pidfile "$dir/redis/redis.pid"
  wait_for 20 "" redis-cli -p "$rport" ping || die "redis did not start"
  db="fs_hist_$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')"
  sql -e "CREATE DATABASE $db"
  cat >"$dir/env" <<EOF
FLASHSALE_REDIS_ADDR=127.0.0.1:$rport
FLASHSALE_MYSQL_DSN='root@tcp(127.0.0.1:3306)/$db?parseTime=true'
FLASHSALE_ARCHIVE=file://$dir/archive
FLASHSALE_HTTP_ADDR=127.0.0.1:$(free_port)
FLASHSALE_GRPC_ADDR=127.0.0.1:$(free_port)
FLASHSALE_CONSUMER=hist
DB=$db
EOF
  use "$dir"
  "$FS" migrate
  pid="$(serve_bg "$dir" 1m)"
  for ((i = 1; i <= sales; i++)); do
    "$FS" stock set "sale-$i" "$orders" >/dev/null
    "$LT" -item "sale-$i" -requests "$orders" -clients 64 -users "$orders" -json >"$dir/sale-$i.json"
    "$FS" stock close "sale-$i" >/dev/null
    log "$dir: sale $i of $sales sold"
  done
  wait_for 900 "$pid" trimmed "$sales" || die "sales not cleaned and trimmed within 15 min"
  stop_pid "$pid"
  log "$dir: $sales sales cleaned and trimmed"
  pid="$(serve_bg "$dir" 24h)"
  "$FS" stock set live 1000 >/dev/null
  "$LT" -item live -requests 1500 -clients 16 -users 1500 -json >"$dir/live.json" || true
  wait_for 120 "$pid" settled || die "live sale not projected"
  stop_pid "$pid"
  log "$dir: ready ($(rcli dbsize) keys, used_memory $(rcli info memory | tr -d '\r' | awk -F: '/^used_memory:/{print $2}'))"
}

# local_answers: the ingest's sold-out answers given from memory.
local_answers() {
  curl -sf "http://$FLASHSALE_HTTP_ADDR/metrics" | awk '/^flashsale_sold_out_answers_total\{source="local"\}/ {print $2}'
}

measure_one() {
  local dir=$1 t0 t1 audit pid n first rss
  use "$dir"
  t0="$(now_ms)"
  "$FS" audit >"$dir/audit.out" || die "audit of $dir not clean (see $dir/audit.out)"
  t1="$(now_ms)"
  audit="$((t1 - t0))"
  t0="$(now_ms)"
  "$FS" ingest >>"$dir/ingest.log" 2>&1 &
  pid=$!
  first=""
  for ((n = 0; n < 5000; n++)); do
    curl -s -o /dev/null -X POST "http://$FLASHSALE_HTTP_ADDR/api/purchase" \
      -d "{\"request_id\":\"m-$t0-$n\",\"user_id\":\"m$n\",\"item_id\":\"live\",\"quantity\":1}" || { sleep 0.005; continue; }
    if [ "$(local_answers)" != "" ] && [ "$(local_answers)" != 0 ]; then
      first="$(($(now_ms) - t0))"
      break
    fi
  done
  sleep "$(awk -v e="$(($(now_ms) - t0))" 'BEGIN { s = 5 - e / 1000; print (s > 0 ? s : 0) }')"
  rss="$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")"
  stop_pid "$pid"
  printf '%s\taudit %d ms\tfirst local sold-out %s ms (%d purchases)\tingest RSS %s MB\n' \
    "$dir" "$audit" "${first:-none}" "$((n + 1))" "$rss"
}

case "${1:-}" in
setup) setup "$2" "$3" "$4" ;;
measure)
  rounds=$2
  shift 2
  for ((r = 1; r <= rounds; r++)); do
    for d in "$@"; do measure_one "$d"; done
  done
  ;;
stop)
  shift
  for d in "$@"; do
    use "$d"
    rcli shutdown nosave 2>/dev/null || true
    sql -e "DROP DATABASE IF EXISTS $(. "$d/env" && echo "$DB")"
  done
  ;;
*) die "usage: history.sh setup DIR SALES ORDERS | measure ROUNDS DIR... | stop DIR..." ;;
esac
