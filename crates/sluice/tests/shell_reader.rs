//! Command lines read in `sluice internal read-shell` workers: what the parser cannot read in
//! reasonable time or memory is refused, and the reader goes on reading the next line.

use sluice_shell::IsolatedReader;
use std::time::{Duration, Instant};

fn reader() -> IsolatedReader {
    let sluice = env!("CARGO_BIN_EXE_sluice").into();
    IsolatedReader::new(sluice, vec!["internal".into(), "read-shell".into()], Duration::from_millis(1500))
}

#[tokio::test]
async fn a_worker_reads_lines_as_the_reader_does() {
    let reader = reader();
    for _ in 0..3 {
        let action = reader.analyze("sudo -u app sh -c 'rm -rf /srv/x' | tee log").await;
        assert_eq!(action, sluice_shell::analyze("sudo -u app sh -c 'rm -rf /srv/x' | tee log"));
        assert_eq!(action.commands[0].argv, ["rm", "-rf", "/srv/x"]);
    }
}

#[tokio::test]
async fn a_line_the_parser_cannot_finish_is_refused_and_the_next_is_read() {
    let reader = reader();
    // Inputs that make brush-parser 0.4.0 allocate without bound, take exponential time, or
    // nest past any stack.
    let hostile = ["<<E$[\t\t".to_string(), "(".repeat(40), format!("{}x{}", "$(".repeat(5000), ")".repeat(5000))];
    for line in hostile {
        let started = Instant::now();
        let action = reader.analyze(&line).await;
        assert!(started.elapsed() < Duration::from_secs(10), "{:?} took {:?}", &line[..8], started.elapsed());
        assert!(action.opaque.is_some(), "{:?} was read: {:?}", &line[..8], action.commands);
        assert!(action.commands.is_empty());
        let next = reader.analyze("ls -l").await;
        assert_eq!(next.opaque, None);
        assert_eq!(next.commands[0].argv, ["ls", "-l"]);
    }
}
