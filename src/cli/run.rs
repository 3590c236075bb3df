//! `redis-connector run` (placeholder until it lands).

use std::process::ExitCode;

use super::RunArgs;

pub fn execute(_args: &RunArgs) -> ExitCode {
    todo!("run")
}
