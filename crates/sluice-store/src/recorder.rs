//! Keeps recording off the hot path: sessions hand events to an unbounded queue (never blocking,
//! never dropping), and one thread of its own writes whatever has gathered in a single transaction.

use crate::{EventWriter, Store, StoreError};
use sluice_core::AuditEvent;
use std::sync::mpsc;
use std::time::Duration;

const MAX_BATCH: usize = 4096;

#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<AuditEvent>,
}

pub struct RecorderTask {
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Recorder {
    /// Starts the writer. Events are gathered for up to `flush_interval` (or until a batch is full)
    /// and written in one transaction, so a busy gateway costs the store a commit per interval, not
    /// one per statement.
    pub fn spawn(store: &Store, flush_interval: Duration) -> Result<(Recorder, RecorderTask), StoreError> {
        let writer = store.event_writer()?;
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("sluice-recorder".into()).spawn(move || {
            write_loop(writer, rx, flush_interval);
            let _ = done_tx.send(());
        })?;
        Ok((Recorder { tx }, RecorderTask { done }))
    }

    pub fn record(&self, event: AuditEvent) {
        if self.tx.send(event).is_err() {
            tracing::error!("recorder has stopped; an audit event was not recorded");
        }
    }
}

impl RecorderTask {
    /// Waits until every event sent before all `Recorder` handles were dropped has been written.
    pub async fn finish(self) {
        let _ = self.done.await;
    }
}

fn write_loop(mut writer: EventWriter, rx: mpsc::Receiver<AuditEvent>, flush_interval: Duration) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut behind = false;
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // Unless a backlog filled the last batch, gather for one interval without listening:
        // senders then queue events without waking this thread for each one.
        if !behind {
            std::thread::sleep(flush_interval);
        }
        batch.extend(rx.try_iter().take(MAX_BATCH - 1));
        behind = batch.len() == MAX_BATCH;
        // A failed write is retried: an audit record is not given up because the disk hiccuped.
        let mut attempt = 0u32;
        while let Err(e) = writer.write(&batch) {
            attempt += 1;
            tracing::error!(error = %e, events = batch.len(), attempt, "cannot write audit events; retrying");
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
        }
        batch.clear();
    }
}
