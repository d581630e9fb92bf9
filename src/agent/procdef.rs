//! What processes a job runs, read from its rendered files: `config/bpm.yml` for modern BOSH
//! jobs, the `monit` file for older ones. Pure: text in, definitions out (the supervisor reads
//! the files and runs the definitions).
//!
//! bpm (`processes:` with `name`, `executable`, `args`, `env`, `workdir`, `hooks.pre_start`,
//! `shutdown_signal`; rosh also reads `shutdown_timeout` in seconds) wins when both files exist,
//! since a bpm job's monit file only calls the bpm binary, which rosh replaces. bpm's isolation
//! settings (`limits`, volumes, capabilities, …) are accepted and not enforced. From monit, each
//! `check process NAME` block's `with pidfile`, `start program` and `stop program` are read;
//! other checks and clauses (`group`, `depends on`, `if … then …`) are ignored.
//!
//! Stock jobs address everything under `/var/vcap`; every path and command read here has a
//! `/var/vcap` that starts a path rewritten to the VM's root, so they run on roots elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::os;
use super::root::check_name;
use super::{Error, Result};
use crate::manifest::yaml::{self, Value, YamlPath};

/// How long a process gets between its shutdown signal and SIGKILL, unless it says otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// One process of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessDef {
    pub job: String,
    pub name: String,
    pub kind: ProcessKind,
    pub shutdown_signal: i32,
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessKind {
    /// Spawned directly and watched as a child.
    Bpm {
        executable: PathBuf,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        workdir: PathBuf,
        pre_start: Option<PathBuf>,
    },
    /// Started and stopped by shell commands; the process is the pid in `pidfile` (or the start
    /// command itself when there is none).
    Monit { start: String, stop: Option<String>, pidfile: Option<PathBuf> },
}

/// The processes of job `job` whose directory is `job_dir`, on a VM rooted at `root`.
pub fn read_job(root: &Path, job: &str, job_dir: &Path) -> Result<Vec<ProcessDef>> {
    let bpm = job_dir.join("config/bpm.yml");
    match std::fs::read_to_string(&bpm) {
        Ok(text) => return parse_bpm(&text, root, job),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error(format!("reading {}: {e}", bpm.display())));
        }
        Err(_) => {}
    }
    let monit = job_dir.join("monit");
    match std::fs::read_to_string(&monit) {
        Ok(text) => parse_monit(&text, root, job),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error(format!("reading {}: {e}", monit.display()))),
    }
}

/// Reads a job's `config/bpm.yml`.
pub fn parse_bpm(text: &str, root: &Path, job: &str) -> Result<Vec<ProcessDef>> {
    let source = format!("jobs/{job}/config/bpm.yml");
    let doc = yaml::parse(text, &source).map_err(|e| Error(e.to_string()))?;
    let err = |path: &YamlPath, message: String| Error(format!("{source}: {}: {message}", path_text(path)));
    let top = YamlPath::root();
    let Value::Mapping(map) = &doc else {
        return Err(err(&top, format!("expected a map, found {}", yaml::kind(&doc))));
    };
    let processes_path = top.key("processes");
    let processes = match map.get("processes") {
        Some(Value::Sequence(items)) => items,
        Some(other) => return Err(err(&processes_path, format!("expected an array, found {}", yaml::kind(other)))),
        None => return Err(err(&processes_path, "is required".to_string())),
    };
    let job_dir = root.join("jobs").join(job);
    let mut defs = Vec::new();
    for (i, process) in processes.iter().enumerate() {
        let at = processes_path.index(i);
        let Value::Mapping(p) = process else {
            return Err(err(&at, format!("expected a map, found {}", yaml::kind(process))));
        };
        let string = |key: &str| -> Result<Option<String>> {
            match p.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => yaml::scalar_text(v)
                    .map(Some)
                    .ok_or_else(|| err(&at.key(key), format!("expected a string, found {}", yaml::kind(v)))),
            }
        };
        let name = string("name")?.ok_or_else(|| err(&at.key("name"), "is required".to_string()))?;
        check_name("process", &name).map_err(|e| err(&at.key("name"), e.0))?;
        let executable = string("executable")?.ok_or_else(|| err(&at.key("executable"), "is required".to_string()))?;
        let args = match p.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    yaml::scalar_text(v).map(|s| rewrite_vcap(&s, root)).ok_or_else(|| {
                        err(&at.key("args").index(j), format!("expected a string, found {}", yaml::kind(v)))
                    })
                })
                .collect::<Result<_>>()?,
            Some(other) => return Err(err(&at.key("args"), format!("expected an array, found {}", yaml::kind(other)))),
        };
        let env = match p.get("env") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Mapping(vars)) => vars
                .iter()
                .map(|(k, v)| {
                    let key = yaml::scalar_text(k).unwrap_or_default();
                    let value = match v {
                        Value::Null => String::new(),
                        v => yaml::scalar_text(v).ok_or_else(|| {
                            err(&at.key("env").key(&key), format!("expected a string, found {}", yaml::kind(v)))
                        })?,
                    };
                    Ok((key, rewrite_vcap(&value, root)))
                })
                .collect::<Result<_>>()?,
            Some(other) => return Err(err(&at.key("env"), format!("expected a map, found {}", yaml::kind(other)))),
        };
        let workdir = match string("workdir")? {
            Some(dir) => PathBuf::from(rewrite_vcap(&dir, root)),
            None => job_dir.clone(),
        };
        let pre_start = match p.get("hooks") {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(hooks)) => match hooks.get("pre_start") {
                None | Some(Value::Null) => None,
                Some(v) => Some(PathBuf::from(rewrite_vcap(
                    &yaml::scalar_text(v).ok_or_else(|| {
                        err(&at.key("hooks").key("pre_start"), format!("expected a string, found {}", yaml::kind(v)))
                    })?,
                    root,
                ))),
            },
            Some(other) => return Err(err(&at.key("hooks"), format!("expected a map, found {}", yaml::kind(other)))),
        };
        let shutdown_signal = match string("shutdown_signal")? {
            None => libc::SIGTERM,
            Some(name) => os::signal_number(&name)
                .ok_or_else(|| err(&at.key("shutdown_signal"), format!("unknown signal `{name}`")))?,
        };
        let shutdown_timeout = match string("shutdown_timeout")? {
            None => DEFAULT_SHUTDOWN_TIMEOUT,
            Some(secs) => Duration::from_secs(secs.parse::<u64>().map_err(|_| {
                err(&at.key("shutdown_timeout"), format!("expected a number of seconds, found `{secs}`"))
            })?),
        };
        if defs.iter().any(|d: &ProcessDef| d.name == name) {
            return Err(err(&at.key("name"), format!("process `{name}` is defined twice")));
        }
        defs.push(ProcessDef {
            job: job.to_string(),
            name,
            kind: ProcessKind::Bpm {
                executable: PathBuf::from(rewrite_vcap(&executable, root)),
                args,
                env,
                workdir,
                pre_start,
            },
            shutdown_signal,
            shutdown_timeout,
        });
    }
    Ok(defs)
}

fn path_text(path: &YamlPath) -> String {
    if path.is_root() { "(document)".to_string() } else { path.to_string() }
}

/// Reads a job's `monit` file.
pub fn parse_monit(text: &str, root: &Path, job: &str) -> Result<Vec<ProcessDef>> {
    let source = format!("jobs/{job}/monit");
    let tokens = tokenize(text).map_err(|e| Error(format!("{source}: {e}")))?;
    let mut defs: Vec<ProcessDef> = Vec::new();
    // (name, start, stop, pidfile) of the block being read; `None` outside a process block.
    type Block = (String, Option<String>, Option<String>, Option<String>);
    let mut current: Option<Block> = None;
    let finish = |block: Block, defs: &mut Vec<ProcessDef>| -> Result<()> {
        let (name, start, stop, pidfile) = block;
        let start = start.ok_or_else(|| Error(format!("{source}: process `{name}` has no `start program`")))?;
        check_name("process", &name).map_err(|e| Error(format!("{source}: {e}")))?;
        if defs.iter().any(|d| d.name == name) {
            return Err(Error(format!("{source}: process `{name}` is defined twice")));
        }
        defs.push(ProcessDef {
            job: job.to_string(),
            name,
            kind: ProcessKind::Monit {
                start: rewrite_vcap(&start, root),
                stop: stop.map(|s| rewrite_vcap(&s, root)),
                pidfile: pidfile.map(|p| PathBuf::from(rewrite_vcap(&p, root))),
            },
            shutdown_signal: libc::SIGTERM,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        });
        Ok(())
    };
    let mut i = 0;
    let word = |i: usize| tokens.get(i).map(|t| t.to_ascii_lowercase());
    while i < tokens.len() {
        let token = tokens[i].to_ascii_lowercase();
        match token.as_str() {
            "check" => {
                if let Some(block) = current.take() {
                    finish(block, &mut defs)?;
                }
                if word(i + 1).as_deref() == Some("process") {
                    let name =
                        tokens.get(i + 2).ok_or_else(|| Error(format!("{source}: `check process` without a name")))?;
                    current = Some((name.clone(), None, None, None));
                    i += 3;
                } else {
                    // `check file`, `check host`, …: not processes; their clauses are skipped
                    // until the next `check`.
                    i += 2;
                    while i < tokens.len() && !tokens[i].eq_ignore_ascii_case("check") {
                        i += 1;
                    }
                }
            }
            "pidfile" if current.is_some() => {
                let value = tokens.get(i + 1).ok_or_else(|| Error(format!("{source}: `pidfile` without a path")))?;
                current.as_mut().expect("checked").3 = Some(value.clone());
                i += 2;
            }
            "start" | "stop" if current.is_some() && word(i + 1).as_deref() == Some("program") => {
                let mut j = i + 2;
                if tokens.get(j).map(String::as_str) == Some("=") {
                    j += 1;
                }
                let value =
                    tokens.get(j).ok_or_else(|| Error(format!("{source}: `{token} program` without a command")))?;
                let block = current.as_mut().expect("checked");
                if token == "start" {
                    block.1 = Some(value.clone());
                } else {
                    block.2 = Some(value.clone());
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    if let Some(block) = current.take() {
        finish(block, &mut defs)?;
    }
    Ok(defs)
}

/// Splits monit syntax into words: quoted strings (single or double) are one word, `=` is a
/// word of its own, `#` starts a comment.
fn tokenize(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '=' => {
                chars.next();
                tokens.push("=".to_string());
            }
            '"' | '\'' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some(ch) if ch == c => break,
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated {c}-quoted string")),
                    }
                }
                tokens.push(word);
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ch == '=' || ch == '#' {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                tokens.push(word);
            }
        }
    }
    Ok(tokens)
}

/// Rewrites each `/var/vcap` that begins a path (`/var/vcap/jobs/x/bin/ctl start` →
/// `ROOT/jobs/x/bin/ctl start`), leaving lookalikes (`/opt/var/vcap`, `/var/vcapx`) alone.
pub fn rewrite_vcap(text: &str, root: &Path) -> String {
    const VCAP: &str = "/var/vcap";
    let root = root.display().to_string();
    let root = root.trim_end_matches('/');
    if root == VCAP {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(VCAP) {
        let before = rest[..at].chars().next_back().or_else(|| out.chars().next_back());
        let after = rest[at + VCAP.len()..].chars().next();
        let starts_path = !before.is_some_and(|c| c.is_alphanumeric() || "._-/~$".contains(c));
        let ends_component = after.is_none_or(|c| !(c.is_alphanumeric() || "._-".contains(c)));
        out.push_str(&rest[..at]);
        out.push_str(if starts_path && ends_component { root } else { VCAP });
        rest = &rest[at + VCAP.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/tmp/vm-1";

    #[test]
    fn bpm_processes_with_defaults_and_rewritten_paths() {
        let text = r#"
processes:
  - name: server
    executable: /var/vcap/packages/server/bin/server
    args: [--port, 8080, --config, /var/vcap/jobs/web/config/server.yml]
    env:
      DATA: /var/vcap/store/web
      N: 3
    hooks:
      pre_start: /var/vcap/jobs/web/bin/bpm-pre-start
    limits: {memory: 1G}
  - name: worker
    executable: /bin/sleep
    args: ["100"]
    workdir: /tmp
    shutdown_signal: INT
    shutdown_timeout: 3
"#;
        let defs = parse_bpm(text, Path::new(ROOT), "web").unwrap();
        assert_eq!(defs.len(), 2);
        let ProcessKind::Bpm { executable, args, env, workdir, pre_start } = &defs[0].kind else { panic!() };
        assert_eq!(executable, Path::new("/tmp/vm-1/packages/server/bin/server"));
        assert_eq!(args, &["--port", "8080", "--config", "/tmp/vm-1/jobs/web/config/server.yml"]);
        assert_eq!(env["DATA"], "/tmp/vm-1/store/web");
        assert_eq!(env["N"], "3");
        assert_eq!(workdir, Path::new("/tmp/vm-1/jobs/web"));
        assert_eq!(pre_start.as_deref(), Some(Path::new("/tmp/vm-1/jobs/web/bin/bpm-pre-start")));
        assert_eq!(defs[0].shutdown_signal, libc::SIGTERM);
        assert_eq!(defs[1].shutdown_signal, libc::SIGINT);
        assert_eq!(defs[1].shutdown_timeout, Duration::from_secs(3));
        let ProcessKind::Bpm { workdir, .. } = &defs[1].kind else { panic!() };
        assert_eq!(workdir, Path::new("/tmp"));
    }

    #[test]
    fn bpm_errors_name_the_path() {
        let err = parse_bpm("processes:\n  - name: a\n", Path::new(ROOT), "web").unwrap_err();
        assert!(err.0.contains("processes[0].executable: is required"), "{err}");
        let err =
            parse_bpm("processes:\n  - name: ../x\n    executable: /bin/true\n", Path::new(ROOT), "web").unwrap_err();
        assert!(err.0.contains("invalid process name"), "{err}");
        let err = parse_bpm("nothing: here\n", Path::new(ROOT), "web").unwrap_err();
        assert!(err.0.contains("processes: is required"), "{err}");
    }

    #[test]
    fn monit_blocks() {
        let text = r#"
# the classic form
check process nginx
  with pidfile /var/vcap/sys/run/nginx/nginx.pid
  start program "/var/vcap/jobs/nginx/bin/nginx_ctl start"
  stop program "/var/vcap/jobs/nginx/bin/nginx_ctl stop" with timeout 60 seconds
  group vcap

check file nginx_conf with path /var/vcap/jobs/nginx/config/nginx.conf
  if changed checksum then alert

check process worker
  start program = '/bin/sh -c "exec /var/vcap/packages/w/bin/w"'
  depends on nginx
"#;
        let defs = parse_monit(text, Path::new(ROOT), "nginx").unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(
            defs[0].kind,
            ProcessKind::Monit {
                start: "/tmp/vm-1/jobs/nginx/bin/nginx_ctl start".into(),
                stop: Some("/tmp/vm-1/jobs/nginx/bin/nginx_ctl stop".into()),
                pidfile: Some(PathBuf::from("/tmp/vm-1/sys/run/nginx/nginx.pid")),
            }
        );
        assert_eq!(
            defs[1].kind,
            ProcessKind::Monit {
                start: "/bin/sh -c \"exec /tmp/vm-1/packages/w/bin/w\"".into(),
                stop: None,
                pidfile: None
            }
        );
    }

    #[test]
    fn monit_without_start_is_refused() {
        let err = parse_monit("check process x\n  with pidfile /p\n", Path::new(ROOT), "j").unwrap_err();
        assert!(err.0.contains("no `start program`"), "{err}");
    }

    #[test]
    fn vcap_rewrite_only_touches_path_starts() {
        let root = Path::new("/r");
        assert_eq!(rewrite_vcap("/var/vcap", root), "/r");
        assert_eq!(rewrite_vcap("/var/vcap/jobs/a /var/vcap/b", root), "/r/jobs/a /r/b");
        assert_eq!(rewrite_vcap("--dir=/var/vcap/store", root), "--dir=/r/store");
        assert_eq!(rewrite_vcap("\"/var/vcap/x\"", root), "\"/r/x\"");
        assert_eq!(rewrite_vcap("/opt/var/vcap/x", root), "/opt/var/vcap/x");
        assert_eq!(rewrite_vcap("/var/vcapx/y", root), "/var/vcapx/y");
        assert_eq!(rewrite_vcap("/var/vcap/x", Path::new("/var/vcap")), "/var/vcap/x");
    }
}
