//! Keeps recording off the hot path: sessions hand events to an unbounded queue (never blocking,
//! never dropping), and one thread of its own writes whatever has gathered in a single transaction.
//! A record asked for durably (an action that can change state, before it is forwarded) is
//! appended to the decision journal at once and flushed with every other one waiting (group
//! commit), its action released, and the record chained with the batch (see `journal`).

use crate::journal::Journal;
use crate::{EventWriter, Signing, SqliteStore};
use sluice_core::audit::DurableWrite;
use sluice_core::{ActionDetail, AuditEvent, AuditRecord};
use sluice_store::StoreError;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a statement's text becomes before it is written (masking, in practice; `None`: as it
/// is). Run on the recorder's thread over whole batches, so a session does not pay for it.
pub type TextFilter = Box<dyn FnMut(&str) -> Option<String> + Send>;

const MAX_BATCH: usize = 4096;

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
        let mut journal = Journal::open(store.path())?;
        let recovered = journal.recover(&mut writer)?;
        if recovered > 0 {
            tracing::warn!(recovered, "chained decisions a previous run journaled but had not written to the log");
        }
        let (tx, rx) = mpsc::channel();
        let (durable, durable_rx) = mpsc::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("sluice-recorder".into()).spawn(move || {
            write_loop(writer, journal, rx, durable_rx, flush_interval, texts);
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
    mut journal: Journal,
    rx: mpsc::Receiver<Option<AuditRecord>>,
    durable: mpsc::Receiver<(AuditRecord, Waiter)>,
    flush_interval: Duration,
    mut texts: TextFilter,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut behind = false;
    let mut last_text = None;
    while let Ok(first) = rx.recv() {
        // Texts are masked as records join the batch: the durable ones are masked before they
        // are journaled, and none is masked twice.
        batch.extend(first);
        filter_texts(&mut batch, &mut texts, &mut last_text);
        // Unless a backlog filled the last batch, gather for one interval, listening only for
        // durable records (senders of the others queue them without waking this thread): each is
        // journaled as it comes, with those that came meanwhile.
        let deadline = Instant::now() + if behind { Duration::ZERO } else { flush_interval };
        loop {
            let mut asked: Vec<(AuditRecord, Waiter)> = durable.try_iter().collect();
            if asked.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                match durable.recv_timeout(left) {
                    Ok(one) => asked.push(one),
                    Err(_) => break,
                }
                asked.extend(durable.try_iter());
            }
            journal_durably(&mut journal, writer.instance(), asked, &mut batch, &mut texts, &mut last_text);
        }
        let gathered = batch.len();
        batch.extend(rx.try_iter().take(MAX_BATCH - 1).flatten());
        filter_texts(&mut batch[gathered..], &mut texts, &mut last_text);
        // That took the wake-ups of durable records asked for since the loop above: they are
        // queued before their wake-up, so they are all there now, and each is journaled here or
        // its wake-up is still to come.
        let late: Vec<(AuditRecord, Waiter)> = durable.try_iter().collect();
        if !late.is_empty() {
            journal_durably(&mut journal, writer.instance(), late, &mut batch, &mut texts, &mut last_text);
        }
        if batch.is_empty() {
            continue;
        }
        behind = batch.len() >= MAX_BATCH;
        // A failed write is retried: an audit record is not given up because the disk hiccuped
        // (the journaled ones are safe meanwhile; their actions went ahead).
        let mut attempt = 0u32;
        while let Err(e) = writer.write(&batch) {
            attempt += 1;
            tracing::error!(error = %e, events = batch.len(), attempt, "cannot write audit events; retrying");
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
        }
        if let Err(e) = journal.clear() {
            // Harmless: what it holds is in the log, and the next start will not chain it twice.
            tracing::warn!(error = %e, "could not empty the decision journal");
        }
        batch.clear();
    }
    if let Err(e) = writer.checkpoint() {
        tracing::error!(error = %e, "could not sign the audit log's last checkpoint");
    }
}

/// Journals durable records (masked first: the journal is on disk like the log) and tells their
/// senders; they are then chained with `batch`. If the journal cannot be written, their actions are
/// refused and the records dropped: what was not recorded does not run.
fn journal_durably(
    journal: &mut Journal,
    instance: &str,
    asked: Vec<(AuditRecord, Waiter)>,
    batch: &mut Vec<AuditRecord>,
    texts: &mut TextFilter,
    last_text: &mut Option<(Arc<str>, Arc<str>)>,
) {
    let (mut records, waiters): (Vec<AuditRecord>, Vec<Waiter>) = asked.into_iter().unzip();
    filter_texts(&mut records, texts, last_text);
    let mut lines = Vec::with_capacity(records.len() * 512);
    for record in &records {
        lines.extend_from_slice(sluice_audit::encode(instance, 0, record).as_bytes());
        lines.push(b'\n');
    }
    let answer = match journal.append(&lines) {
        Ok(()) => {
            batch.extend(records);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot write the decision journal; refusing the changes waiting on it");
            Err(format!("the decision journal cannot be written: {e}"))
        }
    };
    for waiter in waiters {
        let _ = waiter.send(answer.clone());
    }
}

/// Puts every statement's text through the filter. `last` is the previous text and what it became:
/// a text recorded again (a prepared statement's runs, a repeated query) is not filtered again.
fn filter_texts(batch: &mut [AuditRecord], texts: &mut TextFilter, last: &mut Option<(Arc<str>, Arc<str>)>) {
    for record in batch {
        let text = match &mut record.event {
            AuditEvent::Action(action) => {
                // A result's values reach the log as the client got them; the detectors look at
                // them (and the column names) once more, as at the statement's text, before they
                // are cut to their budget.
                if let ActionDetail::Sql { result: Some(result), .. } = &mut action.detail {
                    result.rename_columns(&mut *texts);
                    for value in result.values_mut() {
                        if let Some(masked) = texts(value) {
                            *value = masked;
                        }
                    }
                    result.fit_budget();
                }
                // An error may quote what the client sent (a parser's unexpected token, a
                // header's value): the detectors read it as they read the text.
                let error = match &mut action.detail {
                    ActionDetail::Sql { error_message: error, .. }
                    | ActionDetail::Http { error, .. }
                    | ActionDetail::Exec { error, .. } => error,
                };
                if let Some(masked) = error.as_deref().and_then(&mut *texts) {
                    *error = Some(masked);
                }
                &mut action.text
            }
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
mod durable_tests {
    use super::Recorder;
    use crate::SqliteStore;
    use sluice_core::{AuditEvent, AuditRecord, Principal};
    use std::sync::Arc;
    use std::time::Duration;

    fn decided(session: &str, n: usize) -> AuditRecord {
        AuditRecord::now(
            Principal::new("agent", None),
            Some(Arc::from(session)),
            AuditEvent::ActionDecided {
                action: "sql",
                text: Arc::from(format!("UPDATE t SET n = {n}")),
                verdict: "allow",
                rule: None,
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_durable_record_is_answered_and_chained_among_a_stream_of_others() {
        let dir = std::env::temp_dir().join(sluice_core::ids::new_id("sluice-recorder-test-"));
        let store = SqliteStore::open(&dir.join("sluice.db")).await.unwrap();
        let (recorder, task) = Recorder::spawn(&store, Duration::from_millis(2), Box::new(|_| None), None).unwrap();
        let sessions: Vec<_> = (0..4)
            .map(|s| {
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let session = format!("s_{s}");
                    for n in 0..150 {
                        let ended = AuditEvent::SessionEnded { reason: format!("{n}") };
                        recorder.record(AuditRecord::now(Principal::new("agent", None), None, ended));
                        let written = recorder.record_durable(decided(&session, n));
                        let answer = tokio::time::timeout(Duration::from_secs(10), written).await;
                        assert_eq!(answer, Ok(Ok(())), "durable record {n} of {session}");
                    }
                })
            })
            .collect();
        for session in sessions {
            session.await.unwrap();
        }
        drop(recorder);
        task.finish().await;
        let conn = rusqlite::Connection::open(dir.join("sluice.db")).unwrap();
        let chained: i64 =
            conn.query_row("SELECT COUNT(*) FROM audit_log WHERE kind = 'action_decided'", [], |r| r.get(0)).unwrap();
        assert_eq!(chained, 600);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
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
            detail: ActionDetail::Sql {
                path: "simple",
                rows: 0,
                tag: None,
                error_code: None,
                error_message: None,
                result: None,
            },
        }))
    }

    fn text_of(record: &AuditRecord) -> &str {
        match &record.event {
            AuditEvent::Action(a) => &a.text,
            _ => "",
        }
    }

    #[test]
    fn an_error_quoting_what_the_client_sent_is_filtered_as_the_text_is() {
        let mut filter: TextFilter = Box::new(|text| text.contains("4111").then(|| text.replace("4111", "[card]")));
        let mut batch = vec![statement(&Arc::from("GET /x"))];
        if let AuditEvent::Action(action) = &mut batch[0].event {
            action.detail = ActionDetail::Http {
                status: 400,
                request_bytes: 0,
                response_bytes: 0,
                error: Some("expected R_PAREN, got 4111".into()),
                excerpts: None,
            };
        }
        filter_texts(&mut batch, &mut filter, &mut None);
        let AuditEvent::Action(action) = &batch[0].event else { unreachable!() };
        let ActionDetail::Http { error, .. } = &action.detail else { unreachable!() };
        assert_eq!(error.as_deref(), Some("expected R_PAREN, got [card]"));
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
