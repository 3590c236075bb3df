//! The Elasticsearch sink's `index` when it is a template: compiled in the shared
//! environment under the name `index`, checked, and rendered for one record.

use minijinja::Environment;

use crate::config::FieldError;
use crate::record::Record;

use super::checks::{check_index_template, unknown_filters, unknown_names};
use super::context::{record_context, INDEX_TEMPLATE_NAMES};
use super::environment::environment;
use super::errors::describe_named;

/// Compiles and checks an `index` template; every problem goes to `errors`, at
/// `/index`. `None` when the template does not compile.
pub fn compile_index(source: &str, errors: &mut Vec<FieldError>) -> Option<Environment<'static>> {
    // The transforms' environment: the same filters (`md5`, ...) everywhere.
    let mut env = environment();
    if let Err(message) = check_index_template(source) {
        errors.push(FieldError::new("/index", message));
    }
    match env.add_template_owned("index", source.to_owned()) {
        Ok(()) => {
            // The index template sees the record and `pipeline` (not `timestamp`).
            let read = env
                .get_template("index")
                .map(|t| t.undeclared_variables(false))
                .unwrap_or_default();
            errors.extend(unknown_names(&env, "/index", &read, INDEX_TEMPLATE_NAMES));
            errors.extend(unknown_filters(&env, [("/index", source, false)]));
            Some(env)
        }
        Err(e) => {
            errors.push(FieldError::new(
                "/index",
                format!("invalid index template: {}", describe_named(&e)),
            ));
            None
        }
    }
}

/// The index `env`'s `index` template names for `record`, trimmed.
pub fn render_index(env: &Environment<'static>, record: &Record, pipeline: &str) -> Result<String, String> {
    env.get_template("index")
        .and_then(|t| t.render(record_context(record, pipeline, None)))
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("the index template failed: {}", describe_named(&e)))
}
