//! The file sink: the rendered secrets replace the file atomically.
//!
//! A temporary file in the same directory is created (mode 0600), given its owner and mode,
//! written and fsynced, then renamed over the target and the directory fsynced. A reader sees
//! the old file or the new one, never a mix; a crash leaves at most a stray `.<name>.*.tmp`.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::render::render;
use super::{Payload, Sink, SinkError};
use crate::config::sinks::{FileSink, Owner};

impl Sink for FileSink {
    async fn deliver(&self, payload: &Payload<'_>) -> Result<(), SinkError> {
        let content = render(&self.format, payload.values)?;
        let (path, mode, owner) = (self.path.clone(), self.mode, self.owner);
        tokio::task::spawn_blocking(move || {
            write_atomically(&path, content.expose().as_bytes(), mode, owner)
        })
        .await
        .map_err(|e| SinkError(format!("the file writer stopped: {e}")))?
    }
}

/// Replaces `path` with `bytes`, owned by `owner` with `mode`, atomically and durably.
fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), SinkError> {
    let fail = |what: &str, e: std::io::Error| {
        SinkError(format!("cannot {what} {}: {}", path.display(), e.kind()))
    };
    let dir = path
        .parent()
        .ok_or_else(|| SinkError(format!("{} has no directory", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Created 0600, so nobody else can open it before its owner and mode are set.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| fail("create a temporary file beside", e))?;
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(temp.as_file(), owner.uid, owner.gid)
            .map_err(|e| fail("set the owner of", e))?;
    }
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("set the mode of", e))?;
    temp.write_all(bytes).map_err(|e| fail("write", e))?;
    temp.as_file().sync_all().map_err(|e| fail("fsync", e))?;
    temp.persist(path)
        .map_err(|e| fail("rename over", e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("fsync the directory of", e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::config::sinks::Format;
    use crate::secret::SecretString;

    #[tokio::test]
    async fn the_file_is_replaced_whole_with_its_mode() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("db.env");
        std::fs::write(&path, "OLD=1\n").expect("old");
        let sink = FileSink {
            path: path.clone(),
            format: Format::Env,
            mode: 0o640,
            owner: None,
        };
        let values = [("DB_PASSWORD".to_owned(), SecretString::new("s3cret"))];
        let payload = Payload {
            rotation_id: "r",
            version: 2,
            values: &values,
        };
        sink.deliver(&payload).await.expect("deliver");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "DB_PASSWORD=s3cret\n"
        );
        let meta = std::fs::metadata(&path).expect("meta");
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let strays: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(strays.is_empty(), "no temporary file is left");
    }

    #[tokio::test]
    async fn a_missing_directory_fails_without_the_value() {
        let sink = FileSink {
            path: "/nonexistent-rotator-dir/db.env".into(),
            format: Format::Env,
            mode: 0o600,
            owner: None,
        };
        let values = [("DB_PASSWORD".to_owned(), SecretString::new("s3cret"))];
        let payload = Payload {
            rotation_id: "r",
            version: 1,
            values: &values,
        };
        let error = sink.deliver(&payload).await.expect_err("fails");
        assert!(
            error
                .to_string()
                .contains("/nonexistent-rotator-dir/db.env")
        );
        assert!(!error.to_string().contains("s3cret"));
    }
}
