#!/usr/bin/env bash
# The sold-out flood over HTTP with wrk: `loadtest bare` (the HTTP ceiling) and `flashsale
# ingest` answering an item of stock 0, one after the other, FLOOD_ROUNDS times. Prints per run
# req/s, p99, the 2xx replies (must be 0: all are 410) and the CPU per request of the server
# process (/proc) and of Redis (INFO cpu): CPU per request moves much less than req/s with the
# machine's background load. For ingest also the Redis commands of the run (INFO commandstats,
# the winner tail's reads included) and its sold-out answers from memory and from Redis
# (/metrics).
#
# Everything runs in a temp dir on random ports and is stopped on exit: its own redis-server
# (AOF on, appendfsync always), the binaries built fresh from the work tree.
# Environment: FLOOD_DURATION (8s), FLOOD_CONNS (64), FLOOD_THREADS (2), FLOOD_ROUNDS (2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${FLOOD_DURATION:-8s}"
CONNS="${FLOOD_CONNS:-64}"
THREADS="${FLOOD_THREADS:-2}"
ROUNDS="${FLOOD_ROUNDS:-2}"
for tool in wrk redis-server redis-cli python3 curl; do
  command -v "$tool" >/dev/null || { echo "flood.sh: $tool not found (apt-get install wrk redis-server)" >&2; exit 2; }
done

DIR="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

(cd "$ROOT" && go build -o "$DIR/flashsale" ./cmd/flashsale && go build -o "$DIR/loadtest" ./cmd/loadtest)
RPORT="$(port)"
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes --appendfsync always \
  --save "" >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_cpu() { redis-cli -p "$RPORT" info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }
redis_cmds() { redis-cli -p "$RPORT" info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_/ {n += $2} END {print n + 0}'; }
"$DIR/flashsale" stock set -redis "127.0.0.1:$RPORT" flood 0 >/dev/null

# run NAME CMD...: starts CMD (which listens on $HPORT), warms up for 1s, measures.
run() {
  local name="$1"; shift
  "$@" >"$DIR/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$HPORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
  wrk -t"$THREADS" -c"$CONNS" -d1s -s "$ROOT/scripts/flood.lua" "http://127.0.0.1:$HPORT" >/dev/null
  local c0 r0 c1 r1 n0 n1 extra=
  c0="$(cpu_ticks "$pid")"; r0="$(redis_cpu)"; n0="$(redis_cmds)"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/scripts/flood.lua" "http://127.0.0.1:$HPORT" >"$DIR/$name.wrk"
  c1="$(cpu_ticks "$pid")"; r1="$(redis_cpu)"; n1="$(redis_cmds)"
  if [ "$name" = ingest ]; then
    extra="         redis commands during the run: $((n1 - n0)); sold-out answers (warm-up included): $(curl -s "http://127.0.0.1:$HPORT/metrics" |
      awk -F'[" ]' '/^flashsale_sold_out_answers_total/ {printf "%s %s ", $2, $NF}')"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v name="$name" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v r0="$r0" -v r1="$r1" '
    /requests in/ {n = $1} /Requests\/sec/ {rps = $2} $1 == "99%" {p99 = $2} /Non-2xx/ {non = $NF}
    END {printf "%-8s %10.0f req/s  p99 %8s  2xx: %d  server %5.1f us/req  redis %4.1f us/req\n",
      name, rps, p99, n - non, c / hz * 1e6 / n, (r1 - r0) * 1e6 / n}' "$DIR/$name.wrk"
  if [ -n "$extra" ]; then echo "$extra"; fi
}

echo "sold-out flood: wrk -t$THREADS -c$CONNS -d$DURATION, commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) CPUs"
for _ in $(seq "$ROUNDS"); do
  HPORT="$(port)"
  run bare "$DIR/loadtest" bare -addr "127.0.0.1:$HPORT"
  HPORT="$(port)"
  run ingest "$DIR/flashsale" ingest -redis "127.0.0.1:$RPORT" -http "127.0.0.1:$HPORT" \
    -grpc "127.0.0.1:$(port)" -log-level warn
done
