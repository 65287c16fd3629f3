//! Micro-benchmark of statement recording (`cargo bench -p sluice-store-sqlite`, divan): what writing a
//! batch of 500 pgbench-like statement records costs the store, per record. Recording runs off
//! the sessions' threads, but its CPU is the gateway's all the same.

use divan::Bencher;
use sluice_core::{ActionDetail, ActionRecord, AuditEvent, AuditRecord, Principal};
use sluice_store_sqlite::SqliteStore;
use std::sync::Arc;

fn main() {
    divan::main();
}

const BATCH: usize = 500;

fn batch(session: &Arc<str>, from: u64) -> Vec<AuditRecord> {
    let principal = Principal::new("agent", Some("t1".into()));
    (from..from + BATCH as u64)
        .map(|seq| AuditRecord {
            at_us: 1_764_000_000_000_000 + seq as i64 * 90,
            principal: Arc::clone(&principal),
            session: Some(Arc::clone(session)),
            event: AuditEvent::Action(ActionRecord {
                seq,
                text: Arc::from(format!(
                    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                    seq * 7919 % 1_000_000
                )),
                duration_us: 85,
                verdict: "allow",
                rule: Some(Arc::from("reads")),
                detail: ActionDetail::Sql {
                    path: "simple",
                    rows: 1,
                    tag: Some("SELECT 1".into()),
                    error_code: None,
                    error_message: None,
                    result: None,
                },
            }),
        })
        .collect()
}

#[divan::bench(sample_count = 20)]
fn write_500_statements(bencher: Bencher) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("sluice-record-bench-{}", std::process::id()));
    let store = runtime.block_on(SqliteStore::open(&dir.join("state.db"))).expect("store");
    let mut writer = store.event_writer().expect("writer");
    let session: Arc<str> = Arc::from("0b9c6a52-7d1e-4c52-9a1e-3f1f6d2f8e11");
    let mut seq = 0;
    bencher
        .counter(divan::counter::ItemsCount::new(BATCH))
        .with_inputs(|| {
            seq += BATCH as u64;
            batch(&session, seq)
        })
        .bench_local_values(|events| writer.write(&events).expect("write"));
    let _ = std::fs::remove_dir_all(dir);
}
