//! `redis-connector validate` (placeholder until it lands).

use std::process::ExitCode;

use super::ValidateArgs;

pub fn execute(_args: &ValidateArgs) -> ExitCode {
    todo!("validate")
}
