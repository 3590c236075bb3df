//! The `redis-connector` binary: parse the command line, hand it to the library, exit.

fn main() -> std::process::ExitCode {
    redis_connector::cli::main()
}
