//! SIGHUP reload: re-reads the configuration file (and the secret files and environment it
//! refers to) and swaps the local backend's registered set. Only `[[connections]]`,
//! `[[rotations]]` and the key ring are reloaded; other settings take a restart. A file that
//! does not validate changes nothing, and calls already running finish on the set they started
//! with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::backend::LocalBackend;
use crate::config::{Config, Env};

/// Listens for SIGHUP and reloads `backend` from `file` on each one, until aborted.
pub fn spawn_on_sighup(backend: Arc<LocalBackend>, file: Option<PathBuf>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGHUP; reload is off");
                    return;
                }
            };
        while hangups.recv().await.is_some() {
            reload(&backend, file.as_deref()).await;
        }
    })
}

/// One reload; the outcome is logged.
pub async fn reload(backend: &LocalBackend, file: Option<&Path>) {
    let Some(file) = file else {
        tracing::warn!("SIGHUP ignored: the server was started without a configuration file");
        return;
    };
    let env: Env = std::env::vars().collect();
    let config = match Config::load(Some(file), &env) {
        Ok(config) => config,
        Err(error) => {
            let problems = error.0.len();
            tracing::error!(file = %file.display(), problems, %error, "reload refused: the configuration does not validate; nothing changed");
            return;
        }
    };
    if config.local.is_empty() {
        tracing::error!(file = %file.display(), "reload refused: the configuration registers no local rotation; nothing changed");
        return;
    }
    match backend.reload(config.local).await {
        Ok(()) => {}
        Err(error) => tracing::error!(%error, "reload failed"),
    }
}
