//! Import edge cases: line numbering across blocks, an over-long line, no final newline.

use tenure_engine::import::Format;
use tenure_engine::{Config, Importer};

fn ticket(i: usize) -> String {
    format!(
        r#"{{"type":"ticket","timestamp":"2024-03-01","account_id":"a","ticket_id":"t{i}","status":"opened"}}"#
    )
}

#[test]
fn line_numbers_survive_blocks_and_an_over_long_line() {
    let t = tempfile::tempdir().unwrap();
    let (mut imp, _) = Importer::open(t.path(), Config::defaults().ingest(None)).unwrap();
    let mut text = String::new();
    // ~150k lines: several 8 MiB blocks.
    for i in 0..100_000 {
        text += &ticket(i);
        text += "\n";
    }
    // Line 100001: longer than a whole block.
    text += &format!(
        r#"{{"type":"ticket","timestamp":"2024-03-01","account_id":"a","ticket_id":"{}","status":"opened"}}"#,
        "x".repeat(9 << 20)
    );
    text += "\n";
    // Line 100002: bad; 100003..: good, the last without a newline.
    text += "{\"type\":\"ticket\"}\n";
    for i in 100_000..150_000 {
        text += &ticket(i);
        text += "\n";
    }
    text.pop();
    let mut rejected = Vec::new();
    let mut commits = Vec::new();
    let s = imp
        .import(
            text.as_bytes(),
            Format::Jsonl,
            None,
            &mut |r| rejected.push(r.to_string()),
            &mut |p| commits.push(p.lines),
        )
        .unwrap();
    assert_eq!(s.progress.accepted, 150_000);
    assert_eq!(s.progress.rejected, 2);
    assert_eq!(rejected[0], "100001: line is over the limit of 65536 bytes");
    assert!(rejected[1].starts_with("100002: "), "{}", rejected[1]);
    assert_eq!(commits.last(), Some(&150_002));
    assert!(commits.len() > 2 && commits.windows(2).all(|w| w[0] < w[1]), "{commits:?}");
    assert_eq!(s.progress.bytes, text.len() as u64);
}
