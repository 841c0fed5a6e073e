#!/usr/bin/env bash
# Makes sure Redis and MariaDB are installed and running for flashsale, and that the
# `flashsale` database and user exist. Safe to run again: servers that already answer are
# reused as they are, never stopped or restarted. Servers this script starts live under
# $FLASHSALE_DATA_DIR (default <repo>/.data); `make stop` stops them.
#
# Environment: FLASHSALE_REDIS_HOST (127.0.0.1), FLASHSALE_REDIS_PORT (6379),
#              FLASHSALE_MYSQL_PORT (3306), FLASHSALE_DATA_DIR (<repo>/.data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REDIS_HOST="${FLASHSALE_REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${FLASHSALE_REDIS_PORT:-6379}"
MYSQL_PORT="${FLASHSALE_MYSQL_PORT:-3306}"
DATA="${FLASHSALE_DATA_DIR:-$ROOT/.data}"
export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# listening HOST PORT: true if something accepts TCP connections there.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS PID CMD...: run CMD every 0.5 s until it succeeds. Fails after SECONDS,
# or as soon as process PID (when not empty) has exited.
wait_for() {
  local secs=$1 pid=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.5
  done
  return 1
}

ensure_go() {
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
  fi
  command -v go >/dev/null ||
    die "Go 1.26 or newer is needed to build and test flashsale, but 'go' is neither on PATH nor in /usr/local/go/bin. Install it from https://go.dev/dl/"
  log "go: $(cd / && go version)"
}

ensure_packages() {
  local pkgs=() cmd
  for cmd in redis-server redis-cli; do
    command -v "$cmd" >/dev/null || { pkgs+=(redis-server) && break; }
  done
  for cmd in mariadbd mariadb mariadb-install-db; do
    command -v "$cmd" >/dev/null || { pkgs+=(mariadb-server mariadb-client) && break; }
  done
  [ "${#pkgs[@]}" -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || die "installing ${pkgs[*]} needs root"
  command -v apt-get >/dev/null || die "apt-get not found; install ${pkgs[*]} by hand"
  log "installing ${pkgs[*]}"
  apt-get update
  # Keep the packages from starting system-wide services: this script starts its own.
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod +x "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
  fi
  apt-get install -y "${pkgs[@]}"
}

redis_cli() { timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
redis_pings() { [ "$(redis_cli ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
  if redis_pings; then
    log "Redis already answers on $REDIS_HOST:$REDIS_PORT; using it"
    if [ "$(redis_cli config get appendonly 2>/dev/null | tail -n 1)" != yes ] ||
      [ "$(redis_cli config get appendfsync 2>/dev/null | tail -n 1)" != always ]; then
      # An acknowledged order must survive a Redis restart: turn the AOF on, fsynced per write.
      log "turning on AOF there (CONFIG SET appendonly yes, appendfsync always)"
      redis_cli config set appendonly yes >/dev/null &&
        redis_cli config set appendfsync always >/dev/null ||
        warn "could not turn on AOF on that Redis; acknowledged orders would not survive its restart"
    fi
    return
  fi
  listening "$REDIS_HOST" "$REDIS_PORT" &&
    die "something listens on $REDIS_HOST:$REDIS_PORT but does not answer PING; free the port or set FLASHSALE_REDIS_PORT"
  case "$REDIS_HOST" in
    127.0.0.1 | localhost) ;;
    *) die "no Redis answers on $REDIS_HOST:$REDIS_PORT, and this script only starts a local one" ;;
  esac
  log "starting redis-server on 127.0.0.1:$REDIS_PORT (data in $DATA/redis)"
  mkdir -p "$DATA/redis"
  redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction --dir "$DATA/redis" \
    --logfile "$DATA/redis/redis.log" --pidfile "$DATA/redis/redis.pid"
  wait_for 20 "" redis_pings || {
    tail -n 20 "$DATA/redis/redis.log" >&2 || true
    die "Redis did not answer on port $REDIS_PORT within 20 s (log: $DATA/redis/redis.log)"
  }
}

mysql_root() { mariadb --connect-timeout=5 -h127.0.0.1 -P"$MYSQL_PORT" -uroot "$@"; }

ensure_mariadb() {
  if mysql_root -e 'select 1' >/dev/null 2>&1; then
    log "MariaDB already answers on 127.0.0.1:$MYSQL_PORT (root login works); using it"
    return
  fi
  listening 127.0.0.1 "$MYSQL_PORT" &&
    die "something listens on 127.0.0.1:$MYSQL_PORT, but 'mariadb -h127.0.0.1 -P$MYSQL_PORT -uroot' cannot log in.
       Either let root log in over TCP without a password there, or set FLASHSALE_MYSQL_PORT to a
       free port so that this script starts its own MariaDB under $DATA."
  local datadir="$DATA/mysql"
  if [ ! -d "$datadir/mysql" ]; then
    log "initialising a MariaDB datadir in $datadir"
    mkdir -p "$datadir"
    mariadb-install-db --no-defaults --user=root --datadir="$datadir" \
      --auth-root-authentication-method=normal --skip-test-db >"$DATA/mysql-install.log" 2>&1 || {
      tail -n 20 "$DATA/mysql-install.log" >&2
      die "mariadb-install-db failed (log: $DATA/mysql-install.log); remove $datadir before retrying"
    }
  fi
  log "starting mariadbd on 127.0.0.1:$MYSQL_PORT (data in $datadir)"
  nohup setsid mariadbd --no-defaults --user=root --datadir="$datadir" --port="$MYSQL_PORT" \
    --bind-address=127.0.0.1 --socket="$DATA/mysql.sock" --pid-file="$DATA/mysql.pid" \
    --log-error="$DATA/mysql.log" --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_unicode_ci </dev/null >>"$DATA/mysql.log" 2>&1 &
  wait_for 60 "$!" mysql_root -e 'select 1' || {
    tail -n 20 "$DATA/mysql.log" >&2 || true
    die "MariaDB did not answer on port $MYSQL_PORT within 60 s (log: $DATA/mysql.log)"
  }
}

ensure_database() {
  log "ensuring database flashsale and user flashsale"
  mysql_root <<'SQL'
CREATE DATABASE IF NOT EXISTS flashsale CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'flashsale'@'%' IDENTIFIED BY 'flashsale';
CREATE USER IF NOT EXISTS 'flashsale'@'localhost' IDENTIFIED BY 'flashsale';
GRANT ALL PRIVILEGES ON flashsale.* TO 'flashsale'@'%', 'flashsale'@'localhost';
GRANT ALL PRIVILEGES ON `flashsale\_test\_%`.* TO 'flashsale'@'%', 'flashsale'@'localhost';
SQL
  mariadb --connect-timeout=5 -h127.0.0.1 -P"$MYSQL_PORT" -uflashsale -pflashsale flashsale -e 'select 1' >/dev/null ||
    die "user flashsale cannot log in to database flashsale on port $MYSQL_PORT"
}

main() {
  ensure_go
  ensure_packages
  ensure_redis
  ensure_mariadb
  ensure_database
  log "ready"
  echo "FLASHSALE_REDIS_ADDR=$REDIS_HOST:$REDIS_PORT"
  echo "FLASHSALE_MYSQL_DSN=flashsale:flashsale@tcp(127.0.0.1:$MYSQL_PORT)/flashsale?parseTime=true"
}

main "$@"
