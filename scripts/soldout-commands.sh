#!/usr/bin/env bash
# Redis commands per sold-out answer: 2,000 purchases of a sold-out item (a new request_id
# each), sent one at a time by curl to `flashsale ingest` after 200 warm-up answers, counted
# with INFO commandstats on a private redis-server (CONFIG RESETSTAT before them), with
# ingest's sold-out answers from memory and from Redis (/metrics) before and after.
#   scripts/soldout-commands.sh        one curl process per request
#   scripts/soldout-commands.sh one    one curl process sending the 2,000 one after the other
# Everything runs in a temp dir on random ports and is stopped on exit; the binary is built
# fresh from the work tree.
set -euo pipefail
for v in $(compgen -v FLASHSALE_); do unset "$v"; done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir=$(mktemp -d)
bin=$dir/flashsale
(cd "$ROOT" && go build -o "$bin" ./cmd/flashsale)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes --appendfsync always --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
trap 'kill $(cat $dir/ingest.pid 2>/dev/null) 2>/dev/null; kill $(cat $dir/redis.pid) 2>/dev/null; sleep 0.3; rm -rf $dir' EXIT
sleep 0.3
R="redis-cli -p $port"
export FLASHSALE_REDIS_ADDR=127.0.0.1:$port FLASHSALE_HTTP_ADDR=127.0.0.1:0 FLASHSALE_GRPC_ADDR=127.0.0.1:0
$bin stock set hot 1 >/dev/null
$bin ingest > "$dir/ingest.log" 2>&1 & echo $! > "$dir/ingest.pid"
for i in $(seq 50); do grep -q 'http listening' "$dir/ingest.log" && break; sleep 0.1; done
addr=$(grep -o 'msg="http listening" addr=[^ ]*' "$dir/ingest.log" | sed 's/.*addr=//')
buy() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"request_id\":\"$1\",\"user_id\":\"u$1\",\"item_id\":\"hot\",\"quantity\":1}" "http://$addr/api/purchase"; }
buy winner >/dev/null
for i in $(seq 200); do buy "warm-$i" >/dev/null; done   # warm-up: the sold-out state is learnt and the tail passes it
$R CONFIG RESETSTAT >/dev/null
before=$(curl -s "http://$addr/metrics" | grep '^flashsale_sold_out_answers_total')
start=$(date +%s.%N)
if [ "${1:-}" = one ]; then
  # one curl process sending the 2,000 requests one after the other on one connection
  cfg=$dir/curl.cfg
  python3 - "$addr" > "$cfg" <<'PY'
import sys
addr = sys.argv[1]
parts = []
for i in range(1, 2001):
    body = '{\\"request_id\\":\\"n-%d\\",\\"user_id\\":\\"u%d\\",\\"item_id\\":\\"hot\\",\\"quantity\\":1}' % (i, i)
    parts.append('url = "http://%s/api/purchase"\nheader = "Content-Type: application/json"\ndata = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' % (addr, body))
print("next\n".join(parts), end="")
PY
  codes=$(curl -s -K "$cfg" | sort | uniq -c)
else
  codes=$(for i in $(seq 2000); do buy "n-$i"; echo; done | sort | uniq -c)
fi
end=$(date +%s.%N)
after=$(curl -s "http://$addr/metrics" | grep '^flashsale_sold_out_answers_total')
echo "answers: $codes"
echo "took: $(echo "$end - $start" | bc) s"
echo "metrics before: $before"
echo "metrics after:  $after"
$R INFO commandstats | grep cmdstat
