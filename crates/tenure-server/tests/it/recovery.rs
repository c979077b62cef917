//! The service opening a log that needed recovery: what recovery cut off shows in
//! `/metrics` (it used to be discarded), and damage to acknowledged data stops the start
//! with the file, the offset and the reason.

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenure_core::time::Timestamp;
use tenure_server::{AppState, Options, app};
use tower::ServiceExt;

const EVENTS: &str = r#"{"type":"account","timestamp":"2026-01-01","account_id":"acme","name":"Acme"}
{"type":"usage","timestamp":"2026-05-01T10:00:00Z","account_id":"acme","user_id":"u1","event":"login"}
{"type":"usage","timestamp":"2026-05-02T10:00:00Z","account_id":"acme","user_id":"u2","event":"login"}"#;

/// The two copies of the commit record after a commit's records.
const COMMIT_RECORDS: usize = 80;

fn import(dir: &Path) {
    let cfg = tenure_ingest::IngestConfig::defaults(None);
    let events: Vec<_> =
        EVENTS.lines().map(|l| tenure_ingest::parse_json_line(l, None, &cfg).unwrap()).collect();
    let (mut imp, _) = tenure_engine::Importer::open(dir, cfg).unwrap();
    imp.append(&[events]).unwrap();
}

fn usage_segment(dir: &Path) -> PathBuf {
    let lane = tenure_engine::log_dir(dir).join("usage");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(lane)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn open(dir: &Path) -> Result<AppState, String> {
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    AppState::open(dir, Options::new(clock))
}

#[tokio::test]
async fn a_torn_tail_cut_off_at_start_is_counted_in_the_metrics() {
    let t = tempfile::tempdir().unwrap();
    import(t.path());
    // A write that never completed: zeros after the last commit.
    let seg = usage_segment(t.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&seg, bytes).unwrap();
    let s = open(t.path()).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, len);
    let resp = app(s.clone())
        .oneshot(Request::builder().uri("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text =
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("tenure_log_recovered_bytes_total 100\n"), "{text}");
    assert!(text.contains("# TYPE tenure_log_recovered_bytes_total counter"), "{text}");
    assert!(text.contains("tenure_log_truncated_records_total 0\n"), "{text}");
}

#[test]
fn damage_to_an_acknowledged_record_stops_the_start() {
    let t = tempfile::tempdir().unwrap();
    import(t.path());
    let seg = usage_segment(t.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    // The last record's payload (just before the commit record's two copies).
    let at = bytes.len() - COMMIT_RECORDS - 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&seg, bytes).unwrap();
    let err = open(t.path()).err().expect("the service must not start over damaged data");
    assert!(err.contains(&seg.display().to_string()) && err.contains("offset"), "{err}");
}
