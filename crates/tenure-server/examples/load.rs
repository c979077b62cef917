//! The service's load bench (`bash bench/serve.sh`): a `tenure serve` process on loopback,
//! fed batches of events over keep-alive connections until a count or a time limit, with
//! detractor answers among them whose alerts come back to a local webhook receiver.
//! It reports the sustained ingest rate (every batch acknowledged once durable), the
//! event-to-alert latency measured end to end (request sent to signed webhook received) and
//! by the server's own histogram, and the server's memory as the load goes on.
//!
//! Usage: load TENURE_BIN [EVENTS] [BATCH] [CONNECTIONS] [SECONDS] [RATE]
//!
//! RATE (events/s, all connections together) paces the senders; 0 sends as fast as the
//! acknowledgements come (the sustained maximum). Latency is meant to be read at a set rate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenure_core::time::Timestamp;

/// One HTTP/1.1 request on a kept-alive connection; the status and body.
fn request(
    c: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = c.get_mut();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    read_response(c)
}

/// Reads one HTTP/1.1 message (request or response): its first line and its body (by
/// Content-Length); `None` when the peer has closed the connection.
fn read_message(c: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut first = String::new();
    if c.read_line(&mut first).unwrap_or(0) == 0 {
        return None;
    }
    let mut len = 0;
    loop {
        let mut h = String::new();
        c.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    c.read_exact(&mut body).unwrap();
    Some((first, body))
}

fn read_response(c: &mut BufReader<TcpStream>) -> (u16, String) {
    let (line, body) = read_message(c).expect("a response");
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .expect("usage: load TENURE_BIN [EVENTS] [BATCH] [CONNECTIONS] [SECONDS]")
        .clone();
    let arg = |i: usize, d: u64| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (events, batch, conns, seconds) = (arg(2, 3_000_000), arg(3, 1000), arg(4, 4), arg(5, 120));
    let offered = arg(6, 0);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();

    // The webhook receiver: when each alert's notification arrives, by account.
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let arrived = arrived.clone();
        std::thread::spawn(move || {
            for conn in hook.incoming().flatten() {
                let arrived = arrived.clone();
                std::thread::spawn(move || {
                    let mut c = BufReader::new(conn);
                    while let Some((_, body)) = read_message(&mut c) {
                        let now = Instant::now();
                        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        if j["rule"] == "detractor" {
                            arrived
                                .lock()
                                .unwrap()
                                .insert(j["account_id"].as_str().unwrap().to_string(), now);
                        }
                        let _ =
                            c.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    }
                });
            }
        });
    }
    let o = Command::new(&bin)
        .args(["key", "create", "--data", &data, "--scope", "ingest,read"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    std::fs::write(
        dir.path().join("tenure.toml"),
        format!(
            // The seeded accounts have no touchpoints and thin usage: left on, these two
            // rules would alert on all 1,000 at the first batch, and that storm would queue
            // ahead of the alerts being timed in the one webhook lane.
            "[service]\nrefresh_minutes = 600\nforecast_refresh_hours = 0\n\n[[rule]]\nkind = \"health_red\"\nenabled = false\n\n[[rule]]\nkind = \"no_engagement\"\nenabled = false\n\n[[notifier]]\nname = \"bench\"\nkind = \"webhook\"\nurl = \"http://{hook_addr}/hook\"\nsecret = \"s\"\n"
        ),
    )
    .unwrap();
    let mut server = Command::new(&bin)
        .args(["serve", "--data", &data, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    // The address is on the "tenure: serving" line, after the structured logs of the start.
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("tenure: serving") {
        line.clear();
    }
    assert!(line.contains("tenure: serving"), "the server did not start");
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    eprintln!(
        "[load] server {pid} on {addr}; {events} events in batches of {batch} over {conns} connections{}",
        if offered > 0 { format!(", paced at {offered} events/s") } else { String::new() }
    );

    // 1,000 paying accounts, so that usage lands on customers and their health is kept.
    let accounts = 1000u64;
    let mut c = BufReader::new(TcpStream::connect(&addr).unwrap());
    let seed: String = (0..accounts)
        .map(|a| format!("{{\"type\":\"subscription\",\"timestamp\":\"2026-01-01\",\"account_id\":\"a{a}\",\"subscription_id\":\"s{a}\",\"quantity\":20,\"amount\":\"500\",\"status\":\"active\"}}\n"))
        .collect();
    let (st, body) = request(&mut c, "POST", "/api/v1/events", &key, &seed);
    assert_eq!(st, 200, "{body}");

    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let batches = events / batch;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut rss = Vec::new();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (addr, key, next, acked, stop, sent_at) =
                (addr.clone(), key.clone(), next.clone(), acked.clone(), stop.clone(), sent_at.clone());
            std::thread::spawn(move || {
                let mut c = BufReader::new(TcpStream::connect(&addr).unwrap());
                c.get_ref().set_nodelay(true).unwrap();
                let mut lat = Vec::new();
                let mut body = String::with_capacity(batch as usize * 200);
                // Usage over the last 28 days; answers an hour old (immediate rules skip
                // events older than a week).
                let now = Timestamp(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("a clock after 1970")
                        .as_micros() as i64,
                );
                let days: Vec<String> = (1..=28).map(|d| now.add_days(-d).date_string()).collect();
                let recent = Timestamp(now.0 - 3_600_000_000).to_string();
                let mut sent = 0u64;
                loop {
                    // Paced: this connection's share of the offered rate.
                    if offered > 0 {
                        let due = start
                            + Duration::from_secs_f64(
                                sent as f64 * batch as f64 * conns as f64 / offered as f64,
                            );
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    sent += 1;
                    let b = next.fetch_add(1, Relaxed);
                    if b >= batches || stop.load(Relaxed) || Instant::now() > deadline {
                        return lat;
                    }
                    body.clear();
                    // Every 20th batch carries one detractor answer, for its own account.
                    let detractor = b % 20 == 0;
                    for i in 0..batch - detractor as u64 {
                        let n = b * batch + i;
                        let _ = writeln!(
                            body,
                            "{{\"type\":\"usage\",\"timestamp\":\"{}T10:00:00Z\",\"account_id\":\"a{}\",\"user_id\":\"u{}\",\"event\":\"report_viewed\",\"message_id\":\"m{n}\"}}",
                            days[(n % 28) as usize],
                            n % accounts,
                            n % 17
                        );
                    }
                    let t0 = Instant::now();
                    if detractor {
                        let _ = writeln!(
                            body,
                            "{{\"type\":\"survey_response\",\"timestamp\":\"{recent}\",\"account_id\":\"d{b}\",\"survey\":\"nps\",\"contact_id\":\"c{b}\",\"score\":2}}"
                        );
                        sent_at.lock().unwrap().insert(format!("d{b}"), t0);
                    }
                    let (st, resp) = request(&mut c, "POST", "/api/v1/events", &key, &body);
                    assert_eq!(st, 200, "{resp}");
                    lat.push(t0.elapsed().as_secs_f64());
                    acked.fetch_add(batch, Relaxed);
                }
            })
        })
        .collect();
    // Memory as the load goes on.
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(500));
        rss.push((start.elapsed().as_secs_f64(), acked.load(Relaxed), rss_kib(pid, "VmRSS:")));
    }
    stop.store(true, Relaxed);
    let mut ack_lat: Vec<f64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let elapsed = start.elapsed().as_secs_f64();
    let total = acked.load(Relaxed);
    // Wait (bounded) for the last alerts to arrive.
    let want = sent_at.lock().unwrap().len();
    let wait = Instant::now();
    while arrived.lock().unwrap().len() < want && wait.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut alert_lat: Vec<f64> = {
        let sent = sent_at.lock().unwrap();
        let got = arrived.lock().unwrap();
        sent.iter()
            .filter_map(|(k, t)| got.get(k).map(|g| g.duration_since(*t).as_secs_f64()))
            .collect()
    };
    // A new connection: the seeding one has been idle past the server's keep-alive limit.
    let mut c = BufReader::new(TcpStream::connect(&addr).unwrap());
    let (_, metrics) = request(&mut c, "GET", "/metrics", &key, "");
    let server_alert: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("tenure_event_to_alert_seconds_bucket")).collect();
    let peak = rss_kib(pid, "VmHWM:");
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = server.wait();
    println!(
        "offered load: {}",
        if offered > 0 {
            format!("paced at {offered} events/s")
        } else {
            "as fast as acknowledged".into()
        }
    );
    let rate = total as f64 / elapsed;
    println!(
        "events acknowledged: {total} in {elapsed:.2} s = {rate:.0} events/s{}",
        if offered > 0 {
            " (the offered rate)".to_string()
        } else {
            format!(" (target >= 100000: {})", if rate >= 100_000.0 { "met" } else { "missed" })
        }
    );
    println!(
        "batch round trip (sent to durable ack): p50 {:.1} ms, p99 {:.1} ms",
        1e3 * quantile(&mut ack_lat, 0.5),
        1e3 * quantile(&mut ack_lat, 0.99)
    );
    let p99 = quantile(&mut alert_lat, 0.99);
    println!(
        "event to alert, end to end (request sent to signed webhook received), {} of {want} alerts: p50 {:.1} ms, p99 {:.1} ms (target < 50 ms: {})",
        alert_lat.len(),
        1e3 * quantile(&mut alert_lat, 0.5),
        1e3 * p99,
        if p99 < 0.05 && alert_lat.len() == want { "met" } else { "missed" }
    );
    println!("server histogram tenure_event_to_alert_seconds: {}", server_alert.join(" | "));
    let notes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tenure_notifications") || l.starts_with("tenure_alerts_total{"))
        .collect();
    println!("server: {}", notes.join(" | "));
    println!("server memory: peak {} MiB; RSS by events acknowledged:", peak / 1024);
    let step = (rss.len() / 8).max(1);
    for (t, n, r) in rss.iter().step_by(step) {
        println!("  {t:6.1} s  {n:>10} events  {:>6} MiB", r / 1024);
    }
}
