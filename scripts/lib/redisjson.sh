# shellcheck shell=bash
# RedisJSON module helpers for scripts/services (sourced; needs lib/common.sh).
#
# No package registry reachable from the project's machines serves RedisJSON,
# so the module is built from its source when the source sits beside the
# repository, in ../shared/third_party/redisjson-2.4.9 (read-only in CI; see
# its README.md). The source is copied to a build folder under $SERVICES_DIR,
# built with `cargo build --release` (1 to 6 minutes on 2 cores) and the
# module kept as
#   $SERVICES_DIR/redisjson/librejson-KEY.so
# where KEY is a hash of the source's files:
# a second start finds it and does not rebuild; a changed source builds anew.
#
# Environment overrides:
#   REDISJSON_SOURCE   the module's source folder
#                      (default: ../shared/third_party/redisjson-2.4.9 beside the repository)

REDISJSON_SOURCE="${REDISJSON_SOURCE:-$(cd "$LIB/../.." && pwd)/../shared/third_party/redisjson-2.4.9}"

redisjson_dir() { printf '%s/redisjson\n' "$SERVICES_DIR"; }

# Is the module's source there?
redisjson_available() {
    [[ -f "$REDISJSON_SOURCE/Cargo.toml" && -d "$REDISJSON_SOURCE/src" ]]
}

# The cache key: a hash of every file of the source (Cargo.toml, Cargo.lock,
# build.rs, src/, ...; a target/ folder left in it aside), names included.
redisjson_key() {
    (
        cd "$REDISJSON_SOURCE"
        find . -path ./target -prune -o -type f -print0 | LC_ALL=C sort -z |
            xargs -0 sha256sum
    ) | sha256sum | cut -c1-16
}

# The path the module has (or will have) for the current source.
redisjson_module_path() {
    printf '%s/librejson-%s.so\n' "$(redisjson_dir)" "$(redisjson_key)"
}

# cargo for the build: on PATH, or rustup's in ~/.cargo.
redisjson_cargo() {
    if command -v cargo >/dev/null; then
        command -v cargo
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        printf '%s\n' "${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
    else
        die "cargo not found: it builds the RedisJSON module from $REDISJSON_SOURCE (install Rust with rustup)"
    fi
}

# redisjson_ensure_built: build the module unless the cache has it; print its
# path. Run under the "redisjson" lock (parallel starts build it once).
redisjson_ensure_built() {
    local module key build cargo
    module="$(redisjson_module_path)"
    if [[ -s "$module" ]]; then
        printf '%s\n' "$module"
        return 0
    fi
    ensure_packages libclang-dev
    key="$(redisjson_key)"
    cargo="$(redisjson_cargo)"
    build="$(redisjson_dir)/build-$key"
    mkdir -p "$(redisjson_dir)"
    rm -rf "$build"
    mkdir -p "$build"
    (cd "$REDISJSON_SOURCE" && tar --exclude=./target -cf - .) | (cd "$build" && tar -xf -)
    chmod -R u+w "$build"
    log "building the RedisJSON module from $REDISJSON_SOURCE in $build (minutes; log: $build/build.log)"
    local started=$SECONDS
    if ! (cd "$build" && "$cargo" build --release --locked) >"$build/build.log" 2>&1; then
        echo "----- last lines of $build/build.log -----" >&2
        tail -n 30 "$build/build.log" >&2
        die "building the RedisJSON module failed (full log: $build/build.log)"
    fi
    [[ -s "$build/target/release/librejson.so" ]] \
        || die "the RedisJSON build finished without target/release/librejson.so (log: $build/build.log)"
    cp "$build/target/release/librejson.so" "$module.tmp"
    mv "$module.tmp" "$module"
    log "RedisJSON module built in $((SECONDS - started))s: $module"
    # The build folder (about 1 GB of target/) is not needed any more.
    rm -rf "$build"
    printf '%s\n' "$module"
}
