# shellcheck shell=bash
# Shared helpers for scripts/services (sourced, never run on its own).
#
# Everything the services scripts create lives under ONE folder outside the
# repository, $SERVICES_DIR (default /var/tmp/redis-connector-services):
#
#   $SERVICES_DIR/
#     locks/                 flock files (setup, one per instance)
#     downloads/             the Elasticsearch zip while it is being unpacked
#     elasticsearch-X.Y.Z/   the unpacked Elasticsearch distribution (ES_HOME)
#     es/NAME/               one Elasticsearch node: config/ data/ logs/ tmp/ pid
#     redis/NAME/            one redis-server: data dir, redis.log, redis.pid
#     tls/                   a self-signed CA and server certificate (tls-certs)
#
# NAME is "default" for the instances `scripts/services start` runs
# (Redis on 6379, Elasticsearch on 9200); tests add their own.

SERVICES_DIR="${REDIS_CONNECTOR_SERVICES_DIR:-/var/tmp/redis-connector-services}"

# --- messages ----------------------------------------------------------------

log()  { printf '[services] %s\n' "$*" >&2; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die()  { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Instance names become folder names: keep them boring.
check_name() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
        || die "invalid instance name '$1' (letters, digits, '.', '_', '-')"
}

check_port() {
    if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then
        die "invalid port '$1'"
    fi
}

# --- locking -------------------------------------------------------------------
# Tests run in parallel and several of them may call `scripts/services ...` at
# the same moment. Each critical section takes an exclusive flock on a file in
# $SERVICES_DIR/locks; the lock is released when the fd is closed (or the
# process exits).

# with_lock LOCKNAME COMMAND [ARGS...]: run COMMAND while holding the lock.
# COMMAND is not run in a `||` context on purpose: `set -e` keeps working
# inside it, and a failure exits the script (which releases the lock).
LOCK_FDS=()
with_lock() {
    local name="$1"; shift
    mkdir -p "$SERVICES_DIR/locks"
    local fd
    exec {fd}>"$SERVICES_DIR/locks/$name.lock"
    flock "$fd"
    LOCK_FDS+=("$fd")
    "$@"
    unset 'LOCK_FDS[-1]'
    exec {fd}>&-
}

# without_locks COMMAND [ARGS...]: run COMMAND with the lock fds closed. Every
# daemon must be started this way: a daemon that inherited a lock fd would
# hold the lock for as long as it lives.
without_locks() {
    (
        for fd in "${LOCK_FDS[@]}"; do exec {fd}>&-; done
        exec "$@"
    )
}

# --- processes -------------------------------------------------------------------

# pid_alive PIDFILE [NEEDLE]: true when PIDFILE names a live process whose
# command line contains NEEDLE (guards against a recycled pid).
pid_alive() {
    local pidfile="$1" needle="${2:-}" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -n "$needle" ]] || return 0
    # (Read into a variable: `tr | grep -q` can die of SIGPIPE under pipefail.)
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$needle"* ]]
}

# stop_pid PIDFILE WHAT [SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local pidfile="$1" what="$2" secs="${3:-30}" pid i
    pid="$(<"$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    warn "$what (pid $pid) did not stop within ${secs}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
    rm -f "$pidfile"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# fingerprint ARGS...: a short hash of the arguments, used to notice that an
# instance is asked to run with other settings than the running one has.
fingerprint() {
    printf '%s\0' "$@" | sha256sum | cut -c1-16
}

# --- installation ----------------------------------------------------------------
# Debian packages the services need. Installed only when missing; `apt-get
# update` runs only when something has to be installed.

# shellcheck disable=SC2034  # used by scripts/services
# prometheus: its server and promtool, used by tests/it/serve.rs; buildah:
# scripts/image and tests/it/image.rs, with binutils (strip).
APT_PACKAGES=(redis-server redis-tools nginx openssl curl unzip ca-certificates prometheus buildah binutils)

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

ensure_packages() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0

    [[ $EUID -eq 0 ]] || die "packages missing (${missing[*]}) and not root: install them with apt-get"
    command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get: this script expects Debian"
    log "installing Debian packages: ${missing[*]}"

    # Debian's redis-server and nginx packages start their own daemons when
    # installed (Redis with persistence on 6379, nginx on port 80). We want
    # only the servers this script starts, so forbid service starts during
    # the install unless a policy is already in place (Docker images ship one).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, written by redis-connector scripts/services\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q &&
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    } >&2 || rc=$?
    ((created_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
}
