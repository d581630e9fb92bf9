//! `rosh interpolate` (alias `int`) and the interpolate flags every manifest-reading command
//! shares.
//!
//! Owns the IO around the pure manifest engine: reading the manifest (or `-` for stdin), ops
//! files, vars files, `--var-file` contents and `--vars-env` from the environment; loading and
//! writing back the vars store (atomically, mode 0600, and even when evaluation then fails, so
//! generated secrets are never lost); and printing the result as YAML, JSON, or — with `--path` —
//! the value found there (a string printed raw, as bosh does, so keys and certificates can be
//! piped). Errors name the file and, for missing variables, the YAML path and which file (or
//! which op of which ops file) introduced the reference.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use crate::manifest::interpolate::{self, InterpolateError, Missing};
use crate::manifest::patch::{self, Pointer, SourcedOp};
use crate::manifest::vars::{self, Sources, Variables, VarsStore};
use crate::manifest::yaml::{self, Mapping, Value};

/// The flags every command that reads a manifest shares with `bosh interpolate`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VarFlags {
    /// Load manifest operations from a YAML file (repeatable, applied in order).
    #[arg(short = 'o', long = "ops-file", value_name = "PATH")]
    pub ops_files: Vec<PathBuf>,
    /// Set variable: NAME=VALUE (VALUE parsed as YAML).
    #[arg(short = 'v', long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Set variable to the contents of a file: NAME=PATH.
    #[arg(long = "var-file", value_name = "NAME=PATH")]
    pub var_files: Vec<String>,
    /// Load variables from a YAML file (repeatable; later files win).
    #[arg(short = 'l', long = "vars-file", value_name = "PATH")]
    pub vars_files: Vec<PathBuf>,
    /// Load variables from environment variables named PREFIX_name (values parsed as YAML).
    #[arg(long = "vars-env", value_name = "PREFIX")]
    pub vars_env: Vec<String>,
    /// Load variables from a YAML file and save generated variables into it.
    #[arg(long = "vars-store", value_name = "PATH")]
    pub vars_store: Option<PathBuf>,
    /// Fail when a referenced variable has no value.
    #[arg(long = "var-errs")]
    pub var_errs: bool,
    /// Fail when a provided variable is not used.
    #[arg(long = "var-errs-unused")]
    pub var_errs_unused: bool,
}

#[derive(Debug, clap::Args)]
pub struct InterpolateArgs {
    /// The YAML file to interpolate (`-` reads standard input).
    #[arg(value_name = "PATH")]
    pub manifest: PathBuf,
    #[command(flatten)]
    pub flags: VarFlags,
    /// Print only the value at this go-patch path (e.g. /instance_groups/name=api/instances).
    #[arg(long = "path", value_name = "OP-PATH")]
    pub path: Option<String>,
    /// Print the result as JSON instead of YAML.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InterpolateArgs) -> anyhow::Result<ExitCode> {
    // Parse --path before touching anything, so a typo costs nothing.
    let pointer =
        args.path.as_deref().map(|p| Pointer::parse(p).with_context(|| format!("--path '{p}'"))).transpose()?;
    let document = render_file(&args.manifest, &args.flags)?;
    let (value, raw_string) = match &pointer {
        Some(ptr) => {
            let found = patch::find(&document, ptr).with_context(|| format!("--path '{ptr}'"))?;
            let raw = matches!(found, Value::String(_));
            (found, raw)
        }
        None => (document, false),
    };
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&yaml::to_json(&value))?;
        s.push('\n');
        s
    } else if raw_string {
        format!("{}\n", value.as_str().unwrap_or_default())
    } else {
        yaml::to_string(&value)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}

/// Reads `path`, applies the ops files and interpolates the variables named in `flags`,
/// exactly as `rosh interpolate` does, and returns the resulting document.
///
/// The variable sources (a vars store full of certificates is the largest file) are read on a
/// second thread while this one reads the manifest and applies the ops; failures are still
/// reported in the order a sequential run meets them: manifest, ops files, variables, ops.
pub fn render_file(path: &Path, flags: &VarFlags) -> anyhow::Result<Value> {
    let name = path.display().to_string();
    // Two readers of standard input would race for it.
    let parallel = !flags.vars_files.iter().any(|p| p == Path::new("-"));
    let (prepared, variables) = std::thread::scope(|scope| {
        let variables = parallel.then(|| scope.spawn(|| read_variables(flags)));
        let prepared = (|| -> anyhow::Result<_> {
            let text = read_input(path)?;
            let raw = yaml::parse(&text, &name)?;
            drop(text);
            let ops = read_ops(&flags.ops_files)?;
            let patched = apply_ops(&raw, &ops);
            Ok((raw, ops, patched))
        })();
        let variables = match variables {
            Some(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Err(anyhow!("not loaded yet")),
        };
        (prepared, variables)
    });
    let (raw, ops, patched) = prepared?;
    let variables = if parallel {
        let (sources, store) = variables?;
        Variables::new(sources, store.map(VarsStore::new))
    } else {
        load_variables(flags)?
    };
    Ok(evaluate(raw, &name, flags, &ops, variables, patched?)?.0)
}

/// As [`render_file`], for a document already in hand (`name` is used in errors).
pub fn render_document(raw: Value, name: &str, flags: &VarFlags) -> anyhow::Result<Value> {
    Ok(render_with_store(raw, name, flags, None)?.0)
}

/// As [`render_document`], with `store` as the vars store when `--vars-store` is not given (a
/// deployment's variables kept in the director's state): missing variables it defines are
/// generated into it. Answers the document and the store when something was generated into it.
pub fn render_with_store(
    raw: Value,
    name: &str,
    flags: &VarFlags,
    store: Option<Mapping>,
) -> anyhow::Result<(Value, Option<VarsStore>)> {
    let ops = read_ops(&flags.ops_files)?;
    let variables = match store {
        Some(values) if flags.vars_store.is_none() => {
            Variables::new(load_sources(flags)?, Some(VarsStore::new(values)))
        }
        _ => load_variables(flags)?,
    };
    let patched = apply_ops(&raw, &ops)?;
    evaluate(raw, name, flags, &ops, variables, patched)
}

/// The manifest with the ops applied (`raw` itself is kept to explain missing variables).
fn apply_ops(raw: &Value, ops: &[SourcedOp]) -> Result<Value, patch::OpsError> {
    let mut doc = raw.clone();
    patch::apply_all(&mut doc, ops)?;
    Ok(doc)
}

/// Interpolates the patched document, saves the vars store, and answers the document and the
/// store when something was generated into a store that is not `--vars-store`.
fn evaluate(
    raw: Value,
    name: &str,
    flags: &VarFlags,
    ops: &[SourcedOp],
    mut variables: Variables,
    doc: Value,
) -> anyhow::Result<(Value, Option<VarsStore>)> {
    let options = interpolate::Options { expect_all_found: flags.var_errs, expect_all_used: flags.var_errs_unused };
    let result = interpolate::evaluate(doc, &mut variables, &options);

    // Save what was generated before reporting any failure: a generated CA must not be lost.
    if let (Some(store_path), Some(store)) = (&flags.vars_store, variables.store())
        && store.changed()
    {
        write_store(store_path, store).with_context(|| format!("writing vars store {}", store_path.display()))?;
    }

    let generated = if flags.vars_store.is_none() { variables.into_store().filter(VarsStore::changed) } else { None };
    let doc = result.map_err(|e| match e {
        InterpolateError::Vars { missing, unused } => {
            anyhow!("{name}: {}", describe_var_errors(&missing, &unused, &raw, name, ops))
        }
        other => anyhow!("{name}: {other}"),
    })?;
    Ok((doc, generated))
}

fn describe_var_errors(missing: &[Missing], unused: &[String], raw: &Value, name: &str, ops: &[SourcedOp]) -> String {
    let mut out = String::new();
    if !missing.is_empty() {
        out.push_str("Expected to find variables:\n");
        for m in missing {
            // A typed definition nobody provided is "used" by its own definition: blame the file
            // that defined it; otherwise the file that first references it.
            let by_definition = m.first_use.starts_with("variables[");
            let here = |v: &Value| if by_definition { defines(v, &m.name) } else { interpolate::mentions(v, &m.name) };
            let origin = if here(raw) {
                name.to_string()
            } else if let Some(op) =
                ops.iter().find(|op| matches!(&op.op, patch::Op::Replace { value, .. } if here(value)))
            {
                format!("{} operation [{}]", op.source, op.index)
            } else {
                name.to_string()
            };
            out.push_str(&format!("  - {}: used at {} (from {origin})\n", m.name, m.first_use));
        }
    }
    if !unused.is_empty() {
        out.push_str("Expected to use variables:\n");
        for u in unused {
            out.push_str(&format!("  - {u}\n"));
        }
    }
    out.trim_end().to_string()
}

/// True when `value` is, or holds, a `variables:` definition named `var`.
fn defines(value: &Value, var: &str) -> bool {
    match value {
        Value::Mapping(map) => {
            (map.get("name").and_then(Value::as_str) == Some(var) && map.contains_key("type"))
                || map.values().any(|v| defines(v, var))
        }
        Value::Sequence(items) => items.iter().any(|v| defines(v, var)),
        _ => false,
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_yaml(path: &Path) -> anyhow::Result<Value> {
    let text = read_input(path)?;
    Ok(yaml::parse(&text, &path.display().to_string())?)
}

fn read_ops(paths: &[PathBuf]) -> anyhow::Result<Vec<SourcedOp>> {
    let mut ops = Vec::new();
    for path in paths {
        let doc = read_yaml(path)?;
        ops.extend(patch::parse_ops(&doc, &path.display().to_string())?);
    }
    Ok(ops)
}

fn load_variables(flags: &VarFlags) -> anyhow::Result<Variables> {
    let (sources, store) = read_variables(flags)?;
    Ok(Variables::new(sources, store.map(VarsStore::new)))
}

/// The variable sources and the vars store's current values, as read from their files.
fn read_variables(flags: &VarFlags) -> anyhow::Result<(Sources, Option<Mapping>)> {
    let sources = load_sources(flags)?;
    let store = match &flags.vars_store {
        None => None,
        Some(path) => Some(match std::fs::read_to_string(path) {
            Ok(text) => vars::vars_file(yaml::parse(&text, &path.display().to_string())?, &path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e).with_context(|| format!("reading vars store {}", path.display())),
        }),
    };
    Ok((sources, store))
}

fn load_sources(flags: &VarFlags) -> anyhow::Result<Sources> {
    let mut sources = Sources::default();
    for prefix in &flags.vars_env {
        sources.vars_env.push(vars::vars_from_env(prefix, std::env::vars())?);
    }
    for path in &flags.vars_files {
        let name = path.display().to_string();
        sources.vars_files.push(vars::vars_file(read_yaml(path)?, &name)?);
    }
    for arg in &flags.var_files {
        let (var, file) = vars::parse_var_file_arg(arg)?;
        let contents = std::fs::read_to_string(&file).with_context(|| format!("--var-file {var}: reading {file}"))?;
        sources.var_files.push((var, contents));
    }
    for arg in &flags.vars {
        sources.var_kvs.push(vars::parse_var_kv(arg)?);
    }
    Ok(sources)
}

/// Writes the store next to its final place and renames it over, so a crash never leaves a
/// half-written file of secrets; the file is readable by its owner only.
fn write_store(path: &Path, store: &VarsStore) -> anyhow::Result<()> {
    let text = yaml::to_string(&Value::Mapping(store.values().clone()));
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| anyhow!("not a file path"))?.to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
