# shellcheck shell=bash
# Elasticsearch helpers for scripts/services (sourced; needs lib/common.sh).
#
# The server is Elasticsearch's own stripped-down distribution from Maven
# Central (org.elasticsearch.distribution.integ-test-zip). It holds the server,
# transport-netty4, apm and the x-pack core and security modules, nothing else:
# no `GET /` banner and no _delete_by_query. It has no bundled JDK and refuses
# to run as root, so it runs as a system user with a Java 21+ JDK.
#
# Environment overrides:
#   ES_VERSION              distribution version                 (9.2.8)
#   ES_JAVA_HOME            JDK to run it with   (/usr/lib/jvm/temurin-25-jdk-amd64,
#                           else the first JDK 21+ in /usr/lib/jvm)
#   ES_PORT                 HTTP port of the default node        (9200)
#   ES_HEAP                 heap of the default node             (512m)
#   ES_INSTANCE_HEAP        heap of extra nodes (es-instance)    (384m)
#   ES_START_TIMEOUT        seconds to wait for health           (120)
#   REDIS_CONNECTOR_ES_USER system user that runs the nodes      (redis-connector-es)
# For `es-instance` only:
#   ES_USERS                "user:pass:role[+role...],..." file-realm users to create
#   ES_ROLES_FILE           a roles.yml to put in the node's config dir
#   ES_HEALTH_AUTH          "user:pass" for the health check of a secured node

ES_VERSION="${ES_VERSION:-9.2.8}"
ES_HOME="$SERVICES_DIR/elasticsearch-$ES_VERSION"
ES_PORT="${ES_PORT:-9200}"
ES_HEAP="${ES_HEAP:-512m}"
ES_INSTANCE_HEAP="${ES_INSTANCE_HEAP:-384m}"
ES_START_TIMEOUT="${ES_START_TIMEOUT:-120}"
ES_OS_USER="${REDIS_CONNECTOR_ES_USER:-redis-connector-es}"
ES_ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip"

# --- installation ------------------------------------------------------------

# Pick the JDK: $ES_JAVA_HOME, the Temurin 25 these machines have, or any JDK
# 21+ under /usr/lib/jvm. Debian 12 packages only Java 17, which ES 9 rejects.
es_java_home() {
    local candidate
    if [[ -n "${ES_JAVA_HOME:-}" ]]; then
        [[ -x "$ES_JAVA_HOME/bin/java" ]] || die "ES_JAVA_HOME=$ES_JAVA_HOME has no bin/java"
        (($(java_major "$ES_JAVA_HOME") >= 21)) \
            || die "ES_JAVA_HOME=$ES_JAVA_HOME is Java $(java_major "$ES_JAVA_HOME"); Elasticsearch $ES_VERSION needs 21+"
        printf '%s\n' "$ES_JAVA_HOME"; return
    fi
    for candidate in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*; do
        [[ -x "$candidate/bin/java" ]] || continue
        if (($(java_major "$candidate") >= 21)); then
            printf '%s\n' "$candidate"; return
        fi
    done
    die "no Java 21+ JDK found: Elasticsearch $ES_VERSION needs one (expected /usr/lib/jvm/temurin-25-jdk-amd64, or set ES_JAVA_HOME)"
}

# java_major JDK_DIR: the major version from its `release` file (0 if unknown).
java_major() {
    local v
    v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null)"
    printf '%s\n' "${v:-0}"
}

# The system user that owns and runs the Elasticsearch nodes.
es_ensure_user() {
    id -u "$ES_OS_USER" >/dev/null 2>&1 && return 0
    [[ $EUID -eq 0 ]] || die "user $ES_OS_USER missing and not root to create it"
    log "creating system user $ES_OS_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_OS_USER" \
        || id -u "$ES_OS_USER" >/dev/null 2>&1 \
        || die "useradd $ES_OS_USER failed"
}

# Download (through Maven, which caches it in ~/.m2) and unpack the
# distribution into $ES_HOME. A finished unpack leaves a marker file, so an
# interrupted one is redone.
es_ensure_distribution() {
    [[ -f "$ES_HOME/.unpacked" ]] && return 0
    command -v mvn >/dev/null || die "mvn not found (the machines ship Maven; 'apt-get install maven' brings it)"

    local downloads="$SERVICES_DIR/downloads" zip
    zip="$downloads/elasticsearch-$ES_VERSION.zip"
    mkdir -p "$downloads"
    if [[ ! -s "$zip" ]]; then
        log "fetching $ES_ARTIFACT with Maven (cached in ~/.m2 afterwards)"
        if ! mvn -B -q -Dstyle.color=never dependency:copy -Dartifact="$ES_ARTIFACT" \
                -DoutputDirectory="$downloads" </dev/null >"$downloads/mvn.out" 2>&1; then
            cat "$downloads/mvn.out" >&2
            die "mvn could not fetch $ES_ARTIFACT (is ES_VERSION=$ES_VERSION published on Maven Central?)"
        fi
    fi
    [[ -s "$zip" ]] || die "Maven did not produce $zip"

    log "unpacking Elasticsearch $ES_VERSION into $ES_HOME"
    local tmp="$SERVICES_DIR/.unpack.$$"
    rm -rf "$tmp" "$ES_HOME"
    mkdir -p "$tmp"
    if ! unzip -q "$zip" -d "$tmp"; then
        rm -rf "$tmp" "$zip"
        die "unzip of $zip failed (removed it; run again to download anew)"
    fi
    [[ -x "$tmp/elasticsearch-$ES_VERSION/bin/elasticsearch" ]] \
        || die "unexpected zip layout: no elasticsearch-$ES_VERSION/bin/elasticsearch"
    mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rm -rf "$tmp" "$zip"          # ~/.m2 keeps the download
    chown -R "$ES_OS_USER:" "$ES_HOME"
    touch "$ES_HOME/.unpacked"
}

es_ensure_installed() {
    ES_JAVA_HOME_RESOLVED="$(es_java_home)"
    es_ensure_user
    # The node runs as $ES_OS_USER: it must be able to reach $SERVICES_DIR.
    runuser -u "$ES_OS_USER" -- test -x "$SERVICES_DIR" \
        || die "user $ES_OS_USER cannot enter $SERVICES_DIR (a parent folder is not world-executable): choose another REDIS_CONNECTOR_SERVICES_DIR"
    es_ensure_distribution
}

# --- one node --------------------------------------------------------------------

es_dir()     { printf '%s/es/%s\n' "$SERVICES_DIR" "$1"; }
es_pidfile() { printf '%s/es/%s/pid\n' "$SERVICES_DIR" "$1"; }

# Does the pidfile of node NAME name a running Elasticsearch of ours? Its JVM
# command line carries -Djava.io.tmpdir=<instance dir>/tmp (from ES_TMPDIR).
es_running() {
    pid_alive "$(es_pidfile "$1")" "-Djava.io.tmpdir=$(es_dir "$1")/tmp"
}

# es_health PORT [AUTH]: print the cluster status (green/yellow/red) or fail.
# Without AUTH, a node with security on answers 401 to everything: that
# proves it is up, and "secured" is printed instead of a status.
es_health() {
    local port="$1" auth="${2:-}" body code
    local args=(-sS --max-time 5 -w '\n%{http_code}')
    [[ -n "$auth" ]] && args+=(-u "$auth")
    body="$(curl "${args[@]}" "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null)" || return 1
    code="${body##*$'\n'}"; body="${body%$'\n'*}"
    if [[ "$code" == 200 && "$body" =~ \"status\":\"(green|yellow|red)\" ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
    elif [[ "$code" == 401 && -z "$auth" && "$body" == *security_exception* ]]; then
        printf 'secured\n'
    else
        return 1
    fi
}

# Show why a node did not come up: the end of its server log (or of the
# launcher's output when there is no log yet), long lines cut.
es_log_tail() {
    local dir="$1" f
    for f in "$dir"/logs/*.log "$dir/startup.out"; do
        [[ -s "$f" && "$f" != */gc.log ]] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 30 "$f" | cut -c1-400 >&2
        return 0
    done
}

# es_wait NAME PORT AUTH: wait until the node is green or yellow (or, with
# security on and no AUTH, until it answers 401). On failure prints the log
# tail and returns 1.
es_wait() {
    local name="$1" port="$2" auth="$3" status deadline
    local dir; dir="$(es_dir "$name")"
    deadline=$((SECONDS + ES_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if status="$(es_health "$port" "$auth")" && [[ "$status" != red ]]; then
            if [[ "$status" == secured ]]; then
                log "elasticsearch '$name' answers 401 (security on, no ES_HEALTH_AUTH given): taken as up"
            fi
            return 0
        fi
        if [[ -f "$(es_pidfile "$name")" ]] && ! es_running "$name"; then
            es_log_tail "$dir"
            log "elasticsearch '$name' exited during startup (log above)"
            return 1
        fi
        sleep 1
    done
    es_log_tail "$dir"
    log "elasticsearch '$name' not healthy on port $port after ${ES_START_TIMEOUT}s (log above)"
    return 1
}

# es_start NAME PORT HEAP [SETTING=VALUE...]: start node NAME if it is not
# running with these settings, then wait for health. Settings given override
# the defaults below (ES rejects a setting given twice, so they are merged).
es_start() {
    local name="$1" port="$2" heap="$3"; shift 3
    check_name "$name"; check_port "$port"
    local dir; dir="$(es_dir "$name")"
    local pidfile; pidfile="$(es_pidfile "$name")"
    local auth="${ES_HEALTH_AUTH:-}"

    # Defaults, then the caller's settings on top.
    local -A settings=(
        [discovery.type]=single-node
        [network.host]=127.0.0.1
        [http.port]="$port"
        [transport.port]="$((port + 100))"
        [node.name]="$name"
        [path.data]="$dir/data"
        [path.logs]="$dir/logs"
        [xpack.security.enabled]=false
        # Never go read-only (flood-stage watermark) because the disk is fullish.
        [cluster.routing.allocation.disk.threshold_enabled]=false
    )
    local kv
    for kv in "$@"; do
        [[ "$kv" == *=* && "${kv%%=*}" != "" ]] || die "not a SETTING=VALUE pair: '$kv'"
        settings["${kv%%=*}"]="${kv#*=}"
    done
    local es_args=() key
    while IFS= read -r key; do
        es_args+=(-E "$key=${settings[$key]}")
    done < <(printf '%s\n' "${!settings[@]}" | sort)

    # Roles file content and users are part of what the node runs with.
    local roles_sum=""
    if [[ -n "${ES_ROLES_FILE:-}" ]]; then
        [[ -r "$ES_ROLES_FILE" ]] || die "ES_ROLES_FILE=$ES_ROLES_FILE is not readable"
        roles_sum="$(sha256sum <"$ES_ROLES_FILE")"
    fi
    local fp; fp="$(fingerprint "$ES_VERSION" "$heap" "${es_args[@]}" "users=${ES_USERS:-}" "roles=$roles_sum")"

    if es_running "$name"; then
        if [[ "$(cat "$dir/fingerprint" 2>/dev/null)" == "$fp" ]]; then
            es_wait "$name" "$port" "$auth" || die "elasticsearch '$name' is running but not healthy"
            log "elasticsearch '$name' already running on http://127.0.0.1:$port (pid $(<"$pidfile"))"
            return 0
        fi
        log "elasticsearch '$name' is running with other settings: restarting it"
        es_stop_one "$name"
    fi
    rm -f "$pidfile"

    if port_open "$port"; then
        # Something not started by us holds the port. A healthy Elasticsearch
        # on the default port is reused as it is; anything else is an error.
        if [[ "$name" == default ]] && es_health "$port" "$auth" >/dev/null; then
            log "an Elasticsearch not started by this script answers on port $port: using it"
            return 0
        fi
        die "port $port is already in use by another process: cannot start elasticsearch '$name'"
    fi
    if port_open "$((port + 100))"; then
        die "transport port $((port + 100)) is already in use: cannot start elasticsearch '$name'"
    fi

    log "starting elasticsearch '$name' $ES_VERSION on http://127.0.0.1:$port (heap $heap)"
    # A fresh copy of the distribution's config for this node alone, so users
    # and keystores never leak from one node to another.
    mkdir -p "$dir/data" "$dir/logs" "$dir/tmp"
    rm -rf "$dir/config"
    cp -a "$ES_HOME/config" "$dir/config"
    [[ -n "${ES_ROLES_FILE:-}" ]] && cp "$ES_ROLES_FILE" "$dir/config/roles.yml"
    chown -R "$ES_OS_USER:" "$dir"

    # Every command runs as the ES user in a clean environment.
    local es_env=(
        env -i
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        HOME="$dir" LANG=C.UTF-8
        ES_JAVA_HOME="$ES_JAVA_HOME_RESOLVED"
        ES_PATH_CONF="$dir/config"
        ES_TMPDIR="$dir/tmp"
    )

    # File-realm users: "user:pass:role[+role...]" (a password may hold ':').
    local spec user pass roles
    local -a specs=()
    IFS=',' read -r -a specs <<<"${ES_USERS:-}"
    for spec in "${specs[@]}"; do
        [[ -n "$spec" ]] || continue
        [[ "$spec" == *:*:* ]] || die "ES_USERS entry '$spec' is not user:pass:role"
        user="${spec%%:*}"; roles="${spec##*:}"; pass="${spec#*:}"; pass="${pass%:*}"
        log "  file-realm user '$user' (roles ${roles//+/,})"
        runuser -u "$ES_OS_USER" -- "${es_env[@]}" \
            "$ES_HOME/bin/elasticsearch-users" useradd "$user" -p "$pass" -r "${roles//+/,}" \
            >"$dir/users.out" 2>&1 \
            || { cat "$dir/users.out" >&2; die "elasticsearch-users useradd $user failed"; }
    done

    printf '%s\n' "$fp" >"$dir/fingerprint"
    printf '%s\n' "$port" >"$dir/port"
    if ! without_locks runuser -u "$ES_OS_USER" -- "${es_env[@]}" ES_JAVA_OPTS="-Xms$heap -Xmx$heap" \
            "$ES_HOME/bin/elasticsearch" -d -p "$pidfile" "${es_args[@]}" \
            </dev/null >"$dir/startup.out" 2>&1; then
        echo "----- $dir/startup.out -----" >&2
        tail -n 30 "$dir/startup.out" | cut -c1-400 >&2
        die "elasticsearch '$name' failed to start (output above)"
    fi
    if ! es_wait "$name" "$port" "$auth"; then
        # Leave no half-started node behind: the next start begins afresh.
        es_stop_one "$name"
        die "elasticsearch '$name' did not become healthy"
    fi
    log "elasticsearch '$name' up on http://127.0.0.1:$port (pid $(<"$pidfile"))"
}

es_stop_one() {
    local name="$1" pidfile; pidfile="$(es_pidfile "$name")"
    if es_running "$name"; then
        log "stopping elasticsearch '$name' (pid $(<"$pidfile"))"
        stop_pid "$pidfile" "elasticsearch '$name'" 60
    else
        rm -f "$pidfile"
    fi
}

# es_status_one NAME PORT: one line; non-zero when down.
es_status_one() {
    local name="$1" port="$2" status
    if status="$(es_health "$port" "${ES_HEALTH_AUTH:-}")"; then
        [[ "$status" == secured ]] && status="unknown (security on; 401 without ES_HEALTH_AUTH)"
        if es_running "$name"; then
            echo "elasticsearch $name: up, http://127.0.0.1:$port, cluster status $status, pid $(<"$(es_pidfile "$name")")"
        else
            echo "elasticsearch $name: up, http://127.0.0.1:$port, cluster status $status (not started by this script)"
        fi
        [[ "$status" != red ]]
    elif es_running "$name"; then
        echo "elasticsearch $name: process running (pid $(<"$(es_pidfile "$name")")) but http://127.0.0.1:$port does not answer health (secured? set ES_HEALTH_AUTH)"
        return 1
    else
        echo "elasticsearch $name: down (port $port)"
        return 1
    fi
}
