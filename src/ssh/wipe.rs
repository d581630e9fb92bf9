//! The static CPI's [`Wiper`], done the director's way: connect with the pinned host key, make
//! sure the agent is installed, and run its `wipe` verb.
//!
//! It lives here rather than in `cpi/static` so that crate stays free of SSH; it is a thin
//! adapter and holds no state beyond how to connect.

use std::sync::Arc;

use rosh_cpi::SshEndpoint;
use rosh_cpi_static::Wiper;

use super::agent_client::{AgentBinary, ensure_agent, ensure_agent_binary};
use super::client::{ConnectOptions, Connection};
use super::keys::DirectorKey;

/// Wipes a static machine through its agent.
#[derive(Debug, Clone)]
pub struct AgentWiper {
    key: DirectorKey,
    options: ConnectOptions,
    /// The agent binary to install when the machine lacks it; the running binary when `None`.
    binary: Option<Arc<AgentBinary>>,
}

impl AgentWiper {
    pub fn new(key: DirectorKey, options: ConnectOptions) -> AgentWiper {
        AgentWiper { key, options, binary: None }
    }

    /// Installs `binary` as the agent instead of the running executable (tests run from a test
    /// binary, not `rosh`).
    pub fn with_agent_binary(mut self, binary: AgentBinary) -> AgentWiper {
        self.binary = Some(Arc::new(binary));
        self
    }
}

#[async_trait::async_trait]
impl Wiper for AgentWiper {
    async fn wipe(&self, endpoint: &SshEndpoint) -> Result<(), String> {
        let conn = Connection::connect(endpoint, &self.key, &self.options).await.map_err(|e| e.to_string())?;
        let agent = match &self.binary {
            Some(binary) => ensure_agent_binary(&conn, endpoint, binary).await,
            None => ensure_agent(&conn, endpoint).await,
        }
        .map_err(|e| e.to_string())?;
        let wiped = agent.client.wipe().await.map(drop).map_err(|e| e.to_string());
        conn.close().await;
        wiped
    }
}
