#!/usr/bin/env bash
# Measures flashsale on this machine against its ceilings, in one run (`make bench`):
#   (a) a bare Go HTTP handler that decodes the purchase body and answers sold out (the HTTP ceiling)
#   (b) redis-benchmark running lua/purchase.lua with EVALSHA on the same Redis (the Redis ceiling),
#       one purchase per call, and 16 purchases per call (as serve's pipeline sends them under load)
#   (c) flashsale serve selling (large stock), over HTTP and over gRPC
#   (d) flashsale serve sold out (stock 0 after a small sale), over HTTP and over gRPC
#   (e) the projector's drain rate into MariaDB, and Redis memory per order
# and prints one table with ratios against (a) and (b), and the machine it ran on. The bare
# handler is measured before and after flashsale's runs, so that a change in the machine's
# background load shows; (a) is the mean of the two. Extra rows, marked: the same runs with
# appendfsync everysec, and an open-loop run at a fixed rate (p99 at equal offered load).
#
# The cost of a sold order: for (b), (c) and their baseline rows, the Redis CPU and the Go CPU
# (flashsale serve: the front door, the purchase pipeline, the projector, the winner tail, the
# sweeper) per order sold, counted from before the measured run until every reader of the
# ledger has caught up with it (projector group pending and lag 0), so that work a reader does
# after the run is charged to the orders that caused it.
#
# BENCH_BASELINE=<git rev> also builds that commit (git archive into the temp dir) and runs its
# (b) and (c) rows on the same Redis in the same run, alternating with this tree's, for
# BENCH_ROUNDS rounds (2 with a baseline, else 1): its serve uses key prefix fb and database
# flashsale_bench_base_<pid>, its (b) row that commit's lua/purchase.lua. BENCH_BASELINE_SERVE_FLAGS
# (default BENCH_SERVE_FLAGS) are the baseline serve's flags: BENCH_BASELINE=HEAD with other
# flags compares two settings of one build.
#
# Everything it starts lives in a temp dir on random ports and is stopped on exit: its own
# redis-server (AOF on, appendfsync always), the bare handler, a freshly built `flashsale serve`,
# and a database flashsale_bench_<pid> on the MariaDB at 127.0.0.1:$FLASHSALE_MYSQL_PORT (3306; root
# without password), dropped at the end. When no MariaDB answers there, it starts a private one
# in the temp dir on a random port.
#
# Environment: BENCH_DURATION (8s) and BENCH_WARMUP (1s) per measured run, BENCH_CLIENTS (64),
# BENCH_RATE (3000) and BENCH_OPEN_DURATION (5s) for the open-loop runs, BENCH_REDIS_REQUESTS
# (200000) for redis-benchmark, BENCH_MEM_ORDERS (20000), BENCH_SERVE_FLAGS (extra flags of
# flashsale serve, e.g. "-pipeline 16"), BENCH_BASELINE, BENCH_BASELINE_SERVE_FLAGS, BENCH_ROUNDS,
# FLASHSALE_MYSQL_PORT (3306).
set -euo pipefail
# The whole script is one group, read before it runs: editing the file meanwhile is harmless.
{

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh" # serve_started, jnum; the helpers below are this script's own
DURATION="${BENCH_DURATION:-8s}"
WARMUP="${BENCH_WARMUP:-1s}"
CLIENTS="${BENCH_CLIENTS:-64}"
RATE="${BENCH_RATE:-3000}"
OPEN_DURATION="${BENCH_OPEN_DURATION:-5s}"
SERVE_FLAGS="${BENCH_SERVE_FLAGS:-}"
REDIS_REQUESTS="${BENCH_REDIS_REQUESTS:-200000}"
MEM_ORDERS="${BENCH_MEM_ORDERS:-20000}"
MYSQL_PORT="${FLASHSALE_MYSQL_PORT:-3306}"
BASELINE="${BENCH_BASELINE:-}"
ROUNDS="${BENCH_ROUNDS:-$([ -n "$BASELINE" ] && echo 2 || echo 1)}"
BASE_SERVE_FLAGS="${BENCH_BASELINE_SERVE_FLAGS-$SERVE_FLAGS}"
# Databases of this run alone: another run on the same MariaDB drops only its own.
DB="flashsale_bench_$$"
BASE_DB="flashsale_bench_base_$$"
PARTITIONS=4
# Settings of the caller's shell must not change what is measured: every flag is given below.
for v in $(compgen -v FLASHSALE_); do unset "$v"; done

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/flashsale-bench.XXXXXX")"
PIDS=()
DB_CREATED=0
FAILED=0

# alive PID: true while PID is a running child of this script (a reaped PID may be reused by
# another process, which is then left alone).
alive() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $1, $2 }')"
  [ "${st#* }" = "$$" ] && [ "${st%% *}" != Z ]
}

# stop PID...: stop processes this script started (SIGTERM, then SIGKILL after 10 s).
stop() {
  local pid i
  for pid in "$@"; do
    if alive "$pid"; then kill "$pid" 2>/dev/null || true; fi
  done
  for pid in "$@"; do
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "${PIDS[@]}"
  if [ "$DB_CREATED" = 1 ]; then mysql_root -e "DROP DATABASE IF EXISTS $DB; DROP DATABASE IF EXISTS $BASE_DB" 2>/dev/null || true; fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# listening HOST PORT: true if something accepts TCP connections there.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

USED_PORTS=" "
# Ports are drawn below the kernel's ephemeral range, which outgoing connections use.
EPHEMERAL_LOW="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
# free_port: a random port on 127.0.0.1 that nothing listens on, not handed out before.
free_port() {
  local p i lo=15000 hi=$((EPHEMERAL_LOW - 1))
  [ "$hi" -gt "$lo" ] || { lo=20000 hi=60000; }
  for ((i = 0; i < 100; i++)); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! listening 127.0.0.1 "$p"; then
      USED_PORTS+="$p "
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# wait_for SECONDS PID CMD...: run CMD every 0.2 s until it succeeds; fail after SECONDS or
# once process PID has exited.
wait_for() {
  local secs=$1 pid=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

mysql_root() { mariadb --connect-timeout=5 -h127.0.0.1 -P"$MYSQL_PORT" -uroot "$@"; }
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# calc EXPR: floating-point arithmetic.
calc() { awk "BEGIN { printf \"%s\", $1 }" </dev/null; }
# cmdstats: Redis's INFO commandstats as "name calls usec" lines.
cmdstats() { rcli info commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p'; }
redis_cpu() { rcli info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f", s }'; }
CLK_TCK="$(getconf CLK_TCK)"
# pid_cpu PID: CPU seconds (user + system) process PID has used.
pid_cpu() { awk -v t="$CLK_TCK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

# machine_cpu: CPU seconds all processes of the machine have used (busy = not idle, not iowait).
machine_cpu() { awk -v t="$CLK_TCK" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / t }' /proc/stat; }
MYSQL_PID=""
# mysql_cpu: CPU seconds of the MariaDB server, when its process can be read.
mysql_cpu() { if [ -n "$MYSQL_PID" ] && [ -r "/proc/$MYSQL_PID/stat" ]; then pid_cpu "$MYSQL_PID"; else echo 0; fi; }

# fnv32a STRING: FNV-1a 32-bit hash, as ledger.Keys.Partition computes it.
fnv32a() {
  local s=$1 h=2166136261 i c
  for ((i = 0; i < ${#s}; i++)); do
    printf -v c '%d' "'${s:i:1}"
    h=$(((h ^ c) * 16777619 & 0xffffffff))
  done
  echo "$h"
}

for cmd in go redis-server redis-cli redis-benchmark mariadb; do
  command -v "$cmd" >/dev/null || die "$cmd not found; 'make services' installs Redis and MariaDB"
done

# ---------------------------------------------------------------- build and start
log "building flashsale and loadtest into $TMP"
(cd "$ROOT" && go build -o "$TMP/flashsale" ./cmd/flashsale && go build -o "$TMP/loadtest" ./cmd/loadtest)
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null)" ]; then COMMIT+=" + uncommitted changes"; fi
BASE_COMMIT=""
if [ -n "$BASELINE" ]; then
  BASE_COMMIT="$(cd "$ROOT" && git rev-parse --short "$BASELINE^{commit}")" || die "BENCH_BASELINE=$BASELINE: not a commit"
  log "building the baseline $BASE_COMMIT into $TMP/base"
  mkdir -p "$TMP/base/src"
  (cd "$ROOT" && git archive "$BASE_COMMIT") | tar -x -C "$TMP/base/src"
  (cd "$TMP/base/src" && GOFLAGS=-buildvcs=false go build -o "$TMP/base/flashsale" ./cmd/flashsale)
fi

mkdir -p "$TMP/redis"
for ((try = 0; try < 5; try++)); do
  REDIS_PORT="$(free_port)"
  log "starting redis-server on 127.0.0.1:$REDIS_PORT (appendonly yes, appendfsync always)"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes \
    --appendfsync always --save '' --logfile "$TMP/redis/redis.log" --latency-monitor-threshold 1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_for 20 "$REDIS_PID" rcli ping && break
  stop "$REDIS_PID"
done
rcli ping >/dev/null 2>&1 || die "redis-server did not start: $(tail -n 5 "$TMP/redis/redis.log")"

if ! mysql_root -e 'select 1' >/dev/null 2>&1; then
  log "no MariaDB answers as root on 127.0.0.1:$MYSQL_PORT; starting a private one in $TMP"
  MYSQL_PORT="$(free_port)"
  mariadb-install-db --no-defaults --user=root --datadir="$TMP/mysql" \
    --auth-root-authentication-method=normal --skip-test-db >"$TMP/mysql-install.log" 2>&1 ||
    die "mariadb-install-db failed: $(tail -n 5 "$TMP/mysql-install.log")"
  mariadbd --no-defaults --user=root --datadir="$TMP/mysql" --port="$MYSQL_PORT" \
    --bind-address=127.0.0.1 --socket="$TMP/mysql.sock" --log-error="$TMP/mysql.log" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci &
  MYSQL_PID=$!
  PIDS+=("$MYSQL_PID")
  wait_for 60 "$MYSQL_PID" mysql_root -e 'select 1' || die "MariaDB did not start: $(tail -n 5 "$TMP/mysql.log")"
fi
if [ -z "$MYSQL_PID" ]; then
  MYSQL_PID="$(cat "$(mysql_root -N -e 'select @@pid_file')" 2>/dev/null || true)"
fi
mysql_root -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
DB_CREATED=1
DSN="root@tcp(127.0.0.1:$MYSQL_PORT)/$DB?parseTime=true"
"$TMP/flashsale" migrate -mysql "$DSN" >/dev/null
BASE_DSN="root@tcp(127.0.0.1:$MYSQL_PORT)/$BASE_DB?parseTime=true"
if [ -n "$BASELINE" ]; then
  mysql_root -e "DROP DATABASE IF EXISTS $BASE_DB; CREATE DATABASE $BASE_DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
  "$TMP/base/flashsale" migrate -mysql "$BASE_DSN" >/dev/null
fi

# ---------------------------------------------------------------- measuring
declare -A RPS P99 CPU_CLIENT CPU_SERVER CPU_REDIS CPU_MYSQL CPU_MACHINE ORDER_REDIS ORDER_GO

# measure KEY SERVER_PID DURATION LOADTEST_ARGS...: a warm-up run, then a measured one with
# $CLIENTS clients; records req/s, p99 and the CPU used by the client, the server, Redis,
# MariaDB and the whole machine meanwhile.
# With SETTLE set to a serve's key prefix, it waits before and after the run until that
# serve's projector has caught up, and records the Redis and server CPU per order sold (ok
# replies) over that span.
SETTLE=""
measure() {
  local key=$1 spid=$2 dur=$3 out="$TMP/$1.json" s0 r0 m0 d0 s1 r1 m1 d1 s2 r2 elapsed ok
  shift 3
  "$TMP/loadtest" -clients "$CLIENTS" -duration "$WARMUP" -verify=false "$@" >/dev/null 2>>"$TMP/loadtest.log" || true
  if [ -n "$SETTLE" ]; then
    wait_for 30 "$spid" settled "$SETTLE" || log "$key: projector of $SETTLE not caught up before the run"
    cmdstats >"$TMP/$key.cmd0"
  fi
  s0="$(pid_cpu "$spid")" r0="$(redis_cpu)" m0="$(machine_cpu)" d0="$(mysql_cpu)"
  if ! "$TMP/loadtest" -clients "$CLIENTS" -duration "$dur" -json "$@" >"$out" 2>>"$TMP/loadtest.log"; then
    FAILED=1
    log "$key: loadtest reported a violation or could not run:"
    cat "$out" >&2
  fi
  s1="$(pid_cpu "$spid")" r1="$(redis_cpu)" m1="$(machine_cpu)" d1="$(mysql_cpu)"
  elapsed="$(jnum elapsed_s "$out")"
  RPS[$key]="$(jnum rps "$out")"
  P99[$key]="$(jnum p99_ms "$out")"
  CPU_CLIENT[$key]="$(jnum client_cpu_cores "$out")"
  CPU_SERVER[$key]="$(calc "($s1 - $s0) / $elapsed")"
  CPU_REDIS[$key]="$(calc "($r1 - $r0) / $elapsed")"
  CPU_MYSQL[$key]="$(calc "($d1 - $d0) / $elapsed")"
  CPU_MACHINE[$key]="$(calc "($m1 - $m0) / $elapsed")"
  ORDER_REDIS[$key]=- ORDER_GO[$key]=-
  ok="$(jnum ok "$out")"
  if [ -n "$SETTLE" ] && [ "${ok:-0}" -gt 0 ]; then
    wait_for 30 "$spid" settled "$SETTLE" || log "$key: projector of $SETTLE not caught up after the run"
    s2="$(pid_cpu "$spid")" r2="$(redis_cpu)"
    cmdstats >"$TMP/$key.cmd1"
    # Per order sold: calls and microseconds of each command (those run by scripts count
    # both on their own line and within the script's).
    awk -v ok="$ok" 'NR == FNR { c[$1] = $2; u[$1] = $3; next }
      { dc = $2 - c[$1]; du = $3 - u[$1]; if (dc > 0) printf "%s %.3f %.2f\n", $1, dc / ok, du / ok }' \
      "$TMP/$key.cmd0" "$TMP/$key.cmd1" | sort -k3,3nr >"$TMP/$key.cmds"
    ORDER_REDIS[$key]="$(calc "($r2 - $r0) * 1000000 / $ok")"
    ORDER_GO[$key]="$(calc "($s2 - $s0) * 1000000 / $ok")"
  fi
  log "$key: $(printf '%.0f' "${RPS[$key]}") req/s, p99 ${P99[$key]} ms, $ok sold, per order: Redis ${ORDER_REDIS[$key]} us, serve ${ORDER_GO[$key]} us"
}

# ---------------------------------------------------------------- (a) bare handler
"$TMP/loadtest" bare -addr 127.0.0.1:0 >"$TMP/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_for 10 "$BARE_PID" test -s "$TMP/bare.log" || die "bare handler did not start: $(cat "$TMP/bare.log")"
BARE_ADDR="$(grep -o 'listening on [0-9.:]*' "$TMP/bare.log" | cut -d' ' -f3)"
[ -n "$BARE_ADDR" ] || die "bare handler did not start: $(cat "$TMP/bare.log")"
log "(a) bare handler on $BARE_ADDR"
measure bare1 "$BARE_PID" "$DURATION" -target http -addr "$BARE_ADDR" -verify=false

# ---------------------------------------------------------------- (b) Redis ceiling
# Keys and arguments as ledger/purchase.go passes them (keys built as in ledger/keys.go), for
# item rbench under a prefix of the row's own; __rand_int__ makes every request_id new.
RB_ITEM=rbench
RB_PART=$(($(fnv32a "$RB_ITEM") % PARTITIONS))

# redis_bench KEY PREFIX SCRIPT [BATCH]: one redis-benchmark run of SCRIPT (a purchase.lua)
# on item rbench under PREFIX, each call deciding BATCH purchases (1; more as serve's pipeline
# sends the purchases of one partition). A baseline's script is called with the keys and
# arguments of its commit: one whose header names KEYS[6] is one of before purchase.lua decided
# several purchases per call (one purchase per call); one that names req:<item> keys takes four
# keys per purchase, an idempotency key and a per-user counter among them; today's takes the
# item's four keys once. Records purchases/s, p99 of a call, CPU, and Redis CPU per order.
redis_bench() {
  local key=$1 prefix=$2 script=$3 batch=${4:-1} out="$TMP/$1.csv" r0 r1 m0 m1 cpu real stock0 stock1 sha i
  local tag="$prefix:{p$RB_PART}:" stock="$prefix:{p$RB_PART}:stock:$RB_ITEM"
  local -a keys args
  sha="$(rcli script load "$(cat "$script")")"
  [ -n "$(rcli get "$stock")" ] || rcli set "$stock" 1000000000000 >/dev/null
  if grep -q 'KEYS\[6\]' "$script"; then
    [ "$batch" -eq 1 ] || die "$script decides one purchase per call"
    keys=("$stock" "${tag}rules:$RB_ITEM" "${tag}req:$RB_ITEM:r__rand_int__" "${tag}user:$RB_ITEM:bench-user" "${tag}events" "${tag}due")
    args=("$RB_ITEM" bench-user r__rand_int__ 1 86400000 "$RB_PART" "${tag}order:")
  else
    keys=("${tag}events" "${tag}due") args=(86400000 "$RB_PART" "${tag}order:")
    local once=1
    local -a item_keys=("$stock" "${tag}rules:$RB_ITEM" "${tag}requests:$RB_ITEM" "${tag}users:$RB_ITEM")
    if grep -q 'req:<item>' "$script"; then
      item_keys=("$stock" "${tag}rules:$RB_ITEM" "${tag}req:$RB_ITEM:r__rand_int__" "${tag}user:$RB_ITEM:bench-user") once=0
    fi
    for ((i = 0; i < batch; i++)); do
      [ "$once" = 1 ] && [ "$i" -gt 0 ] || keys+=("${item_keys[@]}")
      args+=("$RB_ITEM" bench-user r__rand_int__ 1)
    done
  fi
  r0="$(redis_cpu)" m0="$(machine_cpu)" stock0="$(rcli get "$stock")"
  local TIMEFORMAT='%U %S %R'
  { time redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CLIENTS" -n $((REDIS_REQUESTS / batch)) -r 1000000000 --csv \
    evalsha "$sha" "${#keys[@]}" "${keys[@]}" "${args[@]}" >"$out"; } 2>"$TMP/$1.time"
  r1="$(redis_cpu)" m1="$(machine_cpu)" stock1="$(rcli get "$stock")"
  # The script must really have sold: a wrong key would measure an "unknown item" no-op.
  local orders=$((stock0 - stock1))
  if [ "$orders" -lt $((REDIS_REQUESTS * 9 / 10)) ]; then
    die "redis-benchmark did not place orders (stock fell by $orders): keys or arguments do not match $script"
  fi
  read -r cpu real < <(awk '{ print $1 + $2, $3 }' "$TMP/$1.time")
  RPS[$key]="$(calc "$(tail -n 1 "$out" | awk -F'","' '{ print $2 }') * $batch")"
  P99[$key]="$(tail -n 1 "$out" | awk -F'","' '{ print $7 }')"
  CPU_CLIENT[$key]="$(calc "$cpu / $real")"
  CPU_SERVER[$key]=0
  CPU_REDIS[$key]="$(calc "($r1 - $r0) / $real")"
  CPU_MYSQL[$key]=0
  CPU_MACHINE[$key]="$(calc "($m1 - $m0) / $real")"
  ORDER_REDIS[$key]="$(calc "($r1 - $r0) * 1000000 / $orders")" ORDER_GO[$key]=-
  log "$key: $(printf '%.0f' "${RPS[$key]}") purchases/s, p99 ${P99[$key]} ms ($orders orders, Redis ${ORDER_REDIS[$key]} us per order)"
}
log "(b) redis-benchmark EVALSHA purchase.lua, $REDIS_REQUESTS requests, appendfsync always"
for ((round = 1; round <= ROUNDS; round++)); do
  redis_bench "redis$round" rb "$ROOT/lua/purchase.lua"
  [ -z "$BASELINE" ] || redis_bench "base_redis$round" rbb "$TMP/base/src/lua/purchase.lua"
  redis_bench "batch$round" rb "$ROOT/lua/purchase.lua" 16
done
log "(b') the same with appendfsync everysec (not flashsale's durable setting)"
rcli config set appendfsync everysec >/dev/null
redis_bench redis_everysec rb "$ROOT/lua/purchase.lua"
rcli config set appendfsync always >/dev/null

# ---------------------------------------------------------------- (c), (d) flashsale serve
# start_serve NAME BINARY PREFIX DSN FLAGS: starts BINARY serve under key prefix PREFIX,
# projecting into DSN, with the extra FLAGS; sets NAME_PID, NAME_HTTP and NAME_GRPC.
start_serve() {
  local name=$1 bin=$2 prefix=$3 dsn=$4 flags=$5 log="$TMP/$1.log" pid
  log "starting $name: $bin serve, prefix $prefix ${flags:+(extra flags: $flags)}"
  # shellcheck disable=SC2086 # flags is a list of flags
  "$bin" serve -redis "127.0.0.1:$REDIS_PORT" -prefix "$prefix" -mysql "$dsn" -http 127.0.0.1:0 -grpc 127.0.0.1:0 \
    -partitions "$PARTITIONS" -consumer bench $flags >"$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  serve_started "$name" "$pid" "$log" 20
}
start_serve SERVE "$TMP/flashsale" fs "$DSN" "-archive file://$TMP/archive $SERVE_FLAGS"
SERVE_PID=$SERVE_PID HTTP_ADDR=$SERVE_HTTP GRPC_ADDR=$SERVE_GRPC
if [ -n "$BASELINE" ]; then
  # A baseline with an archiver archives into the temp dir too, never into its default place.
  BASE_ARCHIVE=""
  if "$TMP/base/flashsale" serve -h 2>&1 | grep -q -- '-archive'; then BASE_ARCHIVE="-archive file://$TMP/archive-base"; fi
  start_serve BASE "$TMP/base/flashsale" fb "$BASE_DSN" "$BASE_ARCHIVE $BASE_SERVE_FLAGS"
fi
# stock set ITEM N: through flashsale's own stock command, which records the stock event.
stock() { "$TMP/flashsale" stock "$1" -redis "127.0.0.1:$REDIS_PORT" "${@:2}"; }
# settled [PREFIX]: the projector has read and acknowledged every entry (pending and lag 0 on
# every partition of PREFIX, default fs).
settled() {
  local p out prefix=${1:-fs}
  for ((p = 0; p < PARTITIONS; p++)); do
    out="$(rcli xinfo groups "$prefix:{p$p}:events" 2>/dev/null | tr -d '\r')" || continue
    [ -n "$out" ] || continue
    awk '/^(pending|lag)$/ { getline v; if (v != "0") bad = 1 } END { exit bad }' <<<"$out" || return 1
  done
}

log "(c) selling phase: item sell, stock 1000000000"
stock set sell 1000000000 >/dev/null
[ -z "$BASELINE" ] || stock set -prefix fb sell 1000000000 >/dev/null
for ((round = 1; round <= ROUNDS; round++)); do
  for t in http grpc; do
    SETTLE=fs measure "sell_$t$round" "$SERVE_PID" "$DURATION" -target "$t" -addr "$([ "$t" = http ] && echo "$HTTP_ADDR" || echo "$GRPC_ADDR")" -item sell -users 100000
    [ -z "$BASELINE" ] || SETTLE=fb measure "base_sell_$t$round" "$BASE_PID" "$DURATION" -target "$t" \
      -addr "$([ "$t" = http ] && echo "$BASE_HTTP" || echo "$BASE_GRPC")" -item sell -users 100000
  done
done
[ -z "$BASELINE" ] || stop "$BASE_PID"
log "(c') the same with appendfsync everysec (not flashsale's durable setting)"
rcli config set appendfsync everysec >/dev/null
SETTLE=fs measure sell_http_everysec "$SERVE_PID" "$DURATION" -target http -addr "$HTTP_ADDR" -item sell -users 100000
SETTLE=fs measure sell_grpc_everysec "$SERVE_PID" "$DURATION" -target grpc -addr "$GRPC_ADDR" -item sell -users 100000
rcli config set appendfsync always >/dev/null

log "(d) sold-out phase: item gone, stock 1000 sold first"
stock set gone 1000 >/dev/null
"$TMP/loadtest" -target http -addr "$HTTP_ADDR" -item gone -requests 2000 -clients "$CLIENTS" >"$TMP/gone-sale.txt" 2>>"$TMP/loadtest.log" ||
  { FAILED=1; cat "$TMP/gone-sale.txt" >&2; }
# sold_out_answers: flashsale serve's sold-out answers from memory and from Redis (/metrics).
sold_out_answers() {
  curl -s "http://$HTTP_ADDR/metrics" | awk -F'[" ]' '/^flashsale_sold_out_answers_total/ { printf "%s %s ", $2, $NF }'
}
SOLD_OUT_BEFORE="$(sold_out_answers)"
GONE_REDIS_CMDS_BEFORE="$(rcli info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_/ { n += $2 } END { print n }')"
measure gone_http "$SERVE_PID" "$DURATION" -target http -addr "$HTTP_ADDR" -item gone -users 100000
measure gone_grpc "$SERVE_PID" "$DURATION" -target grpc -addr "$GRPC_ADDR" -item gone -users 100000
GONE_REDIS_CMDS=$(($(rcli info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_/ { n += $2 } END { print n }') - GONE_REDIS_CMDS_BEFORE))
SOLD_OUT_AFTER="$(sold_out_answers)"

wait_for 30 "$SERVE_PID" settled || true
log "(a) bare handler again (flashsale serve idle)"
measure bare2 "$BARE_PID" "$DURATION" -target http -addr "$BARE_ADDR" -verify=false

log "open loop at $RATE req/s: bare handler, selling over HTTP and gRPC"
measure bare_open "$BARE_PID" "$OPEN_DURATION" -rate "$RATE" -target http -addr "$BARE_ADDR" -verify=false
measure sell_http_open "$SERVE_PID" "$OPEN_DURATION" -rate "$RATE" -target http -addr "$HTTP_ADDR" -item sell -users 100000
measure sell_grpc_open "$SERVE_PID" "$OPEN_DURATION" -rate "$RATE" -target grpc -addr "$GRPC_ADDR" -item sell -users 100000
stop "$BARE_PID"

# stalls EVENT: "N s with one, worst M ms" from Redis's latency monitor (events of 1 ms or more,
# at most one sample per second; the history holds the last 160). Read before the memory and
# audit steps, whose long reads would count as slow commands.
stalls() {
  rcli latency history "$1" | tr -d '\r' | awk 'NR % 2 == 0 { n++; if ($1 > m) m = $1 } END { printf "%d s with one, worst %d ms", n, m }'
}
FSYNC_STALLS="$(stalls aof-fsync-always)"
COMMAND_STALLS="$(stalls command)"

# ---------------------------------------------------------------- memory per order
# Every order a new user: the stream entry, a field of the item's request hash and one of its
# per-user counts. Measured after the projector has acknowledged them, so no pending-list memory
# counts. INFO used_memory moves in steps when Redis's hash tables double, so the parts are
# also measured one by one with MEMORY USAGE.
log "memory: $MEM_ORDERS orders of new users"
stock set mem "$MEM_ORDERS" >/dev/null
MEM_TAG="fs:{p$(($(fnv32a mem) % PARTITIONS))}:"
used_memory() { rcli info memory | tr -d '\r' | awk -F: '/^used_memory:/ { print $2 }'; }
stream_memory() { rcli memory usage "${MEM_TAG}events" samples 0 | grep -o '[0-9]*' || echo 0; }
wait_for 30 "$SERVE_PID" settled || true
mem0="$(used_memory)" stream0="$(stream_memory)"
"$TMP/loadtest" -target http -addr "$HTTP_ADDR" -item mem -requests "$MEM_ORDERS" -users 1000000000 \
  -clients "$CLIENTS" >"$TMP/mem.txt" 2>>"$TMP/loadtest.log" || { FAILED=1; cat "$TMP/mem.txt" >&2; }
sleep 1
wait_for 30 "$SERVE_PID" settled || true
mem1="$(used_memory)" stream1="$(stream_memory)"
MEM_PER_ORDER=$(((mem1 - mem0) / MEM_ORDERS))
STREAM_PER_ORDER=$(((stream1 - stream0) / MEM_ORDERS))
# The hashes' bytes per field (MEMORY USAGE of every field, SAMPLES 0).
per_field() { echo $(($(rcli memory usage "$1" samples 0) / $(rcli hlen "$1"))); }
REQ_FIELD_BYTES="$(per_field "${MEM_TAG}requests:mem")"
USER_FIELD_BYTES="$(per_field "${MEM_TAG}users:mem")"

log "audit: flashsale audit over everything sold"
AUDIT=clean
if ! "$TMP/loadtest" -target http -addr "$HTTP_ADDR" -item gone -requests 10 -audit-redis "127.0.0.1:$REDIS_PORT" \
  -audit-mysql "$DSN" -prefix fs -flashsale "$TMP/flashsale" >"$TMP/audit.txt" 2>>"$TMP/loadtest.log"; then
  AUDIT=FAILED FAILED=1
  cat "$TMP/audit.txt" >&2
fi
ORDERS="$(mysql_root -N -e "SELECT COUNT(*) FROM $DB.orders")"
stop "$SERVE_PID"

# ---------------------------------------------------------------- (e) projector drain
log "(e) projector drain (go test -bench Drain/batch=500, 20000 orders, 2 iterations)"
DRAIN="$(cd "$ROOT" && FLASHSALE_TEST_MYSQL_DSN="root@tcp(127.0.0.1:$MYSQL_PORT)/?parseTime=true" \
  go test -run '^$' -bench 'Drain/batch=500$' -benchtime 2x ./projector 2>&1 |
  tee "$TMP/drain.txt" | grep -o '[0-9.]* orders/s' | head -n 1 | cut -d' ' -f1)" || true
[ -n "$DRAIN" ] || { FAILED=1; DRAIN="?"; cat "$TMP/drain.txt" >&2; }

# ---------------------------------------------------------------- the report
# (a) is the mean of the two bare runs.
for a in RPS P99 CPU_CLIENT CPU_SERVER CPU_REDIS CPU_MYSQL CPU_MACHINE; do
  declare -n arr=$a
  # shellcheck disable=SC2154 # arr names one of the arrays above
  arr[bare]="$(calc "(${arr[bare1]} + ${arr[bare2]}) / 2")"
  unset -n arr
done
# The rows run once per round are reported as their mean and, with more than one round, each.
MEANS=(redis batch sell_http sell_grpc)
[ -z "$BASELINE" ] || MEANS+=(base_redis base_sell_http base_sell_grpc)
for k in "${MEANS[@]}"; do
  for a in RPS P99 CPU_CLIENT CPU_SERVER CPU_REDIS CPU_MYSQL CPU_MACHINE ORDER_REDIS ORDER_GO; do
    declare -n arr=$a
    sum=0
    for ((round = 1; round <= ROUNDS; round++)); do
      v="${arr[$k$round]}"
      [ "$v" = - ] && { sum=-; break; }
      sum="$(calc "$sum + $v")"
    done
    # shellcheck disable=SC2154 # arr names one of the arrays above
    arr[$k]="$([ "$sum" = - ] && echo - || calc "$sum / $ROUNDS")"
    unset -n arr
  done
done

fmt_ratio() { [ "$1" = - ] && echo - || printf '%.2fx' "$1"; }
# row LABEL KEY [REF]: req/s and p99, their ratios to REF (default (a)) and, for selling, to
# (b); the CPU of our processes per request (noise from other processes does not count there),
# and the cores each used, "rest" being everything else the machine ran meanwhile; Redis and
# serve CPU per order sold, with every reader of the ledger caught up.
fmt_us() { [ "${1:--}" = - ] && echo - || printf '%.1f' "$1"; }
row() {
  local label=$1 k=$2 ref=${3:-bare} vs_rps="-" vs_p99="-" vs_b="-" ours
  if [ "$k" != "$ref" ]; then
    case $k in
      redis* | base_redis* | batch*) ;;
      *_open) vs_p99="$(calc "${P99[$k]} / ${P99[$ref]}")" ;;
      *)
        vs_rps="$(calc "${RPS[$k]} / ${RPS[$ref]}")"
        vs_p99="$(calc "${P99[$k]} / ${P99[$ref]}")"
        ;;
    esac
  fi
  case $k in
    sell_http* | sell_grpc*) [[ $k == *_open ]] || vs_b="$(calc "${RPS[$k]} / ${RPS[redis]}")" ;;
    base_sell_*) vs_b="$(calc "${RPS[$k]} / ${RPS[base_redis]}")" ;;
  esac
  ours="$(calc "${CPU_CLIENT[$k]} + ${CPU_SERVER[$k]} + ${CPU_REDIS[$k]} + ${CPU_MYSQL[$k]}")"
  printf '%-33s %7.0f %7.2f %7s %7s %7s %7.0f %7s %7s   %5.2f %5.2f %5.2f %5.2f %5.2f\n' "$label" "${RPS[$k]}" "${P99[$k]}" \
    "$(fmt_ratio "$vs_rps")" "$(fmt_ratio "$vs_p99")" "$(fmt_ratio "$vs_b")" "$(calc "$ours * 1000000 / ${RPS[$k]}")" \
    "$(fmt_us "${ORDER_REDIS[$k]:--}")" "$(fmt_us "${ORDER_GO[$k]:--}")" \
    "${CPU_CLIENT[$k]}" "${CPU_SERVER[$k]}" "${CPU_REDIS[$k]}" "${CPU_MYSQL[$k]}" "$(calc "${CPU_MACHINE[$k]} - $ours")"
}
verdict() { awk "BEGIN { exit !($1) }" && echo met || echo "NOT met"; }

MEM_TOTAL="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
{
  echo "flashsale benchmark, commit $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) CPUs ($(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $MEM_TOTAL memory"
  echo "versions: $(go version | cut -d' ' -f3), Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2), MariaDB $(mysql_root -N -e 'select version()')"
  echo "setup: $CLIENTS clients, closed loop, $DURATION per run after a $WARMUP warm-up; Redis AOF appendfsync always"
  echo "       unless marked; serve${SERVE_FLAGS:+ $SERVE_FLAGS} runs its projector into MariaDB meanwhile."
  echo "       The load generator shares the machine's $(nproc) cores with the servers. CPU columns: cores"
  echo "       used during the run by the client (loadtest or redis-benchmark), the server (bare"
  echo "       handler or flashsale serve with its projector), Redis, MariaDB, and the rest of the"
  echo "       machine (other processes, kernel); us/req = CPU of the first four per request."
  echo "       Per sold order: CPU of Redis and of serve (Go: front door, purchase pipeline, projector,"
  echo "       winner tail, sweeper) from before the run until the projector caught up with it."
  [ -z "$BASELINE" ] || echo "       baseline: commit $BASE_COMMIT${BASE_SERVE_FLAGS:+ (serve $BASE_SERVE_FLAGS)}, its (b) and (c) rows alternating with this tree's, $ROUNDS rounds."
  echo
  printf '%-33s %7s %7s %7s %7s %7s %7s %15s   %s\n' "" "" "" "req/s" "p99" "req/s" "CPU" "us per order" "cores used"
  printf '%-33s %7s %7s %7s %7s %7s %7s %7s %7s   %5s %5s %5s %5s %5s\n' "scenario" "req/s" "p99 ms" "/ (a)" "/ (a)" "/ (b)" "us/req" \
    "redis" "go" "clnt" "srv" "redis" "mysql" "rest"
  row "(a) bare handler, HTTP: mean" bare
  row "    run 1, before flashsale" bare1
  row "    run 2, after flashsale" bare2
  for k in redis batch sell_http sell_grpc; do
    case $k in
      redis) label="(b) purchase.lua EVALSHA" ;;
      batch) label="(b) purchase.lua, 16 per call" ;;
      sell_http) label="(c) selling, HTTP" ;;
      *) label="(c) selling, gRPC" ;;
    esac
    row "$label" "$k"
    if [ "$ROUNDS" -gt 1 ]; then
      for ((round = 1; round <= ROUNDS; round++)); do row "    round $round" "$k$round"; done
    fi
    if [ -n "$BASELINE" ] && [ "$k" != batch ]; then
      row "    baseline $BASE_COMMIT" "base_$k"
      if [ "$ROUNDS" -gt 1 ]; then
        for ((round = 1; round <= ROUNDS; round++)); do row "    baseline round $round" "base_$k$round"; done
      fi
    fi
  done
  row "(d) sold out, HTTP" gone_http
  row "(d) sold out, gRPC" gone_grpc
  echo "extra, appendfsync everysec (not the durable setting):"
  row "(b) purchase.lua EVALSHA" redis_everysec
  row "(c) selling, HTTP" sell_http_everysec
  row "(c) selling, gRPC" sell_grpc_everysec
  echo "extra, open loop at $RATE req/s for $OPEN_DURATION (p99 from the intended send time):"
  row "bare handler, HTTP" bare_open bare_open
  row "selling, HTTP" sell_http_open bare_open
  row "selling, gRPC" sell_grpc_open bare_open
  echo
  echo "(e) projector drain, batch 500: $(printf '%.0f' "$DRAIN" 2>/dev/null || echo "$DRAIN") orders/s"
  echo "    Redis memory per order, $MEM_ORDERS orders of new users: $((STREAM_PER_ORDER + REQ_FIELD_BYTES + USER_FIELD_BYTES)) bytes ="
  echo "      stream entry $STREAM_PER_ORDER + request hash field $REQ_FIELD_BYTES + per-user count $USER_FIELD_BYTES (MEMORY USAGE),"
  echo "      plus the keyspace's hash-table slots; INFO used_memory grew by $MEM_PER_ORDER bytes per order (tables grow by doubling)"
  echo "    Redis latency monitor during (a)-(d) and the extras: AOF fsyncs of 1 ms or more: $FSYNC_STALLS;"
  echo "      other commands (scripts, stream reads) of 1 ms or more: $COMMAND_STALLS"
  echo "    sold-out answers of flashsale serve (/metrics, source count): before (d) $SOLD_OUT_BEFORE, after $SOLD_OUT_AFTER;"
  echo "      Redis commands during (d), all clients (INFO commandstats): $GONE_REDIS_CMDS"
  echo "    books: every loadtest run checked the stock against its replies; flashsale audit over $ORDERS orders: $AUDIT"
  if [ -n "$BASELINE" ]; then
    echo
    echo "against the baseline $BASE_COMMIT (this tree / baseline, means of $ROUNDS rounds):"
    printf '  %-10s req/s %5.2fx   Redis us per order %5.2fx   (this tree'"'"'s purchase.lua deciding 16 per call against the baseline'"'"'s purchase.lua)\n' batch \
      "$(calc "${RPS[batch]} / ${RPS[base_redis]}")" "$(calc "${ORDER_REDIS[batch]} / ${ORDER_REDIS[base_redis]}")"
    for k in redis sell_http sell_grpc; do
      printf '  %-10s req/s %5.2fx   Redis us per order %5.2fx' "$k" "$(calc "${RPS[$k]} / ${RPS[base_$k]}")" \
        "$(calc "${ORDER_REDIS[$k]} / ${ORDER_REDIS[base_$k]}")"
      [ "${ORDER_GO[$k]}" = - ] || printf '   serve us per order %5.2fx' "$(calc "${ORDER_GO[$k]} / ${ORDER_GO[base_$k]}")"
      [ "$k" = redis ] || printf '   req/s / (a) %.2fx (baseline %.2fx)' "$(calc "${RPS[$k]} / ${RPS[bare]}")" "$(calc "${RPS[base_$k]} / ${RPS[bare]}")"
      echo
    done
  fi
  echo
  echo "Redis commands per order sold (INFO commandstats: calls and microseconds in the command per"
  echo "order; commands a script runs count on their own line and within the script's), first round:"
  cols=(sell_http1 sell_grpc1)
  [ -z "$BASELINE" ] || cols=(sell_http1 base_sell_http1 sell_grpc1 base_sell_grpc1)
  printf '  %-12s' command; for k in "${cols[@]}"; do printf ' %22s' "$k"; done; echo
  for c in $(for k in "${cols[@]}"; do cat "$TMP/$k.cmds"; done | awk '{ s[$1] += $3 } END { for (c in s) print s[c], c }' | sort -rn | awk '{ print $2 }'); do
    printf '  %-12s' "$c"
    for k in "${cols[@]}"; do
      awk -v c="$c" '$1 == c { printf " %9s calls %6s us", $2, $3; f = 1 } END { if (!f) printf " %22s", "-" }' "$TMP/$k.cmds"
    done
    echo
  done
  echo
  echo "targets (benchmark goals, not test assertions), against (a):"
  for t in http grpc; do
    echo "  selling $t  req/s >= 0.5x:  $(verdict "${RPS[sell_$t]} >= 0.5 * ${RPS[bare]}")"
    echo "  sold out $t req/s >= 0.9x:  $(verdict "${RPS[gone_$t]} >= 0.9 * ${RPS[bare]}")"
    echo "  selling $t  p99 <= 2x:      $(verdict "${P99[sell_$t]} <= 2 * ${P99[bare]}")"
    echo "  sold out $t p99 <= 2x:      $(verdict "${P99[gone_$t]} <= 2 * ${P99[bare]}")"
  done
}
if [ "$FAILED" != 0 ]; then
  die "a run reported a violation or failed (see above)"
fi
exit
}
