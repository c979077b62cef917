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

/// A `tenure serve` process, killed when dropped (a failing test leaves none behind).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `tenure serve` on `data`: its address, and its log lines up to "serving".
fn start(bin: &str, data: &str) -> (Server, String, Vec<String>) {
    let mut server = Command::new(bin)
        .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "stopped before serving: {lines:?}");
        let serving = line.contains("serving");
        lines.push(line);
        if serving {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let addr = lines.last().unwrap().trim().rsplit("http://").next().unwrap().to_string();
    (Server(server), addr, lines)
}

/// `GET path` with `key`: whether it answered 200, and the answer's body.
fn try_get(addr: &str, key: &str, path: &str) -> (bool, String) {
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    let r = tenure_testkit::wire::exchange(addr, raw.as_bytes()).unwrap();
    (r.starts_with("HTTP/1.1 200"), r.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// `GET path` with `key`: the answer's body (a 200).
fn get(addr: &str, key: &str, path: &str) -> String {
    let (ok, body) = try_get(addr, key, path);
    assert!(ok, "{path}: {body}");
    body
}

/// `n` tickets of account `a7` from `from` on, acknowledged.
fn tickets(addr: &str, key: &str, from: usize, n: usize) {
    let body: Vec<String> = (from..from + n)
        .map(|i| format!(r#"{{"type":"ticket","timestamp":"2026-01-01T00:00:00Z","account_id":"a7","ticket_id":"t-{i}","status":"opened"}}"#))
        .collect();
    let r = tenure_testkit::wire::post_events(addr, key, &body.join("\n")).unwrap();
    assert!(r.starts_with("HTTP/1.1 200") && r.contains(&format!("\"accepted\":{n}")), "{r}");
}

/// Waits until account `a7`'s page shows `n` tickets; its body.
fn until_tickets(addr: &str, key: &str, n: usize) -> String {
    let start = std::time::Instant::now();
    loop {
        // Not found until the applier has taken the account's first events.
        let (ok, body) = try_get(addr, key, "/api/v1/accounts/a7");
        if ok && body.matches("\"ticket_id\"").count() == n {
            return body;
        }
        assert!(start.elapsed().as_secs() < 30, "{n} tickets wanted: {body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Stopped with SIGTERM, the service saves its live state and the next start reads it,
/// answering as before; killed (`kill -9`) after taking more events, it saves nothing, and
/// the next start reads the state saved before and brings it forward over the events
/// taken since (its tail in the log), losing nothing. Another build (an upgrade) reads the
/// state the last one saved.
#[test]
fn a_restart_after_sigterm_reads_the_saved_state_after_kill_9_brings_it_forward_and_an_upgrade_reads_it()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let bin = env!("CARGO_BIN_EXE_tenure");
    let key = |scope: &str| {
        let o = Command::new(bin)
            .args(["key", "create", "--data", &data, "--scope", scope])
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let (ingest, read) = (key("ingest"), key("read"));
    let (mut server, addr, first) = start(bin, &data);
    assert!(!first.iter().any(|l| l.contains("from its snapshot")), "{first:?}");
    tickets(&addr, &ingest, 0, 30);
    let before = until_tickets(&addr, &read, 30);
    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(server.0.wait().unwrap().success(), "a stop exits 0");
    assert!(dir.path().join("state/live.state").is_file());
    let left: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "scratch files left: {left:?}");
    let (server, addr, lines) = start(bin, &data);
    assert!(lines.iter().any(|l| l.contains("live state read from its snapshot")), "{lines:?}");
    assert_eq!(get(&addr, &read, "/api/v1/accounts/a7"), before);
    tickets(&addr, &ingest, 30, 20);
    until_tickets(&addr, &read, 50);
    drop(server); // SIGKILL
    let (server, addr, lines) = start(bin, &data);
    assert!(lines.iter().any(|l| l.contains("live state read from its snapshot")), "{lines:?}");
    let behind = lines.iter().find(|l| l.contains("behind the log")).expect("the tail noted");
    let behind: serde_json::Value = serde_json::from_str(behind).unwrap();
    // The 20 tickets, and whatever the service raised for them.
    assert!(behind["records_since"].as_u64() >= Some(20), "{behind}");
    let warm = until_tickets(&addr, &read, 50);
    // An upgrade: the state saved at this stop is read by another build (a copy of the
    // binary with another build id), which answers from it at once, then computes
    // everything again itself.
    let mut server = server;
    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(server.0.wait().unwrap().success(), "a stop exits 0");
    // Under the target directory: a temporary directory may not allow running programs.
    let next = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let other = next.path().join("tenure");
    crate::other_build(std::path::Path::new(bin), &other);
    let (server, addr, lines) = start(&other.display().to_string(), &data);
    assert!(lines.iter().any(|l| l.contains("live state read from its snapshot")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("made by another build")), "{lines:?}");
    assert_eq!(get(&addr, &read, "/api/v1/accounts/a7"), warm);
    tickets(&addr, &ingest, 50, 5);
    until_tickets(&addr, &read, 55);
    drop(server);
}
