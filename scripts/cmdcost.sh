#!/usr/bin/env bash
# cmdcost.sh: Redis instructions per unit of the commands a sold order costs, counted by valgrind
# (callgrind) on a redis-server of its own (temp dir, random port, AOF on, appendfsync always),
# driven by redis-benchmark and redis-cli: purchase.lua deciding 1 purchase per call (EVALSHA, 8
# clients, pipelines of 4), 5 and 16 (8 clients), each on a stream of its own, and then per
# order on that stream (one entry per call): XREAD (the winner tail, the archiver's XRANGE
# alike), XREADGROUP (the projector) and XACK, 100 entries per read. Figures include Redis's
# reading of the request and writing of the reply, not the kernel's work (syscalls, fsync).
# CMDCOST_N (3200) purchases per row; CMDCOST_SCRIPT (lua/purchase.lua) the script measured,
# e.g. a copy with one part taken out, to see what that part costs; CMDCOST_NEW_USERS=1 gives
# each purchase a user of its own (a random ID), where by default every purchase is one user's.
# Prints one line per row; stops what it started.
set -euo pipefail
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
N="${CMDCOST_N:-3200}"
USER_ID=bench-user
[ "${CMDCOST_NEW_USERS:-0}" != 1 ] || USER_ID=u__rand_int__
SCRIPT="${CMDCOST_SCRIPT:-$ROOT/lua/purchase.lua}"
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
sha="$(r script load "$(cat "$SCRIPT")")"
# row B PART: purchase.lua deciding B purchases per call on partition PART's keys, then the
# readers of the entries it wrote, per order.
row() {
  local b=$1 part=$2 i
  local t="fs:{p$part}:"
  local -a keys=("${t}events" "${t}due" "${t}stock:it" "${t}rules:it" "${t}requests:it" "${t}users:it")
  local -a args=(86400000 "$part" "${t}order:") pipe=()
  for ((i = 0; i < b; i++)); do
    args+=(it "$USER_ID" r__rand_int__ 1)
  done
  [ "$b" -gt 1 ] || pipe=(-P 4)
  r set "${t}stock:it" 1000000000000 >/dev/null
  measure "purchase.lua, $b per call" "$N" redis-benchmark -p "$PORT" -c 8 "${pipe[@]}" -n $((N / b)) -r 1000000000 \
    evalsha "$sha" "${#keys[@]}" "${keys[@]}" "${args[@]}"
  local s="${t}events" orders
  orders=$((1000000000000 - $(r get "${t}stock:it")))
  r xgroup create "$s" g 0 >/dev/null
  r --raw xrange "$s" - + | grep -E '^[0-9]+-[0-9]+$' >"$TMP/ids"
  rm -f "$TMP"/chunk.*
  split -l 100 "$TMP/ids" "$TMP/chunk."
  measure "  XREAD, per order" "$orders" bash -c "prev=0-0; for f in $TMP/chunk.*; do redis-cli -p $PORT xread count 100 streams '$s' \$prev >/dev/null; prev=\$(tail -n 1 \$f); done"
  measure "  XREADGROUP, per order" "$orders" bash -c "for f in $TMP/chunk.*; do redis-cli -p $PORT xreadgroup group g c count 100 streams '$s' '>' >/dev/null; done"
  measure "  XACK, per order" "$orders" bash -c "for f in $TMP/chunk.*; do redis-cli -p $PORT xack '$s' g \$(tr '\n' ' ' <\$f) >/dev/null; done"
}
row 1 1
row 5 2
row 16 3
exit
}
