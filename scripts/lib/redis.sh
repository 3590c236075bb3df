# shellcheck shell=bash
# Redis helpers for scripts/services (sourced; needs lib/common.sh).
#
# Every instance is Debian's real redis-server, daemonized, bound to loopback,
# without persistence (--save "" --appendonly no), running in its own folder
# $SERVICES_DIR/redis/NAME (working dir, redis.log, redis.pid).
#
# Environment overrides:
#   REDIS_PORT            port of the default instance         (6379)
#   REDIS_START_TIMEOUT   seconds to wait for an instance      (20)

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"

redis_dir()     { printf '%s/redis/%s\n' "$SERVICES_DIR" "$1"; }
redis_pidfile() { printf '%s/redis/%s/redis.pid\n' "$SERVICES_DIR" "$1"; }

redis_ensure_installed() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        die "redis-server/redis-cli not found after installing redis-server and redis-tools"
    fi
}

# Is instance NAME a redis-server of ours? Its pidfile names a live
# redis-server whose working directory is the instance folder.
redis_running() {
    local pidfile; pidfile="$(redis_pidfile "$1")"
    pid_alive "$pidfile" redis-server || return 1
    [[ "$(readlink "/proc/$(<"$pidfile")/cwd" 2>/dev/null)" == "$(redis_dir "$1")" ]]
}

# redis_ping PORT: "PONG" from a plain-TCP redis. A server that requires a
# password answers NOAUTH, which still proves it is up.
redis_ping() {
    local out
    out="$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>&1)" || return 1
    [[ "$out" == PONG || "$out" == NOAUTH* ]]
}

# The ports an instance listens on: --port and --tls-port from its arguments
# (the last one given wins, as in redis-server itself); 0 means none.
redis_ports() {
    local port="$1"; shift
    local tls_port=0
    while (($#)); do
        case "$1" in
            --port) port="${2:-0}"; shift ;;
            --tls-port) tls_port="${2:-0}"; shift ;;
        esac
        shift
    done
    printf '%s %s\n' "$port" "$tls_port"
}

# redis_wait NAME PORT [ARGS...]: wait for "Ready to accept connections" in
# the log and for every configured port to accept TCP connections.
redis_wait() {
    local name="$1" port="$2"; shift 2
    local dir; dir="$(redis_dir "$name")"
    local plain tls p deadline=$((SECONDS + REDIS_START_TIMEOUT))
    read -r plain tls < <(redis_ports "$port" "$@")
    while ((SECONDS < deadline)); do
        if redis_running "$name" && grep -q 'Ready to accept connections' "$dir/redis.log" 2>/dev/null; then
            local ok=1
            for p in "$plain" "$tls"; do
                ((p == 0)) || port_open "$p" || ok=0
            done
            ((ok)) && return 0
        fi
        sleep 0.2
    done
    echo "----- last lines of $dir/redis.log -----" >&2
    tail -n 30 "$dir/redis.log" >&2 2>/dev/null || true
    die "redis '$name' not ready on port $port after ${REDIS_START_TIMEOUT}s"
}

# redis_start NAME PORT [EXTRA REDIS-SERVER ARGS...]: start (or keep) the
# instance. Extra args come last, so they override the defaults
# (e.g. `--port 0 --tls-port 6390 ...`, `--rename-command CONFIG ""`,
# `--aclfile FILE`, `--requirepass x`).
redis_start() {
    local name="$1" port="$2"; shift 2
    check_name "$name"; check_port "$port"
    local dir; dir="$(redis_dir "$name")"
    local pidfile; pidfile="$(redis_pidfile "$name")"
    local fp; fp="$(fingerprint "$port" "$@")"

    if redis_running "$name"; then
        if [[ "$(cat "$dir/fingerprint" 2>/dev/null)" == "$fp" ]]; then
            redis_wait "$name" "$port" "$@"
            log "redis '$name' already running on port $port (pid $(<"$pidfile"))"
            return 0
        fi
        log "redis '$name' is running with other arguments: restarting it"
        redis_stop_one "$name"
    fi
    rm -f "$pidfile"

    local plain tls p
    read -r plain tls < <(redis_ports "$port" "$@")
    for p in "$plain" "$tls"; do
        if ((p != 0)) && port_open "$p"; then
            # A Redis already answering on the default port (say the Debian
            # package's own service) is reused as it is.
            if [[ "$name" == default && "$p" == "$port" ]] && redis_ping "$p"; then
                log "a redis-server not started by this script answers on port $p: using it"
                return 0
            fi
            die "port $p is already in use by another process: cannot start redis '$name'"
        fi
    done

    log "starting redis '$name' on port $port${*:+ with: $(printf '%q ' "$@")}"
    mkdir -p "$dir"
    rm -f "$dir/redis.log"
    printf '%s\n' "$fp" >"$dir/fingerprint"
    if ! without_locks redis-server \
            --bind 127.0.0.1 -::1 \
            --port "$port" \
            --daemonize yes \
            --dir "$dir" \
            --pidfile "$pidfile" \
            --logfile "$dir/redis.log" \
            --save "" \
            --appendonly no \
            "$@" </dev/null >"$dir/startup.out" 2>&1; then
        cat "$dir/startup.out" >&2
        die "redis-server '$name' refused to start (output above)"
    fi
    redis_wait "$name" "$port" "$@"
    log "redis '$name' up on port $port (pid $(<"$pidfile"))"
}

redis_stop_one() {
    local name="$1" pidfile; pidfile="$(redis_pidfile "$1")"
    if redis_running "$name"; then
        log "stopping redis '$name' (pid $(<"$pidfile"))"
        stop_pid "$pidfile" "redis '$name'" 20
    else
        rm -f "$pidfile"
    fi
}

# redis_status_one NAME PORT: one line; non-zero when down.
redis_status_one() {
    local name="$1" port="$2"
    if redis_ping "$port"; then
        if redis_running "$name"; then
            echo "redis $name: up, redis://127.0.0.1:$port, pid $(<"$(redis_pidfile "$name")")"
        else
            echo "redis $name: up, redis://127.0.0.1:$port (not started by this script)"
        fi
    elif redis_running "$name"; then
        echo "redis $name: process running (pid $(<"$(redis_pidfile "$name")")), no plain PING answer on port $port (TLS-only?)"
    else
        echo "redis $name: down (port $port)"
        return 1
    fi
}
