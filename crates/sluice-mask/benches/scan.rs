//! Detector throughput on a mixed corpus (`cargo bench -p sluice-mask`): MB/s per core for the
//! scan alone and for scanning plus in-place masking, value by value as a result would arrive.

use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use sluice_mask::{Builtin, DetectorKind, MaskAction, Scanner, TokenKey, TypeClass};

fn main() {
    divan::main();
}

/// Values like those of real results: prose, log lines, JSON documents, ids, timestamps, UUIDs
/// and amounts, with one value in 25 carrying something sensitive.
fn corpus() -> Vec<Vec<u8>> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words = [
        "the", "order", "shipped", "customer", "asked", "about", "invoice", "delivery", "refund", "status", "warehouse",
        "payment", "received", "pending", "review", "account", "updated", "note", "call", "back",
    ];
    let sensitive = [
        "card 4111 1111 1111 1111",
        "ssn 123-45-6789",
        "mail jane.doe@example.com",
        "tel +44 20 7946 0958",
        "key AKIAIOSFODNN7EXAMPLE",
        "iban DE89 3704 0044 0532 0130 00",
    ];
    let mut values = Vec::new();
    for i in 0..20_000u64 {
        let r = next();
        let mut v = String::new();
        match i % 4 {
            0 => {
                for _ in 0..(8 + r % 20) {
                    v.push_str(words[(next() % words.len() as u64) as usize]);
                    v.push(' ');
                }
            }
            1 => v.push_str(&format!(
                "2026-11-{:02} 12:{:02}:{:02}.{:06}+00 INFO request {} took {} ms from 10.0.{}.{}",
                1 + r % 28, r % 60, (r >> 8) % 60, r % 1_000_000, r % 100_000, r % 900, r % 256, (r >> 16) % 256
            )),
            2 => v.push_str(&format!(
                r#"{{"id": {}, "order": "ORD-2026-{:06}", "amount": {}.{:02}, "uuid": "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", "items": [{}, {}]}}"#,
                r % 10_000_000, r % 1_000_000, r % 10_000, r % 100, r as u32, (r >> 32) as u16, r % 4096,
                (r >> 12) % 4096, r % (1 << 48), r % 1000, (r >> 10) % 1000
            )),
            _ => v.push_str(&format!("{}", r % 100_000_000)),
        }
        if next() % 25 == 0 {
            v.push_str(sensitive[(next() % sensitive.len() as u64) as usize]);
        }
        values.push(v.into_bytes());
    }
    values
}

/// The detectors of one family: `numbers`, `email`, `tokens` (key prefixes), or `all`.
fn subset(which: &str) -> Scanner {
    let list: Vec<_> = Builtin::ALL
        .iter()
        .filter(|b| {
            let number = matches!(b, Builtin::CreditCard | Builtin::Ssn | Builtin::Phone | Builtin::Iban);
            match which {
                "all" => true,
                "numbers" => number,
                "email" => matches!(b, Builtin::Email),
                _ => !number && !matches!(b, Builtin::Email),
            }
        })
        .map(|b| (b.name().to_string(), DetectorKind::Builtin(*b)))
        .collect();
    Scanner::new(&list).expect("built-ins compile")
}


#[divan::bench]
fn mask_text_values(bencher: Bencher) {
    let values = corpus();
    let bytes: usize = values.iter().map(Vec::len).sum();
    let scanner = subset("all");
    let actions = vec![MaskAction::Redact; Builtin::ALL.len()];
    let key = TokenKey::new([9; 32]);
    let masker = sluice_mask::ContentMasker { scanner: &scanner, actions: &actions, key: &key };
    let (mut findings, mut out) = (Vec::new(), Vec::new());
    bencher.counter(BytesCount::new(bytes)).bench_local(|| {
        let mut changed = 0;
        for v in &values {
            if masker.mask(TypeClass::Text, false, black_box(v), &mut findings, &mut out) != sluice_mask::Masked::Clear {
                changed += 1;
            }
        }
        changed
    });
}

/// 84 spaces: the `filler` column of pgbench_accounts, what the 10,000-row benchmark returns.
#[divan::bench(args = ["all", "tokens", "numbers"])]
fn scan_blank_filler(bencher: Bencher, which: &str) {
    let value = vec![b' '; 84];
    let scanner = subset(which);
    let mut findings = Vec::new();
    bencher.counter(BytesCount::new(84usize)).bench_local(|| {
        findings.clear();
        scanner.scan(black_box(&value), &mut findings);
        findings.len()
    });
}

/// Scanning only, by detector family (`all` is every detector).
#[divan::bench(args = ["all", "tokens", "numbers", "email"])]
fn scan(bencher: Bencher, which: &str) {
    let values = corpus();
    let bytes: usize = values.iter().map(Vec::len).sum();
    let scanner = subset(which);
    let mut findings = Vec::new();
    bencher.counter(BytesCount::new(bytes)).bench_local(|| {
        for v in &values {
            findings.clear();
            scanner.scan(black_box(v), &mut findings);
        }
        findings.len()
    });
}
