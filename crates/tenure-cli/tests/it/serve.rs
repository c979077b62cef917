//! `tenure serve` as a process: events acknowledged over HTTP survive `kill -9` of the
//! server in the middle of a stream of requests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn acknowledged_events_survive_kill_9_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let bin = env!("CARGO_BIN_EXE_tenure");
    let o = Command::new(bin)
        .args(["key", "create", "--data", &data, "--scope", "ingest"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let mut server = Command::new(bin)
        .args(["serve", "--data", &data, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    // JSON log lines (the log's recovery at open) may come first.
    while !line.contains("serving") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the server stopped before serving");
    }
    // Keep reading the server's logs so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    // A client sends batches of 50 events until the server dies; the main thread kills it
    // after 20 acknowledged batches, while the client keeps sending.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client = {
        let (addr, key) = (addr.clone(), key.clone());
        std::thread::spawn(move || {
            let mut acked = 0u64;
            for b in 0..10_000u64 {
                let body: Vec<String> = (0..50)
                    .map(|i| {
                        format!(
                            r#"{{"type":"ticket","timestamp":"2026-01-01T00:00:00Z","account_id":"a{}","message_id":"m-{b}-{i}","ticket_id":"t-{b}-{i}","status":"opened"}}"#,
                            b % 97
                        )
                    })
                    .collect();
                match tenure_testkit::wire::post_events(&addr, &key, &body.join("\n")) {
                    Ok(r) if r.starts_with("HTTP/1.1 200") && r.contains("\"accepted\":50") => {
                        acked += 50
                    }
                    _ => break,
                }
                if b == 20 {
                    let _ = tx.send(());
                }
            }
            acked
        })
    };
    rx.recv().unwrap();
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let acked = client.join().unwrap();
    assert!(acked >= 21 * 50, "{acked}");
    let o = Command::new(bin).args(["status", "--data", &data]).output().unwrap();
    let status = String::from_utf8(o.stdout).unwrap();
    let stored: u64 =
        status.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum();
    assert!(stored >= acked, "{stored} stored, {acked} acknowledged:\n{status}");
}
