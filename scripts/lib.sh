# Shell functions shared by the scripts in scripts/ (sourced, not run).
# shellcheck shell=bash

export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

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

# serve_started NAME PID LOG SECONDS: wait until the flashsale serve of PID, logging to LOG,
# says where its HTTP and gRPC servers listen, then set NAME_PID, NAME_HTTP and NAME_GRPC.
# Dies with the log's tail when it does not within SECONDS or exits first.
serve_started() {
  local name=$1 pid=$2 log=$3 secs=$4 i http="" grpc=""
  addr() { grep -o "msg=\"$1 listening\" addr=[0-9.:]*" "$log" | head -n 1 | cut -d= -f3; }
  for ((i = 0; i < secs * 5; i++)); do
    [ -n "$(addr http)" ] && [ -n "$(addr grpc)" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  http="$(addr http || true)" grpc="$(addr grpc || true)"
  [ -n "$http" ] && [ -n "$grpc" ] || die "$name did not start: $(tail -n 20 "$log")"
  printf -v "${name}_PID" %s "$pid"
  printf -v "${name}_HTTP" %s "$http"
  printf -v "${name}_GRPC" %s "$grpc"
}

# pid_of_live NAME PIDFILE DIR: print the PID in PIDFILE when that process runs (not a
# zombie), is NAME and works in DIR. A stale pid file (e.g. after a reboot) may name another
# process by now, even another server of the same name: that one is not ours.
pid_of_live() {
  local pid st
  pid="$(cat "$2" 2>/dev/null)" || return 1
  [ -n "$pid" ] || return 1
  st="$(ps -o stat=,comm= -p "$pid" 2>/dev/null)" || return 1
  [ "${st#Z}" = "$st" ] && [ "${st##* }" = "$1" ] && [ "$(readlink "/proc/$pid/cwd")" = "$3" ] && echo "$pid"
}

# ephemeral_range: print the kernel's ephemeral port range ("LO HI"), from which it takes the
# ports of outgoing connections and of listeners on port 0 (net.ipv4.ip_local_port_range).
ephemeral_range() {
  local r
  r="$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || sysctl -n net.ipv4.ip_local_port_range 2>/dev/null)" || true
  set -- $r
  if [ "$#" -eq 2 ] && [ "$1" -le "$2" ] 2>/dev/null; then echo "$1 $2"; else echo "32768 60999"; fi
}

# free_port: print a TCP port of 127.0.0.1 on which nothing listens now, in 10000-65535 but
# outside the ephemeral range: an outgoing connection could take such a port between this
# check and the server's bind. A server may still lose the race: retry on a bind failure.
free_port() {
  local port i lo hi
  read -r lo hi <<<"$(ephemeral_range)"
  for ((i = 0; i < 200; i++)); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % 55536))
    if [ "$port" -ge "$lo" ] && [ "$port" -le "$hi" ]; then continue; fi
    listening 127.0.0.1 "$port" || { echo "$port"; return 0; }
  done
  die "found no free port in 10000-65535 outside the ephemeral range $lo-$hi"
}

# ensure_packages CMD:PACKAGE...: apt-get install the PACKAGE of every CMD (a command name or
# an absolute path) that is missing, without recommended packages (chromium would bring
# avahi-daemon and polkitd with them). The packages' system services are neither started nor
# enabled at boot: flashsale starts its own servers.
ensure_packages() {
  local pair cmd pkg pkgs=()
  for pair in "$@"; do
    cmd="${pair%%:*}" pkg="${pair#*:}"
    if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null && continue; fi
    case " ${pkgs[*]} " in *" $pkg "*) ;; *) pkgs+=("$pkg") ;; esac
  done
  [ "${#pkgs[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${pkgs[*]}: install them (apt-get install ${pkgs[*]}) or run as root"
  command -v apt-get >/dev/null || die "missing ${pkgs[*]} and no apt-get: install them by hand"
  log "installing ${pkgs[*]} (apt-get)"
  apt-get update -qq || die "apt-get update failed"
  # A policy-rc.d that answers 101 keeps the packages' services from starting during the
  # install; apt's "invoke-rc.d: policy-rc.d denied execution of start." lines say just that
  # and are left out, as is "invoke-rc.d: could not determine current runlevel" (no init
  # running, e.g. in a chroot or container).
  (
    set -o pipefail
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      trap 'rm -f "$policy"' EXIT
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    fi
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" 2>&1 | sed -u -e '/policy-rc.d denied execution of/d' -e '/invoke-rc.d: could not determine current runlevel/d'
  ) || die "apt-get install ${pkgs[*]} failed"
  # Nor do they start at the next boot (redis-server is the one package here with a service).
  case " ${pkgs[*]} " in
    *" redis-server "*)
      if command -v systemctl >/dev/null; then systemctl disable redis-server >/dev/null 2>&1 || true; fi
      if command -v update-rc.d >/dev/null && [ -e /etc/init.d/redis-server ]; then
        update-rc.d redis-server disable >/dev/null 2>&1 || true
      fi
      log "redis-server's system service is disabled: flashsale starts its own Redis"
      ;;
  esac
}

# MariaDB of flashsale's own, run by the current user from a datadir of its own.
#   mariadb_init DATADIR LOG: create the datadir (root: TCP login without password).
#   mariadb_start DATADIR RUNDIR PORT: start mariadbd in the background on 127.0.0.1:PORT,
#     its socket, pid file and log in RUNDIR; sets MARIADB_PID. Returns 2 when mariadbd
#     could not bind the port (taken meanwhile); dies on any other failure, saying which.
#   mysql_root PORT ARGS...: the mariadb client as root on 127.0.0.1:PORT.
mysql_root() {
  local port=$1
  shift
  mariadb --connect-timeout=5 -h127.0.0.1 -P"$port" -uroot "$@"
}

mariadb_init() {
  [ -d "$1/mysql" ] && return 0
  log "initialising a MariaDB datadir in $1"
  mkdir -p "$1"
  mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$1" \
    --auth-root-authentication-method=normal --skip-test-db >"$2" 2>&1 || {
    tail -n 20 "$2" >&2
    die "mariadb-install-db failed (log: $2); remove $1 before retrying"
  }
}

mariadb_start() {
  local datadir=$1 run=$2 port=$3 logsize
  # Left over by a server that was killed (e.g. a reboot): the socket's lock file names a PID
  # that may belong to another process by now, and mariadbd would refuse to start.
  rm -f "$run/mysql.sock" "$run/mysql.sock.lock" "$run/mysql.pid"
  logsize="$(stat -c %s "$run/mysql.log" 2>/dev/null || echo 0)"
  nohup setsid mariadbd --no-defaults --user="$(id -un)" --datadir="$datadir" --port="$port" \
    --bind-address=127.0.0.1 --socket="$run/mysql.sock" --pid-file="$run/mysql.pid" \
    --log-error="$run/mysql.log" --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_unicode_ci </dev/null >>"$run/mysql.log" 2>&1 &
  MARIADB_PID=$!
  wait_for 60 "$MARIADB_PID" mysql_root "$port" -e 'select 1' && return 0
  if kill -0 "$MARIADB_PID" 2>/dev/null; then
    tail -n 20 "$run/mysql.log" >&2 || true
    die "MariaDB did not answer on 127.0.0.1:$port within 60 s (log: $run/mysql.log)"
  fi
  MARIADB_PID=""
  # This start's lines of the log only: an earlier start may have failed otherwise.
  if tail -c +$((logsize + 1)) "$run/mysql.log" | grep -q 'Address already in use'; then
    warn "MariaDB could not bind 127.0.0.1:$port: address already in use"
    return 2
  fi
  tail -c +$((logsize + 1)) "$run/mysql.log" | tail -n 20 >&2 || true
  die "MariaDB exited before it answered on 127.0.0.1:$port (log: $run/mysql.log)"
}

# jnum KEY FILE: the first number named KEY in a loadtest JSON summary.
jnum() { grep -o "\"$1\":[-0-9.e+]*" "$2" | head -n 1 | cut -d: -f2; }
