//! How long operations look to the operator: the [`Reporter`] implementations.
//!
//! On a terminal, one spinner line per task (an instance, a package) showing its current step
//! and elapsed time, under the stage's heading, each ending with a check or a cross. Elsewhere,
//! plain timestamped lines, one per step. With `--json`, one JSON object per event on stdout
//! (`{"event": "step", "task": …, "step": …}`), so a script can follow a deploy.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;

use crate::converge::report::{Reporter, Task};

/// Picks the reporter for this run: JSON events, bars on a terminal, or plain lines.
pub fn reporter(json: bool) -> Box<dyn Reporter> {
    if json {
        Box::new(JsonLines)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Plain { started: Instant::now() })
    }
}

/// One JSON object per event, on stdout.
pub struct JsonLines;

impl JsonLines {
    fn emit(&self, value: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }
}

impl Reporter for JsonLines {
    fn stage(&self, name: &str, tasks: usize) {
        self.emit(json!({"event": "stage", "stage": name, "tasks": tasks}));
    }
    fn step(&self, task: &Task, step: &str) {
        self.emit(json!({"event": "step", "task": task, "step": step}));
    }
    fn finished(&self, task: &Task, outcome: Result<&str, &str>, elapsed: Duration) {
        let (ok, text) = match outcome {
            Ok(t) => (true, t),
            Err(t) => (false, t),
        };
        self.emit(json!({"event": "finished", "task": task, "ok": ok, "result": text, "elapsed_ms": elapsed.as_millis() as u64}));
    }
    fn note(&self, message: &str) {
        self.emit(json!({"event": "note", "message": message}));
    }
}

/// Plain lines on stderr, for logs and pipes.
pub struct Plain {
    started: Instant,
}

impl Plain {
    fn line(&self, text: &str) {
        let t = self.started.elapsed().as_secs_f64();
        eprintln!("[{t:7.1}s] {text}");
    }
}

impl Reporter for Plain {
    fn stage(&self, name: &str, tasks: usize) {
        self.line(&format!("{name} ({tasks})"));
    }
    fn step(&self, task: &Task, step: &str) {
        self.line(&format!("  {task}: {step}"));
    }
    fn finished(&self, task: &Task, outcome: Result<&str, &str>, elapsed: Duration) {
        match outcome {
            Ok(text) => self.line(&format!("  {task}: done, {text} ({:.1}s)", elapsed.as_secs_f64())),
            Err(text) => self.line(&format!("  {task}: FAILED ({:.1}s): {text}", elapsed.as_secs_f64())),
        }
    }
    fn note(&self, message: &str) {
        self.line(message);
    }
}

/// Spinners on a terminal.
pub struct Bars {
    multi: MultiProgress,
    tasks: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars { multi: MultiProgress::new(), tasks: Mutex::new(HashMap::new()) }
    }

    fn bar(&self, task: &str) -> ProgressBar {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        tasks
            .entry(task.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} {msg} [{elapsed}]").expect("a valid template"),
                );
                bar.set_prefix(task.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

impl Reporter for Bars {
    fn stage(&self, name: &str, tasks: usize) {
        let _ = self.multi.println(format!("{name} ({tasks})"));
    }
    fn step(&self, task: &Task, step: &str) {
        self.bar(task).set_message(step.to_string());
    }
    fn finished(&self, task: &Task, outcome: Result<&str, &str>, elapsed: Duration) {
        let bar = self.bar(task);
        bar.set_style(ProgressStyle::with_template("  {prefix} {msg}").expect("a valid template"));
        match outcome {
            Ok(text) => bar.finish_with_message(format!("✓ {text} ({:.1}s)", elapsed.as_secs_f64())),
            Err(text) => bar.finish_with_message(format!("✗ {text} ({:.1}s)", elapsed.as_secs_f64())),
        }
        self.tasks.lock().expect("not poisoned").remove(task);
    }
    fn note(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}
