//! Named locks between rosh processes sharing a state directory (`release:nats`,
//! `deployment:cf`, …).
//!
//! A lock is a row in the `locks` table naming its holder: pid, command line, host, when it was
//! taken, and (on Linux) the process's start time, so a recycled pid is not mistaken for the
//! holder. Taking a lock is one `BEGIN IMMEDIATE` transaction (SQLite serialises them across
//! processes), so two processes never both succeed. The [`LockGuard`] deletes its row on drop; a
//! process that dies without dropping it leaves the row behind, and the next process on the same
//! host that finds the holder's pid gone (or reused) takes the lock over and logs an event. A
//! holder on another host cannot be checked and is never taken over: [`State::break_lock`] exists
//! for an operator who knows better.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{Event, Inner, Result, State, StateError, events};

/// How often a waiting [`State::lock`] retries.
const POLL: Duration = Duration::from_millis(100);

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub hostname: String,
    /// The holder's command line, program name without its directory.
    pub command: String,
    /// When the lock was taken: RFC 3339, UTC.
    pub since: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({}) on {} since {}", self.pid, self.command, self.hostname, self.since)
    }
}

/// A lock and its holder, as listed by [`State::locks`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub name: String,
    pub holder: LockHolder,
}

/// A held lock; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    inner: Arc<Inner>,
    name: String,
    token: String,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("name", &self.name).finish_non_exhaustive()
    }
}

impl LockGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock now, reporting a failure that a drop would have to swallow.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        delete_own(&self.inner, &self.name, &self.token)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            // Nothing to report to from a drop; a row left behind is taken over as stale later.
            let _ = delete_own(&self.inner, &self.name, &self.token);
        }
    }
}

fn delete_own(inner: &Inner, name: &str, token: &str) -> Result<()> {
    let conn = inner.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    conn.execute("DELETE FROM locks WHERE name = ?1 AND token = ?2", [name, token])?;
    Ok(())
}

impl State {
    /// Takes lock `name`. If another process holds it: with `wait: None`, fails at once with
    /// [`StateError::Locked`] naming the holder; with `Some(d)`, retries until it is free or `d`
    /// has passed ([`StateError::LockTimeout`]). Locks are not re-entrant: a second `lock` of the
    /// same name from the same process is refused too.
    pub fn lock(&self, name: &str, wait: Option<Duration>) -> Result<LockGuard> {
        let started = Instant::now();
        loop {
            match self.try_lock(name)? {
                Ok(token) => {
                    return Ok(LockGuard { inner: self.inner.clone(), name: name.to_string(), token, released: false });
                }
                Err(holder) => {
                    let waited = started.elapsed();
                    match wait {
                        Some(limit) if waited < limit => std::thread::sleep(POLL.min(limit - waited)),
                        Some(_) => return Err(StateError::LockTimeout { name: name.to_string(), holder, waited }),
                        None => return Err(StateError::Locked { name: name.to_string(), holder }),
                    }
                }
            }
        }
    }

    /// Every lock currently recorded, by name (including ones a dead process left behind).
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT name, {HOLDER_COLUMNS} FROM locks ORDER BY name"))?;
        let rows = stmt.query_map([], |r| Ok(LockInfo { name: r.get(0)?, holder: holder_from_row(r, 1)?.0 }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes lock `name` whoever holds it, returning the holder it had. For an operator who knows
    /// the holder is gone (a lock left by a machine that no longer exists).
    pub fn break_lock(&self, name: &str) -> Result<Option<LockHolder>> {
        self.write(|tx| {
            let holder = read_holder(tx, name)?.map(|(holder, _)| holder);
            if let Some(holder) = &holder {
                tx.execute("DELETE FROM locks WHERE name = ?1", [name])?;
                events::insert(tx, None, &Event::new("break", "lock", name).context(format!("was held by {holder}")))?;
            }
            Ok(holder)
        })
    }

    /// One attempt: `Ok(token)` if taken, `Err(holder)` if someone else holds it.
    fn try_lock(&self, name: &str) -> Result<std::result::Result<String, LockHolder>> {
        let me = current_process();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some((holder, process_start)) = read_holder(&tx, name)? {
            let stale = holder.hostname == me.hostname && !process_alive(holder.pid, process_start.as_deref());
            if !stale {
                return Ok(Err(holder));
            }
            tx.execute("DELETE FROM locks WHERE name = ?1", [name])?;
            let note = format!("{} took it over from {holder}, which is no longer running", me.command);
            events::insert(&tx, None, &Event::new("take over", "lock", name).context(note))?;
        }
        let token = new_token();
        let acquired_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        tx.execute(
            "INSERT INTO locks (name, token, pid, process_start, hostname, command, acquired_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            (name, &token, me.pid, &me.start, &me.hostname, &me.command, acquired_at),
        )?;
        tx.commit()?;
        Ok(Ok(token))
    }
}

const HOLDER_COLUMNS: &str =
    "pid, hostname, command, strftime('%Y-%m-%dT%H:%M:%SZ', acquired_at, 'unixepoch'), process_start";

fn holder_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<(LockHolder, Option<String>)> {
    Ok((
        LockHolder {
            pid: r.get::<_, i64>(first)? as u32,
            hostname: r.get(first + 1)?,
            command: r.get(first + 2)?,
            since: r.get(first + 3)?,
        },
        r.get(first + 4)?,
    ))
}

fn read_holder(conn: &Connection, name: &str) -> rusqlite::Result<Option<(LockHolder, Option<String>)>> {
    conn.query_row(&format!("SELECT {HOLDER_COLUMNS} FROM locks WHERE name = ?1"), [name], |r| holder_from_row(r, 0))
        .optional()
}

fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// This process, as a lock holder and event context.
pub(crate) struct ProcessIdentity {
    pub pid: u32,
    pub hostname: String,
    pub command: String,
    /// Start time in clock ticks since boot (Linux), to tell a reused pid from the holder.
    pub start: Option<String>,
}

pub(crate) fn current_process() -> &'static ProcessIdentity {
    static ME: OnceLock<ProcessIdentity> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        ProcessIdentity { pid, hostname: hostname(), command: command_line(), start: process_start(pid) }
    })
}

fn command_line() -> String {
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = args.next().unwrap_or_default();
    let program = std::path::Path::new(&program).file_name().map_or(program.clone(), |n| n.to_string_lossy().into());
    let mut line = std::iter::once(program).chain(args).collect::<Vec<_>>().join(" ");
    if line.len() > 300 {
        let cut = (0..=300).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
        line.truncate(cut);
        line.push('…');
    }
    line
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates when there is room.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether `pid` is still the process that took the lock.
fn process_alive(pid: u32, recorded_start: Option<&str>) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else { return false };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists =
        unsafe { libc::kill(pid_t, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists || is_zombie(pid) {
        return false;
    }
    match (recorded_start, process_start(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (which may contain spaces and parentheses).
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn process_start(pid: u32) -> Option<String> {
    // Field 22 of stat is starttime; the fields after ')' start at field 3.
    proc_stat_fields(pid)?.get(22 - 3).cloned()
}

fn is_zombie(pid: u32) -> bool {
    proc_stat_fields(pid).and_then(|f| f.first().cloned()).is_some_and(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        let me = current_process();
        assert!(process_alive(me.pid, me.start.as_deref()));
        assert!(!process_alive(me.pid, Some("not-our-start-time")), "a recycled pid must not count as the holder");

        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait for true");
        assert!(!process_alive(pid, None));
        assert!(!process_alive(0, None));
        assert!(!process_alive(u32::MAX, None));
    }

    #[test]
    fn the_holder_reads_as_an_operator_would_say_it() {
        let holder = LockHolder {
            pid: 4242,
            hostname: "jumpbox".into(),
            command: "rosh upload-release nats.tgz".into(),
            since: "2026-05-01T10:00:00Z".into(),
        };
        assert_eq!(holder.to_string(), "pid 4242 (rosh upload-release nats.tgz) on jumpbox since 2026-05-01T10:00:00Z");
        let me = current_process();
        assert!(!me.hostname.is_empty());
        assert!(!me.command.contains('/'), "program name without its directory: {}", me.command);
    }
}
