//! The event log: what was done to which object, when, from which command, and how it ended.
//!
//! Facts recorded by the state write their event inside their own transaction (with the serial they
//! produced); callers add events of their own (a failed upload, a deploy started) with
//! [`State::record_event`], which does not move the serial.

use rusqlite::Connection;

use super::lock::current_process;
use super::{Result, State};

/// An event to record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// What was done: `upload`, `delete`, `update`, `create`, …
    pub action: String,
    /// `release`, `stemcell`, `deployment`, `lock`, …
    pub object_type: String,
    /// `nats/56`, `bosh-warden-boshlite-ubuntu-jammy-go_agent/1.406`, …
    pub object_name: String,
    pub deployment: Option<String>,
    /// The task or command it happened in; defaults to this process's command line.
    pub context: Option<String>,
    /// Set when the action failed.
    pub error: Option<String>,
}

impl Event {
    pub fn new(action: impl Into<String>, object_type: impl Into<String>, object_name: impl Into<String>) -> Event {
        Event {
            action: action.into(),
            object_type: object_type.into(),
            object_name: object_name.into(),
            deployment: None,
            context: None,
            error: None,
        }
    }

    pub fn deployment(mut self, deployment: impl Into<String>) -> Event {
        self.deployment = Some(deployment.into());
        self
    }

    pub fn context(mut self, context: impl Into<String>) -> Event {
        self.context = Some(context.into());
        self
    }

    pub fn error(mut self, error: impl Into<String>) -> Event {
        self.error = Some(error.into());
        self
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    pub id: i64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The state serial the event's fact produced; `None` for events that changed nothing.
    pub serial: Option<u64>,
    pub action: String,
    pub object_type: String,
    pub object_name: String,
    pub deployment: Option<String>,
    pub context: Option<String>,
    pub error: Option<String>,
}

impl State {
    /// Appends an event that records no fact (the serial does not move). Returns its id.
    pub fn record_event(&self, event: &Event) -> Result<i64> {
        self.write(|tx| insert(tx, None, event))
    }

    /// The latest `limit` events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<EventRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, time, serial, action, object_type, object_name, deployment, context, error
             FROM events ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(EventRecord {
                id: r.get(0)?,
                time: r.get(1)?,
                serial: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                action: r.get(3)?,
                object_type: r.get(4)?,
                object_name: r.get(5)?,
                deployment: r.get(6)?,
                context: r.get(7)?,
                error: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

pub(super) fn insert(conn: &Connection, serial: Option<u64>, event: &Event) -> Result<i64> {
    let context = event.context.clone().unwrap_or_else(|| current_process().command.clone());
    conn.execute(
        "INSERT INTO events (serial, action, object_type, object_name, deployment, context, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            serial.map(|s| s as i64),
            &event.action,
            &event.object_type,
            &event.object_name,
            &event.deployment,
            context,
            &event.error,
        ),
    )?;
    Ok(conn.last_insert_rowid())
}
