//! Integration tests of the event log through its public API and real files:
//! round trips, dedup, segment rolls, crash recovery, corruption, locking,
//! concurrent reading and a model-based property test.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tenure_log::{
    COMMIT_RECORD_LEN, Log, LogError, LogOptions, LogReader, RECORD_HEADER_LEN, RecoveryReport,
    SEGMENT_HEADER_LEN, ScanError,
};

type Records = Vec<(u128, Vec<u8>)>;

fn open(dir: &Path) -> Log {
    Log::open(dir, LogOptions::default()).expect("open log").0
}

fn open_small(dir: &Path, segment_bytes: u64) -> Log {
    Log::open(dir, LogOptions { segment_bytes, ..LogOptions::default() }).expect("open log").0
}

fn open_report(dir: &Path, segment_bytes: u64) -> (Log, RecoveryReport) {
    Log::open(dir, LogOptions { segment_bytes, ..LogOptions::default() }).expect("open log")
}

fn read(dir: &Path, lane: &str) -> Records {
    LogReader::open(dir).expect("open reader").read_lane(lane).expect("scan lane")
}

fn segments(dir: &Path, lane: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(lane))
        .expect("lane dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn payload(i: u64) -> Vec<u8> {
    format!("event-{i}-{}", "x".repeat((i % 37) as usize)).into_bytes()
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).expect("open segment");
    f.write_all(bytes).expect("append bytes");
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read segment");
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).expect("write segment");
}

fn encoded_record(key: u128, payload: &[u8]) -> Vec<u8> {
    let mut covered = key.to_le_bytes().to_vec();
    covered.extend_from_slice(payload);
    let mut rec = (payload.len() as u32).to_le_bytes().to_vec();
    rec.extend_from_slice(&crc32fast::hash(&covered).to_le_bytes());
    rec.extend_from_slice(&covered);
    rec
}

fn assert_corrupt(result: Result<impl std::fmt::Debug, LogError>, path: &Path, offset: u64) {
    match result {
        Err(LogError::Corrupt { path: p, offset: o, .. }) => {
            assert_eq!((p.as_path(), o), (path, offset));
        }
        other => panic!("expected Corrupt at {}:{offset}, got {other:?}", path.display()),
    }
}

#[test]
fn round_trip_and_dedup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    {
        let mut log = open(&dir);
        assert!(log.append("subscription", 1, b"sub-1").unwrap());
        assert!(log.append("usage", 2, b"use-2").unwrap());
        assert!(log.append("usage", 3, b"").unwrap());
        // Within a batch, in the same lane and across lanes.
        assert!(!log.append("usage", 2, b"dup").unwrap());
        assert!(!log.append("subscription", 3, b"dup").unwrap());
        assert!(log.contains(2).unwrap() && !log.contains(4).unwrap());
        let stats = log.commit().unwrap();
        assert_eq!((stats.records, stats.lanes, stats.segments_created), (3, 2, 2));
        // Across commits.
        assert!(!log.append("invoice", 1, b"dup").unwrap());
        assert!(log.append("subscription", 4, b"sub-4").unwrap());
        log.commit().unwrap();
        let stats = log.stats();
        assert_eq!(stats.lanes["subscription"].records, 2);
        assert_eq!(stats.lanes["usage"].records, 2);
        assert_eq!(stats.lanes["usage"].segments, 1);
        // Both records, then the commit's record, twice.
        assert_eq!(
            stats.lanes["usage"].bytes,
            (SEGMENT_HEADER_LEN + 2 * RECORD_HEADER_LEN + 5 + 2 * COMMIT_RECORD_LEN) as u64
        );
        assert!(!stats.lanes.contains_key("invoice"));
        assert_eq!(stats.keys, 4);
    }
    let (mut log, report) = Log::open(&dir, LogOptions::default()).unwrap();
    assert!(report.truncated.is_empty());
    assert_eq!((report.lanes, report.records, report.duplicate_keys), (2, 4, 0));
    // After reopen.
    for key in 1..=4 {
        assert!(log.contains(key).unwrap());
        assert!(!log.append("usage", key, b"dup").unwrap());
    }
    assert!(log.append("usage", 5, b"use-5").unwrap());
    log.commit().unwrap();
    drop(log);

    let reader = LogReader::open(&dir).unwrap();
    assert_eq!(reader.lanes(), vec!["subscription".to_string(), "usage".to_string()]);
    assert_eq!(reader.lane_len("usage"), 3);
    assert_eq!(reader.lane_len("nope"), 0);
    assert_eq!(
        reader.read_lane("subscription").unwrap(),
        vec![(1, b"sub-1".to_vec()), (4, b"sub-4".to_vec())]
    );
    assert_eq!(
        reader.read_lane("usage").unwrap(),
        vec![(2, b"use-2".to_vec()), (3, vec![]), (5, b"use-5".to_vec())]
    );
    let mut calls = 0;
    reader
        .scan("missing", |_, _| {
            calls += 1;
            Ok::<(), Infallible>(())
        })
        .unwrap();
    assert_eq!(calls, 0);
}

#[test]
fn uncommitted_records_are_dropped_with_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut log = open(tmp.path());
        log.append("usage", 1, b"kept").unwrap();
        log.commit().unwrap();
        log.append("usage", 2, b"lost").unwrap();
        assert_eq!(log.pending_records(), 1);
    }
    let log = open(tmp.path());
    assert!(log.contains(1).unwrap() && !log.contains(2).unwrap());
    drop(log);
    assert_eq!(read(tmp.path(), "usage"), vec![(1, b"kept".to_vec())]);
}

#[test]
fn segment_roll_keeps_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let mut log = open_small(tmp.path(), 512);
    for batch in 0..10u64 {
        for i in batch * 50..batch * 50 + 50 {
            assert!(log.append("usage", u128::from(i), &payload(i)).unwrap());
            expected.push((u128::from(i), payload(i)));
        }
        log.commit().unwrap();
    }
    let stats = log.stats().lanes["usage"];
    drop(log);
    let files = segments(tmp.path(), "usage");
    assert!(files.len() > 20, "only {} segments", files.len());
    assert_eq!(stats.segments, files.len() as u64);
    assert_eq!(stats.records, 500);
    let mut base = 0u64;
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("{base:020}.seg"));
        let len = std::fs::metadata(file).unwrap().len();
        assert!(len <= 512, "{name} is {len} bytes");
        let mut count = 0;
        let mut pos = SEGMENT_HEADER_LEN;
        let bytes = std::fs::read(file).unwrap();
        while pos < bytes.len() {
            if &bytes[pos..pos + 4] == b"TNRC" {
                pos += COMMIT_RECORD_LEN;
                continue;
            }
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            pos += RECORD_HEADER_LEN + len;
            count += 1;
        }
        base += count;
    }
    assert_eq!(base, 500);
    assert_eq!(read(tmp.path(), "usage"), expected);
    // Reopening continues in the last segment and keeps rolling.
    let mut log = open_small(tmp.path(), 512);
    for i in 500..600u64 {
        log.append("usage", u128::from(i), &payload(i)).unwrap();
        expected.push((u128::from(i), payload(i)));
    }
    log.commit().unwrap();
    drop(log);
    assert_eq!(read(tmp.path(), "usage"), expected);
}

#[test]
fn oversized_record_gets_its_own_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open_small(tmp.path(), 100);
    let big = vec![7u8; 300];
    log.append("usage", 1, b"small").unwrap();
    log.append("usage", 2, &big).unwrap();
    log.append("usage", 3, b"small").unwrap();
    let stats = log.commit().unwrap();
    assert_eq!(stats.segments_created, 3);
    drop(log);
    assert_eq!(
        read(tmp.path(), "usage"),
        vec![(1, b"small".to_vec()), (2, big), (3, b"small".to_vec())]
    );
}

/// Writes 20 committed records in lane "usage" and returns them.
fn committed_fixture(dir: &Path, segment_bytes: u64) -> Records {
    let mut log = open_small(dir, segment_bytes);
    let mut expected = Vec::new();
    for i in 0..20u64 {
        log.append("usage", u128::from(i), &payload(i)).unwrap();
        expected.push((u128::from(i), payload(i)));
    }
    log.append("other", 1000, b"other lane").unwrap();
    log.commit().unwrap();
    expected
}

fn torn_tail_case(tail: &[u8], reason_part: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut expected = committed_fixture(tmp.path(), 64 * 1024);
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    let good_len = std::fs::metadata(&seg).unwrap().len();
    append_bytes(&seg, tail);

    let (mut log, report) = Log::open(tmp.path(), LogOptions::default()).unwrap();
    assert_eq!(report.truncated.len(), 1, "{report:?}");
    let t = &report.truncated[0];
    assert_eq!((t.lane.as_str(), t.path.as_path()), ("usage", seg.as_path()));
    assert_eq!(
        (t.offset, t.bytes_dropped, t.header_rewritten, t.acknowledged),
        (good_len, tail.len() as u64, false, tenure_log::Acknowledged::No)
    );
    assert!(t.reason.contains(reason_part), "{}", t.reason);
    assert_eq!(report.records, 21);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    assert_eq!(read(tmp.path(), "usage"), expected);

    for i in 20..30u64 {
        assert!(log.append("usage", u128::from(i), &payload(i)).unwrap());
        expected.push((u128::from(i), payload(i)));
    }
    log.commit().unwrap();
    drop(log);
    let (_log, report) = Log::open(tmp.path(), LogOptions::default()).unwrap();
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(read(tmp.path(), "usage"), expected);
}

#[test]
fn torn_tail_garbage_is_truncated() {
    torn_tail_case(
        b"\x13\x00\x00\x00garbage that is not a record, long enough to hold its length",
        "checksum",
    );
}

#[test]
fn torn_tail_half_record_is_truncated() {
    let rec = encoded_record(99, b"half of this record reaches the disk");
    torn_tail_case(&rec[..rec.len() / 2], "past end of file");
}

#[test]
fn torn_tail_partial_header_is_truncated() {
    let rec = encoded_record(99, b"payload");
    torn_tail_case(&rec[..10], "incomplete record header");
}

#[test]
fn torn_tail_of_zeros_is_truncated() {
    torn_tail_case(&[0u8; 3000], "checksum");
}

#[test]
fn torn_new_segment_header_is_rewritten() {
    for torn in [&b""[..], &b"TNRSE"[..], &[0u8; 16][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let mut expected = committed_fixture(tmp.path(), 256);
        let before = segments(tmp.path(), "usage");
        assert!(before.len() > 1);
        // The crash happened right after the next segment was created.
        let next = tmp.path().join("usage").join("00000000000000000020.seg");
        std::fs::write(&next, torn).unwrap();

        let (mut log, report) = open_report(tmp.path(), 256);
        assert_eq!(report.truncated.len(), 1, "{report:?}");
        assert!(report.truncated[0].header_rewritten);
        assert_eq!(report.truncated[0].path, next);
        assert_eq!(report.truncated[0].bytes_dropped, torn.len() as u64);
        // It keeps its place, now with a whole header and no records.
        let mut with_next = before.clone();
        with_next.push(next.clone());
        assert_eq!(segments(tmp.path(), "usage"), with_next);
        assert_eq!(std::fs::metadata(&next).unwrap().len(), SEGMENT_HEADER_LEN as u64);
        assert_eq!(read(tmp.path(), "usage"), expected);
        for i in 20..40u64 {
            log.append("usage", u128::from(i), &payload(i)).unwrap();
            expected.push((u128::from(i), payload(i)));
        }
        log.commit().unwrap();
        drop(log);
        assert!(open_report(tmp.path(), 256).1.truncated.is_empty());
        assert_eq!(read(tmp.path(), "usage"), expected);
    }
}

#[test]
fn lane_with_only_a_torn_segment_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("usage")).unwrap();
    std::fs::write(tmp.path().join("usage").join("00000000000000000000.seg"), b"").unwrap();
    let (mut log, report) = Log::open(tmp.path(), LogOptions::default()).unwrap();
    assert_eq!(report.truncated.len(), 1);
    assert_eq!(log.lane_len("usage"), 0);
    log.append("usage", 1, b"first").unwrap();
    log.commit().unwrap();
    drop(log);
    assert_eq!(read(tmp.path(), "usage"), vec![(1, b"first".to_vec())]);
}

#[test]
fn flipped_payload_byte_is_corrupt_for_writer_and_reader() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 64 * 1024);
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    let reader = LogReader::open(tmp.path()).unwrap();
    // Second record's payload.
    let second = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + payload(0).len();
    flip_byte(&seg, second + RECORD_HEADER_LEN + 2);

    assert_corrupt(Log::open(tmp.path(), LogOptions::default()), &seg, second as u64);
    assert_corrupt(LogReader::open(tmp.path()), &seg, second as u64);
    // A reader opened before the damage finds it while scanning.
    let mut seen = 0;
    match reader.scan("usage", |_, _| {
        seen += 1;
        Ok::<(), Infallible>(())
    }) {
        Err(ScanError::Log(LogError::Corrupt { path, offset, .. })) => {
            assert_eq!((path, offset), (seg.clone(), second as u64));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(seen, 1);
    // Other lanes stay readable.
    assert_eq!(reader.read_lane("other").unwrap().len(), 1);
}

#[test]
fn flipped_length_byte_is_corrupt_not_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 64 * 1024);
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    let len_before = std::fs::metadata(&seg).unwrap().len();
    flip_byte(&seg, SEGMENT_HEADER_LEN + 2);
    assert_corrupt(Log::open(tmp.path(), LogOptions::default()), &seg, SEGMENT_HEADER_LEN as u64);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before, "must not truncate");
}

#[test]
fn corruption_in_non_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 256);
    let files = segments(tmp.path(), "usage");
    assert!(files.len() >= 3);
    // Even the last record of a non-last segment is not a torn tail.
    let first = &files[0];
    let len = std::fs::metadata(first).unwrap().len() as usize;
    flip_byte(first, len - 1);
    let reader = LogReader::open(tmp.path()).unwrap();
    let err = reader.read_lane("usage").unwrap_err();
    assert!(matches!(&err, LogError::Corrupt { path, .. } if path == first), "{err:?}");
    let report = tenure_log::verify(tmp.path()).unwrap();
    assert!(report.problems.iter().any(|p| &p.path == first), "{report:?}");
    // The writer reads a sealed segment's key index, not the segment: it drops nothing
    // and changes nothing there. Without the index it reads the segment, and refuses.
    let (log, report) = Log::open(tmp.path(), LogOptions::default()).unwrap();
    assert!(report.truncated.is_empty());
    drop(log);
    assert_eq!(std::fs::metadata(first).unwrap().len() as usize, len);
    std::fs::remove_file(first.with_extension("keys")).unwrap();
    match Log::open(tmp.path(), LogOptions::default()) {
        Err(LogError::Corrupt { path, .. }) => assert_eq!(&path, first),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn truncated_non_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 256);
    let files = segments(tmp.path(), "usage");
    let f = OpenOptions::new().write(true).open(&files[1]).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 3).unwrap();
    assert!(matches!(
        Log::open(tmp.path(), LogOptions::default()),
        Err(LogError::Corrupt { path, .. }) if path == files[1]
    ));
}

#[test]
fn missing_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 256);
    let files = segments(tmp.path(), "usage");
    // The errors name the missing file.
    std::fs::remove_file(&files[1]).unwrap();
    assert!(matches!(
        Log::open(tmp.path(), LogOptions::default()),
        Err(LogError::Corrupt { path, .. }) if path == files[1]
    ));
    assert!(matches!(
        LogReader::open(tmp.path()).unwrap().read_lane("usage"),
        Err(LogError::Corrupt { path, .. }) if path == files[1]
    ));
    std::fs::remove_file(&files[0]).unwrap();
    assert!(matches!(
        LogReader::open(tmp.path()),
        Err(LogError::Corrupt { path, .. }) if path == files[0]
    ));
}

#[test]
fn unknown_format_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 64 * 1024);
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8..10].copy_from_slice(&3u16.to_le_bytes());
    // A later format keeps the header checksum; without it this is a damaged header.
    std::fs::write(&seg, &bytes).unwrap();
    assert_corrupt(Log::open(tmp.path(), LogOptions::default()), &seg, 8);
    let crc = crc32fast::hash(&bytes[..10]);
    bytes[10..14].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, bytes).unwrap();
    match Log::open(tmp.path(), LogOptions::default()) {
        Err(LogError::UnsupportedVersion { path, version }) => {
            assert_eq!((path, version), (seg.clone(), 3))
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert!(matches!(LogReader::open(tmp.path()), Err(LogError::UnsupportedVersion { .. })));
}

#[test]
fn second_writer_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    match Log::open(tmp.path(), LogOptions::default()) {
        Err(LogError::Locked { path }) => assert_eq!(path, tmp.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Readers need no lock.
    LogReader::open(tmp.path()).unwrap();
    drop(log);
    Log::open(tmp.path(), LogOptions::default()).unwrap();
}

#[test]
fn invalid_input_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path());
    for lane in ["", "Usage", "9lives", "a/b", "../x"] {
        assert!(matches!(log.append(lane, 1, b"x"), Err(LogError::InvalidLane(l)) if l == lane));
    }
    let big = vec![0u8; tenure_log::MAX_PAYLOAD_LEN + 1];
    assert!(matches!(log.append("usage", 1, &big), Err(LogError::RecordTooLarge { .. })));
    // Rejected appends do not claim their key.
    assert!(!log.contains(1).unwrap());
    assert!(log.append("usage", 1, b"x").unwrap());
}

#[test]
fn reader_sees_committed_records_while_writer_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path());
    assert!(LogReader::open(tmp.path()).unwrap().lanes().is_empty());
    log.append("usage", 1, b"one").unwrap();
    log.append("usage", 2, b"two").unwrap();
    log.commit().unwrap();
    let early = LogReader::open(tmp.path()).unwrap();
    assert_eq!(early.lane_len("usage"), 2);

    log.append("usage", 3, b"three").unwrap();
    log.append("usage", 4, b"pending only").unwrap();
    let mid = LogReader::open(tmp.path()).unwrap();
    assert_eq!(mid.lane_len("usage"), 2, "pending records are invisible");
    log.commit().unwrap();

    // The earlier snapshots do not move; a new reader sees the commit.
    assert_eq!(early.read_lane("usage").unwrap().len(), 2);
    let now = LogReader::open(tmp.path()).unwrap();
    assert_eq!(
        now.read_lane("usage").unwrap().iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    // A write in flight: only part of the next record has reached the file.
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    let rec = encoded_record(5, b"in flight");
    append_bytes(&seg, &rec[..rec.len() - 3]);
    let during = LogReader::open(tmp.path()).unwrap();
    assert_eq!(during.lane_len("usage"), 4);
    assert_eq!(during.read_lane("usage").unwrap().len(), 4);
    // ... then the rest arrives, but no commit record yet: still not part of any snapshot.
    append_bytes(&seg, &rec[rec.len() - 3..]);
    assert_eq!(during.read_lane("usage").unwrap().len(), 4);
    let after = LogReader::open(tmp.path()).unwrap();
    assert_eq!(after.lane_len("usage"), 4);
}

#[test]
fn scan_propagates_callback_errors() {
    #[derive(Debug, PartialEq)]
    struct Bad(u128);
    impl From<LogError> for Bad {
        fn from(_: LogError) -> Self {
            Bad(0)
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 256);
    let reader = LogReader::open(tmp.path()).unwrap();
    let mut seen = Vec::new();
    let result = reader.scan("usage", |key, _| {
        seen.push(key);
        if key == 7 { Err(Bad(key)) } else { Ok(()) }
    });
    assert!(matches!(result, Err(ScanError::Callback(Bad(7)))));
    assert_eq!(seen, (0..=7).collect::<Vec<_>>());
    let flat: Result<(), Bad> = reader
        .scan("usage", |k, _| if k == 3 { Err(Bad(3)) } else { Ok(()) })
        .map_err(ScanError::flatten);
    assert_eq!(flat, Err(Bad(3)));
}

#[test]
fn reader_ignores_stray_entries() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 64 * 1024);
    std::fs::write(tmp.path().join("notes.txt"), b"hi").unwrap();
    std::fs::create_dir(tmp.path().join("Not-A-Lane")).unwrap();
    std::fs::write(tmp.path().join("usage").join("README"), b"hi").unwrap();
    let reader = LogReader::open(tmp.path()).unwrap();
    assert_eq!(reader.lanes(), vec!["other".to_string(), "usage".to_string()]);
    assert_eq!(reader.read_lane("usage").unwrap().len(), 20);
    assert_eq!(Log::open(tmp.path(), LogOptions::default()).unwrap().1.records, 21);
    // But a file that claims to be a segment and is misnamed is not ignored.
    std::fs::write(tmp.path().join("usage").join("7.seg"), b"").unwrap();
    assert!(matches!(LogReader::open(tmp.path()), Err(LogError::Corrupt { .. })));
}

#[derive(Debug, Clone)]
enum Op {
    Append { lane: usize, key: u128, payload: Vec<u8> },
    Commit,
    Reopen,
}

const LANES: [&str; 3] = ["alpha", "beta", "gamma"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..LANES.len(), 0u128..40, proptest::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(lane, key, payload)| Op::Append { lane, key, payload }),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Against a model: first occurrence of a key wins, commit makes records
    /// durable, reopening drops what was not committed.
    #[test]
    /// With a key memory of 1 or 3 keys, sealed segments' keys go to runs on disk (and runs
    /// merge) at almost every commit: the answers are the same.
    #[test]
    fn random_histories_round_trip(
        ops in proptest::collection::vec(op(), 1..120),
        segment_bytes in 40u64..400,
        key_memory in prop_oneof![Just(1usize), Just(3), Just(4_000_000)],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let opts = LogOptions { segment_bytes, key_memory };
        let mut log = Log::open(tmp.path(), opts.clone()).unwrap().0;
        let mut committed: BTreeMap<&str, Records> = BTreeMap::new();
        let mut committed_keys = HashSet::new();
        let mut pending: Vec<(&str, u128, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append { lane, key, payload } => {
                    let fresh = !committed_keys.contains(&key) && pending.iter().all(|p| p.1 != key);
                    prop_assert_eq!(log.append(LANES[lane], key, &payload).unwrap(), fresh);
                    if fresh {
                        pending.push((LANES[lane], key, payload));
                    }
                }
                Op::Commit => {
                    log.commit().unwrap();
                    for (lane, key, payload) in pending.drain(..) {
                        committed_keys.insert(key);
                        committed.entry(lane).or_default().push((key, payload));
                    }
                }
                Op::Reopen => {
                    drop(log);
                    pending.clear();
                    let (reopened, report) = Log::open(tmp.path(), opts.clone()).unwrap();
                    prop_assert!(report.truncated.is_empty());
                    prop_assert_eq!(report.records, committed_keys.len() as u64);
                    log = reopened;
                }
            }
            for key in 0u128..40 {
                let expect = committed_keys.contains(&key) || pending.iter().any(|p| p.1 == key);
                prop_assert_eq!(log.contains(key).unwrap(), expect);
            }
        }
        log.commit().unwrap();
        for (lane, key, payload) in pending.drain(..) {
            committed.entry(lane).or_default().push((key, payload));
        }
        let reader = LogReader::open(tmp.path()).unwrap();
        for lane in LANES {
            let want = committed.get(lane).cloned().unwrap_or_default();
            prop_assert_eq!(reader.lane_len(lane), want.len() as u64);
            prop_assert_eq!(reader.read_lane(lane).unwrap(), want.clone());
            prop_assert_eq!(log.lane_len(lane), want.len() as u64);
        }
        let stats = log.stats();
        let lanes_on_disk = reader.lanes();
        prop_assert_eq!(lanes_on_disk, committed.keys().map(|s| s.to_string()).collect::<Vec<_>>());
        prop_assert_eq!(stats.pending_records, 0);
        prop_assert_eq!(stats.keys, committed.values().map(Vec::len).sum::<usize>() as u64);
    }
}

#[test]
fn framed_records_append_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for (key, payload) in [(1u128, &b"alpha"[..]), (2, b"beta"), (1, b"alpha again")] {
        let at = tenure_log::begin_record(&mut buf);
        buf.extend_from_slice(payload);
        assert!(tenure_log::finish_record(&mut buf, at, key));
        ranges.push(at..buf.len());
    }
    let stored: Vec<bool> =
        ranges.iter().map(|r| log.append_framed("usage", &buf[r.clone()]).unwrap()).collect();
    assert_eq!(stored, [true, true, false]);
    assert!(!log.append("usage", 2, b"plain duplicate").unwrap());
    log.commit().unwrap();
    drop(log);
    let reader = LogReader::open(dir.path()).unwrap();
    let got = reader.read_lane("usage").unwrap();
    assert_eq!(got, vec![(1, b"alpha".to_vec()), (2, b"beta".to_vec())]);
}

proptest! {
    /// A batch appends exactly what one `append_framed` per record would: the same answers,
    /// and the same lanes on disk, through duplicates (in the batch, and of earlier
    /// batches), several lanes and segment rolls; with a key memory of 1 or 3 keys, through
    /// keys held in runs on disk, whose filters the batch probes for all its keys at once
    /// (the keys spread over the filters' blocks and bits, as hashes are).
    #[test]
    fn a_framed_batch_appends_as_one_call_per_record(
        batches in prop::collection::vec(
            prop::collection::vec((0usize..3, 0u128..40, 0usize..60), 0..40),
            1..6,
        ),
        key_memory in prop_oneof![Just(1usize), Just(3), Just(4_000_000)],
    ) {
        let lanes = ["usage", "subscription", "ticket"];
        let (one, many) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let opts = LogOptions { segment_bytes: 400, key_memory };
        let spread = |k: u128| k.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let (mut a, _) = Log::open(one.path(), opts.clone()).unwrap();
        let (mut b, _) = Log::open(many.path(), opts).unwrap();
        let mut stored = Vec::new();
        for batch in &batches {
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for &(lane, key, len) in batch {
                let at = tenure_log::begin_record(&mut buf);
                buf.extend(std::iter::repeat_n(key as u8, len));
                prop_assert!(tenure_log::finish_record(&mut buf, at, spread(key)));
                ranges.push((lanes[lane], at..buf.len()));
            }
            let want: Vec<bool> = ranges
                .iter()
                .map(|(lane, r)| a.append_framed(lane, &buf[r.clone()]).unwrap())
                .collect();
            let records: Vec<(&str, &[u8])> =
                ranges.iter().map(|(lane, r)| (*lane, &buf[r.clone()])).collect();
            b.append_framed_batch(&records, &mut stored).unwrap();
            prop_assert_eq!(&stored, &want);
            a.commit().unwrap();
            b.commit().unwrap();
        }
        drop((a, b));
        let (ra, rb) = (LogReader::open(one.path()).unwrap(), LogReader::open(many.path()).unwrap());
        prop_assert_eq!(ra.lanes(), rb.lanes());
        for lane in lanes {
            prop_assert_eq!(ra.read_lane(lane).unwrap(), rb.read_lane(lane).unwrap());
        }
    }
}

#[test]
fn a_framed_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut buf = Vec::new();
    let at = tenure_log::begin_record(&mut buf);
    buf.extend_from_slice(b"fine");
    assert!(tenure_log::finish_record(&mut buf, at, 7));
    let good = &buf[at..];
    let mut stored = vec![true; 3];
    let err = log.append_framed_batch(&[("usage", good), ("../bad", good)], &mut stored);
    assert!(matches!(err, Err(tenure_log::LogError::InvalidLane(_))), "{err:?}");
    let err = log.append_framed_batch(&[("usage", good), ("usage", &good[..10])], &mut stored);
    assert!(matches!(err, Err(tenure_log::LogError::RecordTooLarge { .. })), "{err:?}");
    // Nothing of either batch was taken: the key is still new.
    log.append_framed_batch(&[("usage", good), ("usage", good)], &mut stored).unwrap();
    assert_eq!(stored, [true, false]);
}

#[test]
fn a_reader_of_some_lanes_sees_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
    log.append("usage", 1, b"u").unwrap();
    log.append("usage", 3, b"v").unwrap();
    log.append("subscription", 2, b"s").unwrap();
    log.commit().unwrap();
    drop(log);
    // Corrupt the usage lane's first record: a reader that does not ask for it is not affected.
    let seg = std::fs::read_dir(dir.path().join("usage")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let r = LogReader::open_lanes(dir.path(), &["subscription"]).unwrap();
    assert_eq!(r.lanes(), vec!["subscription".to_string()]);
    assert_eq!(r.read_lane("subscription").unwrap(), vec![(2, b"s".to_vec())]);
    assert!(LogReader::open(dir.path()).is_err());
}

#[test]
fn scan_from_reads_the_tail_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) =
        Log::open(dir.path(), LogOptions { segment_bytes: 200, ..LogOptions::default() }).unwrap();
    for k in 0..40u128 {
        log.append("usage", k, format!("p{k}").as_bytes()).unwrap();
    }
    log.commit().unwrap();
    drop(log);
    let reader = LogReader::open(dir.path()).unwrap();
    for from in [0u64, 1, 7, 17, 39, 40, 55] {
        let mut seen = Vec::new();
        reader
            .scan_from("usage", from, |i, k, p| {
                assert_eq!(p, format!("p{k}").as_bytes());
                seen.push((i, k));
                Ok::<(), Infallible>(())
            })
            .unwrap();
        let want: Vec<(u64, u128)> = (from.min(40)..40).map(|i| (i, i as u128)).collect();
        assert_eq!(seen, want, "from {from}");
    }
}

#[test]
fn sealed_segments_get_a_key_index_that_replaces_reading_them() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = committed_fixture(tmp.path(), 200);
    let segs = segments(tmp.path(), "usage");
    assert!(segs.len() > 3, "{segs:?}");
    // Sealing a segment wrote its index; the last segment has none.
    for s in &segs[..segs.len() - 1] {
        assert!(s.with_extension("keys").exists(), "{s:?}");
    }
    assert!(!segs.last().unwrap().with_extension("keys").exists());
    let (log, first) = open_report(tmp.path(), 200);
    assert_eq!(first.indexed_segments, segs.len() as u64 - 1);
    drop(log);
    // The next one reads the indexes instead, with the same outcome.
    let (mut log, second) = open_report(tmp.path(), 200);
    assert_eq!(second.indexed_segments, segs.len() as u64 - 1);
    assert_eq!((second.records, second.segments), (first.records, first.segments));
    // Every stored key is still known: re-appending stores nothing.
    for (k, p) in &expected {
        assert!(!log.append("usage", *k, p).unwrap(), "key {k} accepted twice");
    }
    assert!(log.append("usage", 999, b"new").unwrap());
    log.commit().unwrap();
    drop(log);
    // A damaged or stale index is ignored: the segment is read, verified and indexed again.
    let keys = segs[0].with_extension("keys");
    flip_byte(&keys, 30);
    std::fs::write(segs[1].with_extension("keys"), b"TNRKEYS1 short").unwrap();
    let sealed_now = segments(tmp.path(), "usage").len() as u64 - 1;
    let (mut log, third) = open_report(tmp.path(), 200);
    assert_eq!(third.indexed_segments, sealed_now - 2);
    assert_eq!(third.rebuilt_indexes.len(), 2, "{third:?}");
    assert_eq!(third.rebuilt_indexes[0].path, keys);
    for (k, p) in &expected {
        assert!(!log.append("usage", *k, p).unwrap());
    }
    drop(log);
    let (_, fourth) = open_report(tmp.path(), 200);
    assert!(fourth.indexed_segments >= second.indexed_segments);
    let mut all = expected.clone();
    all.push((999, b"new".to_vec()));
    assert_eq!(read(tmp.path(), "usage"), all);
}

// Regression tests of issue 13's durability defects (each failed on the code before it).

/// A damaged last record of a lane was cut off as a "torn tail" although its commit had
/// returned: acknowledged data dropped with nothing but a line in a report.
#[test]
fn a_damaged_last_record_that_was_committed_is_refused_not_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = committed_fixture(tmp.path(), 64 * 1024);
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    let len_before = std::fs::metadata(&seg).unwrap().len();
    // The last record's payload: the file's last bytes under the old format, and just
    // before the commit record under the new one. Either way the record was committed.
    let last_payload = payload(19);
    let bytes = std::fs::read(&seg).unwrap();
    let at = bytes.windows(last_payload.len()).rposition(|w| w == last_payload.as_slice()).unwrap();
    flip_byte(&seg, at + 3);
    let record_start = (at - RECORD_HEADER_LEN) as u64;
    assert_corrupt(Log::open(tmp.path(), LogOptions::default()), &seg, record_start);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before, "nothing may be cut off");
    assert_corrupt(LogReader::open(tmp.path()), &seg, record_start);
    // Put back, everything is there.
    flip_byte(&seg, at + 3);
    assert_eq!(read(tmp.path(), "usage"), expected);
}

/// `scan_from` skipped a missing segment that lay before `from` without the continuity
/// check `scan` has, and returned the records after it as if nothing were missing.
#[test]
fn scan_from_refuses_a_missing_segment_before_from() {
    let tmp = tempfile::tempdir().unwrap();
    committed_fixture(tmp.path(), 256);
    let files = segments(tmp.path(), "usage");
    assert!(files.len() >= 4, "{files:?}");
    std::fs::remove_file(&files[1]).unwrap();
    let reader = LogReader::open(tmp.path()).unwrap();
    for from in [0, 15, 19] {
        let result = reader.scan_from("usage", from, |_, _, _| Ok::<(), Infallible>(()));
        match result {
            Err(ScanError::Log(LogError::Corrupt { path, .. })) => {
                assert_eq!(path, files[1], "the error names the missing file")
            }
            other => panic!("scan_from({from}) over a missing segment: {other:?}"),
        }
    }
}

/// A flipped byte in a sealed segment's header went unnoticed by every reader (the
/// header's last six bytes were not checked).
#[test]
fn a_flipped_byte_anywhere_in_a_sealed_segment_header_is_refused() {
    for at in 0..SEGMENT_HEADER_LEN {
        let tmp = tempfile::tempdir().unwrap();
        committed_fixture(tmp.path(), 256);
        let files = segments(tmp.path(), "usage");
        flip_byte(&files[0], at);
        match LogReader::open(tmp.path()).unwrap().read_lane("usage") {
            Err(LogError::Corrupt { path, .. }) => assert_eq!(path, files[0], "byte {at}"),
            other => panic!("byte {at} of the header flipped: {other:?}"),
        }
    }
}

/// A format-1 segment, as the first version of the log wrote it: no header checksum, no
/// commit records.
fn legacy_segment(records: &[(u128, Vec<u8>)]) -> Vec<u8> {
    let mut buf = b"TNRSEG01".to_vec();
    buf.extend_from_slice(&1u16.to_le_bytes());
    buf.extend_from_slice(&[0u8; 6]);
    for (key, payload) in records {
        buf.extend_from_slice(&encoded_record(*key, payload));
    }
    buf
}

#[test]
fn format_1_logs_are_read_reported_and_continued_in_format_2() {
    let tmp = tempfile::tempdir().unwrap();
    let lane = tmp.path().join("usage");
    std::fs::create_dir_all(&lane).unwrap();
    let recs: Records = (0..8u64).map(|i| (u128::from(i), payload(i))).collect();
    let first = lane.join("00000000000000000000.seg");
    let second = lane.join("00000000000000000005.seg");
    std::fs::write(&first, legacy_segment(&recs[..5])).unwrap();
    let mut last = legacy_segment(&recs[5..]);
    let good = last.len() as u64;
    last.extend_from_slice(&encoded_record(99, b"torn")[..10]);
    std::fs::write(&second, &last).unwrap();
    // Readers read it as it is.
    assert_eq!(read(tmp.path(), "usage"), recs);
    assert!(tenure_log::verify(tmp.path()).unwrap().problems.iter().any(|p| p.path == second));

    let (mut log, report) = open_report(tmp.path(), 64 * 1024);
    assert_eq!(report.truncated.len(), 1, "{report:?}");
    let t = &report.truncated[0];
    assert_eq!((t.offset, t.bytes_dropped), (good, 10));
    assert_eq!(t.acknowledged, tenure_log::Acknowledged::Unknown, "format 1 cannot tell");
    assert!(t.to_string().contains("cannot be told"), "{t}");
    assert_eq!(report.upgraded, vec![second.clone()]);
    assert!(report.lines().iter().any(|l| l.contains("format-1 segment")), "{report:?}");
    // New records go to a format-2 segment after the old ones, which are sealed as they are.
    let third = lane.join("00000000000000000008.seg");
    assert!(third.exists() && second.with_extension("keys").exists());
    for i in 8..12u64 {
        log.append("usage", u128::from(i), &payload(i)).unwrap();
    }
    assert!(!log.append("usage", 3, b"an old key").unwrap());
    log.commit().unwrap();
    drop(log);
    assert_eq!(&std::fs::read(&third).unwrap()[8..10], &2u16.to_le_bytes());
    let (_, again) = open_report(tmp.path(), 64 * 1024);
    assert!(again.is_clean(), "{again:?}");
    let all: Records = (0..12u64).map(|i| (u128::from(i), payload(i))).collect();
    assert_eq!(read(tmp.path(), "usage"), all);
    let v = tenure_log::verify(tmp.path()).unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.legacy_segments, 2);
}

#[test]
fn commits_leave_commit_records_and_rolls_seal_with_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open_small(tmp.path(), 400);
    for batch in 0..6u64 {
        for i in batch * 4..batch * 4 + 4 {
            log.append("usage", u128::from(i), &payload(i)).unwrap();
        }
        log.commit().unwrap();
    }
    drop(log);
    let files = segments(tmp.path(), "usage");
    assert!(files.len() >= 3, "{files:?}");
    let last = std::fs::read(files.last().unwrap()).unwrap();
    // Every segment's size includes room for the commit record; the last ends with one,
    // twice.
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 400, "{f:?}");
    }
    let n = last.len();
    assert_eq!(&last[n - 2 * COMMIT_RECORD_LEN..n - 2 * COMMIT_RECORD_LEN + 4], b"TNRC");
    assert_eq!(
        last[n - 2 * COMMIT_RECORD_LEN..n - COMMIT_RECORD_LEN],
        last[n - COMMIT_RECORD_LEN..]
    );
    for f in &files[..files.len() - 1] {
        assert!(f.with_extension("keys").exists(), "{f:?} sealed without an index");
    }
    assert!(tenure_log::verify(tmp.path()).unwrap().is_clean());
}

#[test]
fn verify_beside_a_running_writer_leaves_its_tail_alone_and_repair_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path());
    log.append("usage", 1, b"one").unwrap();
    log.commit().unwrap();
    // A commit being written: its records are there, its commit record not yet.
    let seg = segments(tmp.path(), "usage").pop().unwrap();
    append_bytes(&seg, &encoded_record(2, b"in flight"));
    let v = tenure_log::verify(tmp.path()).unwrap();
    assert!(v.writer_running && v.is_clean(), "{v:?}");
    assert!(matches!(tenure_log::repair(tmp.path(), false), Err(LogError::Locked { .. })));
    drop(log);
    // Without a writer the same tail is a torn tail, which the next open cuts off.
    let v = tenure_log::verify(tmp.path()).unwrap();
    assert!(!v.writer_running, "{v:?}");
    assert_eq!(v.problems.len(), 1, "{v:?}");
    assert_eq!(v.problems[0].kind, tenure_log::ProblemKind::TornTail);
    assert_eq!(v.problems[0].path, seg);
    let (_, report) = open_report(tmp.path(), 64 * 1024);
    assert_eq!(report.dropped_records(), 1);
    assert_eq!(read(tmp.path(), "usage"), vec![(1, b"one".to_vec())]);
}

/// The key index's runs and manifest on disk: a manifest or run that does not check is
/// rebuilt from the segments' key indexes at the next open (nothing forgotten, nothing
/// stored twice); a damaged page of keys fails the write that reads it, and removing
/// `keys.idx/` rebuilds it.
#[test]
fn a_damaged_key_index_is_rebuilt_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions { segment_bytes: 300, key_memory: 5 };
    let keys = spread_keys(200);
    {
        let (mut log, _) = Log::open(dir.path(), opts.clone()).unwrap();
        for chunk in keys.chunks(10) {
            for k in chunk {
                assert!(log.append("usage", *k, b"payload").unwrap());
            }
            log.commit().unwrap();
        }
    }
    let idx = dir.path().join("keys.idx");
    let runs = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&idx)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "run"))
            .collect();
        v.sort();
        v
    };
    assert!(!runs().is_empty(), "no runs written");
    let holds_all = |log: &Log| {
        for k in &keys {
            assert!(log.contains(*k).unwrap(), "key {k} forgotten");
        }
        assert!(!log.contains(7).unwrap());
        assert_eq!(log.stats().keys, keys.len() as u64);
    };
    let flip = |path: &Path, at: usize| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x20;
        std::fs::write(path, bytes).unwrap();
    };
    // A damaged manifest, then a missing run: rebuilt.
    flip(&idx.join("MANIFEST"), 3);
    let (mut log, _) = Log::open(dir.path(), opts.clone()).unwrap();
    holds_all(&log);
    assert!(!log.append("usage", keys[0], b"again").unwrap());
    drop(log);
    std::fs::remove_file(&runs()[0]).unwrap();
    let (log, _) = Log::open(dir.path(), opts.clone()).unwrap();
    holds_all(&log);
    drop(log);
    // A damaged page of keys: the run opens (its filter and tables check), the lookup that
    // reads the page fails, naming the run; verify finds it, repair removes keys.idx, and
    // the next open rebuilds it.
    let run = runs()[0].clone();
    flip(&run, 40);
    let (mut log, _) = Log::open(dir.path(), opts.clone()).unwrap();
    let errors = keys.iter().filter(|k| log.append("usage", **k, b"again").is_err()).count();
    assert!(errors > 0, "a damaged page was read without an error");
    drop(log);
    let v = tenure_log::verify(dir.path()).unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert_eq!((v.problems[0].path.as_path(), v.problems[0].offset), (run.as_path(), 32));
    let done = tenure_log::repair(dir.path(), true).unwrap();
    assert_eq!(done.actions.len(), 1, "{done:?}");
    assert!(!idx.exists(), "repair left the damaged key index");
    assert!(tenure_log::verify(dir.path()).unwrap().is_clean());
    let (log, _) = Log::open(dir.path(), opts).unwrap();
    holds_all(&log);
    let records = LogReader::open(dir.path()).unwrap().read_lane("usage").unwrap();
    assert_eq!(records.len(), keys.len());
}

/// An index rebuilt from scratch (a log written before runs existed, or after `repair`)
/// goes to runs as it is read: the open holds no more keys in memory than its limit and the
/// open segments', not the whole history; every key is still found, and nothing is reported
/// as a duplicate.
#[test]
fn a_rebuilt_key_index_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let keys = spread_keys(3000);
    let big = LogOptions { segment_bytes: 400, key_memory: 1_000_000 };
    {
        let (mut log, _) = Log::open(dir.path(), big).unwrap();
        for (i, chunk) in keys.chunks(25).enumerate() {
            let lane = if i % 3 == 0 { "tickets" } else { "usage" };
            for k in chunk {
                assert!(log.append(lane, *k, b"payload").unwrap());
            }
            log.commit().unwrap();
        }
        assert_eq!(log.stats().keys_in_memory, keys.len() as u64, "all in memory at 1 M");
    }
    std::fs::remove_dir_all(dir.path().join("keys.idx")).unwrap();
    let limit = 40;
    let (mut log, report) =
        Log::open(dir.path(), LogOptions { segment_bytes: 400, key_memory: limit }).unwrap();
    assert_eq!(report.duplicate_keys, 0, "{report:?}");
    let stats = log.stats();
    assert_eq!(stats.keys, keys.len() as u64);
    // The open segments' keys (at most a segment's worth per lane) plus fewer than `limit`
    // sealed ones.
    let per_segment = 400 / 16;
    assert!(
        stats.keys_in_memory < (limit + 2 * per_segment) as u64,
        "{} keys in memory after the rebuild",
        stats.keys_in_memory
    );
    for k in &keys {
        assert!(log.contains(*k).unwrap(), "key {k} forgotten by the rebuild");
        assert!(!log.append("usage", *k, b"again").unwrap());
    }
    assert!(!log.contains(7).unwrap());
    log.commit().unwrap();
    drop(log);
    let (log, report) = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(report.duplicate_keys, 0);
    assert_eq!(log.stats().keys, keys.len() as u64);
}

/// A writer's close writes the sealed keys it holds in memory as a run once they pass a
/// sixteenth of its limit (at most about a million), so that the next open does not read
/// them again from the segments: it holds the open segments' keys and no sealed ones, and
/// every key is still found.
#[test]
fn a_close_writes_the_sealed_keys_as_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let keys = spread_keys(1000);
    // 25 keys a segment; a limit of 1,600 keys: none flushed while writing, 100 at a close.
    let opts = LogOptions { segment_bytes: 400, key_memory: 1600 };
    let (mut log, _) = Log::open(dir.path(), opts.clone()).unwrap();
    for chunk in keys.chunks(25) {
        for k in chunk {
            assert!(log.append("usage", *k, b"payload").unwrap());
        }
        log.commit().unwrap();
    }
    assert_eq!(log.stats().keys_in_memory, keys.len() as u64, "nothing flushed while writing");
    drop(log);
    let (mut log, report) = Log::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(report.duplicate_keys, 0, "{report:?}");
    let stats = log.stats();
    assert_eq!(stats.keys, keys.len() as u64);
    assert!(stats.keys_in_memory <= 25, "{} keys in memory after the open", stats.keys_in_memory);
    for k in &keys {
        assert!(log.contains(*k).unwrap(), "key {k} lost");
        assert!(!log.append("usage", *k, b"again").unwrap());
    }
    assert!(!log.contains(7).unwrap());
    // Below the threshold, a close writes no run.
    for i in 0..50u128 {
        assert!(log.append("usage", 7 + i * 0x1_0000_0000_0000_0001, b"more").unwrap());
    }
    log.commit().unwrap();
    drop(log);
    let (log, _) = Log::open(dir.path(), opts).unwrap();
    assert!(log.stats().keys_in_memory >= 50, "{:?}", log.stats());
    assert_eq!(log.stats().keys, keys.len() as u64 + 50);
}

/// Keys `1..=n` spread over the key space (as hashes are).
fn spread_keys(n: u128) -> Vec<u128> {
    (1..=n).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).collect()
}

/// `last_record` is the last record a scan of the snapshot gives, with its position: in a
/// lane of many segments, past an uncommitted tail, when the last segment holds no record
/// yet (a torn header: the segment before it is read), and none for a missing lane.
#[test]
fn last_record_is_the_scans_last() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open_small(tmp.path(), 512);
    for i in 0..300u64 {
        log.append("usage", u128::from(i) + 7, &payload(i)).unwrap();
        if i % 40 == 0 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    drop(log);
    let scanned_last = |r: &LogReader| {
        let mut last = None;
        r.scan_located("usage", 0, |_, at, key, _| {
            last = Some((key, at));
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
        last
    };
    let r = LogReader::open(tmp.path()).unwrap();
    assert!(segments(tmp.path(), "usage").len() > 20);
    assert_eq!(r.last_record("usage").unwrap(), scanned_last(&r));
    assert_eq!(r.last_record("usage").unwrap().unwrap().0, 306);
    assert_eq!(r.last_record("nothing").unwrap(), None);
    // An uncommitted record after the last commit is not the last record.
    let files = segments(tmp.path(), "usage");
    let last_file = files.last().unwrap();
    let committed = std::fs::read(last_file).unwrap();
    append_bytes(last_file, &encoded_record(999, b"never committed"));
    let r = LogReader::open(tmp.path()).unwrap();
    assert_eq!(r.last_record("usage").unwrap().unwrap().0, 306);
    assert_eq!(r.last_record("usage").unwrap(), scanned_last(&r));
    // A last segment whose header was torn holds none: the one before it is read.
    std::fs::write(last_file, &committed).unwrap();
    std::fs::write(last_file.with_file_name(format!("{:020}.seg", 300)), b"TNR").unwrap();
    let r = LogReader::open(tmp.path()).unwrap();
    let (key, at) = r.last_record("usage").unwrap().unwrap();
    assert_eq!(key, 306);
    assert_eq!(Some((key, at)), scanned_last(&r));
    assert_eq!(r.key_at("usage", at), Some(306));
}

/// `read_located` gives back the records at the positions a scan gave, whatever their
/// sizes (a record longer than a read's window, neighbours read together, records skipped)
/// and across segments; a position that is no record's start is refused.
#[test]
fn read_located_gives_the_records_a_scan_located() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open_small(tmp.path(), 64 * 1024);
    let body = |i: u64| -> Vec<u8> {
        let n = match i % 9 {
            0 => 9000,
            4 => 3000,
            _ => 20 + (i % 50) as usize,
        };
        (0..n).map(|j| (i as usize * 31 + j) as u8).collect()
    };
    for i in 0..400u64 {
        log.append("usage", u128::from(i), &body(i)).unwrap();
    }
    log.commit().unwrap();
    drop(log);
    assert!(segments(tmp.path(), "usage").len() > 3);
    let r = LogReader::open(tmp.path()).unwrap();
    let mut all = Vec::new();
    r.scan_located("usage", 0, |_, at, key, payload| {
        all.push((at, key, payload.to_vec()));
        Ok::<(), Infallible>(())
    })
    .unwrap();
    assert_eq!(all.len(), 400);
    for step in [1, 2, 3, 7] {
        let wanted: Vec<_> = all.iter().step_by(step).collect();
        let at: Vec<_> = wanted.iter().map(|w| w.0).collect();
        let mut got = Vec::new();
        r.read_located("usage", &at, |at, key, payload| {
            got.push((at, key, payload.to_vec()));
            Ok::<(), Infallible>(())
        })
        .unwrap();
        let want: Vec<_> = wanted.into_iter().cloned().collect();
        assert!(got == want, "every {step}th record");
    }
    // A position inside a record (its payload) is refused, not read as one.
    let inside = tenure_log::Located(all[10].0.0 + 5);
    let read = r.read_located("usage", &[all[9].0, inside], |_, _, _| Ok::<(), Infallible>(()));
    assert!(read.is_err());
}
