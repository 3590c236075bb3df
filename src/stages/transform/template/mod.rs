//! The `template` transform: renders each record into a [`Document`] with minijinja
//! templates (`id`, `index` and the leaves of `document`), compiled once at build.
//!
//! - A string leaf of `document` is a template; its result is a string.
//! - A `{expr: "..."}` leaf is an expression; its result keeps its type (number, bool,
//!   list, map, null).
//! - `document: {expr: "..."}` is one expression that must yield the whole mapping.
//! - Other scalars (numbers, booleans, null) are copied as they are.
//!
//! Templates see the record (`key`, `database`, `key_type`, `value` typed,
//! `size_in_bytes`, `ttl`), `pipeline` (the pipeline's name) and `timestamp` (the
//! run's start, ISO 8601 UTC, as the default document's `_timestamp`). Undefined
//! variables are errors (strict mode). A record whose rendering fails goes to the
//! dead-letter file with the field path and minijinja's message, and the run goes on.
//!
//! Filters: minijinja's builtins (`tojson`, `lower`, `default`, `split`, `int`, ...),
//! minijinja-contrib's (`datetimeformat`, `dateformat`, `timeformat`, `truncate`,
//! `now()`, Python-style methods such as `key.upper()`), and `md5` (hex digest).
//! The environment, a record's context, the checks and error descriptions are
//! `crate::templating`'s, shared with the filter and the sink.
//!
//! `plan.rs` holds the plan of a `document` mapping, `failure.rs` a record that
//! failed, `budget.rs` the fuel and output limit a record renders with, `tests.rs`
//! the unit tests.

mod budget;
mod failure;
mod plan;

use minijinja::{Environment, Expression, Value};
use serde_json::{Map, Value as Json};

use crate::config::model::TemplateConfig;
use crate::config::FieldError;
use crate::document::{default_document, default_id, Document};
use crate::record::{Batch, Record};
use crate::stages::StageContext;
use crate::templating::checks::{check_index_template, unknown_filters, unknown_names};
use crate::templating::environment::{environment, environment_reads, reads_among};
use crate::templating::errors::{describe, json_kind};
use crate::templating::{record_context, RECORD_NAMES};

use budget::{is_out_of_fuel, out_of_fuel, Output, Stopping};
pub use budget::{DEFAULT_FUEL, DEFAULT_MAX_OUTPUT_BYTES};
use failure::dead_letter;
pub use failure::RenderFailure;
use plan::{expression_source, BodyPlan, Node, Planner};

/// A compiled `template` stage.
pub struct TemplateTransform {
    compiled: Compiled,
    /// How the document body is produced.
    body: BodyPlan,
    /// Template names (field pointers) of `id` and `index`, when given.
    id: Option<String>,
    index: Option<String>,
    /// The source of each expression, by position, for run-time error messages.
    expr_sources: Vec<String>,
    /// Instructions each template or expression may run for one record.
    fuel: u64,
    /// Bytes one record's templates may render.
    max_output_bytes: u64,
    /// When the run was first seen asked to stop.
    stopping: Stopping,
}

/// A minijinja value as JSON, faithfully: numbers stay numbers, maps keep their order.
fn to_json(value: &Value) -> Result<Json, minijinja::Error> {
    serde_json::to_value(value).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::BadSerialization,
            format!("cannot turn the result into JSON: {e}"),
        )
    })
}

/// Compiled expressions borrow the environment that compiled them; `self_cell` keeps
/// both in one owner so the transform can be moved between threads. (Hand-written
/// alternatives are either `unsafe` or recompile each expression per record.)
type Expressions<'env> = Vec<Expression<'env, 'static>>;

self_cell::self_cell!(
    struct Compiled {
        owner: Environment<'static>,
        #[covariant]
        dependent: Expressions,
    }
);

impl TemplateTransform {
    /// Compiles every template and expression; syntax errors are [`FieldError`]s at
    /// the field's pointer (`/document/name`) with the line in the message.
    pub fn build(config: &TemplateConfig) -> Result<Self, Vec<FieldError>> {
        let mut env = environment();
        env.set_fuel(Some(config.fuel));
        let mut errors = Vec::new();
        let mut expr_sources: Vec<(String, String)> = Vec::new();

        let mut add_template = |env: &mut Environment<'static>, pointer: &str, source: &str| match env
            .add_template_owned(pointer.to_owned(), source.to_owned())
        {
            Ok(()) => true,
            Err(error) => {
                errors.push(FieldError::new(
                    pointer,
                    format!("invalid template: {}", describe(&error)),
                ));
                false
            }
        };
        let id = config
            .id
            .as_deref()
            .and_then(|s| add_template(&mut env, "/id", s).then(|| "/id".to_owned()));
        let index = config
            .index
            .as_deref()
            .and_then(|s| add_template(&mut env, "/index", s).then(|| "/index".to_owned()));
        if let Some(Err(message)) = config.index.as_deref().map(check_index_template) {
            errors.push(FieldError::new("/index", message));
        }

        let mut template_leaves: Vec<(String, String)> = Vec::new();
        let body = plan_body(
            config.document.as_ref(),
            &mut template_leaves,
            &mut expr_sources,
            &mut errors,
        );
        for (pointer, source) in &template_leaves {
            match env.add_template_owned(pointer.clone(), source.clone()) {
                Ok(()) => {}
                Err(error) => errors.push(FieldError::new(
                    pointer,
                    format!("invalid template: {}", describe(&error)),
                )),
            }
        }

        let (compiled, expr_errors) = compile_expressions(env, &expr_sources);
        errors.extend(expr_errors);
        if errors.is_empty() {
            errors.extend(check_names(&compiled, config, &expr_sources, &template_leaves));
        }
        if errors.is_empty() {
            Ok(TemplateTransform {
                compiled,
                body,
                id,
                index,
                expr_sources: expr_sources.into_iter().map(|(_, source)| source).collect(),
                fuel: config.fuel,
                max_output_bytes: config.max_output_bytes.0,
                stopping: Stopping::default(),
            })
        } else {
            Err(errors)
        }
    }

    /// Whether this stage renders the documents' bodies (a `document`); without one
    /// the body is the default document's.
    pub fn renders_body(&self) -> bool {
        !matches!(self.body, BodyPlan::Default)
    }

    /// Whether this stage chooses each document's index (an `index` template).
    pub fn renders_index(&self) -> bool {
        self.index.is_some()
    }

    /// Whether this stage renders the documents' ids (an `id` template).
    pub fn renders_id(&self) -> bool {
        self.id.is_some()
    }

    /// Whether any template or expression of this stage reads the record's `field`
    /// (see [`environment_reads`]).
    pub fn reads(&self, field: &str) -> bool {
        environment_reads(self.compiled.borrow_owner(), field)
            || self
                .compiled
                .borrow_dependent()
                .iter()
                .any(|expr| reads_among(&expr.undeclared_variables(false), field))
    }

    /// Whether the `id` and `index` templates of this stage read nothing of the record
    /// but `key` and `database` (and `pipeline`, `timestamp`): then the document of a
    /// key that no longer exists can still be named, from its key alone.
    pub fn locates_by_key(&self) -> bool {
        let env = self.compiled.borrow_owner();
        [&self.id, &self.index].into_iter().flatten().all(|name| {
            env.get_template(name).is_ok_and(|template| {
                template
                    .undeclared_variables(false)
                    .iter()
                    .all(|n| matches!(n.as_str(), "key" | "database" | "pipeline" | "timestamp"))
            })
        })
    }

    /// Renders every record of the batch; records that fail go to the dead-letter file
    /// and are counted as failed. A delete (live mode) gets only its `id` and `index`.
    /// Once the run has been asked to stop for a while (see `budget`), the records
    /// left are skipped as `interrupted`.
    pub fn apply(&self, mut batch: Batch, ctx: &StageContext) -> Batch {
        batch.retain_mut(|record| {
            if self.stopping.past_grace(ctx) {
                ctx.counters.add_skipped(budget::INTERRUPTED, 1);
                return false;
            }
            self.apply_one(record, ctx)
        });
        batch
    }

    /// Renders one record in place; `false` when it failed (counted, dead-lettered).
    fn apply_one(&self, record: &mut Record, ctx: &StageContext) -> bool {
        match self.render(record, ctx) {
            Ok(document) => {
                record.document = Some(document);
                true
            }
            Err(failure) => {
                ctx.counters.add_failed(1);
                dead_letter(record, ctx, failure);
                false
            }
        }
    }

    /// The failure of `pointer`'s template or expression (`source`) on one record:
    /// running out of fuel is said in the budget's own words.
    fn failure(&self, pointer: &str, error: &minijinja::Error, source: &str, id: Option<&str>) -> RenderFailure {
        if is_out_of_fuel(error) {
            RenderFailure::message(pointer, &out_of_fuel(self.fuel), id)
        } else {
            RenderFailure::in_source(pointer, error, source, id)
        }
    }

    /// Renders one record's document.
    pub fn render(&self, record: &Record, ctx: &StageContext) -> Result<Document, RenderFailure> {
        let env = self.compiled.borrow_owner();
        let exprs = self.compiled.borrow_dependent();
        let context = record_context(record, &ctx.pipeline, Some(&ctx.run_timestamp));
        let output = Output::new(self.max_output_bytes);

        let render_text = |name: &str, id: Option<&str>| -> Result<String, RenderFailure> {
            let template = env
                .get_template(name)
                .map_err(|error| RenderFailure::new(name, &error, id))?;
            let rendered = output.render(&template, &context);
            rendered.map_err(|error| self.failure(name, &error, template.source(), id))
        };

        let id = match &self.id {
            Some(name) => {
                let id = render_text(name, None)?;
                if id.trim().is_empty() {
                    return Err(RenderFailure::message(
                        name,
                        "the id template rendered an empty string",
                        None,
                    ));
                }
                id
            }
            None => default_id(record.database, &record.key),
        };
        let index = match &self.index {
            Some(name) => {
                let index = render_text(name, Some(&id))?;
                if index.trim().is_empty() {
                    return Err(RenderFailure::message(
                        name,
                        "the index template rendered an empty string",
                        Some(&id),
                    ));
                }
                Some(index)
            }
            None => None,
        };
        let body = match &self.body {
            _ if record.operation.is_delete() => Default::default(),
            BodyPlan::Default => default_document(record, &ctx.run_timestamp).body,
            BodyPlan::Whole { expr, pointer } => {
                let value = exprs[*expr]
                    .eval(&context)
                    .map_err(|e| self.failure(pointer, &e, &self.expr_sources[*expr], Some(&id)))?;
                let value = to_json(&value).map_err(|e| RenderFailure::new(pointer, &e, Some(&id)))?;
                output
                    .charge(&value)
                    .map_err(|e| RenderFailure::new(pointer, &e, Some(&id)))?;
                match value {
                    Json::Object(map) => map,
                    other => {
                        return Err(RenderFailure::message(
                            pointer,
                            &format!(
                                "the document expression must yield a mapping, not {}",
                                json_kind(&other)
                            ),
                            Some(&id),
                        ))
                    }
                }
            }
            BodyPlan::Fields(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (name, node) in fields {
                    map.insert(name.clone(), self.render_node(node, &context, &id, &output)?);
                }
                map
            }
        };
        Ok(Document { id, index, body })
    }

    fn render_node(&self, node: &Node, context: &Value, id: &str, output: &Output) -> Result<Json, RenderFailure> {
        match node {
            Node::Template(name) => {
                let env = self.compiled.borrow_owner();
                let template = env
                    .get_template(name)
                    .map_err(|e| RenderFailure::new(name, &e, Some(id)))?;
                output
                    .render(&template, context)
                    .map(Json::String)
                    .map_err(|e| self.failure(name, &e, template.source(), Some(id)))
            }
            Node::Expr { expr, pointer } => {
                let value = self.compiled.borrow_dependent()[*expr]
                    .eval(context)
                    .map_err(|e| self.failure(pointer, &e, &self.expr_sources[*expr], Some(id)))?;
                let value = to_json(&value).map_err(|e| RenderFailure::new(pointer, &e, Some(id)))?;
                output
                    .charge(&value)
                    .map_err(|e| RenderFailure::new(pointer, &e, Some(id)))?;
                Ok(value)
            }
            Node::Constant(value) => Ok(value.clone()),
            Node::Map(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (name, node) in fields {
                    map.insert(name.clone(), self.render_node(node, context, id, output)?);
                }
                Ok(Json::Object(map))
            }
            Node::List(items) => items
                .iter()
                .map(|node| self.render_node(node, context, id, output))
                .collect::<Result<_, _>>()
                .map(Json::Array),
        }
    }
}

/// Plans the rendered document: the default one, one whole `{expr: ...}`, or its
/// fields, adding the field templates to `template_leaves` and the expressions to
/// `expr_sources`; a malformed `document` is an error in `errors`.
fn plan_body(
    document: Option<&Json>,
    template_leaves: &mut Vec<(String, String)>,
    expr_sources: &mut Vec<(String, String)>,
    errors: &mut Vec<FieldError>,
) -> BodyPlan {
    match document {
        None => BodyPlan::Default,
        Some(Json::Object(map)) => match expression_source(map) {
            Some(Ok(source)) => {
                expr_sources.push(("/document".to_owned(), source.to_owned()));
                BodyPlan::Whole {
                    expr: 0,
                    pointer: "/document".to_owned(),
                }
            }
            Some(Err(message)) => {
                errors.push(FieldError::new("/document/expr", message));
                BodyPlan::Default
            }
            None => {
                let mut planner = Planner {
                    templates: template_leaves,
                    exprs: expr_sources,
                    errors: Vec::new(),
                };
                let fields = planner.plan_map(map, "/document");
                errors.extend(planner.errors);
                BodyPlan::Fields(fields)
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "/document",
                "`document` must be a mapping of fields, or `{expr: \"...\"}` yielding one",
            ));
            BodyPlan::Default
        }
    }
}

/// Compiles every expression in the environment, which keeps them; one that does
/// not compile is an error (and `none` in its place, keeping positions aligned).
fn compile_expressions(env: Environment<'static>, expr_sources: &[(String, String)]) -> (Compiled, Vec<FieldError>) {
    let mut expr_errors = Vec::new();
    let compiled = Compiled::new(env, |env| {
        let mut compiled = Vec::with_capacity(expr_sources.len());
        for (pointer, source) in expr_sources {
            match env.compile_expression_owned(source.clone()) {
                Ok(expr) => compiled.push(expr),
                Err(error) => {
                    expr_errors.push(FieldError::new(
                        format!("{pointer}/expr"),
                        format!("invalid expression: {}", describe(&error)),
                    ));
                    // Keep positions aligned; the transform is not returned anyway.
                    compiled.push(env.compile_expression_owned("none").expect("`none` compiles"));
                }
            }
        }
        compiled
    });
    (compiled, expr_errors)
}

/// The names and filters no record gives or the environment knows, in every
/// template and expression, each an error at its field's pointer.
fn check_names(
    compiled: &Compiled,
    config: &TemplateConfig,
    expr_sources: &[(String, String)],
    template_leaves: &[(String, String)],
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let env = compiled.borrow_owner();
    for (name, template) in env.templates() {
        errors.extend(unknown_names(
            env,
            name,
            &template.undeclared_variables(false),
            RECORD_NAMES,
        ));
    }
    let expr_pointers: Vec<String> = expr_sources
        .iter()
        .map(|(pointer, _)| format!("{pointer}/expr"))
        .collect();
    for (pointer, expr) in expr_pointers.iter().zip(compiled.borrow_dependent()) {
        errors.extend(unknown_names(
            env,
            pointer,
            &expr.undeclared_variables(false),
            RECORD_NAMES,
        ));
    }
    let exprs = expr_pointers
        .iter()
        .zip(expr_sources)
        .map(|(pointer, (_, source))| (pointer.as_str(), source.as_str(), true));
    let fixed = [("/id", config.id.as_deref()), ("/index", config.index.as_deref())];
    let fixed = fixed
        .into_iter()
        .filter_map(|(pointer, source)| Some((pointer, source?, false)));
    let leaves = template_leaves
        .iter()
        .map(|(pointer, source)| (pointer.as_str(), source.as_str(), false));
    errors.extend(unknown_filters(env, exprs.chain(fixed).chain(leaves)));
    errors
}

#[cfg(test)]
mod tests;
