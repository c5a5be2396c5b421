//! `hagent run`: load the data plane, attach it, serve the control socket until SIGINT/SIGTERM,
//! then detach everything.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use serde_json::json;

use crate::{
    config::Config,
    control::{ControlSocket, Handler, Request},
    dataplane::Dataplane,
};

/// The daemon's state, shared with control-socket handlers.
pub struct Daemon {
    dataplane: Mutex<Dataplane>,
}

impl Handler for Daemon {
    fn handle(&self, request: Request) -> anyhow::Result<serde_json::Value> {
        let dataplane = self
            .dataplane
            .lock()
            .map_err(|_| anyhow::anyhow!("data plane state poisoned"))?;
        match request {
            Request::Stats => Ok(json!({
                "counters": dataplane.counters()?,
                "attachments": dataplane.attachments(),
            })),
        }
    }
}

/// Runs the daemon until a termination signal arrives.
pub async fn run(config: Config, socket: &Path) -> anyhow::Result<()> {
    crate::system::require_root()?;
    crate::system::require_btf()?;
    // Check every interface before touching the kernel: a typo must not leave a half-attached
    // data plane behind.
    for name in &config.dataplane.interfaces {
        crate::system::ifindex(name).context("dataplane.interfaces")?;
    }

    let mut dataplane = Dataplane::load(&crate::dataplane::DataplaneOptions::default())?;
    for name in &config.dataplane.interfaces {
        dataplane.attach(name, config.dataplane.xdp_mode)?;
    }
    let control = ControlSocket::bind(socket)?;
    let daemon = Arc::new(Daemon {
        dataplane: Mutex::new(dataplane),
    });
    tracing::info!(socket = %socket.display(), "hagent running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = control.serve(daemon.clone()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
    drop(control);
    // Dropping the data plane detaches every XDP link and unloads the programs.
    drop(daemon);
    tracing::info!("data plane detached; bye");
    Ok(())
}
