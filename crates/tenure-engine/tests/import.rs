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

#[test]
fn identical_events_without_message_id_are_counted_and_reimports_are_idempotent() {
    let t = tempfile::tempdir().unwrap();
    let click = r#"{"type":"usage","timestamp":"2024-03-01T10:00:00Z","account_id":"a","user_id":"u1","event":"click"}"#;
    let other = r#"{"type":"usage","timestamp":"2024-03-01T10:00:01Z","account_id":"a","user_id":"u1","event":"click"}"#;
    let tagged = r#"{"type":"usage","timestamp":"2024-03-01T10:00:00Z","account_id":"a","user_id":"u1","event":"click","message_id":"m1"}"#;
    let text = [click, click, other, click, tagged, tagged].join("\n");
    let import = |text: &str| {
        let (mut imp, _) = Importer::open(t.path(), Config::defaults().ingest(None)).unwrap();
        let s = imp
            .import(text.as_bytes(), Format::Jsonl, None, &mut |r| panic!("{r}"), &mut |_| {})
            .unwrap();
        (s.progress.accepted, s.progress.duplicates)
    };
    // Three identical clicks are three clicks; a repeated message_id is one event.
    assert_eq!(import(&text), (5, 1));
    assert_eq!(import(&text), (0, 6));
    // Another file with one of those clicks: it is the same event as the first.
    assert_eq!(import(click), (0, 1));
    // ... and a file with four: the fourth is new.
    assert_eq!(import(&[click, click, click, click].join("\n")), (1, 3));
    let mut n = 0;
    tenure_engine::replay(t.path(), &[tenure_core::event::EventKind::Usage], |_| n += 1).unwrap();
    assert_eq!(n, 6);
}
