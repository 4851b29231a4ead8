#!/usr/bin/env bash
# Local real services (PostgreSQL, Redis, libvirt) without systemd and without Docker.
#
# Usage: scripts/services.sh <command> [service...]
#
# Commands
#   install [svc...]  Install the missing Debian packages of the services (apt-get update only when
#                     something is missing). Not root and something missing: prints the apt-get
#                     command to run and exits 1. Daemon start-up by package scripts is suppressed
#                     (temporary /usr/sbin/policy-rc.d) so no system instance ends up on 5432/6379.
#   start   [svc...]  Start each service unless it is already running, wait until it answers.
#                     stdout carries ONLY `started:<svc>` lines, one per service this call actually
#                     started (none for those already running); all human messages go to stderr.
#                     On a hard failure (exit 1) the services started by this same call are stopped
#                     again, so nothing is left behind.
#   stop    [svc...]  Stop what this script started, by the pid in its pid file (never by process
#                     name). No-op when not running or when the instance is not ours. Data is kept.
#   purge             Remove this checkout's data and images (the per-checkout directories of
#                     scripts/paths.sh that these scripts made): refused while one of this checkout's
#                     services runs, a libvirt domain uses a file there, or something is mounted there.
#   status  [svc...]  One line per service on stdout:
#                       postgres running pid N port P | postgres running external port P | postgres stopped
#                       redis running pid N port P    | redis running external port P    | redis stopped
#                       libvirt running pid N uri U   | libvirt running external uri U    | libvirt stopped
#                     ("running external ... (not accessible to this user)" counts as not running)
#   acquire ceph PID  Start Ceph unless it runs (as `start ceph`) and record a lease for the process PID
#                     (a test process sharing it). stdout as for start.
#   release ceph [PID] Drop PID's lease and the leases of processes that are gone; when none is left
#                     and an `acquire` of this checkout started Ceph, stop it. Without PID: only the
#                     clean-up (what `npm test` runs at its end). Start, lease and stop happen under the
#                     state lock, so a suite never stops the Ceph another suite still uses.
#   env               Prints `export KEY=value` lines: PG_PORT, REDIS_PORT, DATABASE_URL,
#                     DATABASE_ADMIN_URL, REDIS_URL, LIBVIRT_URI.  Use: eval "$(scripts/services.sh env)"
#
# Services: postgres, redis, libvirt. Default (install/start/stop/status): postgres redis, plus
# libvirt when WITH_LIBVIRT=1.
#
# Environment
#   SERVICES_DIR     state dir (default: scripts/paths.sh, /var/lib/admin-vps/<checkout id>/services
#                    as root; must be reachable by the `postgres` OS user when running as root, i.e.
#                    every parent directory needs o+x)
#   IMAGES_DIR       what QEMU reads (scripts/paths.sh); only purge touches it
#   PG_PORT          default 55432        REDIS_PORT   default 56379
#   PG_FSYNC         on|off, default on (off is fine for throw-away test data)
#   WITH_LIBVIRT     1 = include libvirt in the default service list
#   SERVICES_TIMEOUT seconds to wait for each service to answer (default 60)
#   LIBVIRT_FIX_KVM_PERMS  1 (default): when /dev/kvm is root-only (no udev), make it root:kvm 0660
#                    as Debian's udev rule would; otherwise libvirt re-probes QEMU (~4 s) on every
#                    capabilities-related call. 0 = leave /dev/kvm alone.
#
# Layout under SERVICES_DIR: postgres/{data,run,postgres.log,initdb.log,pg_ctl.log} (owned by the
# postgres OS user when run as root), redis/{redis.pid,redis.log,appendonlydir},
# libvirt/{libvirtd.pid,virtlogd.pid,libvirtd.log,virtlogd.log}. libvirt itself uses the system
# paths (/run/libvirt, /etc/libvirt, /var/lib/libvirt): it is the qemu:///system daemon.
#
# Exit codes
#   0  success (status: all named services running)
#   1  failure (status: some service not running; install: packages missing and not root)
#   2  usage error (help: 0)
#   3  start: libvirt could not be started (not root, binaries missing, libvirtd did not come up)
#      while every other named service is fine -> callers may fall back to a fake hypervisor.
#      Any other failure takes precedence with exit 1.
#
# A running instance not started by this script (port / socket already answering) is used as is:
# start reports "already running (external)", prints no started: line, and stop leaves it alone.
set -euo pipefail
umask 022

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=paths.sh
. "$SCRIPT_DIR/paths.sh"
STATE_DIR="$SERVICES_DIR"
PG_PORT="${PG_PORT:-55432}"
REDIS_PORT="${REDIS_PORT:-56379}"
PG_FSYNC="${PG_FSYNC:-on}"
TIMEOUT="${SERVICES_TIMEOUT:-60}"
LIBVIRT_URI="qemu:///system"

PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
REDIS_DIR="$STATE_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
LV_DIR="$STATE_DIR/libvirt"
LV_LIBVIRTD_PID="$LV_DIR/libvirtd.pid"
LV_VIRTLOGD_PID="$LV_DIR/virtlogd.pid"
LV_LOG="$LV_DIR/daemons-start.log"
LIBVIRT_SOCK="/run/libvirt/libvirt-sock"
VIRTLOGD_SOCK="/run/libvirt/virtlogd-sock"

log() { printf '%s\n' "services: $*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }

tail_log() { # file
  if [ -s "$1" ]; then
    printf '%s\n' "---- last lines of $1 ----" >&2
    tail -n 25 "$1" >&2 || true
    printf '%s\n' "----" >&2
  else
    log "(log $1 is empty or missing)"
  fi
}

# pid_alive PID NAME: the process exists and its command line mentions NAME (guards pid reuse).
# Uses /proc so it also works for processes of other users (kill -0 would say EPERM).
pid_alive() {
  local pid="$1" name="$2"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

read_pid() { # file -> first line, empty when absent
  local p=""
  if [ -f "$1" ]; then p="$(head -n 1 "$1" 2>/dev/null | tr -d '[:space:]')"; fi
  printf '%s' "$p"
}

# wait_pid_gone PID NAME SECONDS
wait_pid_gone() {
  local pid="$1" name="$2" secs="$3" i
  for ((i = 0; i < secs * 10; i++)); do
    pid_alive "$pid" "$name" || return 0
    sleep 0.1
  done
  return 1
}

# term_then_kill PID NAME GRACE [WAIT_FN]: SIGTERM, and SIGKILL when still there after GRACE seconds.
# WAIT_FN PID NAME SECONDS (default wait_pid_gone) says when the process is gone.
term_then_kill() {
  local pid="$1" name="$2" grace="$3" wait_fn="${4:-wait_pid_gone}"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! "$wait_fn" "$pid" "$name" "$grace"; then
    log "$name still alive after ${grace}s, sending SIGKILL to pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    "$wait_fn" "$pid" "$name" 5 || die "$name pid $pid did not exit"
  fi
}

# Unix socket PATH exists here and is bound by a live process (no socat needed). /proc/net/unix is
# per network namespace, the -S test keeps a private mount namespace from seeing the host's sockets.
unix_listening() {
  [ -S "$1" ] && awk -v p="$1" '$NF == p { f = 1 } END { exit !f }' /proc/net/unix 2>/dev/null
}

# ---------------------------------------------------------------- packages
pkgs_for() {
  case "$1" in
    postgres) echo "postgresql" ;;
    redis) echo "redis-server" ;;
    libvirt) echo "qemu-utils qemu-system-x86 libvirt-daemon-system libvirt-clients" ;;
    ceph) echo "ceph-mon ceph-osd radosgw" ;;
  esac
}

pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

cmd_install() {
  local svc p missing=()
  have dpkg-query || die "dpkg-query not found: install supports Debian/Ubuntu only"
  for svc in "$@"; do
    for p in $(pkgs_for "$svc"); do
      pkg_installed "$p" || missing+=("$p")
    done
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "all packages present for: $*"
    return 0
  fi
  local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  if ! is_root; then
    log "missing packages: ${missing[*]}"
    log "run as root:  $cmd"
    exit 1
  fi
  log "installing: ${missing[*]}"
  # Keep package maintainer scripts from starting system instances (postgres 5432, redis 6379,
  # libvirtd): this script starts its own. Only when no policy-rc.d exists already (Docker images
  # ship one); removed again on exit.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, created by scripts/services.sh install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
    # shellcheck disable=SC2064
    trap "rm -f '$policy'" EXIT
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  if [ "$created_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  log "installed: ${missing[*]}"
}

# ---------------------------------------------------------------- postgres
pg_bindir() {
  # Binaries matching an existing cluster's version when present, else the highest installed.
  local v=""
  [ -f "$PG_DATA/PG_VERSION" ] && v="$(tr -d '[:space:]' <"$PG_DATA/PG_VERSION")"
  if [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then
    echo "/usr/lib/postgresql/$v/bin"
    return 0
  fi
  v="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ] || return 1
  echo "/usr/lib/postgresql/$v/bin"
}

# Run a command as the postgres OS user when root (initdb/postgres refuse to run as root).
# cwd is switched to the postgres dir so the postgres user never needs access to the caller's cwd.
as_pg() {
  if is_root; then
    (cd "$PG_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$PG_DIR" && "$@")
  fi
}

pg_pid() { # our postmaster pid, or fail
  local pid
  pid="$(read_pid "$PG_DATA/postmaster.pid")"
  pid_alive "$pid" postgres && { printf '%s' "$pid"; return 0; }
  return 1
}

pg_port_of_ours() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null | tr -d '[:space:]'; }

pg_answers() { # port
  local b isready=""
  b="$(pg_bindir 2>/dev/null)" && [ -x "$b/pg_isready" ] && isready="$b/pg_isready"
  [ -n "$isready" ] || isready="$(command -v pg_isready || true)"
  if [ -n "$isready" ]; then
    "$isready" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

pg_prepare_dirs() {
  prepare_state_dir
  chmod a+x "$STATE_DIR"
  if [ "$SERVICES_DIR_IS_LEGACY" = 1 ]; then chmod a+x "$CHECKOUT_DIR/.local"; fi
  mkdir -p "$PG_DIR" "$PG_SOCK"
  if is_root; then
    if ! id -u postgres >/dev/null 2>&1; then
      log "creating system user postgres"
      useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
        --shell /bin/bash postgres
    fi
    chown postgres:postgres "$PG_DIR" "$PG_SOCK"
    [ -d "$PG_DATA" ] && chown -R postgres:postgres "$PG_DATA"
    if ! runuser -u postgres -- test -w "$PG_DIR" -a -x "$PG_DIR"; then
      die "the postgres OS user cannot reach $PG_DIR (a parent directory lacks o+x). Fix the permissions or leave SERVICES_DIR unset (default: under $LOCAL_STATE_DIR)"
    fi
  fi
  # 755: clients of other users must reach the socket dir; the data dir itself is 0700 (initdb).
  chmod 755 "$PG_DIR" "$PG_SOCK"
}

pg_initdb() {
  local bin="$1"
  if [ -d "$PG_DATA" ] && [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "removing incomplete data dir $PG_DATA"
    rm -rf "$PG_DATA"
  fi
  [ -f "$PG_DATA/PG_VERSION" ] && return 0
  log "initdb $PG_DATA"
  local out="$PG_DIR/initdb.log"
  : >"$out"
  is_root && chown postgres:postgres "$out"
  if ! as_pg "$bin/initdb" -D "$PG_DATA" --auth=trust --username=postgres -E UTF8 \
    --locale=C.UTF-8 >>"$out" 2>&1; then
    log "initdb with locale C.UTF-8 failed, retrying with locale C"
    rm -rf "$PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" --auth=trust --username=postgres -E UTF8 \
      --locale=C >>"$out" 2>&1 || { tail_log "$out"; die "initdb failed"; }
  fi
}

start_postgres() {
  local pid bin
  if pid="$(pg_pid)"; then
    log "postgres already running (pid $pid, port $(pg_port_of_ours))"
    return 0
  fi
  if pg_answers "$PG_PORT"; then
    log "postgres already running (external: port $PG_PORT answers, not started by this script; using it)"
    return 0
  fi
  bin="$(pg_bindir)" || die "PostgreSQL binaries not found under /usr/lib/postgresql; run: $0 install postgres"
  pg_prepare_dirs
  pg_initdb "$bin"
  rm -f "$PG_DATA/postmaster.pid" # stale (its pid is not alive, checked above)
  : >>"$PG_LOG"
  is_root && chown postgres:postgres "$PG_LOG"
  log "starting postgres on 127.0.0.1:$PG_PORT"
  # pg_ctl's own chatter goes to a file; postgres itself logs to $PG_LOG with stdio detached, so no
  # daemon keeps the caller's pipes open. 9>&- : don't leak the state lock into the daemon.
  if ! as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" -o \
    "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c fsync=$PG_FSYNC -c max_connections=300" \
    start </dev/null >"$PG_DIR/pg_ctl.log" 2>&1 9>&-; then
    tail_log "$PG_DIR/pg_ctl.log"
    tail_log "$PG_LOG"
    die "postgres did not start within ${TIMEOUT}s"
  fi
  local i
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    pg_answers "$PG_PORT" && break
    sleep 0.1
  done
  if ! pg_answers "$PG_PORT"; then
    tail_log "$PG_LOG"
    die "postgres does not answer on 127.0.0.1:$PG_PORT after ${TIMEOUT}s"
  fi
  STARTED+=(postgres)
  log "postgres ready (pid $(pg_pid || echo '?'), port $PG_PORT)"
}

stop_postgres() {
  local pid bin
  if ! pid="$(pg_pid)"; then
    log "postgres not running (nothing of ours to stop)"
    return 0
  fi
  bin="$(pg_bindir)" || die "PostgreSQL binaries not found"
  log "stopping postgres (pid $pid)"
  as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop </dev/null >&2 9>&- || true
  if ! wait_pid_gone "$pid" postgres 5; then
    log "postgres still alive, sending SIGQUIT (immediate shutdown) to pid $pid"
    kill -QUIT "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" postgres 10 || die "postgres pid $pid did not exit"
  fi
  log "postgres stopped"
}

status_postgres() {
  local pid
  if pid="$(pg_pid)"; then
    echo "postgres running pid $pid port $(pg_port_of_ours)"
  elif pg_answers "$PG_PORT"; then
    echo "postgres running external port $PG_PORT"
  else
    echo "postgres stopped"
    return 1
  fi
}

# ---------------------------------------------------------------- redis
redis_pid() {
  local pid
  pid="$(read_pid "$REDIS_PID")"
  pid_alive "$pid" redis-server && { printf '%s' "$pid"; return 0; }
  return 1
}

redis_port_of_ours() { # port from the live process' cmdline ("redis-server 127.0.0.1:PORT")
  local pid="$1" p
  p="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/.*:\([0-9][0-9]*\).*/\1/p')"
  printf '%s' "${p:-$REDIS_PORT}"
}

redis_answers() { # port
  if have redis-cli; then
    [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" = "PONG" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

start_redis() {
  local pid
  if pid="$(redis_pid)"; then
    log "redis already running (pid $pid, port $(redis_port_of_ours "$pid"))"
    return 0
  fi
  if redis_answers "$REDIS_PORT"; then
    log "redis already running (external: port $REDIS_PORT answers, not started by this script; using it)"
    return 0
  fi
  have redis-server || die "redis-server not found; run: $0 install redis"
  have redis-cli || die "redis-cli not found; run: $0 install redis"
  mkdir -p "$REDIS_DIR"
  rm -f "$REDIS_PID"
  local off=0 i
  [ -f "$REDIS_LOG" ] && off="$(stat -c %s "$REDIS_LOG")"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  if ! redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --appendonly yes \
    --dir "$REDIS_DIR" --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --save "" \
    </dev/null >"$REDIS_DIR/redis-start.log" 2>&1 9>&-; then
    tail_log "$REDIS_DIR/redis-start.log"
    tail_log "$REDIS_LOG"
    die "redis-server failed to start"
  fi
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    redis_answers "$REDIS_PORT" && [ -s "$REDIS_PID" ] && break
    # The daemonized process died (e.g. port in use; its pid is unknown until the pid file exists):
    # fail fast on its log instead of waiting for the timeout.
    if [ -s "$REDIS_PID" ] && ! redis_pid >/dev/null; then break; fi
    if tail -c +"$((off + 1))" "$REDIS_LOG" 2>/dev/null | grep -q -E 'aborting|Fatal|FATAL|Bad directive'; then
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  if ! redis_answers "$REDIS_PORT" || ! pid="$(redis_pid)"; then
    tail -c +"$((off + 1))" "$REDIS_LOG" >"$REDIS_DIR/redis-last-start.log" 2>/dev/null || true
    tail_log "$REDIS_DIR/redis-last-start.log"
    die "redis does not answer PING on 127.0.0.1:$REDIS_PORT (process exited or timeout ${TIMEOUT}s)"
  fi
  STARTED+=(redis)
  log "redis ready (pid $pid, port $REDIS_PORT)"
}

stop_redis() {
  local pid
  if ! pid="$(redis_pid)"; then
    log "redis not running (nothing of ours to stop)"
    return 0
  fi
  term_then_kill "$pid" redis-server "$TIMEOUT"
  rm -f "$REDIS_PID"
  log "redis stopped"
}

status_redis() {
  local pid
  if pid="$(redis_pid)"; then
    echo "redis running pid $pid port $(redis_port_of_ours "$pid")"
  elif redis_answers "$REDIS_PORT"; then
    echo "redis running external port $REDIS_PORT"
  else
    echo "redis stopped"
    return 1
  fi
}

# ---------------------------------------------------------------- libvirt
libvirtd_pid() {
  local pid
  pid="$(read_pid "$LV_LIBVIRTD_PID")"
  pid_alive "$pid" libvirtd && { printf '%s' "$pid"; return 0; }
  return 1
}

virtlogd_pid() {
  local pid
  pid="$(read_pid "$LV_VIRTLOGD_PID")"
  pid_alive "$pid" virtlogd && { printf '%s' "$pid"; return 0; }
  return 1
}

virsh_answers() { # seconds
  timeout "$1" virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1
}

LV_FAIL=0
lv_unavailable() { log "libvirt unavailable: $*"; LV_FAIL=1; }

# Without udev (containers, minimal CI machines) /dev/kvm stays root:root 0600. libvirt then records
# "KVM usable" when probing (as root) but "KVM not usable" for the qemu user when validating its
# capabilities cache, so it re-probes QEMU (~4 s) on EVERY call that needs capabilities (virsh
# version, define, start...). Apply what Debian's udev rule would: root:kvm 0660.
# LIBVIRT_FIX_KVM_PERMS=0 disables this.
fix_kvm_perms() {
  [ "${LIBVIRT_FIX_KVM_PERMS:-1}" = 1 ] || return 0
  [ -c /dev/kvm ] || return 0
  getent group kvm >/dev/null 2>&1 || return 0
  local qemu_user="libvirt-qemu"
  id -u "$qemu_user" >/dev/null 2>&1 || return 0
  if ! runuser -u "$qemu_user" -- test -r /dev/kvm -a -w /dev/kvm 2>/dev/null; then
    log "making /dev/kvm root:kvm 0660 (as udev would) so libvirt does not re-probe QEMU on every call"
    if ! { chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; }; then
      log "warning: could not change /dev/kvm permissions (every libvirt call may take ~4 s)"
    fi
  fi
}

start_libvirt() {
  local pid
  if pid="$(libvirtd_pid)"; then
    log "libvirt already running (libvirtd pid $pid)"
    return 0
  fi
  if ! have virsh; then
    lv_unavailable "virsh not found (run: $0 install libvirt)"
    return 0
  fi
  if unix_listening "$LIBVIRT_SOCK"; then
    if virsh_answers "$TIMEOUT"; then
      log "libvirt already running (external libvirtd answers on $LIBVIRT_URI; not started by this script)"
      return 0
    fi
  fi
  if ! is_root; then
    if unix_listening "$LIBVIRT_SOCK"; then
      lv_unavailable "a system libvirtd runs but '$LIBVIRT_URI' refuses this user (not root); run as root"
    else
      lv_unavailable "no libvirtd is running and starting the system one ($LIBVIRT_URI) needs root"
    fi
    return 0
  fi
  local libvirtd virtlogd
  libvirtd="$(command -v libvirtd || true)"
  virtlogd="$(command -v virtlogd || true)"
  [ -n "$libvirtd" ] || { [ -x /usr/sbin/libvirtd ] && libvirtd=/usr/sbin/libvirtd; }
  [ -n "$virtlogd" ] || { [ -x /usr/sbin/virtlogd ] && virtlogd=/usr/sbin/virtlogd; }
  if [ -z "$libvirtd" ] || [ -z "$virtlogd" ]; then
    lv_unavailable "libvirtd/virtlogd not found (run: $0 install libvirt)"
    return 0
  fi
  mkdir -p "$LV_DIR" /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
  fix_kvm_perms
  local started_virtlogd=0
  if virtlogd_pid >/dev/null; then
    :
  elif unix_listening "$VIRTLOGD_SOCK"; then
    log "virtlogd already running (external), using it"
  else
    rm -f "$LV_VIRTLOGD_PID"
    log "starting virtlogd"
    if ! LIBVIRT_LOG_OUTPUTS="3:file:$LV_DIR/virtlogd.log" \
      "$virtlogd" -d -p "$LV_VIRTLOGD_PID" </dev/null >>"$LV_LOG" 2>&1 9>&-; then
      tail_log "$LV_LOG"
      tail_log "$LV_DIR/virtlogd.log"
      lv_unavailable "virtlogd failed to start"
      return 0
    fi
    started_virtlogd=1
  fi
  rm -f "$LV_LIBVIRTD_PID"
  log "starting libvirtd (first run: ~8 s QEMU capability probe)"
  if ! LIBVIRT_LOG_OUTPUTS="3:file:$LV_DIR/libvirtd.log" \
    "$libvirtd" -d -p "$LV_LIBVIRTD_PID" </dev/null >>"$LV_LOG" 2>&1 9>&-; then
    tail_log "$LV_LOG"
    tail_log "$LV_DIR/libvirtd.log"
    [ "$started_virtlogd" = 1 ] && stop_libvirt_daemons
    lv_unavailable "libvirtd failed to start"
    return 0
  fi
  local ok=0 deadline=$((SECONDS + TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if unix_listening "$LIBVIRT_SOCK" && virsh_answers "$((deadline - SECONDS + 1))"; then
      ok=1
      break
    fi
    if ! libvirtd_pid >/dev/null; then
      sleep 0.5 # pid file may not be written yet
      libvirtd_pid >/dev/null || break
    fi
    sleep 0.2
  done
  if [ "$ok" != 1 ]; then
    tail_log "$LV_LOG"
    tail_log "$LV_DIR/libvirtd.log"
    stop_libvirt_daemons
    lv_unavailable "libvirtd did not answer '$LIBVIRT_URI' within ${TIMEOUT}s"
    return 0
  fi
  STARTED+=(libvirt)
  log "libvirt ready (libvirtd pid $(libvirtd_pid || echo '?'), uri $LIBVIRT_URI)"
}

stop_libvirt_daemons() {
  local pid name file
  for name in libvirtd virtlogd; do
    file="$LV_LIBVIRTD_PID"
    [ "$name" = virtlogd ] && file="$LV_VIRTLOGD_PID"
    pid="$(read_pid "$file")"
    if pid_alive "$pid" "$name"; then term_then_kill "$pid" "$name" 30; fi
    rm -f "$file"
  done
}

stop_libvirt() {
  if ! libvirtd_pid >/dev/null && ! virtlogd_pid >/dev/null; then
    log "libvirt not running (nothing of ours to stop)"
    return 0
  fi
  if libvirtd_pid >/dev/null; then
    local doms
    doms="$(timeout 10 virsh -c "$LIBVIRT_URI" list --name 2>/dev/null | sed '/^$/d' || true)"
    [ -n "$doms" ] && log "warning: domains still running (their qemu processes outlive libvirtd): $(echo "$doms" | tr '\n' ' ')"
  fi
  stop_libvirt_daemons
  log "libvirt stopped"
}

status_libvirt() {
  local pid
  if pid="$(libvirtd_pid)"; then
    echo "libvirt running pid $pid uri $LIBVIRT_URI"
  elif unix_listening "$LIBVIRT_SOCK"; then
    if timeout 10 virsh -c "$LIBVIRT_URI" uri >/dev/null 2>&1; then
      echo "libvirt running external uri $LIBVIRT_URI"
    else
      echo "libvirt running external uri $LIBVIRT_URI (not accessible to this user)"
      return 1
    fi
  else
    echo "libvirt stopped"
    return 1
  fi
}

# ---------------------------------------------------------------- ceph (S3 for the backup-store tests)
# A throw-away single-node Ceph cluster (one mon, one osd, one radosgw) on 127.0.0.1, for the tests of
# the S3 backup store only. Every start builds a fresh cluster: the OSD uses memstore (objects in RAM),
# which starts in ~2.5 s instead of ~8.5 s with bluestore, and a test server has no data worth keeping.
# Production talks to a real Ceph RGW cluster or AWS S3 (docs/backups.md); nothing here is for that.
CEPH_DIR="$STATE_DIR/ceph"
CEPH_CONF="$CEPH_DIR/ceph.conf"
# Below Linux's ephemeral range (32768-60999): Ceph starts mid-suite, when a test's client socket may
# hold any port of that range as its local port (radosgw once failed "Address already in use" so).
CEPH_RGW_PORT="${CEPH_RGW_PORT:-27480}"
CEPH_MON_PORT="${CEPH_MON_PORT:-26789}"
CEPH_MON_V2_PORT="${CEPH_MON_V2_PORT:-23300}"
# Credentials of the test user: a loopback-only test cluster, so fixed values are fine (and let a
# second checkout use an instance this one started).
CEPH_S3_ACCESS_KEY="${CEPH_S3_ACCESS_KEY:-vpstestaccesskey0001}"
CEPH_S3_SECRET_KEY="${CEPH_S3_SECRET_KEY:-vpstestsecretkey000000000000000000000001}"
# The memstore OSD's capacity, held in RAM: 4 GiB fits the tests; the backup bench's S3 part at full
# size (a plain 2 GiB upload beside a 2 GiB backup) needs more, e.g. CEPH_MEMSTORE_BYTES=12884901888.
CEPH_MEMSTORE_BYTES="${CEPH_MEMSTORE_BYTES:-4294967296}"
CEPH_DAEMONS=(radosgw ceph-osd ceph-mon) # stop order

ceph_pidfile() { printf '%s/%s.pid' "$CEPH_DIR" "$1"; }

ceph_daemon_pid() { # daemon -> pid when alive (a zombie is not alive)
  local pid state
  pid="$(read_pid "$(ceph_pidfile "$1")")"
  pid_alive "$pid" "$1" || return 1
  state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)"
  [ "$state" != Z ] || return 1
  printf '%s' "$pid"
}

# A killed daemon may stay a zombie of PID 1 for a while: gone for our purposes.
ceph_wait_gone() { # pid daemon seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    ceph_daemon_pid "$2" >/dev/null || return 0
    sleep 0.1
  done
  return 1
}

ceph_rgw_answers() { # an HTTP answer on the S3 port (no curl needed)
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "GET / HTTP/1.0\r\n\r\n" >&3 &&
    head -c 12 <&3 | grep -q "^HTTP/1\.[01] "' _ "$CEPH_RGW_PORT" 2>/dev/null
}

ceph_cli() { timeout 20 ceph -c "$CEPH_CONF" "$@" </dev/null 2>>"$CEPH_DIR/cli.log"; }

ceph_spawn() { # daemon args... : run in the foreground mode (-f) in the background, pid to its file
  local name="$1"
  shift
  setsid "$name" -c "$CEPH_CONF" -f "$@" </dev/null >>"$CEPH_DIR/log/$name.out" 2>&1 9>&- &
  echo "$!" >"$(ceph_pidfile "$name")"
}

ceph_write_conf() { # fsid
  cat >"$CEPH_CONF" <<CONF
[global]
fsid = $1
mon host = [v2:127.0.0.1:$CEPH_MON_V2_PORT,v1:127.0.0.1:$CEPH_MON_PORT]
mon initial members = a
public addr = 127.0.0.1
ms bind port min = 57500
ms bind port max = 57600
# No cephx on a loopback test cluster; radosgw's monitor client must then use crc (secure mode
# cannot work without cephx).
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = $CEPH_MEMSTORE_BYTES
paxos propose interval = 0.1
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$cluster-\$name.asok
log file = $CEPH_DIR/log/\$name.log
mon data = $CEPH_DIR/mon/\$cluster-\$id
osd data = $CEPH_DIR/osd/\$cluster-\$id
keyring = $CEPH_DIR/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$CEPH_RGW_PORT
rgw data = $CEPH_DIR/rgw
CONF
}

start_ceph() {
  local d pid fsid osd_uuid i
  if pid="$(ceph_daemon_pid radosgw)" && ceph_rgw_answers; then
    log "ceph already running (radosgw pid $pid, port $CEPH_RGW_PORT)"
    return 0
  fi
  if ceph_rgw_answers; then
    log "ceph already running (external: port $CEPH_RGW_PORT answers, not started by this script; using it)"
    return 0
  fi
  for d in ceph-mon ceph-osd radosgw monmaptool ceph radosgw-admin; do
    have "$d" || die "$d not found; run: $0 install ceph"
  done
  prepare_state_dir
  stop_ceph_daemons # leftovers of a half-started cluster of ours
  rm -rf --one-file-system -- "$CEPH_DIR"
  mkdir -p "$CEPH_DIR"/{run,log,mon,osd/ceph-0,rgw}
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
  ceph_write_conf "$fsid"
  log "starting ceph (mon, osd on memstore, radosgw on 127.0.0.1:$CEPH_RGW_PORT)"
  STARTED+=(ceph) # from here on a failure stops what was started
  ceph-authtool --create-keyring "$CEPH_DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$CEPH_MON_V2_PORT,v1:127.0.0.1:$CEPH_MON_PORT]" \
    "$CEPH_DIR/monmap" >/dev/null
  ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" --keyring "$CEPH_DIR/keyring" \
    >>"$CEPH_DIR/log/mkfs.log" 2>&1 || { tail_log "$CEPH_DIR/log/mkfs.log"; die "ceph-mon --mkfs failed"; }
  ceph_spawn ceph-mon -i a
  ceph_cli osd new "$osd_uuid" >/dev/null || { tail_log "$CEPH_DIR/log/mon.a.log"; die "ceph monitor did not answer"; }
  ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$CEPH_DIR/log/mkfs.log" 2>&1 \
    || { tail_log "$CEPH_DIR/log/mkfs.log"; die "ceph-osd --mkfs failed"; }
  ceph_spawn ceph-osd -i 0
  ceph_spawn radosgw -n client.rgw
  # The user is written through RADOS, so it only needs the OSD up (radosgw may still be starting).
  radosgw-admin -c "$CEPH_CONF" user create --uid vps-test --display-name "vps test" \
    --access-key "$CEPH_S3_ACCESS_KEY" --secret "$CEPH_S3_SECRET_KEY" </dev/null >/dev/null \
    2>>"$CEPH_DIR/cli.log" || { tail_log "$CEPH_DIR/cli.log"; die "radosgw-admin user create failed"; }
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    ceph_rgw_answers && break
    ceph_daemon_pid radosgw >/dev/null || break
    sleep 0.1
  done
  if ! ceph_rgw_answers; then
    tail_log "$CEPH_DIR/log/client.rgw.log"
    die "radosgw does not answer on 127.0.0.1:$CEPH_RGW_PORT"
  fi
  log "ceph ready (radosgw pid $(ceph_daemon_pid radosgw || echo '?'), http://127.0.0.1:$CEPH_RGW_PORT)"
}

stop_ceph_daemons() {
  local name pid
  for name in "${CEPH_DAEMONS[@]}"; do
    pid="$(ceph_daemon_pid "$name")" || { rm -f "$(ceph_pidfile "$name")"; continue; }
    # radosgw usually needs ~4.5 s on SIGTERM, sometimes more than 10 s.
    term_then_kill "$pid" "$name" 10 ceph_wait_gone
    rm -f "$(ceph_pidfile "$name")"
  done
}

stop_ceph() {
  local name any=0
  for name in "${CEPH_DAEMONS[@]}"; do ceph_daemon_pid "$name" >/dev/null && any=1; done
  if [ "$any" = 0 ]; then
    log "ceph not running (nothing of ours to stop)"
    return 0
  fi
  stop_ceph_daemons
  log "ceph stopped"
}

status_ceph() {
  local pid
  if pid="$(ceph_daemon_pid radosgw)" && ceph_rgw_answers; then
    echo "ceph running pid $pid port $CEPH_RGW_PORT"
  elif ceph_rgw_answers; then
    echo "ceph running external port $CEPH_RGW_PORT"
  else
    echo "ceph stopped"
    return 1
  fi
}

# Leases: one file per process that uses the Ceph of this checkout, named by its pid; `.started` marks
# a Ceph that an acquire started (one found running is never stopped by a release).
CEPH_LEASES="$STATE_DIR/ceph-leases"

acquire_ceph() { # holder pid (under the state lock)
  start_ceph
  mkdir -p "$CEPH_LEASES"
  if [ "${#STARTED[@]}" -gt 0 ]; then : >"$CEPH_LEASES/.started"; fi
  : >"$CEPH_LEASES/$1"
}

release_ceph() { # [holder pid] (under the state lock)
  local f pid left=0
  [ -d "$CEPH_LEASES" ] || return 0
  [ -z "${1:-}" ] || rm -f "$CEPH_LEASES/$1"
  for f in "$CEPH_LEASES"/*; do
    [ -e "$f" ] || continue
    pid="$(basename "$f")"
    if [ -r "/proc/$pid/cmdline" ]; then left=$((left + 1)); else rm -f "$f"; fi
  done
  if [ "$left" -gt 0 ]; then
    log "ceph kept running: $left other process(es) hold a lease"
  elif [ -e "$CEPH_LEASES/.started" ]; then
    stop_ceph
    rm -f "$CEPH_LEASES/.started"
  fi
}

# ---------------------------------------------------------------- purge
# Mount points under DIR (tmpfs of an interrupted test lab): removing DIR must not reach into them.
mounts_under() { # dir
  local _src mp _rest
  while read -r _src mp _rest; do
    mp="$(printf '%b' "$mp")" # /proc/mounts writes a space as \040
    case "$mp" in "$1"/*) printf '%s\n' "$mp" ;; esac
  done </proc/mounts
}

# Defined libvirt domains whose XML names a file under DIR (disk, kernel, serial log...).
domains_using() { # dir
  local dom xml
  have virsh && timeout 10 virsh -c "$LIBVIRT_URI" uri >/dev/null 2>&1 || return 0
  while IFS= read -r dom; do
    [ -n "$dom" ] || continue
    # Read whole, then searched: `virsh | grep -q` would fail under pipefail when grep stops early.
    xml="$(timeout 10 virsh -c "$LIBVIRT_URI" dumpxml --inactive -- "$dom" 2>/dev/null || true)"
    if grep -qF -- "$1/" <<<"$xml"; then printf '%s\n' "$dom"; fi
  done < <(timeout 10 virsh -c "$LIBVIRT_URI" list --all --name 2>/dev/null)
}

cmd_purge() {
  local running=() targets=() d mark found
  pg_pid >/dev/null && running+=(postgres)
  redis_pid >/dev/null && running+=(redis)
  { libvirtd_pid >/dev/null || virtlogd_pid >/dev/null; } && running+=(libvirt)
  for d in "${CEPH_DAEMONS[@]}"; do ceph_daemon_pid "$d" >/dev/null && { running+=(ceph); break; }; done
  [ "${#running[@]}" -eq 0 ] || die "still running from this checkout: ${running[*]}; first run: $0 stop ${running[*]}"
  for d in "$LOCAL_STATE_DIR" "$IMAGES_DIR"; do
    mark="$(head -n 1 "$d/$OWNER_MARK" 2>/dev/null || true)"
    if [ "$mark" = "$CHECKOUT_DIR" ]; then
      targets+=("$d")
    elif [ -e "$d" ]; then
      log "leaving $d alone (not made by these scripts for this checkout)"
    fi
  done
  if [ "${#targets[@]}" -eq 0 ]; then
    log "nothing to purge for $CHECKOUT_DIR"
    return 0
  fi
  for d in "${targets[@]}"; do
    found="$(mounts_under "$d")"
    [ -z "$found" ] || die "mounted under $d (unmount first): $(echo "$found" | tr '\n' ' ')"
    found="$(domains_using "$d")"
    [ -z "$found" ] || die "libvirt domains use files under $d: $(echo "$found" | tr '\n' ' ')(remove them first: virsh -c $LIBVIRT_URI undefine NAME)"
  done
  for d in "${targets[@]}"; do
    rm -rf --one-file-system -- "$d"
    log "removed $d"
  done
}

# ---------------------------------------------------------------- main
usage() { # [exit code, default 2]
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

default_services() {
  echo postgres redis
  [ "${WITH_LIBVIRT:-0}" = 1 ] && echo libvirt
  return 0
}

# The default services dir lives in this checkout's state dir, made traversable for the service users.
prepare_state_dir() {
  case "$STATE_DIR" in "$LOCAL_STATE_DIR"/*) ensure_state_dir ;; esac
  mkdir -p "$STATE_DIR"
}

# lock_state [existing]: with `existing`, only when the state dir exists (stop and purge must not
# create what they find absent).
lock_state() {
  if [ "${1:-}" = existing ]; then
    [ -d "$STATE_DIR" ] || return 0
  else
    prepare_state_dir
  fi
  exec 9>"$STATE_DIR/.lock"
  flock -w 300 9 || die "timed out waiting for the lock $STATE_DIR/.lock"
}

CMD="${1:-}"
[ -n "$CMD" ] || usage
shift
LEASE_HOLDER=""
case "$CMD" in
  acquire | release)
    [ "${1:-}" = ceph ] || { log "$CMD takes: ceph [PID]"; usage; }
    LEASE_HOLDER="${2:-}"
    if [ "$CMD" = acquire ] || [ -n "$LEASE_HOLDER" ]; then
      [[ "$LEASE_HOLDER" =~ ^[0-9]+$ ]] || { log "$CMD ceph: PID expected, got '$LEASE_HOLDER'"; usage; }
    fi
    set -- ceph
    ;;
esac
SERVICES=("$@")
if [ "${#SERVICES[@]}" -eq 0 ]; then
  read -r -a SERVICES <<<"$(default_services | tr '\n' ' ')"
fi
for s in "${SERVICES[@]}"; do
  case "$s" in
    postgres | redis | libvirt | ceph) ;;
    *) log "unknown service: $s (expected postgres, redis, libvirt, ceph)"; usage ;;
  esac
done

STARTED=()

# On a failed start, stop what this same call started (called from the EXIT trap).
rollback() {
  local s
  if [ "${#STARTED[@]}" -gt 0 ]; then
    log "start failed: stopping what this call started: ${STARTED[*]}"
    for s in "${STARTED[@]}"; do ("stop_$s") || true; done
  fi
}

case "$CMD" in
  install)
    cmd_install "${SERVICES[@]}"
    ;;
  start)
    if [ "$SERVICES_DIR_IS_LEGACY" = 1 ]; then
      log "using $STATE_DIR, where an earlier version kept its data (new checkouts keep it under $LOCAL_STATE_DIR)"
    fi
    lock_state
    trap 'rc=$?; [ "$rc" -ne 0 ] && rollback; exit "$rc"' EXIT
    for s in "${SERVICES[@]}"; do "start_$s"; done
    trap - EXIT
    for s in "${STARTED[@]+"${STARTED[@]}"}"; do echo "started:$s"; done
    [ "$LV_FAIL" = 1 ] && exit 3
    exit 0
    ;;
  stop)
    lock_state existing
    # reverse order: libvirt, redis, postgres
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do "stop_${SERVICES[$i]}"; done
    ;;
  acquire)
    lock_state
    trap 'rc=$?; [ "$rc" -ne 0 ] && rollback; exit "$rc"' EXIT
    acquire_ceph "$LEASE_HOLDER"
    trap - EXIT
    for s in "${STARTED[@]+"${STARTED[@]}"}"; do echo "started:$s"; done
    ;;
  release)
    lock_state existing
    release_ceph "$LEASE_HOLDER"
    ;;
  status)
    rc=0
    for s in "${SERVICES[@]}"; do "status_$s" || rc=1; done
    exit "$rc"
    ;;
  env)
    echo "export PG_PORT=$PG_PORT"
    echo "export REDIS_PORT=$REDIS_PORT"
    echo "export DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "export DATABASE_ADMIN_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "export LIBVIRT_URI=$LIBVIRT_URI"
    echo "export CEPH_S3_ENDPOINT=http://127.0.0.1:$CEPH_RGW_PORT"
    echo "export CEPH_S3_ACCESS_KEY=$CEPH_S3_ACCESS_KEY"
    echo "export CEPH_S3_SECRET_KEY=$CEPH_S3_SECRET_KEY"
    ;;
  purge)
    [ "$#" -eq 0 ] || { log "purge takes no service names"; usage; }
    lock_state existing
    cmd_purge
    ;;
  -h | --help | help)
    usage 0
    ;;
  *)
    log "unknown command: $CMD"
    usage
    ;;
esac
