//! The RedisJSON module for the tests that need it. `scripts/services` builds it from
//! `../shared/third_party/redisjson-2.4.9` when that folder sits beside the repository,
//! and `scripts/test` exports its path as `REDISJSON_MODULE`. Where it is absent (a
//! clone without `../shared`), a test that needs it says on the test output that it did
//! not run, and `scripts/test` counts those lines in its summary: such a test is never
//! taken for one that passed.

use std::io::Write;
use std::path::PathBuf;

use super::{RedisCluster, RedisServer};

/// The words `scripts/test` counts in the test output, one line per test not run.
pub const NOT_RUN: &str = "NOT RUN: no RedisJSON module";

/// The module's path (`REDISJSON_MODULE`), or `None` after printing, uncaptured, that
/// the calling test did not run. A path that is set but missing is an error, not a
/// reason to skip.
pub fn module() -> Option<PathBuf> {
    match std::env::var_os("REDISJSON_MODULE") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "REDISJSON_MODULE={} is not a file (scripts/services redisjson-module builds it)",
                path.display()
            );
            Some(path)
        }
        _ => {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("a RedisJSON test");
            // Straight to the process's stderr, in one write of a whole line (tests
            // run in parallel): libtest captures `eprintln!` of a passing test and
            // would hide it.
            let line = format!(
                "\ntest {test}: {NOT_RUN} (REDISJSON_MODULE is unset; scripts/test sets it when \
                 ../shared/third_party/redisjson-2.4.9 exists beside the repository)\n"
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

/// `--loadmodule PATH`, for a server's extra arguments.
pub fn load_args(module: &std::path::Path) -> [String; 2] {
    ["--loadmodule".to_owned(), module.display().to_string()]
}

/// A private redis-server with the module loaded, or `None` (said) without it.
pub fn server() -> Option<RedisServer> {
    let module = module()?;
    let args = load_args(&module);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(RedisServer::start(&args))
}

/// A Redis Cluster with the module loaded on every node, or `None` (said) without it.
pub fn cluster(masters: usize, replicas: usize) -> Option<RedisCluster> {
    let module = module()?;
    let args = load_args(&module);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(RedisCluster::start_with(masters, replicas, &args))
}
