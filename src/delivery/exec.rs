//! The exec sink: a command reads the rendered secrets on its stdin.
//!
//! The values go to stdin only: never to its arguments, never to its environment, which is
//! cleared to `PATH` plus `ROTATOR_ROTATION_ID` and `ROTATOR_VERSION` (rotator's own environment
//! may hold the references' secrets). Its stdout and stderr are discarded, so nothing it echoes
//! reaches rotator's logs. It runs in its own process group, and the whole group is killed
//! when `timeout_seconds` passes. Exit status 0 is a delivery; anything else is retried.

use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt as _;

use super::render::render;
use super::{Payload, Sink, SinkError};
use crate::config::sinks::ExecSink;

/// The `PATH` of the command when rotator has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Sink for ExecSink {
    async fn deliver(&self, payload: &Payload<'_>) -> Result<(), SinkError> {
        let content = render(&self.format, payload.values)?;
        let Some((program, args)) = self.command.split_first() else {
            return Err(SinkError("the command is empty".into()));
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned()),
            )
            .env("ROTATOR_ROTATION_ID", payload.rotation_id)
            .env("ROTATOR_VERSION", payload.version.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SinkError(format!("cannot start {program}: {}", e.kind())))?;
        let pid = child.id();
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A command that exits without reading its input is judged by its status.
                let _ = stdin.write_all(content.expose().as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
            child.wait().await
        };
        let status = match tokio::time::timeout(self.timeout, run).await {
            Ok(status) => status.map_err(|e| SinkError(format!("{program}: {}", e.kind())))?,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = child.wait().await;
                return Err(SinkError(format!(
                    "{program} did not finish within {} s and was killed",
                    self.timeout.as_secs()
                )));
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(SinkError(format!("{program} exited with {status}")))
        }
    }
}
