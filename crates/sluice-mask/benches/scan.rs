//! Detector throughput on a mixed corpus (`cargo bench -p sluice-mask`): MB/s per core for the
//! scan alone and for scanning plus in-place masking, value by value as a result would arrive.

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use sluice_mask::{Builtin, DetectorKind, Layout, MaskAction, Scanner, TokenKey};

#[path = "corpus.rs"]
mod corpus;

fn main() {
    divan::main();
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
    let values = corpus::values(true);
    let bytes: usize = values.iter().map(Vec::len).sum();
    let scanner = subset("all");
    let actions = vec![MaskAction::Redact; Builtin::ALL.len()];
    let key = TokenKey::new([9; 32]);
    let masker = sluice_mask::ContentMasker { scanner: &scanner, actions: &actions, key: &key };
    let (mut findings, mut out) = (Vec::new(), Vec::new());
    bencher.counter(BytesCount::new(bytes)).bench_local(|| {
        let mut changed = 0;
        for v in &values {
            out.clear();
            if masker.in_place(black_box(v), &mut findings, &mut out, Layout::Plain) != sluice_mask::Masked::Clear {
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
    let values = corpus::values(true);
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

/// The HTTP benchmark's bodies (bench/http_bench.py) scanned whole, as a JSON response is: one
/// customer (`small`), and 64 KB of them, each with an e-mail address (`large`).
#[divan::bench(args = ["small", "large"])]
fn scan_json_body(bencher: Bencher, size: &str) {
    let row = |i: usize| {
        format!(
            r#"{{"id": {i}, "name": "Customer {i}", "email": "customer{i}@example.com", "status": "active", "plan": "business", "note": "renewal due next quarter; prefers e-mail contact"}}"#
        )
    };
    let body = match size {
        "small" => r#"{"id": 1, "name": "Ann", "email": "ann@example.com", "status": "active", "plan": "business"}"#
            .to_string(),
        _ => {
            let mut rows = Vec::new();
            let mut len = 0;
            while len < 64 * 1024 {
                let r = row(rows.len());
                len += r.len() + 2;
                rows.push(r);
            }
            format!(r#"{{"customers": [{}]}}"#, rows.join(", "))
        }
    };
    let scanner = subset("all");
    let mut findings = Vec::new();
    bencher.counter(BytesCount::new(body.len())).bench_local(|| {
        findings.clear();
        scanner.scan(black_box(body.as_bytes()), &mut findings);
        findings.len()
    });
}
