#!/usr/bin/env bash
# The private Redis and MariaDB of `make run`, with their data under $FLASHSALE_DATA_DIR.
#
#   services.sh start    install redis-server, MariaDB (and curl, to try the API) with apt
#                        when missing (system services left stopped and disabled at boot),
#                        start flashsale's own servers on 127.0.0.1 unless they already run,
#                        create the flashsale database and user
#   services.sh stop     stop `flashsale serve` of `make run`, then those two servers
#   services.sh status   say what runs
#   services.sh env      print the exports that point flashsale's CLI at these servers
#                        (`eval "$(make env)"`); `start` also writes them to
#                        $FLASHSALE_DATA_DIR/flashsale.env
#
# `start` also makes the admin token of `make run`'s board the first time (kept in
# $FLASHSALE_DATA_DIR/admin-token, mode 0600, and reused), unless FLASHSALE_ADMIN_TOKEN is set.
#
# Any other Redis or MariaDB on the machine is left alone: not used, not reconfigured, not
# stopped. A port taken by a server that is not this data dir's is an error.
#
# Environment: FLASHSALE_REDIS_PORT (16379), FLASHSALE_MYSQL_PORT (13306),
#              FLASHSALE_DATA_DIR (<repo>/.data), FLASHSALE_HTTP_ADDR (127.0.0.1:8080, for
#              the board's URL), FLASHSALE_ADMIN_TOKEN (made when unset).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

REDIS_PORT="${FLASHSALE_REDIS_PORT:-16379}"
MYSQL_PORT="${FLASHSALE_MYSQL_PORT:-13306}"
DATA="${FLASHSALE_DATA_DIR:-$ROOT/.data}"
mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"
REDIS_PIDFILE="$DATA/redis/redis.pid"
MYSQL_PIDFILE="$DATA/mysql.pid"
SERVE_PIDFILE="$DATA/serve.pid"
TOKEN_FILE="$DATA/admin-token"
ENV_FILE="$DATA/flashsale.env"
HTTP_ADDR="${FLASHSALE_HTTP_ADDR:-127.0.0.1:8080}"

redis_cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_pings() { [ "$(redis_cli ping 2>/dev/null)" = PONG ]; }
# ours_redis: the Redis on the port is the one of $DATA (read-only CONFIG GET).
ours_redis() { [ "$(redis_cli config get dir 2>/dev/null | tail -n 1)" = "$DATA/redis" ]; }
# ours_mariadb: the MariaDB on the port is the one of $DATA.
ours_mariadb() {
  [ "$(mysql_root "$MYSQL_PORT" -N -e 'select @@datadir' 2>/dev/null)" = "$DATA/mysql/" ]
}

# redis_up_or_failed LOGSIZE: Redis answers, or its log (past LOGSIZE bytes) says it could not
# start.
redis_up_or_failed() {
  redis_pings || tail -c +$(($1 + 1)) "$DATA/redis/redis.log" 2>/dev/null | grep -q -e 'Address already in use' -e '# Failed' -e 'Fatal'
}

# check_ports: before anything is started, each port is free or held by this data dir's server.
check_ports() {
  if listening 127.0.0.1 "$REDIS_PORT" && ! ours_redis; then
    die "127.0.0.1:$REDIS_PORT is taken by another server (not the Redis of $DATA); set FLASHSALE_REDIS_PORT to a free port"
  fi
  if listening 127.0.0.1 "$MYSQL_PORT" && ! ours_mariadb; then
    die "127.0.0.1:$MYSQL_PORT is taken by another server (not the MariaDB of $DATA); set FLASHSALE_MYSQL_PORT to a free port"
  fi
}

start_redis() {
  if listening 127.0.0.1 "$REDIS_PORT" && ours_redis; then
    log "Redis of $DATA already runs on 127.0.0.1:$REDIS_PORT"
    return
  fi
  local pid
  if pid="$(pid_of_live redis-server "$REDIS_PIDFILE" "$DATA/redis")"; then
    die "the Redis of $DATA already runs (pid $pid) on a port other than $REDIS_PORT; 'make stop' first"
  fi
  log "starting redis-server on 127.0.0.1:$REDIS_PORT (data in $DATA/redis, AOF fsynced on every write)"
  mkdir -p "$DATA/redis"
  rm -f "$REDIS_PIDFILE"
  local logsize
  logsize="$(stat -c %s "$DATA/redis/redis.log" 2>/dev/null || echo 0)"
  if ! redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction \
    --dir "$DATA/redis" --logfile "$DATA/redis/redis.log" --pidfile "$REDIS_PIDFILE" ||
    ! wait_for 20 "" redis_up_or_failed "$logsize" || ! redis_pings; then
    tail -c +$((logsize + 1)) "$DATA/redis/redis.log" | tail -n 20 >&2 || true
    if tail -c +$((logsize + 1)) "$DATA/redis/redis.log" | grep -q 'Address already in use'; then
      die "Redis could not bind 127.0.0.1:$REDIS_PORT: address already in use; set FLASHSALE_REDIS_PORT to a free port"
    fi
    die "Redis did not start on 127.0.0.1:$REDIS_PORT within 20 s (its log: $DATA/redis/redis.log)"
  fi
  # Loading a big AOF answers LOADING to anything but PING: wait until it is done.
  wait_for 300 "" ours_redis || die "Redis on 127.0.0.1:$REDIS_PORT did not finish loading its AOF"
}

start_mariadb() {
  if listening 127.0.0.1 "$MYSQL_PORT" && ours_mariadb; then
    log "MariaDB of $DATA already runs on 127.0.0.1:$MYSQL_PORT"
    return
  fi
  local pid
  if pid="$(pid_of_live mariadbd "$MYSQL_PIDFILE" "$DATA/mysql")"; then
    die "the MariaDB of $DATA already runs (pid $pid) on a port other than $MYSQL_PORT; 'make stop' first"
  fi
  mariadb_init "$DATA/mysql" "$DATA/mysql-install.log"
  log "starting mariadbd on 127.0.0.1:$MYSQL_PORT (data in $DATA/mysql)"
  mariadb_start "$DATA/mysql" "$DATA" "$MYSQL_PORT" ||
    die "127.0.0.1:$MYSQL_PORT is taken by another process; set FLASHSALE_MYSQL_PORT to a free port"
}

create_database() {
  mysql_root "$MYSQL_PORT" <<'SQL'
CREATE DATABASE IF NOT EXISTS flashsale CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'flashsale'@'localhost' IDENTIFIED BY 'flashsale';
CREATE USER IF NOT EXISTS 'flashsale'@'127.0.0.1' IDENTIFIED BY 'flashsale';
GRANT ALL PRIVILEGES ON flashsale.* TO 'flashsale'@'localhost', 'flashsale'@'127.0.0.1';
SQL
  mariadb --connect-timeout=5 -h127.0.0.1 -P"$MYSQL_PORT" -uflashsale -pflashsale flashsale \
    -e 'select 1' >/dev/null || die "user flashsale cannot log in to database flashsale on 127.0.0.1:$MYSQL_PORT"
}

# admin_token: print the board's token: FLASHSALE_ADMIN_TOKEN, else the one kept in
# $TOKEN_FILE, made (and shown once, with the board's URL) when there is none.
admin_token() {
  if [ -n "${FLASHSALE_ADMIN_TOKEN:-}" ]; then
    printf '%s' "$FLASHSALE_ADMIN_TOKEN"
    return
  fi
  if [ ! -s "$TOKEN_FILE" ]; then
    (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE.tmp") && mv "$TOKEN_FILE.tmp" "$TOKEN_FILE" ||
      die "cannot write $TOKEN_FILE"
    chmod 600 "$TOKEN_FILE"
    {
      log "the live board: $(board_url), sign in with this admin token (made now, kept in $TOKEN_FILE and reused):"
      printf '    %s\n' "$(cat "$TOKEN_FILE")"
    } >&2
  fi
  cat "$TOKEN_FILE"
}

# board_url: the URL of make run's board.
board_url() {
  local host="${HTTP_ADDR%:*}" port="${HTTP_ADDR##*:}"
  case "$host" in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
  echo "http://$host:$port/admin/"
}

# env_exports: the exports that point flashsale's CLI at these servers.
env_exports() {
  local token="${FLASHSALE_ADMIN_TOKEN:-}"
  [ -n "$token" ] || token="$(cat "$TOKEN_FILE" 2>/dev/null || true)"
  echo "# flashsale's CLI against make run's servers (data in $DATA): eval \"\$(make env)\""
  echo "export FLASHSALE_REDIS_ADDR='127.0.0.1:$REDIS_PORT'"
  echo "export FLASHSALE_MYSQL_DSN='flashsale:flashsale@tcp(127.0.0.1:$MYSQL_PORT)/flashsale?parseTime=true'"
  printf 'export FLASHSALE_ARCHIVE=%q\n' "file://$DATA/archive"
  [ -z "$token" ] || printf 'export FLASHSALE_ADMIN_TOKEN=%q\n' "$token"
}

# stop_pid NAME PIDFILE DIR SECONDS: SIGTERM the process of PIDFILE if it is NAME working in
# DIR, and wait for it.
stop_pid() {
  local name=$1 pidfile=$2 dir=$3 secs=$4 pid i
  if ! pid="$(pid_of_live "$name" "$pidfile" "$dir")"; then
    [ -e "$pidfile" ] && rm -f "$pidfile"
    echo "$name: not running"
    return 0
  fi
  echo "$name: stopping pid $pid"
  kill "$pid"
  for ((i = 0; i < secs * 2; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.5
  done
  die "$name: pid $pid still runs after $secs s"
}

status_of() {
  local pid
  if pid="$(pid_of_live "$1" "$2" "$3")"; then echo "$1: running, pid $pid ($4)"; else echo "$1: not running"; fi
}

case "${1:-start}" in
start)
  ensure_packages redis-server:redis-server redis-cli:redis-tools \
    mariadbd:mariadb-server-core mariadb-install-db:mariadb-server-core \
    mariadb:mariadb-client-core my_print_defaults:mariadb-client-core curl:curl
  if pid="$(pid_of_live flashsale "$SERVE_PIDFILE" "$ROOT")"; then
    die "make run's flashsale serve already runs (pid $pid); 'make stop' stops it"
  fi
  check_ports
  start_redis
  start_mariadb
  create_database
  log "Redis on 127.0.0.1:$REDIS_PORT and MariaDB on 127.0.0.1:$MYSQL_PORT run in the background (data in $DATA); 'make stop' stops them"
  had_token=0
  [ -n "${FLASHSALE_ADMIN_TOKEN:-}" ] || [ ! -s "$TOKEN_FILE" ] || had_token=1
  token="$(admin_token)"
  (umask 077 && FLASHSALE_ADMIN_TOKEN="$token" env_exports >"$ENV_FILE")
  if [ "$had_token" = 1 ]; then
    log "the live board: $(board_url) (admin token: cat $TOKEN_FILE)"
  elif [ -n "${FLASHSALE_ADMIN_TOKEN:-}" ]; then
    log "the live board: $(board_url) (admin token: FLASHSALE_ADMIN_TOKEN)"
  fi
  log "the CLI against these servers: eval \"\$(make env)\" (the exports are in $ENV_FILE)"
  ;;
env)
  env_exports
  ;;
stop)
  stop_pid flashsale "$SERVE_PIDFILE" "$ROOT" 30
  stop_pid redis-server "$REDIS_PIDFILE" "$DATA/redis" 60
  stop_pid mariadbd "$MYSQL_PIDFILE" "$DATA/mysql" 120
  ;;
status)
  status_of flashsale "$SERVE_PIDFILE" "$ROOT" "make run's serve"
  status_of redis-server "$REDIS_PIDFILE" "$DATA/redis" "data in $DATA/redis"
  status_of mariadbd "$MYSQL_PIDFILE" "$DATA/mysql" "data in $DATA/mysql"
  ;;
*) die "usage: $0 start|stop|status|env" ;;
esac
