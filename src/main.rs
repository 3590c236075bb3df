//! The `redis-connector` binary: parse the command line, hand it to the library, exit.

/// jemalloc instead of the system allocator: a run allocates and frees a few small
/// buffers per key (replies, records, documents). Measured against glibc and mimalloc:
/// the least CPU on the mixed benchmark and the smallest, steadiest peak RSS (mimalloc's
/// transparent huge pages made it swing between 55 and 95 MB).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`_RJEM_MALLOC_CONF` in the environment
/// still overrides them). Freed pages go back to the system after 300 ms instead of
/// jemalloc's default 10 s: values are allocated on the reading threads and freed on
/// the writing one, so with a slow sink the pages freed on one side were kept unused
/// while the other side took new ones, and peak RSS grew with the data (64 MB more
/// after 193 MB through a slow pipe; 17 MB with this). 300 ms cost nothing measurable
/// on the benchmarks; 0 ms (purge at once) cost 30% on the fixture run.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"dirty_decay_ms:300,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    redis_connector::cli::main()
}
