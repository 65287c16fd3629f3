//! Counts what the built-in detectors find in text that holds nothing sensitive: the ordinary part
//! of the benchmark corpus (benches/corpus.rs, without its injected samples), and any text files
//! named on the command line, read line by line as rows would arrive. Every finding there is a
//! false positive. `cargo run --release -p sluice-mask --example false_positives -- FILE…`

#[path = "../benches/corpus.rs"]
mod corpus;

use sluice_mask::{Builtin, DetectorKind, Scanner};
use std::collections::BTreeMap;

fn main() -> std::io::Result<()> {
    let list: Vec<_> = Builtin::ALL.iter().map(|b| (b.name().to_string(), DetectorKind::Builtin(*b))).collect();
    let scanner = Scanner::new(&list).expect("built-ins compile");
    count(&scanner, "benchmark corpus, ordinary part", corpus::values(false));
    let mut files = Vec::new();
    for path in std::env::args().skip(1) {
        let text = std::fs::read(&path)?;
        files.extend(text.split(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    if !files.is_empty() {
        count(&scanner, &format!("{} files' lines", std::env::args().count() - 1), files);
    }
    Ok(())
}

fn count(scanner: &Scanner, what: &str, values: Vec<Vec<u8>>) {
    let bytes: usize = values.iter().map(Vec::len).sum();
    let mut by_detector: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    let mut findings = Vec::new();
    for value in &values {
        findings.clear();
        scanner.scan(value, &mut findings);
        for f in &findings {
            let entry = by_detector.entry(scanner.name(f.detector).to_string()).or_default();
            entry.0 += 1;
            if entry.1.len() < 5 {
                entry.1.push(String::from_utf8_lossy(&value[f.start..f.end]).into_owned());
            }
        }
    }
    let mb = bytes as f64 / 1_000_000.0;
    let total: usize = by_detector.values().map(|(n, _)| n).sum();
    println!("{what}: {:.2} MB in {} values, {total} findings ({:.2} per MB)", mb, values.len(), total as f64 / mb);
    for (name, (n, samples)) in by_detector {
        println!("  {name}: {n} ({:.2} per MB), e.g. {samples:?}", n as f64 / mb);
    }
}
