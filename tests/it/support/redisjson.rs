//! The RedisJSON module for the tests that need it. `scripts/services` builds it from
//! `../shared/third_party/redisjson-2.4.9` when that folder sits beside the repository,
//! and `scripts/test` exports its path as `REDISJSON_MODULE`. Those tests are
//! `#[ignore]`d with the reason, so where the module is absent the test runner itself
//! lists them as ignored; `scripts/test` adds `--include-ignored` when it has the module.

use std::path::PathBuf;

use super::{RedisCluster, RedisServer};

/// The module's path (`REDISJSON_MODULE`). A test that needs the module and finds the
/// variable unset or naming no file fails saying so: it was asked to run (with
/// `--include-ignored`) where it cannot.
pub fn module() -> PathBuf {
    let path = std::env::var_os("REDISJSON_MODULE")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .expect(
            "REDISJSON_MODULE is unset: this test needs the RedisJSON module \
             (`scripts/services redisjson-module` builds it from ../shared/third_party/redisjson-2.4.9; \
             scripts/test sets the variable and runs the ignored tests only when it exists)",
        );
    assert!(
        path.is_file(),
        "REDISJSON_MODULE={} is not a file (scripts/services redisjson-module builds it)",
        path.display()
    );
    path
}

/// `--loadmodule PATH`, for a server's extra arguments.
pub fn load_args(module: &std::path::Path) -> [String; 2] {
    ["--loadmodule".to_owned(), module.display().to_string()]
}

/// A private redis-server with the module loaded.
pub fn server() -> RedisServer {
    let args = load_args(&module());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start(&args)
}

/// A Redis Cluster with the module loaded on every node.
pub fn cluster(masters: usize, replicas: usize) -> RedisCluster {
    let args = load_args(&module());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisCluster::start_with(masters, replicas, &args)
}
