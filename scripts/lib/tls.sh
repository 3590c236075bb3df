# shellcheck shell=bash
# Test TLS material (sourced; needs lib/common.sh): a self-signed CA, a server
# certificate for 127.0.0.1/localhost and a client certificate, all signed by
# that CA, in $SERVICES_DIR/tls. Created once; `scripts/services tls-certs`
# prints the folder.
#
#   ca.crt ca.key  server.crt server.key  client.crt client.key

tls_dir() { printf '%s/tls\n' "$SERVICES_DIR"; }

tls_ensure_certs() {
    local dir; dir="$(tls_dir)"
    [[ -f "$dir/.complete" ]] && return 0
    command -v openssl >/dev/null || die "openssl not found"
    log "creating test TLS certificates in $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -subj "/CN=redis-connector test CA" \
            -keyout ca.key -out ca.crt
        for who in server client; do
            openssl req -newkey rsa:2048 -nodes -sha256 \
                -subj "/CN=redis-connector test $who" \
                -keyout "$who.key" -out "$who.csr"
            printf '%s\n' \
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
                "extendedKeyUsage=$([[ $who == server ]] && echo serverAuth || echo clientAuth)" \
                >"$who.ext"
            openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
                -days 3650 -sha256 -extfile "$who.ext" -out "$who.crt"
            rm -f "$who.csr" "$who.ext"
        done
    ) >"$SERVICES_DIR/tls.out" 2>&1 || { cat "$SERVICES_DIR/tls.out" >&2; die "openssl failed"; }
    # Test-only keys: readable by the Elasticsearch user and nginx workers too.
    chmod 755 "$dir"; chmod 644 "$dir"/*
    touch "$dir/.complete"
}
