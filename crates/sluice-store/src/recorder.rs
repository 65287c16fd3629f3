//! Keeps recording off the hot path: sessions hand events to an unbounded queue (never blocking,
//! never dropping), and one task writes whatever has gathered in a single transaction.

use crate::Store;
use sluice_core::AuditEvent;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const MAX_BATCH: usize = 4096;

#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<AuditEvent>,
}

pub struct RecorderTask {
    handle: JoinHandle<()>,
}

impl Recorder {
    /// Starts the writer. Events are gathered for up to `flush_interval` (or until a batch is full)
    /// and written in one transaction, so a busy gateway costs the store a commit per interval, not
    /// one per statement.
    pub fn spawn(store: Store, flush_interval: Duration) -> (Recorder, RecorderTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(write_loop(store, rx, flush_interval));
        (Recorder { tx }, RecorderTask { handle })
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
        let _ = self.handle.await;
    }
}

async fn write_loop(store: Store, mut rx: mpsc::UnboundedReceiver<AuditEvent>, flush_interval: Duration) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Unless a backlog already filled the batch, gather for one interval without listening:
        // senders on other threads then queue events without waking this task for each one.
        if batch.len() < MAX_BATCH {
            tokio::time::sleep(flush_interval).await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        // A failed write is retried: an audit record is not given up because the disk hiccuped.
        let mut attempt = 0u32;
        while let Err(e) = store.write_events(&batch).await {
            attempt += 1;
            tracing::error!(error = %e, events = batch.len(), attempt, "cannot write audit events; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
        }
        batch.clear();
    }
}
