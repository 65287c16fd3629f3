//! Keeps recording off the hot path: sessions hand events to an unbounded queue (never blocking,
//! never dropping), and one thread of its own writes whatever has gathered in a single transaction.
//! A record asked for durably (an action that can change state, before it is forwarded) ends the
//! gathering at once; every durable record asked for while a batch is written shares the next
//! batch's flush (group commit).

use crate::{EventWriter, Signing, SqliteStore};
use sluice_core::audit::DurableWrite;
use sluice_core::{AuditEvent, AuditRecord};
use sluice_store::StoreError;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

/// What a statement's text becomes before it is written (masking, in practice; `None`: as it
/// is). Run on the recorder's thread over whole batches, so a session does not pay for it.
pub type TextFilter = Box<dyn FnMut(&str) -> Option<String> + Send>;

const MAX_BATCH: usize = 4096;

/// Failed writes of a batch after which its durable records are given up (the actions waiting on
/// them are refused); the rest of the batch is retried until it is written.
const DURABLE_ATTEMPTS: u32 = 3;

/// Told whether a durable record was written.
type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;

#[derive(Clone, Debug)]
pub struct Recorder {
    /// Records for the next batch; `None` wakes the writer for a durable record.
    tx: mpsc::Sender<Option<AuditRecord>>,
    durable: mpsc::Sender<(AuditRecord, Waiter)>,
}

pub struct RecorderTask {
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Recorder {
    /// Starts the writer. Events are gathered for up to `flush_interval` (or until a batch is full,
    /// or a durable record is asked for) and written in one transaction, so a busy gateway costs
    /// the store a commit per interval, not one per statement.
    /// Every statement's text goes through `texts` before it is written. With `signing`, the
    /// chain is signed at its cadence and once more when the last handle is dropped.
    pub fn spawn(
        store: &SqliteStore,
        flush_interval: Duration,
        texts: TextFilter,
        signing: Option<Signing>,
    ) -> Result<(Recorder, RecorderTask), StoreError> {
        let mut writer = store.event_writer()?;
        if let Some(signing) = signing {
            writer = writer.with_signing(signing);
        }
        let (tx, rx) = mpsc::channel();
        let (durable, durable_rx) = mpsc::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("sluice-recorder".into()).spawn(move || {
            write_loop(writer, rx, durable_rx, flush_interval, texts);
            let _ = done_tx.send(());
        })?;
        Ok((Recorder { tx, durable }, RecorderTask { done }))
    }

    pub fn record(&self, record: AuditRecord) {
        if self.tx.send(Some(record)).is_err() {
            tracing::error!("recorder has stopped; an audit event was not recorded");
        }
    }

    pub fn record_durable(&self, record: AuditRecord) -> DurableWrite {
        let (waiter, written) = tokio::sync::oneshot::channel();
        // Queued first, then the wake-up: the writer finds the record when it wakes.
        let queued = self.durable.send((record, waiter)).is_ok() && self.tx.send(None).is_ok();
        Box::pin(async move {
            if !queued {
                return Err("the audit recorder has stopped".into());
            }
            written.await.unwrap_or_else(|_| Err("the audit recorder stopped before writing the record".into()))
        })
    }
}

impl sluice_core::AuditSink for Recorder {
    fn record(&self, record: AuditRecord) {
        Recorder::record(self, record);
    }

    fn record_durable(&self, record: AuditRecord) -> DurableWrite {
        Recorder::record_durable(self, record)
    }
}

impl RecorderTask {
    /// Waits until every event sent before all `Recorder` handles were dropped has been written.
    pub async fn finish(self) {
        let _ = self.done.await;
    }
}

fn write_loop(
    mut writer: EventWriter,
    rx: mpsc::Receiver<Option<AuditRecord>>,
    durable: mpsc::Receiver<(AuditRecord, Waiter)>,
    flush_interval: Duration,
    mut texts: TextFilter,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut behind = false;
    let mut last_text = None;
    while let Ok(first) = rx.recv() {
        batch.extend(first);
        let mut durables: Vec<(AuditRecord, Waiter)> = durable.try_iter().collect();
        if durables.is_empty() {
            if batch.is_empty() {
                // The wake-up of a durable record an earlier batch already took.
                continue;
            }
            // Unless a backlog filled the last batch, gather for one interval, listening only
            // for durable records: senders of the others queue them without waking this thread.
            if !behind && let Ok(asked) = durable.recv_timeout(flush_interval) {
                durables.push(asked);
            }
        }
        durables.extend(durable.try_iter());
        batch.extend(rx.try_iter().take(MAX_BATCH - 1).flatten());
        behind = batch.len() >= MAX_BATCH;
        let plain = batch.len();
        for (record, waiter) in durables {
            batch.push(record);
            waiters.push(waiter);
        }
        filter_texts(&mut batch, &mut texts, &mut last_text);
        // A failed write is retried: an audit record is not given up because the disk hiccuped.
        // An action waiting on its record is refused after a few attempts rather than held.
        let mut attempt = 0u32;
        while let Err(e) = writer.write(&batch) {
            attempt += 1;
            tracing::error!(error = %e, events = batch.len(), attempt, "cannot write audit events; retrying");
            if attempt == DURABLE_ATTEMPTS && !waiters.is_empty() {
                batch.truncate(plain);
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(Err(format!("the audit store cannot be written: {e}")));
                }
            }
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
        }
        for waiter in waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        batch.clear();
    }
    if let Err(e) = writer.checkpoint() {
        tracing::error!(error = %e, "could not sign the audit log's last checkpoint");
    }
}

/// Puts every statement's text through the filter. `last` is the previous text and what it became:
/// a text recorded again (a prepared statement's runs, a repeated query) is not filtered again.
fn filter_texts(batch: &mut [AuditRecord], texts: &mut TextFilter, last: &mut Option<(Arc<str>, Arc<str>)>) {
    for record in batch {
        let text = match &mut record.event {
            AuditEvent::Action(action) => &mut action.text,
            AuditEvent::ActionDecided { text, .. } => text,
            _ => continue,
        };
        let recorded = match last {
            Some((raw, filtered)) if Arc::ptr_eq(raw, text) || **raw == **text => Arc::clone(filtered),
            _ => {
                let filtered = texts(text).map_or_else(|| Arc::clone(text), Arc::from);
                *last = Some((Arc::clone(text), Arc::clone(&filtered)));
                filtered
            }
        };
        *text = recorded;
    }
}

#[cfg(test)]
mod tests {
    use super::{TextFilter, filter_texts};
    use sluice_core::{ActionDetail, ActionRecord, AuditEvent, AuditRecord, Principal};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn record(event: AuditEvent) -> AuditRecord {
        AuditRecord { at_us: 0, principal: Principal::new("agent", None), session: Some("s1".into()), event }
    }

    fn statement(text: &Arc<str>) -> AuditRecord {
        record(AuditEvent::Action(ActionRecord {
            seq: 1,
            text: Arc::clone(text),
            duration_us: 0,
            verdict: "allow",
            rule: None,
            detail: ActionDetail::Sql { path: "simple", rows: 0, tag: None, error_code: None, error_message: None },
        }))
    }

    fn text_of(record: &AuditRecord) -> &str {
        match &record.event {
            AuditEvent::Action(a) => &a.text,
            _ => "",
        }
    }

    #[test]
    fn statement_texts_are_filtered_once_per_distinct_run_of_text() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let mut filter: TextFilter = Box::new(move |text| {
            counted.fetch_add(1, Ordering::Relaxed);
            text.contains("secret").then(|| text.replace("secret", "[redacted]"))
        });
        let (secret, plain): (Arc<str>, Arc<str>) = ("SELECT 'secret'".into(), "SELECT 1".into());
        let mut batch = vec![
            statement(&secret),
            statement(&secret),
            record(AuditEvent::SessionEnded { reason: "secret".into() }),
            statement(&Arc::from("SELECT 'secret'")),
            statement(&plain),
        ];
        let mut last = None;
        filter_texts(&mut batch, &mut filter, &mut last);
        let texts: Vec<&str> = batch.iter().map(text_of).collect();
        assert_eq!(texts, ["SELECT '[redacted]'", "SELECT '[redacted]'", "", "SELECT '[redacted]'", "SELECT 1"]);
        assert_eq!(calls.load(Ordering::Relaxed), 2, "a text equal to the last one is not filtered again");
        let mut next = vec![statement(&plain)];
        filter_texts(&mut next, &mut filter, &mut last);
        assert_eq!(calls.load(Ordering::Relaxed), 2, "nor in the next batch");
    }
}
