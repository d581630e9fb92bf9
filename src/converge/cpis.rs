//! Opens the CPIs a CPI config names: rosh's own (local, static) in process, any other BOSH CPI
//! as an external executable spoken to with the BOSH JSON protocol.
//!
//! Each CPI keeps what it needs under `<state_dir>/cpi/<name>/`, so two CPIs of the same type
//! never share records. The local CPI's VMs run `rosh agent … serve`, so it is told which `rosh`
//! binary to start (this one, unless a test says otherwise).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rosh_cpi::Cpi;
use rosh_cpi::external::ExternalCpi;
use rosh_cpi_local::{LocalConfig, LocalCpi};
use rosh_cpi_static::{StaticConfig, StaticCpi};

use crate::manifest::model::cpi_config::{CpiDef, CpiKind};
use crate::ssh::agent_client::AgentBinary;
use crate::ssh::client::ConnectOptions;
use crate::ssh::keys::DirectorKey;
use crate::ssh::wipe::AgentWiper;

/// Where CPIs keep their files and which binary their VMs run.
#[derive(Debug, Clone)]
pub struct CpiEnv {
    pub state_dir: PathBuf,
    /// The `rosh` binary a local VM runs as its agent.
    pub agent_exe: PathBuf,
}

impl CpiEnv {
    /// CPIs of the state dir `state_dir`, with this process's own binary as the agent.
    pub fn new(state_dir: &Path) -> anyhow::Result<CpiEnv> {
        let agent_exe = std::env::current_exe().context("finding the rosh binary for local VMs")?;
        Ok(CpiEnv { state_dir: state_dir.to_path_buf(), agent_exe })
    }

    /// The directory CPI `name` keeps its files in.
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.state_dir.join("cpi").join(name)
    }
}

/// The local CPI of `def` (which must be of type local).
pub fn open_local(def: &CpiDef, env: &CpiEnv) -> anyhow::Result<LocalCpi> {
    let mut cfg = LocalConfig::new(env.dir_of(&def.name), &env.agent_exe);
    if let Some(port) = def.properties.get("ssh_port") {
        let port = port
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .with_context(|| format!("cpi `{}`: properties.ssh_port must be a port number, not {port}", def.name))?;
        cfg.ssh_port = port as u16;
    }
    Ok(LocalCpi::new(cfg)?)
}

/// Opens the CPI `def` describes.
pub fn open(def: &CpiDef, env: &CpiEnv) -> anyhow::Result<Arc<dyn Cpi>> {
    match &def.kind {
        CpiKind::Local => Ok(Arc::new(open_local(def, env)?)),
        CpiKind::Static => {
            let config = StaticConfig::from_value(&def.properties)
                .map_err(|e| anyhow::anyhow!("cpi `{}`: properties: {}", def.name, e.0))?;
            let key = DirectorKey::load_or_create(&env.state_dir)?;
            let binary = AgentBinary::for_machines()?.clone();
            let wiper = AgentWiper::new(key, ConnectOptions::default()).with_agent_binary(binary);
            let dir = env.dir_of(&def.name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(Arc::new(StaticCpi::new(config, dir.join("claims.json"), Arc::new(wiper))))
        }
        CpiKind::External { exec_path, .. } => {
            // As a BOSH director does, the CPI's properties reach it in every call's context.
            let mut context = serde_json::json!({ "director_uuid": director_uuid(env)? });
            if let (Some(ctx), Some(props)) = (context.as_object_mut(), def.properties.as_object()) {
                ctx.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let log = env.dir_of(&def.name).join("cpi.log");
            std::fs::create_dir_all(env.dir_of(&def.name))
                .with_context(|| format!("creating {}", env.dir_of(&def.name).display()))?;
            Ok(Arc::new(ExternalCpi::new(PathBuf::from(exec_path)).context(context).log_file(log)))
        }
    }
}

/// The director's uuid, made once per state dir (`<state_dir>/director/uuid`): external CPIs
/// tag what they create with it.
pub fn director_uuid(env: &CpiEnv) -> anyhow::Result<String> {
    let path = env.state_dir.join("director").join("uuid");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let uuid = text.trim();
        if !uuid.is_empty() {
            return Ok(uuid.to_string());
        }
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{uuid}\n")).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(uuid)
}
