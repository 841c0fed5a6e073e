#!/usr/bin/env bash
# cmdcost.sh: Redis instructions per unit of the commands a sold order costs, counted by valgrind
# (callgrind) on a redis-server of its own (temp dir, random port, AOF on, appendfsync always),
# driven by redis-benchmark and redis-cli: purchase.lua alone (EVALSHA, 8 clients, pipelines of
# 4), the batch script (lua.PurchaseBatch, as `loadtest script batch` prints it) deciding 5 and
# 16 purchases per call, and per stream entry: XREAD (the winner tail, the archiver's XRANGE
# alike), XREADGROUP (the projector) and XACK, 100 entries per call. Figures include Redis's
# reading of the request and writing of the reply, not the kernel's work (syscalls, fsync).
# CMDCOST_N (3200) purchases per row. Prints one line per row; stops what it started.
set -euo pipefail
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
N="${CMDCOST_N:-3200}"
for cmd in valgrind callgrind_control redis-server redis-cli redis-benchmark go; do
  command -v "$cmd" >/dev/null || die "$cmd not found"
done
TMP="$(mktemp -d "${TMPDIR:-/tmp}/flashsale-cmdcost.XXXXXX")"
VP=""
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  if [ -n "$VP" ]; then
    kill "$VP" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$VP" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$VP" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
(cd "$ROOT" && go run ./cmd/loadtest script batch) >"$TMP/batch.lua"
PORT="$(free_port)"
valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" redis-server --port "$PORT" --bind 127.0.0.1 --dir "$TMP" \
  --appendonly yes --appendfsync always --save '' --auto-aof-rewrite-percentage 0 >"$TMP/valgrind.log" 2>&1 &
VP=$!
wait_for 60 "$VP" redis-cli -p "$PORT" ping || die "redis-server did not start"
r() { redis-cli -p "$PORT" "$@"; }
# measure NAME UNITS CMD...: Redis's instructions while CMD runs, per unit.
measure() {
  local name=$1 units=$2
  shift 2
  callgrind_control -z "$VP" >/dev/null
  "$@" >/dev/null
  callgrind_control -d "$VP" >/dev/null
  printf '%-28s %9d instructions per unit (%d units)\n' "$name" \
    $(($(awk '/^summary:/ { print $2 }' "$(ls -t "$TMP"/cg.* | head -n 1)") / units)) "$units"
}
T='fs:{p1}:'
read -r -a KEYS1 <<<"${T}stock:it ${T}rules:it ${T}req:it:r__rand_int__ ${T}user:it:bench-user ${T}events ${T}due"
read -r -a ARGS1 <<<"it bench-user r__rand_int__ 1 86400000 1 ${T}order:"
r set "${T}stock:it" 1000000000000 >/dev/null
sha="$(r script load "$(cat "$ROOT/lua/purchase.lua")")"
measure "purchase.lua" "$N" redis-benchmark -p "$PORT" -c 8 -P 4 -n "$N" -r 1000000000 evalsha "$sha" 6 "${KEYS1[@]}" "${ARGS1[@]}"
sha="$(r script load "$(cat "$TMP/batch.lua")")"
for b in 5 16; do
  keys=() args=()
  for ((i = 0; i < b; i++)); do keys+=("${KEYS1[@]}") args+=("${ARGS1[@]}"); done
  measure "batch call of $b, per purchase" "$N" redis-benchmark -p "$PORT" -c 8 -n $((N / b)) -r 1000000000 \
    evalsha "$sha" $((6 * b)) "${keys[@]}" 6 7 "${args[@]}"
done
S="${T}events"
r xgroup create "$S" g 0 >/dev/null
r --raw xrange "$S" - + | grep -E '^[0-9]+-[0-9]+$' >"$TMP/ids"
L=$(($(wc -l <"$TMP/ids") / 100 * 100))
split -l 100 <(head -n "$L" "$TMP/ids") "$TMP/chunk."
measure "XREAD, per entry" "$L" bash -c "prev=0-0; for f in $TMP/chunk.*; do redis-cli -p $PORT xread count 100 streams '$S' \$prev >/dev/null; prev=\$(tail -n 1 \$f); done"
measure "XREADGROUP, per entry" "$L" bash -c "for f in $TMP/chunk.*; do redis-cli -p $PORT xreadgroup group g c count 100 streams '$S' '>' >/dev/null; done"
measure "XACK, per entry" "$L" bash -c "for f in $TMP/chunk.*; do redis-cli -p $PORT xack '$S' g \$(tr '\n' ' ' <\$f) >/dev/null; done"
exit
}
