#!/usr/bin/env bash
# ordercost.sh: Redis instructions per sold order, counted by valgrind (callgrind), so the
# figure does not move with the machine's load as CPU time does.
#
# Starts its own redis-server under `valgrind --tool=callgrind` (temp dir, random port, AOF on,
# appendfsync always), a fresh `flashsale serve` of this tree (prefix fs) and, with
# ORDERCOST_BASELINE=<rev>, that commit's serve too (prefix fb, built from git archive), each
# projecting into a database of its own on the MariaDB at 127.0.0.1:3306 (root, no password).
# Then, per round and per transport (HTTP, gRPC), alternating this tree and the baseline: zero
# Redis's counters (callgrind_control -z), sell ORDERCOST_ORDERS orders of a fresh item with
# ORDERCOST_CLIENTS clients in a closed loop, as make bench does (or at ORDERCOST_RATE req/s),
# wait until every consumer group of that serve has read and acknowledged everything (no
# pending entry and, for every group, its last delivered ID at the stream's last ID: the
# archiver's segments included) and a tail-read period more, and dump the counters
# (callgrind_control -d). Reported per order sold: Redis instructions (user space, every
# thread), less what Redis does idle over the same time (both serves' timers; measured for 20 s
# before the runs); Redis system calls (/proc/PID/io: socket reads and writes, AOF writes); AOF
# bytes; the calls of each command (INFO commandstats); and the load generator's req/s and
# p99 (under valgrind, valgrind's speed). Kernel time (AOF fsync, socket I/O) is not in the
# instruction count: the system calls and AOF bytes stand for it.
#
# With ORDERCOST_VALGRIND=0 Redis runs natively and the table has Redis's user and system CPU
# per order (INFO cpu) instead, which move with the machine's load.
#
# Environment: ORDERCOST_ORDERS (3000), ORDERCOST_RATE (0: closed loop; else open loop at that
# rate), ORDERCOST_CLIENTS (64), ORDERCOST_ROUNDS (1), ORDERCOST_BASELINE,
# ORDERCOST_SERVE_FLAGS, ORDERCOST_BASELINE_SERVE_FLAGS (default ORDERCOST_SERVE_FLAGS),
# FLASHSALE_MYSQL_PORT (3306). Needs valgrind, redis-server,
# mariadb and go. It prints one table; everything it started is stopped on exit.
set -euo pipefail
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
ORDERS="${ORDERCOST_ORDERS:-3000}"
RATE="${ORDERCOST_RATE:-0}"
VALGRIND="${ORDERCOST_VALGRIND:-1}"
CLIENTS="${ORDERCOST_CLIENTS:-64}"
ROUNDS="${ORDERCOST_ROUNDS:-1}"
BASELINE="${ORDERCOST_BASELINE:-}"
SERVE_FLAGS="${ORDERCOST_SERVE_FLAGS:-}"
BASE_SERVE_FLAGS="${ORDERCOST_BASELINE_SERVE_FLAGS-$SERVE_FLAGS}"
MYSQL_PORT="${FLASHSALE_MYSQL_PORT:-3306}"
PARTITIONS=4
for v in $(compgen -v FLASHSALE_); do unset "$v"; done
for cmd in valgrind callgrind_control redis-server redis-cli mariadb go; do
  command -v "$cmd" >/dev/null || die "$cmd not found"
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/flashsale-ordercost.XXXXXX")"
PIDS=()
DBS=()
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for db in "${DBS[@]}"; do mysql_root "$MYSQL_PORT" -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
info_field() { rcli info "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'; }

log "building flashsale and loadtest into $TMP" >&2
(cd "$ROOT" && go build -o "$TMP/flashsale" ./cmd/flashsale && go build -o "$TMP/loadtest" ./cmd/loadtest)
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD)"
[ -z "$(cd "$ROOT" && git status --porcelain --untracked-files=no)" ] || COMMIT+=" + uncommitted changes"
if [ -n "$BASELINE" ]; then
  BASE_COMMIT="$(cd "$ROOT" && git rev-parse --short "$BASELINE^{commit}")"
  mkdir -p "$TMP/base/src"
  (cd "$ROOT" && git archive "$BASE_COMMIT") | tar -x -C "$TMP/base/src"
  (cd "$TMP/base/src" && GOFLAGS=-buildvcs=false go build -o "$TMP/base/flashsale" ./cmd/flashsale)
fi

mkdir -p "$TMP/redis"
REDIS_PORT="$(free_port)"
log "starting redis-server on 127.0.0.1:$REDIS_PORT$([ "$VALGRIND" = 1 ] && echo ' under callgrind')" >&2
VG=()
[ "$VALGRIND" != 1 ] || VG=(valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out.%p")
"${VG[@]}" redis-server --port "$REDIS_PORT" \
  --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes --appendfsync always --save '' --auto-aof-rewrite-percentage 0 \
  --logfile "$TMP/redis/redis.log" >"$TMP/valgrind.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for 60 "$REDIS_PID" rcli ping || die "redis-server did not start: $(tail -n 5 "$TMP/valgrind.log")"

# start_serve NAME BINARY PREFIX FLAGS: NAME_PID, NAME_HTTP, NAME_GRPC.
start_serve() {
  local name=$1 bin=$2 prefix=$3 flags=$4 db="flashsale_cost_${3}_$$" log="$TMP/$1.log" pid
  mysql_root "$MYSQL_PORT" -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
  DBS+=("$db")
  "$bin" migrate -mysql "root@tcp(127.0.0.1:$MYSQL_PORT)/$db?parseTime=true" >/dev/null
  # shellcheck disable=SC2086 # flags is a list of flags
  "$bin" serve -redis "127.0.0.1:$REDIS_PORT" -prefix "$prefix" -mysql "root@tcp(127.0.0.1:$MYSQL_PORT)/$db?parseTime=true" \
    -http 127.0.0.1:0 -grpc 127.0.0.1:0 -partitions "$PARTITIONS" -consumer cost $flags >"$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  serve_started "$name" "$pid" "$log" 60
}
start_serve CUR "$TMP/flashsale" fs "-archive file://$TMP/archive $SERVE_FLAGS"
if [ -n "$BASELINE" ]; then
  # A baseline with an archiver archives into the temp dir too, never into its default place.
  base_archive=""
  if "$TMP/base/flashsale" serve -h 2>&1 | grep -q -- '-archive'; then base_archive="-archive file://$TMP/archive-base"; fi
  start_serve BASE "$TMP/base/flashsale" fb "$base_archive $BASE_SERVE_FLAGS"
fi

# caught_up PREFIX: every group of every partition has no pending entry and has been
# delivered the stream's last entry.
caught_up() {
  local p key last
  for ((p = 0; p < PARTITIONS; p++)); do
    key="$1:{p$p}:events"
    [ "$(rcli exists "$key")" = 1 ] || continue
    last="$(rcli xinfo stream "$key" | tr -d '\r' | awk 'p == "last-generated-id" { print; exit } { p = $0 }')"
    rcli xinfo groups "$key" | tr -d '\r' | awk -v last="$last" '
      p == "pending" && $0 != "0" { bad = 1 }
      p == "last-delivered-id" && $0 != last { bad = 1 }
      { p = $0 } END { exit bad }' || return 1
  done
}
cmdstats() { rcli info commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p'; }
# io: "syscalls" of the Redis process (read and write system calls, /proc/PID/io).
io() { awk '/^sysc[rw]:/ { s += $2 } END { print s }' "/proc/$REDIS_PID/io"; }

declare -A INSTR SYSC AOFB SOLD USR SYS ELAPSED RPS P99
IDLE_RATE=0
if [ "$VALGRIND" = 1 ]; then
  # Redis's instructions per second with every serve idle: subtracted from each run's count.
  sleep 5
  callgrind_control -z "$REDIS_PID" >/dev/null
  t0="$(date +%s.%N)"
  sleep 20
  callgrind_control -d "$REDIS_PID" >/dev/null
  t1="$(date +%s.%N)"
  IDLE_RATE="$(awk -v i="$(awk '/^summary:/ { print $2 }' "$(ls -t "$TMP"/callgrind.out.* | head -n 1)")" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", i / (b - a) }')"
  log "idle: $IDLE_RATE Redis instructions per second" >&2
fi
cpu() { info_field cpu "$1"; }
n=0
# run KEY PREFIX ADDR TARGET: one measured sale; its figures under KEY.
run() {
  local key=$1 prefix=$2 addr=$3 target=$4 item="cost$n" out="$TMP/$1.json" io0 io1 aof0 aof1 ok dump
  n=$((n + 1))
  "$TMP/flashsale" stock set -redis "127.0.0.1:$REDIS_PORT" -prefix "$prefix" "$item" 1000000000 >/dev/null
  "$TMP/loadtest" -target "$target" -addr "$addr" -item "$item" -requests 200 -rate "$RATE" -clients "$CLIENTS" -users 100000 -verify=false >/dev/null 2>>"$TMP/loadtest.log"
  wait_for 120 "" caught_up "$prefix" || log "$key: not caught up before the run" >&2
  sleep 2
  cmdstats >"$TMP/$key.cmd0"
  [ "$VALGRIND" != 1 ] || callgrind_control -z "$REDIS_PID" >/dev/null
  t0="$(date +%s.%N)"
  io0="$(io)" aof0="$(info_field persistence aof_current_size)" u0="$(cpu used_cpu_user)" s0="$(cpu used_cpu_sys)"
  "$TMP/loadtest" -target "$target" -addr "$addr" -item "$item" -requests "$ORDERS" -duration 10m -rate "$RATE" -clients "$CLIENTS" \
    -users 100000 -json >"$out" 2>>"$TMP/loadtest.log" || { cat "$out" >&2; die "$key: loadtest failed"; }
  wait_for 120 "" caught_up "$prefix" || log "$key: not caught up after the run" >&2
  sleep 2 # a tail read period, and the last replies counted
  [ "$VALGRIND" != 1 ] || callgrind_control -d "$REDIS_PID" >/dev/null
  t1="$(date +%s.%N)"
  io1="$(io)" aof1="$(info_field persistence aof_current_size)" u1="$(cpu used_cpu_user)" s1="$(cpu used_cpu_sys)"
  cmdstats >"$TMP/$key.cmd1"
  ok="$(jnum ok "$out")"
  SOLD[$key]=$ok
  RPS[$key]="$(printf '%.0f' "$(jnum rps "$out")")"
  P99[$key]="$(jnum p99_ms "$out")"
  INSTR[$key]=-
  if [ "$VALGRIND" = 1 ]; then
    dump="$(ls -t "$TMP"/callgrind.out.* | head -n 1)"
    # Less what Redis does idle over the same time (both serves' timers: heartbeats, sweeper,
    # retainer, tail and archive polls), measured before the runs.
    INSTR[$key]="$(awk -v i="$(awk '/^summary:/ { print $2 }' "$dump")" -v r="$IDLE_RATE" -v a="$t0" -v b="$t1" -v n="$ok" \
      'BEGIN { printf "%d", (i - r * (b - a)) / n }')"
    ELAPSED[$key]="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
  fi
  # Redis's CPU (INFO cpu) per order: only without valgrind, which inflates it many times over.
  USR[$key]=- SYS[$key]=-
  if [ "$VALGRIND" != 1 ]; then
    USR[$key]="$(awk -v a="$u0" -v b="$u1" -v n="$ok" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')"
    SYS[$key]="$(awk -v a="$s0" -v b="$s1" -v n="$ok" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')"
  fi
  SYSC[$key]="$(awk -v a="$io0" -v b="$io1" -v n="$ok" 'BEGIN { printf "%.2f", (b - a) / n }')"
  AOFB[$key]=$(((aof1 - aof0) / ok))
  awk -v ok="$ok" 'NR == FNR { c[$1] = $2; next } { d = $2 - c[$1]; if (d > 0) printf "%s %.3f\n", $1, d / ok }' \
    "$TMP/$key.cmd0" "$TMP/$key.cmd1" | sort -k2,2nr >"$TMP/$key.cmds"
  log "$key: $ok sold, ${INSTR[$key]} Redis instructions, ${SYSC[$key]} syscalls, ${AOFB[$key]} AOF bytes per order" >&2
}

KEYS=()
for ((round = 1; round <= ROUNDS; round++)); do
  for t in http grpc; do
    run "cur_$t$round" fs "$([ $t = http ] && echo "$CUR_HTTP" || echo "$CUR_GRPC")" "$t"
    KEYS+=("cur_$t$round")
    if [ -n "$BASELINE" ]; then
      run "base_$t$round" fb "$([ $t = http ] && echo "$BASE_HTTP" || echo "$BASE_GRPC")" "$t"
      KEYS+=("base_$t$round")
    fi
  done
done

echo "flashsale Redis instructions per sold order (callgrind), commit $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2), AOF appendfsync always; $ORDERS orders per run, $CLIENTS clients, $([ "$RATE" = 0 ] && echo "closed loop" || echo "open loop at $RATE req/s")"
[ -z "$BASELINE" ] || echo "baseline: $BASE_COMMIT (prefix fb)${BASE_SERVE_FLAGS:+, serve $BASE_SERVE_FLAGS}; this tree${SERVE_FLAGS:+ serve $SERVE_FLAGS}"
[ "$VALGRIND" != 1 ] || echo "idle (every serve idle): $IDLE_RATE instructions per second, subtracted over each run's time (s)"
printf '%-14s %8s %7s %8s %8s %14s %10s %10s %10s %10s\n' run sold "time s" "req/s" "p99 ms" "instr/order" "syscalls" "AOF bytes" "user us" "sys us"
for k in "${KEYS[@]}"; do
  printf '%-14s %8s %7s %8s %8s %14s %10s %10s %10s %10s\n' "$k" "${SOLD[$k]}" "${ELAPSED[$k]:--}" "${RPS[$k]}" "${P99[$k]}" "${INSTR[$k]}" "${SYSC[$k]}" "${AOFB[$k]}" "${USR[$k]}" "${SYS[$k]}"
done
echo
echo "commands per order sold (INFO commandstats calls; a script's commands count on their own line too):"
printf '  %-14s' command; for k in "${KEYS[@]}"; do printf ' %12s' "$k"; done; echo
for c in $(for k in "${KEYS[@]}"; do awk '{ print $1 }' "$TMP/$k.cmds"; done | sort -u); do
  printf '  %-14s' "$c"
  for k in "${KEYS[@]}"; do awk -v c="$c" '$1 == c { printf " %12s", $2; f = 1 } END { if (!f) printf " %12s", "-" }' "$TMP/$k.cmds"; done
  echo
done
if [ -n "${ORDERCOST_KEEP:-}" ]; then cp "$TMP"/callgrind.out.* "$ORDERCOST_KEEP"/ 2>/dev/null || true; fi
exit
}
