//! Exports the audit log to the sinks of `[[audit.sinks]]`. The log itself is every sink's spool:
//! a sink reads records in order from its cursor (the last record it delivered, kept in the store
//! so that a restart resumes there), sends them in batches, and moves the cursor only once the
//! batch is delivered; a sink that is down is retried with backoff while the log keeps growing, and
//! catches up in order once it is back (at least once: a receiver drops what it has by sequence
//! number). Exports run on their own tasks and only read the log, so a slow or dead receiver never
//! holds up a session; one that falls more than `max_backlog` records behind either skips the
//! oldest (`drop_oldest`) or makes the gateway refuse new sessions until it catches up
//! (`refuse_sessions`), loudly in the log and in the metrics either way.

mod document;
mod file;
mod http;
mod syslog;
mod tls;

pub use document::{Document, DocumentError, ECS_VERSION, document, fit, timestamp};

use parking_lot::Mutex;
use sluice_config::{BacklogFull, SinkConfig, SinkKind};
use sluice_store::AuditExportStore;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a sink with nothing to send asks the store for records another process appended.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to deliver to a sink that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A sink's cursor is saved at most this often (and when it stops): a crash in between sends
/// again what was delivered since, which receivers drop by sequence number.
const SAVE_CURSOR: Duration = Duration::from_secs(1);
/// How long the sinks may go on delivering what is left once the gateway stops.
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// Records per batch for sinks without a setting of their own.
const BATCH: usize = 1000;

/// Sends a batch of documents, in order. `Ok` once the receiver has them, as far as the transport
/// can tell.
#[async_trait::async_trait]
pub(crate) trait Transport: Send + Sync {
    async fn deliver(&mut self, docs: &[Document]) -> Result<(), String>;
}

/// Told why new sessions must be refused (`None`: they may be opened again).
pub type RefuseSessions = Arc<dyn Fn(Option<String>) + Send + Sync>;

/// A metric of every sink: its name, type, help text, and how to read it.
type Metric = (&'static str, &'static str, &'static str, fn(&SinkStatus) -> u64);

/// The running exports.
pub struct Exports {
    sinks: Vec<Arc<SinkStatus>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

/// What a sink has done so far (the metrics).
#[derive(Debug, Default)]
pub struct SinkStatus {
    pub name: String,
    pub kind: &'static str,
    backlog: AtomicU64,
    cursor: AtomicU64,
    delivered: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    full: AtomicBool,
}

/// The sinks refusing sessions, each with its reason; the gateway is told the sum.
struct Holds {
    reasons: Mutex<BTreeMap<String, String>>,
    refuse: RefuseSessions,
}

impl Holds {
    fn set(&self, sink: &str, reason: Option<String>) {
        let mut reasons = self.reasons.lock();
        match reason {
            Some(reason) => reasons.insert(sink.to_string(), reason),
            None => reasons.remove(sink),
        };
        let all: Vec<&str> = reasons.values().map(String::as_str).collect();
        (self.refuse)((!all.is_empty()).then(|| all.join("; ")));
    }
}

impl Exports {
    /// Starts a task for every sink. Fails when a sink cannot be set up at all (an unreadable CA
    /// or token file); a receiver that cannot be reached is only retried.
    pub fn start(
        store: Arc<dyn AuditExportStore>,
        sinks: &[SinkConfig],
        refuse: RefuseSessions,
    ) -> Result<Exports, String> {
        let (stop, _) = watch::channel(false);
        let holds = Arc::new(Holds { reasons: Mutex::default(), refuse });
        let mut exports = Exports { sinks: Vec::new(), tasks: Mutex::default(), stop };
        for sink in sinks {
            let transport = transport(&sink.kind).map_err(|e| format!("audit sink {:?}: {e}", sink.name))?;
            let status =
                Arc::new(SinkStatus { name: sink.name.clone(), kind: sink.kind.name(), ..SinkStatus::default() });
            let export = SinkExport {
                store: Arc::clone(&store),
                config: sink.clone(),
                transport,
                status: Arc::clone(&status),
                holds: Arc::clone(&holds),
            };
            exports.tasks.lock().push(tokio::spawn(export.run(exports.stop.subscribe())));
            exports.sinks.push(status);
        }
        Ok(exports)
    }

    /// The sinks' metrics in Prometheus's text format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let metrics: [Metric; 6] = [
            ("backlog", "gauge", "Records in the audit log the sink has not delivered yet.", |s| {
                s.backlog.load(Ordering::Relaxed)
            }),
            ("cursor", "gauge", "The sequence number of the last record the sink delivered.", |s| {
                s.cursor.load(Ordering::Relaxed)
            }),
            ("delivered_total", "counter", "Records delivered.", |s| s.delivered.load(Ordering::Relaxed)),
            ("failures_total", "counter", "Failed attempts to deliver a batch.", |s| {
                s.failures.load(Ordering::Relaxed)
            }),
            (
                "dropped_total",
                "counter",
                "Records never delivered: skipped for a full backlog, or removed by retention first.",
                |s| s.dropped.load(Ordering::Relaxed),
            ),
            ("backlog_full", "gauge", "1 while the sink is more than max_backlog records behind.", |s| {
                u64::from(s.full.load(Ordering::Relaxed))
            }),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(out, "# HELP sluice_audit_export_{name} {help}\n# TYPE sluice_audit_export_{name} {kind}");
            for sink in &self.sinks {
                let _ = writeln!(
                    out,
                    "sluice_audit_export_{name}{{sink=\"{}\",kind=\"{}\"}} {}",
                    sink.name,
                    sink.kind,
                    value(sink)
                );
            }
        }
        out
    }

    /// Stops the exports: each sink first delivers what the log holds, for up to `STOP_WITHIN`.
    pub async fn finish(&self) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + STOP_WITHIN + Duration::from_secs(1);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("an audit export did not stop in time");
            }
        }
    }
}

fn transport(kind: &SinkKind) -> Result<Box<dyn Transport>, String> {
    Ok(match kind {
        SinkKind::File(file) => Box::new(file::FileTransport::new(file.clone())),
        SinkKind::Stdout(_) => Box::new(file::StdoutTransport),
        SinkKind::Syslog(syslog) => Box::new(syslog::SyslogSender::new(syslog.clone())?),
        SinkKind::Http(http) => Box::new(http::HttpSender::new(http)?),
    })
}

struct SinkExport {
    store: Arc<dyn AuditExportStore>,
    config: SinkConfig,
    transport: Box<dyn Transport>,
    status: Arc<SinkStatus>,
    holds: Arc<Holds>,
}

/// Where a sink's loop stands.
struct Progress {
    cursor: u64,
    saved: u64,
    saved_at: Instant,
    failed_in_a_row: u32,
    /// After a failed delivery: not tried again before this (the backlog is watched meanwhile).
    retry_at: Option<Instant>,
    /// When skipping records for a full backlog was last logged.
    dropped_logged_at: Instant,
    /// Set once the gateway stops: deliver what is there until then, then stop.
    stop_by: Option<Instant>,
}

impl SinkExport {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.config.name.clone();
        let (batch_max, batch_wait) = match &self.config.kind {
            SinkKind::Http(http) => (http.batch_max, Duration::from_millis(http.batch_wait_ms)),
            _ => (BATCH, Duration::ZERO),
        };
        let mut appended = self.store.appended();
        let mut progress = Progress {
            cursor: 0,
            saved: 0,
            saved_at: Instant::now(),
            failed_in_a_row: 0,
            retry_at: None,
            dropped_logged_at: Instant::now(),
            stop_by: None,
        };
        let within = STOP_WITHIN;
        loop {
            match self.store.export_cursor(&name).await {
                Ok(cursor) => {
                    (progress.cursor, progress.saved) = (cursor, cursor);
                    self.status.cursor.store(cursor, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "cannot read the audit export's cursor; retrying");
                    if pause(&mut stop, &mut progress, POLL, within).await {
                        return;
                    }
                }
            }
        }
        let mut gathered = false;
        loop {
            if progress.stop_by.is_some_and(|by| Instant::now() >= by) {
                break;
            }
            let backlog = match self.backlog(&mut progress).await {
                Ok(backlog) => backlog,
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "cannot read the audit log for export; retrying");
                    if pause(&mut stop, &mut progress, POLL, within).await {
                        break;
                    }
                    continue;
                }
            };
            if backlog == 0 {
                if progress.stop_by.is_some() {
                    break;
                }
                self.save_cursor(&mut progress, false).await;
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => progress.stop_by = Some(Instant::now() + within),
                }
                continue;
            }
            // Waiting to retry: the backlog (and its cap) is looked at again every POLL meanwhile.
            if let Some(at) = progress.retry_at.filter(|at| *at > Instant::now()) {
                pause(&mut stop, &mut progress, (at - Instant::now()).min(POLL), within).await;
                continue;
            }
            // A partial batch waits once for more records, unless the gateway is stopping.
            if !gathered && (backlog as usize) < batch_max && !batch_wait.is_zero() && progress.stop_by.is_none() {
                gathered = true;
                pause(&mut stop, &mut progress, batch_wait, within).await;
                continue;
            }
            gathered = false;
            match self.deliver_next(&mut progress, batch_max).await {
                Ok(()) => progress.retry_at = None,
                Err(e) => {
                    self.status.failures.fetch_add(1, Ordering::Relaxed);
                    progress.failed_in_a_row += 1;
                    let backoff = backoff(progress.failed_in_a_row);
                    if progress.failed_in_a_row == 1 || progress.failed_in_a_row.is_multiple_of(20) {
                        tracing::error!(
                            sink = %name, error = %e, backlog, attempt = progress.failed_in_a_row,
                            retry_in_ms = backoff.as_millis() as u64,
                            "cannot deliver audit records; they stay in the log and are sent again"
                        );
                    }
                    progress.retry_at = Some(Instant::now() + backoff);
                }
            }
        }
        self.save_cursor(&mut progress, true).await;
        let left = self.status.backlog.load(Ordering::Relaxed);
        if left > 0 {
            tracing::warn!(sink = %name, left, "stopped before delivering every audit record; the next start sends them");
        }
    }

    /// How far the sink is behind; applies `on_backlog_full` when that is too far.
    async fn backlog(&self, progress: &mut Progress) -> Result<u64, String> {
        let name = &self.config.name;
        let (first, head) = self.store.audit_bounds().await.map_err(|e| e.to_string())?;
        if first > progress.cursor + 1 {
            let gone = first - 1 - progress.cursor;
            tracing::error!(sink = %name, gone, "audit records were removed by retention before this sink delivered them");
            self.status.dropped.fetch_add(gone, Ordering::Relaxed);
            progress.cursor = first - 1;
        }
        let mut backlog = head.saturating_sub(progress.cursor);
        let cap = self.config.max_backlog;
        let full = backlog > cap;
        match self.config.on_backlog_full {
            BacklogFull::DropOldest => {
                let was_full = self.status.full.swap(full, Ordering::Relaxed);
                if full {
                    let skipped = backlog - cap;
                    // Loud when it starts; while it goes on, the metric counts (and the log says so
                    // once a minute).
                    if !was_full || progress.dropped_logged_at.elapsed() >= Duration::from_secs(60) {
                        progress.dropped_logged_at = Instant::now();
                        tracing::error!(
                            sink = %name, skipped, max_backlog = cap,
                            "audit export backlog is full: skipping the oldest records this sink has not received \
                             (they stay in the log)"
                        );
                    }
                    self.status.dropped.fetch_add(skipped, Ordering::Relaxed);
                    progress.cursor = head - cap;
                    self.status.cursor.store(progress.cursor, Ordering::Relaxed);
                    backlog = cap;
                }
            }
            // Sessions are let in again once the backlog is down to half the cap, so that it does not
            // flap at the cap (each refused attempt is a record too).
            BacklogFull::RefuseSessions => match (full, self.status.full.load(Ordering::Relaxed)) {
                (true, false) => {
                    self.status.full.store(true, Ordering::Relaxed);
                    tracing::error!(
                        sink = %name, backlog, max_backlog = cap,
                        "audit export backlog is full: refusing new sessions until this sink catches up"
                    );
                    let reason = format!(
                        "audit export {name:?} is {backlog} records behind (its cap is {cap}); new sessions are \
                         refused until it catches up"
                    );
                    self.holds.set(name, Some(reason));
                }
                (false, true) if backlog <= cap / 2 => {
                    self.status.full.store(false, Ordering::Relaxed);
                    tracing::warn!(sink = %name, backlog, "audit export has caught up to half its backlog cap; new sessions are accepted");
                    self.holds.set(name, None);
                }
                _ => {}
            },
        }
        self.status.backlog.store(backlog, Ordering::Relaxed);
        Ok(backlog)
    }

    /// Reads and delivers the next batch after the cursor.
    async fn deliver_next(&mut self, progress: &mut Progress, batch_max: usize) -> Result<(), String> {
        let records =
            self.store.audit_records(progress.cursor + 1, batch_max as u64).await.map_err(|e| e.to_string())?;
        let Some(last) = records.last().map(|r| r.seq) else { return Ok(()) };
        let docs: Vec<Document> = records
            .iter()
            .map(|record| {
                document(record, self.config.format).unwrap_or_else(|e| {
                    tracing::error!(sink = %self.config.name, error = %e, "exporting a record as it cannot be mapped");
                    document::unmapped(record, &e)
                })
            })
            .collect();
        self.transport.deliver(&docs).await?;
        if progress.failed_in_a_row > 0 {
            tracing::warn!(sink = %self.config.name, after = progress.failed_in_a_row, "delivering audit records again");
            progress.failed_in_a_row = 0;
        }
        self.status.delivered.fetch_add(docs.len() as u64, Ordering::Relaxed);
        progress.cursor = last;
        self.status.cursor.store(last, Ordering::Relaxed);
        let delivered = docs.len() as u64;
        let _ = self
            .status
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(delivered)));
        self.save_cursor(progress, false).await;
        Ok(())
    }

    /// Keeps the cursor in the store: at most once per `SAVE_CURSOR`, unless `now`.
    async fn save_cursor(&self, progress: &mut Progress, now: bool) {
        if progress.cursor == progress.saved || (!now && progress.saved_at.elapsed() < SAVE_CURSOR) {
            return;
        }
        match self.store.set_export_cursor(&self.config.name, progress.cursor, sluice_core::audit::now_us()).await {
            Ok(()) => (progress.saved, progress.saved_at) = (progress.cursor, Instant::now()),
            Err(e) => tracing::warn!(sink = %self.config.name, error = %e, "cannot save the audit export's cursor"),
        }
    }
}

/// Waits `wait`, or less when the gateway stops meanwhile (then only until the stop deadline);
/// whether the deadline has passed.
async fn pause(stop: &mut watch::Receiver<bool>, progress: &mut Progress, wait: Duration, within: Duration) -> bool {
    match progress.stop_by {
        Some(by) => tokio::time::sleep_until(by.min(Instant::now() + wait)).await,
        None => tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => progress.stop_by = Some(Instant::now() + within),
        },
    }
    progress.stop_by.is_some_and(|by| Instant::now() >= by)
}

/// 250 ms after the first failure, doubling up to `MAX_BACKOFF`.
fn backoff(failed_in_a_row: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failed_in_a_row.saturating_sub(1).min(10))).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
