//! The handlebars helpers of job templates: `p`, `if_p`, `link`, `link_p`, `if_link`, `json`,
//! `yaml`. They read one job's [`Scope`] — its properties valued with spec defaults, and its
//! consumed links — so a registry is made per rendered job.
//!
//! Decisions: a helper that cannot answer fails with a [`Problem`] carried inside the
//! handlebars error (as its nested source), so the renderer can name job, template and
//! property without parsing messages. Value helpers print scalars plainly and objects or
//! arrays as compact JSON (handlebars' own `[object]` would silently write garbage into a
//! config file). `if_p` and `if_link` refuse names the job does not declare or consume, so a
//! typo fails the render instead of quietly taking the `else` branch.

use std::collections::BTreeMap;
use std::sync::Arc;

use handlebars::{
    BlockParams, Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderError, RenderErrorReason,
    Renderable, ScopedJson,
};
use serde_json::Value;

use super::properties::{get_path, resolved};
use crate::plan::desired::DesiredJob;

/// Why a template could not be rendered (what [`super::TemplateError`] carries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("property {name} has no value and no default")]
    MissingProperty { name: String },
    #[error("property {name} is not declared in the job's spec")]
    UndeclaredProperty { name: String },
    #[error("link {name} is not consumed by this job (its spec's `consumes` does not list it)")]
    UnknownLink { name: String },
    #[error("link {name} has no provider (an optional link: test for it with if_link)")]
    AbsentLink { name: String },
    #[error("link {link} does not expose property {name}")]
    MissingLinkProperty { link: String, name: String },
    #[error("variable {path} is not defined (the context holds `spec`; properties are read with p)")]
    UndefinedVariable { path: String },
    #[error("unknown helper {name}")]
    UnknownHelper { name: String },
    #[error("{helper}: {message}")]
    BadArguments { helper: &'static str, message: String },
    #[error("ERB templates are not supported: rosh renders handlebars templates (rewrite it as .hbs)")]
    ErbNotSupported,
    #[error("invalid template: {message}")]
    Syntax { message: String },
    #[error("the template is not UTF-8 text")]
    NotUtf8,
    #[error("it is listed in the spec's templates but missing from the job")]
    MissingSource,
    #[error("destination `{destination}` must be a relative path without `..`")]
    BadDestination { destination: String },
    #[error("destination `{destination}` is also where {other} renders to")]
    DestinationClash { destination: String, other: String },
    #[error("{message}")]
    Other { message: String },
}

impl Problem {
    fn into_render_error(self) -> RenderError {
        RenderErrorReason::NestedError(Box::new(self)).into()
    }

    /// The problem a handlebars render error stands for.
    pub(super) fn of(error: &RenderError) -> Problem {
        match error.reason() {
            RenderErrorReason::NestedError(inner) => match inner.downcast_ref::<Problem>() {
                Some(problem) => problem.clone(),
                None => Problem::Other { message: inner.to_string() },
            },
            RenderErrorReason::MissingVariable(path) => {
                Problem::UndefinedVariable { path: path.clone().unwrap_or_else(|| "(unnamed)".to_string()) }
            }
            RenderErrorReason::HelperNotFound(name) => Problem::UnknownHelper { name: name.clone() },
            RenderErrorReason::TemplateError(e) => Problem::Syntax { message: e.reason().to_string() },
            other => Problem::Other { message: other.to_string() },
        }
    }
}

/// What the helpers of one job read.
pub(super) struct Scope {
    /// Every declared property, valued (manifest value, else default), nested.
    properties: Value,
    declared: Vec<String>,
    /// Consumed link name → the link as templates see it.
    links: BTreeMap<String, Value>,
    consumed: Vec<String>,
}

impl Scope {
    pub(super) fn new(job: &DesiredJob) -> Scope {
        Scope {
            properties: resolved(&job.spec, &job.properties),
            declared: job.spec.properties.keys().cloned().collect(),
            links: job.links.iter().map(|(name, link)| (name.clone(), super::context::link_value(link))).collect(),
            consumed: job.spec.consumes.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// Property `name`: a declared one's value, or the part of the declared ones below it
    /// (`p "db"` when the spec declares `db.host` and `db.port`), as in BOSH.
    pub(super) fn property(&self, name: &str) -> Result<Value, Problem> {
        if let Some(value) = get_path(&self.properties, name) {
            return Ok(value.clone());
        }
        let related = self.declared.iter().any(|d| {
            d == name
                || d.strip_prefix(name).is_some_and(|r| r.starts_with('.'))
                || name.strip_prefix(d.as_str()).is_some_and(|r| r.starts_with('.'))
        });
        Err(if related {
            Problem::MissingProperty { name: name.to_string() }
        } else {
            Problem::UndeclaredProperty { name: name.to_string() }
        })
    }

    /// Link `name`: `Ok(None)` when the job consumes it but no provider was found.
    pub(super) fn link(&self, name: &str) -> Result<Option<&Value>, Problem> {
        match self.links.get(name) {
            Some(link) => Ok(Some(link)),
            None if self.consumed.iter().any(|c| c == name) => Ok(None),
            None => Err(Problem::UnknownLink { name: name.to_string() }),
        }
    }

    fn required_link(&self, name: &str) -> Result<&Value, Problem> {
        self.link(name)?.ok_or_else(|| Problem::AbsentLink { name: name.to_string() })
    }
}

/// Registers every job-template helper on `registry`, reading `scope`.
pub(super) fn register(registry: &mut Handlebars<'_>, scope: &Arc<Scope>) {
    let s = scope.clone();
    registry.register_helper(
        "p",
        Box::new(ValueHelper(move |h: &Helper<'_>| {
            let name = string_param(h, 0, "p", "a property name")?;
            match (s.property(name), h.param(1)) {
                (Ok(value), _) => Ok(value),
                (Err(_), Some(fallback)) => Ok(fallback.value().clone()),
                (Err(problem), None) => Err(problem.into_render_error()),
            }
        })),
    );
    let s = scope.clone();
    registry.register_helper(
        "if_p",
        Box::new(BlockHelper(move |h: &Helper<'_>| {
            if h.params().is_empty() {
                return Err(bad("if_p", "give one or more property names"));
            }
            let mut first = None;
            for i in 0..h.params().len() {
                let name = string_param(h, i, "if_p", "a property name")?;
                match s.property(name) {
                    Ok(value) => {
                        first.get_or_insert(value);
                    }
                    Err(Problem::MissingProperty { .. }) => return Ok(None),
                    Err(problem) => return Err(problem.into_render_error()),
                }
            }
            Ok(first)
        })),
    );
    let s = scope.clone();
    registry.register_helper(
        "link",
        Box::new(ValueHelper(move |h: &Helper<'_>| {
            let name = string_param(h, 0, "link", "a link name")?;
            s.required_link(name).cloned().map_err(Problem::into_render_error)
        })),
    );
    let s = scope.clone();
    registry.register_helper(
        "link_p",
        Box::new(ValueHelper(move |h: &Helper<'_>| {
            let link = string_param(h, 0, "link_p", "a link name")?;
            let name = string_param(h, 1, "link_p", "a property name")?;
            let value = s.required_link(link).map_err(Problem::into_render_error)?;
            match (get_path(&value["properties"], name), h.param(2)) {
                (Some(value), _) => Ok(value.clone()),
                (None, Some(fallback)) => Ok(fallback.value().clone()),
                (None, None) => {
                    Err(Problem::MissingLinkProperty { link: link.to_string(), name: name.to_string() }
                        .into_render_error())
                }
            }
        })),
    );
    let s = scope.clone();
    registry.register_helper(
        "if_link",
        Box::new(BlockHelper(move |h: &Helper<'_>| {
            let name = string_param(h, 0, "if_link", "a link name")?;
            s.link(name).map(|link| link.cloned()).map_err(Problem::into_render_error)
        })),
    );
    registry.register_helper(
        "json",
        Box::new(ValueHelper(|h: &Helper<'_>| {
            let value = present_param(h, "json")?;
            let pretty = h.hash_get("pretty").is_some_and(|p| p.value().as_bool() == Some(true));
            let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
            text.map(Value::String).map_err(|e| bad("json", &e.to_string()))
        })),
    );
    registry.register_helper(
        "yaml",
        Box::new(ValueHelper(|h: &Helper<'_>| {
            let value = present_param(h, "yaml")?;
            let indent = match h.hash_get("indent") {
                None => 0,
                Some(n) => n.value().as_u64().ok_or_else(|| bad("yaml", "indent must be a number of spaces"))?,
            };
            let text = serde_yaml_ng::to_string(value).map_err(|e| bad("yaml", &e.to_string()))?;
            let pad = " ".repeat(usize::try_from(indent).unwrap_or(0));
            let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
            Ok(Value::String(lines.join(&format!("\n{pad}"))))
        })),
    );
}

/// How a value helper prints: scalars plainly, null as nothing, objects and arrays as
/// compact JSON.
pub(super) fn print(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

fn bad(helper: &'static str, message: &str) -> RenderError {
    Problem::BadArguments { helper, message: message.to_string() }.into_render_error()
}

fn string_param<'a>(h: &'a Helper<'_>, index: usize, helper: &'static str, what: &str) -> Result<&'a str, RenderError> {
    let param = h.param(index).ok_or_else(|| bad(helper, &format!("argument {} must be {what}", index + 1)))?;
    param.value().as_str().ok_or_else(|| {
        let given = param.relative_path().map(|p| format!("`{p}`")).unwrap_or_else(|| param.value().to_string());
        bad(helper, &format!("argument {} must be {what} (a string), got {given}", index + 1))
    })
}

/// The first argument, which must exist (strict: a path that names nothing is an error).
fn present_param<'a>(h: &'a Helper<'_>, helper: &'static str) -> Result<&'a Value, RenderError> {
    let param = h.param(0).ok_or_else(|| bad(helper, "give the value to print"))?;
    if param.is_value_missing() {
        let path = param.relative_path().cloned().unwrap_or_else(|| "(unnamed)".to_string());
        return Err(Problem::UndefinedVariable { path }.into_render_error());
    }
    Ok(param.value())
}

/// A helper that computes a value: printed (see [`print`]) in `{{h …}}`, passed on as JSON in
/// a subexpression `(h …)`.
struct ValueHelper<F>(F);

impl<F> HelperDef for ValueHelper<F>
where
    F: for<'a> Fn(&Helper<'a>) -> Result<Value, RenderError> + Send + Sync,
{
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        (self.0)(h).map(ScopedJson::Derived)
    }

    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = (self.0)(h)?;
        out.write(&print(&value))?;
        Ok(())
    }
}

/// A block helper: `Some(value)` renders the block (with `value` as its block parameter, `as
/// |v|`), `None` the `{{else}}` part.
struct BlockHelper<F>(F);

impl<F> HelperDef for BlockHelper<F>
where
    F: for<'a> Fn(&Helper<'a>) -> Result<Option<Value>, RenderError> + Send + Sync,
{
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        if !h.is_block() {
            let name: &'static str = if h.name() == "if_p" { "if_p" } else { "if_link" };
            return Err(bad(name, &format!("is a block helper: write {{{{#{name} …}}}}…{{{{/{name}}}}}")));
        }
        match (self.0)(h)? {
            Some(value) => {
                let Some(template) = h.template() else { return Ok(()) };
                match h.block_param() {
                    Some(param) => {
                        // Same `this` and `@index` as around the block, plus the parameter.
                        let mut block = rc.block().cloned().unwrap_or_default();
                        let mut params = BlockParams::new();
                        params.add_value(param, value)?;
                        block.set_block_params(params);
                        rc.push_block(block);
                        let result = template.render(r, ctx, rc, out);
                        rc.pop_block();
                        result
                    }
                    None => template.render(r, ctx, rc, out),
                }
            }
            None => match h.inverse() {
                Some(inverse) => inverse.render(r, ctx, rc, out),
                None => Ok(()),
            },
        }
    }
}
