//! The `redis-connector` binary: parse the command line, hand it to the library, exit.

/// jemalloc instead of the system allocator: a run allocates and frees a few small
/// buffers per key (replies, records, documents). Measured against glibc and mimalloc:
/// the least CPU on the mixed benchmark and the smallest, steadiest peak RSS (mimalloc's
/// transparent huge pages made it swing between 55 and 95 MB).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    redis_connector::cli::main()
}
