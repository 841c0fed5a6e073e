#!/usr/bin/env bash
# testenv.sh CMD...: runs CMD (e.g. go test ./...) with what the tests need, and stops what it
# started when CMD ends.
#
# - redis-server on PATH: every test starts its own on a random port (tests/testenv); no
#   Redis is started here.
# - /usr/bin/chromium, for the browser test.
# - the gofakes3 S3 server, for the S3 archive tests (FLASHSALE_TEST_GOFAKES3): built once with
#   go install into ~/.cache/flashsale (about 15 s with the modules fetched, 1 s when cached).
# - a MariaDB/MySQL for FLASHSALE_TEST_MYSQL_DSN (each test creates and drops its own
#   database there), the first of:
#     1. FLASHSALE_TEST_MYSQL_DSN when set and something answers at its address;
#     2. the server on 127.0.0.1:3306 when root logs in there over TCP without a password
#        (skipped with FLASHSALE_TEST_PRIVATE_MYSQL=1);
#     3. a throwaway MariaDB in a temp dir on a free port, stopped and removed when CMD ends.
# Missing packages are installed with apt-get, their system services left stopped and disabled.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

[ "$#" -gt 0 ] || die "usage: $0 CMD..."

ensure_packages redis-server:redis-server mariadb:mariadb-client-core
# Only the browser test needs it; the other tests run without it.
(ensure_packages /usr/bin/chromium:chromium) || warn "no /usr/bin/chromium: the browser test cannot run"

# The S3 archive tests start this server as a process of their own (tests/testenv/s3.go).
GOFAKES3_VERSION=v1.2.0
gofakes3_dir="${XDG_CACHE_HOME:-$HOME/.cache}/flashsale/gofakes3-$GOFAKES3_VERSION"
if [ ! -x "$gofakes3_dir/gofakes3" ]; then
  log "building the gofakes3 S3 server $GOFAKES3_VERSION once, into $gofakes3_dir"
  mkdir -p "$gofakes3_dir"
  GOBIN="$gofakes3_dir" GOFLAGS=-buildvcs=false go install "github.com/johannesboyne/gofakes3/cmd/gofakes3@$GOFAKES3_VERSION" ||
    warn "could not build gofakes3: the S3 archive tests are skipped"
fi
[ -x "$gofakes3_dir/gofakes3" ] && export FLASHSALE_TEST_GOFAKES3="$gofakes3_dir/gofakes3"

TMP=""
MARIADB_PID=""
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  if [ -n "$MARIADB_PID" ] && kill -0 "$MARIADB_PID" 2>/dev/null; then
    kill "$MARIADB_PID" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do kill -0 "$MARIADB_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$MARIADB_PID" 2>/dev/null || true
    log "stopped the throwaway MariaDB (pid $MARIADB_PID) and removed $TMP"
  fi
  [ -n "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dsn="${FLASHSALE_TEST_MYSQL_DSN:-}"
if [ -n "$dsn" ]; then
  addr="$(printf '%s' "$dsn" | sed -n 's/.*@tcp(\([^)]*\)).*/\1/p')"
  host="${addr%:*}" port="${addr##*:}"
  [ "$port" != "$addr" ] || port=3306
  if [ -z "$addr" ] || listening "${host:-127.0.0.1}" "$port"; then
    log "tests use FLASHSALE_TEST_MYSQL_DSN=$dsn"
  else
    warn "nothing answers at $addr (FLASHSALE_TEST_MYSQL_DSN); looking for another MariaDB"
    dsn=""
  fi
fi
if [ -z "$dsn" ] && [ "${FLASHSALE_TEST_PRIVATE_MYSQL:-}" != 1 ] && mysql_root 3306 -e 'select 1' >/dev/null 2>&1; then
  dsn='root@tcp(127.0.0.1:3306)/?parseTime=true'
  log "tests use the MariaDB on 127.0.0.1:3306 (root): one database per test, dropped after it"
fi
if [ -z "$dsn" ]; then
  ensure_packages mariadbd:mariadb-server-core mariadb-install-db:mariadb-server-core my_print_defaults:mariadb-client-core
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/flashsale-test.XXXXXX")"
  mariadb_init "$TMP/mysql" "$TMP/mysql-install.log"
  # A free port may be taken before mariadbd binds it: start again on another.
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    log "starting a throwaway MariaDB on 127.0.0.1:$port (in $TMP, removed when the tests end)"
    started=0
    mariadb_start "$TMP/mysql" "$TMP" "$port" || started=$?
    [ "$started" -eq 0 ] && break
    [ "$attempt" -lt 5 ] || die "MariaDB found no port it could bind in 5 tries (log: $TMP/mysql.log)"
  done
  dsn="root@tcp(127.0.0.1:$port)/?parseTime=true"
fi
export FLASHSALE_TEST_MYSQL_DSN="$dsn"

rc=0
"$@" || rc=$?
if [ -n "$MARIADB_PID" ]; then
  log "left running: nothing (the throwaway MariaDB stops now; the tests stop their own redis-servers)"
else
  log "left running: nothing started here (the MariaDB the tests used was running before; the tests stop their own redis-servers)"
fi
exit "$rc"
