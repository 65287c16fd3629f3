//! Micro-benchmark of the relay's per-frame work on a large result (`cargo bench -p sluice-pg`,
//! divan): splitting 10,000 pgbench_accounts DataRows into frames as the relay does, and masking
//! them with every detector on (the 84-byte `filler` of each row scanned).

use bytes::{BufMut, BytesMut};
use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use sluice_core::Identity;
use sluice_mask::{MaskingSpec, TokenKey};
use sluice_pg::codec::{HEADER_LEN, peek_frame, put_message};
use sluice_pg::mask::{Field, ResponseMasker, RowPlan};
use std::sync::Arc;

fn main() {
    divan::main();
}

/// What `SELECT * FROM pgbench_accounts ORDER BY aid LIMIT 10000` sends: aid, bid, abalance, filler.
fn rows() -> BytesMut {
    let mut buf = BytesMut::new();
    for aid in 1..=10_000u32 {
        put_message(&mut buf, b'D', |b| {
            b.put_i16(4);
            for value in [aid.to_string(), (1 + aid / 100_000).to_string(), "0".to_string(), " ".repeat(84)] {
                b.put_i32(value.len() as i32);
                b.put_slice(value.as_bytes());
            }
        });
    }
    buf
}

#[divan::bench]
fn split_frames(bencher: Bencher) {
    let buf = rows();
    bencher.counter(BytesCount::new(buf.len())).bench_local(|| {
        let (mut at, mut frames) = (0, 0);
        while let Ok(Some(head)) = peek_frame(&buf[at..], 1 << 30) {
            at += head.len;
            frames += 1;
        }
        black_box(frames)
    });
}

#[divan::bench]
fn mask_rows_every_detector(bencher: Bencher) {
    let buf = rows();
    let masking =
        Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([1; 32])).expect("defaults compile"));
    let who = Identity { name: "bench".into(), groups: vec![], credential_id: "t".into() };
    let mut masker = ResponseMasker::new(masking.for_session(&who, "bench"));
    let field = |type_oid| Field { table_oid: 16390, column: 1, type_oid, format: 0 };
    let plan = RowPlan::new(&[field(23), field(23), field(23), field(1042)], &[]);
    let mut out = BytesMut::new();
    bencher.counter(BytesCount::new(buf.len())).bench_local(|| {
        let (mut at, mut changed) = (0, 0);
        while let Ok(Some(head)) = peek_frame(&buf[at..], 1 << 30) {
            out.clear();
            if masker.data_row(&plan, &buf[at + HEADER_LEN..at + head.len], &mut out) {
                changed += 1;
            }
            at += head.len;
        }
        black_box(changed)
    });
}
