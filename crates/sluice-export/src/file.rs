//! The JSON-lines sinks: a file, rotated by size and by age (rotated files renamed with the time
//! of rotation, the oldest beyond `keep` deleted), and standard output. Each batch is flushed to
//! the disk before the sink's cursor moves past it.

use crate::document::json_lines;
use crate::{Document, Transport};
use sluice_config::FileSink;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) struct FileTransport {
    state: Arc<parking_lot::Mutex<Rotating>>,
}

struct Rotating {
    settings: FileSink,
    open: Option<Open>,
}

struct Open {
    file: File,
    size: u64,
    since: SystemTime,
}

impl FileTransport {
    pub(crate) fn new(settings: FileSink) -> FileTransport {
        FileTransport { state: Arc::new(parking_lot::Mutex::new(Rotating { settings, open: None })) }
    }
}

#[async_trait::async_trait]
impl Transport for FileTransport {
    async fn deliver(&mut self, docs: &[Document]) -> Result<(), String> {
        let lines = json_lines(docs);
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.lock().write(&lines))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

impl Rotating {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.open.as_ref().is_some_and(|open| self.due(open)) {
            self.open = None;
            self.rotate()?;
        }
        if self.open.is_none() {
            self.open = Some(self.reopen()?);
        }
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        let written = open.file.write_all(lines).and_then(|()| open.file.sync_data());
        if written.is_err() {
            // What part of the batch got in is taken back (the retry writes it whole), and the
            // file reopened for the retry: one deleted or moved away is written anew.
            let _ = open.file.set_len(open.size);
            self.open = None;
        } else {
            open.size += lines.len() as u64;
        }
        written
    }

    fn due(&self, open: &Open) -> bool {
        let settings = &self.settings;
        let by_size = settings.rotate_bytes > 0 && open.size >= settings.rotate_bytes;
        let age = SystemTime::now().duration_since(open.since).unwrap_or_default();
        let by_age = settings.rotate_interval_s > 0 && age >= Duration::from_secs(settings.rotate_interval_s);
        by_size || by_age
    }

    fn reopen(&self) -> std::io::Result<Open> {
        let path = &self.settings.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let meta = file.metadata()?;
        let since = meta.created().or_else(|_| meta.modified()).unwrap_or_else(|_| SystemTime::now());
        Ok(Open { file, size: meta.len(), since })
    }

    /// Renames the file to `<name>.<UTC time>` and deletes the oldest rotated files beyond `keep`.
    fn rotate(&self) -> std::io::Result<()> {
        let path = &self.settings.path;
        let stamp = crate::document::timestamp(sluice_core::audit::now_us()).replace([':', '-'], "");
        std::fs::rename(path, rotated_name(path, &stamp))?;
        let mut rotated = rotated_files(path)?;
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.settings.keep);
        for old in &rotated[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

fn rotated_name(path: &Path, stamp: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(stamp);
    path.with_file_name(name)
}

/// The rotated files of `path` (named `<name>.<time>`), in no particular order.
fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let prefix = format!("{}.", path.file_name().unwrap_or_default().to_string_lossy());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// JSON lines on standard output.
pub(crate) struct StdoutTransport;

#[async_trait::async_trait]
impl Transport for StdoutTransport {
    async fn deliver(&mut self, docs: &[Document]) -> Result<(), String> {
        let lines = json_lines(docs);
        // Off the runtime: a reader that does not keep up blocks this write, not the sessions.
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&lines).and_then(|()| out.flush())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(seq: u64, text: &str) -> Document {
        Document {
            seq,
            at_us: 0,
            kind: "action".into(),
            severity: 6,
            json: format!("{{\"seq\":{seq},\"t\":\"{text}\"}}"),
        }
    }

    #[tokio::test]
    async fn files_rotate_by_size_and_only_keep_the_newest() {
        let dir = std::env::temp_dir().join(format!("sluice-file-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let settings = FileSink { path: path.clone(), rotate_bytes: 100, rotate_interval_s: 0, keep: 2 };
        let mut sink = FileTransport::new(settings);
        for seq in 0..10 {
            sink.deliver(&[doc(seq, &"x".repeat(60))]).await.unwrap();
            // Rotated names carry microseconds; keep them distinct.
            std::thread::sleep(Duration::from_millis(2));
        }
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        // A file rotates once it has passed 100 bytes: after its second 70-byte line.
        assert_eq!(current.lines().count(), 2, "{current}");
        assert!(current.contains("\"seq\":8") && current.contains("\"seq\":9"), "{current}");
        let mut all: Vec<String> = rotated.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        all.sort();
        assert!(all.iter().any(|f| f.contains("\"seq\":6") && f.contains("\"seq\":7")), "{all:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
