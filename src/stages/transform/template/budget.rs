//! The budget one record's rendering runs with, so no template can hold the run:
//! minijinja's fuel (instructions per template or expression evaluated for a
//! record: a loop of loops stops with that record's failure) and a limit on the
//! bytes a record's templates render (checked while they write, so an output too
//! large is never built whole). Once the run is asked to stop, records still
//! waiting in a batch are rendered for [`STOP_GRACE`] more at most, then skipped
//! (`interrupted`), so a slow template cannot delay a shutdown.

use std::cell::Cell;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use minijinja::{ErrorKind, Template, Value};
use serde_json::Value as Json;

use crate::stages::StageContext;

/// Instructions one template or expression may run for one record, by default.
pub const DEFAULT_FUEL: u64 = 1_000_000;

/// Bytes one record's templates may render, by default (16 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// How long records are still rendered after the run was asked to stop.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The skip reason of the records not rendered because the run stopped.
pub const INTERRUPTED: &str = "interrupted";

/// One record's output budget: bytes its templates may still render.
pub struct Output {
    left: Cell<u64>,
    max: u64,
}

impl Output {
    /// A fresh budget of `max` bytes.
    pub fn new(max: u64) -> Output {
        Output {
            left: Cell::new(max),
            max,
        }
    }

    /// Renders `template` into text, failing once this record's output passes the limit.
    pub fn render(&self, template: &Template<'_, '_>, context: &Value) -> Result<String, minijinja::Error> {
        let mut writer = Bounded {
            out: Vec::new(),
            left: self.left.get(),
        };
        let rendered = template.render_captured_to(context, &mut writer);
        match rendered {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WriteFailure && writer.left == 0 => {
                return Err(self.overrun());
            }
            Err(error) => return Err(error),
        }
        self.left.set(writer.left);
        String::from_utf8(writer.out)
            .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, format!("the output is not UTF-8: {e}")))
    }

    /// Counts an expression's result against the budget (its JSON size, about).
    pub fn charge(&self, value: &Json) -> Result<(), minijinja::Error> {
        let size = json_size(value);
        match self.left.get().checked_sub(size) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(self.overrun()),
        }
    }

    fn overrun(&self) -> minijinja::Error {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "the record's rendered output passed max_output_bytes ({} bytes); raise `max_output_bytes:` on \
                 the template stage if documents this large are expected",
                self.max
            ),
        )
    }
}

/// A writer that refuses to grow past `left` more bytes.
struct Bounded {
    out: Vec<u8>,
    left: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.left = 0;
            return Err(std::io::Error::other("over max_output_bytes"));
        }
        self.left -= buf.len() as u64;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// About the size of `value` as JSON text, without writing it.
fn json_size(value: &Json) -> u64 {
    match value {
        Json::Null | Json::Bool(_) | Json::Number(_) => 8,
        Json::String(text) => text.len() as u64 + 2,
        Json::Array(items) => 2 + items.iter().map(|item| json_size(item) + 1).sum::<u64>(),
        Json::Object(map) => 2 + map.iter().map(|(k, v)| k.len() as u64 + 4 + json_size(v)).sum::<u64>(),
    }
}

/// The error a user sees for a record whose template ran out of fuel.
pub fn out_of_fuel(fuel: u64) -> String {
    format!(
        "template used more than its fuel ({fuel} instructions) for this record: a loop too long? raise `fuel:` \
         on the template stage if the work is expected"
    )
}

/// Whether the record's failure is minijinja running out of fuel.
pub fn is_out_of_fuel(error: &minijinja::Error) -> bool {
    error.kind() == ErrorKind::OutOfFuel
}

/// When the stage first saw the run asked to stop.
#[derive(Debug, Default)]
pub struct Stopping(OnceLock<Instant>);

impl Stopping {
    /// Whether records should be skipped rather than rendered: the run was asked to
    /// stop more than [`STOP_GRACE`] ago.
    pub fn past_grace(&self, ctx: &StageContext) -> bool {
        ctx.cancel.is_cancelled() && self.0.get_or_init(Instant::now).elapsed() > STOP_GRACE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_limit_fails_while_it_is_written() {
        let mut env = minijinja::Environment::new();
        env.add_template("t", "{% for i in range(100) %}0123456789{% endfor %}")
            .unwrap();
        let template = env.get_template("t").unwrap();
        let output = Output::new(1500);
        assert_eq!(output.render(&template, &Value::UNDEFINED).unwrap().len(), 1000);
        let error = output.render(&template, &Value::UNDEFINED).unwrap_err();
        assert!(
            error.to_string().contains("passed max_output_bytes (1500 bytes)"),
            "{error}"
        );
    }

    #[test]
    fn expression_results_count_against_the_same_budget() {
        let output = Output::new(20);
        output.charge(&Json::String("0123456789".into())).unwrap();
        assert!(output.charge(&Json::String("0123456789".into())).is_err());
    }

    #[test]
    fn a_loop_of_loops_runs_out_of_fuel() {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(10_000));
        env.add_template(
            "t",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let error = env.get_template("t").unwrap().render(()).unwrap_err();
        assert!(is_out_of_fuel(&error), "{error}");
    }
}
