//! The crash-and-corruption matrix of the log: every case is a log whose commits returned,
//! then damaged (a torn last group, a flipped byte in each region of a segment, a commit
//! record or a key index, a missing segment, a truncated index, a zero-filled tail). Each
//! case runs through the writer's open, `LogReader::scan`, `LogReader::scan_from`,
//! `verify` and `repair`, and each must end either "refused, naming the file, the offset
//! and the reason" or "recovered, nothing acknowledged lost" (every record whose commit
//! returned still readable, and what was dropped reported). Silence (records missing
//! without an error or a report) fails the case.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use tenure_log::{
    COMMIT_RECORD_LEN, Log, LogError, LogOptions, LogReader, ProblemKind, RECORD_HEADER_LEN,
    RecoveryReport, SEGMENT_HEADER_LEN, ScanError,
};

type Records = Vec<(u128, Vec<u8>)>;

const SEGMENT_BYTES: u64 = 900;
/// Sealed keys held in memory before a run is written: small, so that the crash matrix
/// exercises the key index's runs and manifest too.
const KEY_MEMORY: usize = 3;
const MIN_GROUPS: u64 = 12;
const PER_GROUP: u64 = 3;

fn payload(i: u64) -> Vec<u8> {
    format!("event-{i:03}-{}", "y".repeat((i % 11) as usize)).into_bytes()
}

/// An item of a segment, found by walking it the way the format documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Record { at: usize, len: usize },
    Commit { at: usize },
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    items: Vec<Item>,
}

impl Segment {
    fn records(&self) -> Vec<usize> {
        self.items
            .iter()
            .filter_map(|i| if let Item::Record { at, .. } = i { Some(*at) } else { None })
            .collect()
    }

    fn commits(&self) -> Vec<usize> {
        self.items
            .iter()
            .filter_map(|i| if let Item::Commit { at } = i { Some(*at) } else { None })
            .collect()
    }
}

fn walk(path: &Path) -> Segment {
    let bytes = std::fs::read(path).unwrap();
    let mut items = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < bytes.len() {
        if &bytes[pos..pos + 4] == b"TNRC" {
            items.push(Item::Commit { at: pos });
            pos += COMMIT_RECORD_LEN;
        } else {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            items.push(Item::Record { at: pos, len });
            pos += RECORD_HEADER_LEN + len;
        }
    }
    Segment { path: path.to_path_buf(), items }
}

fn segments(dir: &Path) -> Vec<Segment> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("usage"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files.iter().map(|p| walk(p)).collect()
}

/// The log every case starts from: lane `usage` of several segments, each commit a group
/// of three records (and one record in lane `other`), until the last segment holds at
/// least three commits; returns the usage records.
fn build(dir: &Path) -> Records {
    let (mut log, _) =
        Log::open(dir, LogOptions { segment_bytes: SEGMENT_BYTES, key_memory: KEY_MEMORY })
            .unwrap();
    let mut all = Vec::new();
    for g in 0..200 {
        for i in g * PER_GROUP..(g + 1) * PER_GROUP {
            assert!(log.append("usage", u128::from(i), &payload(i)).unwrap());
            all.push((u128::from(i), payload(i)));
        }
        log.append("other", 1_000 + u128::from(g), b"other").unwrap();
        log.commit().unwrap();
        let segs = segments(dir);
        if g >= MIN_GROUPS && segs.len() >= 4 && segs.last().unwrap().commits().len() >= 6 {
            return all;
        }
    }
    panic!("no layout with four segments and three commits in the last");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Every file of a directory and its bytes, to tell whether something changed it.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else if p.file_name().is_some_and(|n| n != "LOCK") {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

fn cut(path: &Path, len: usize) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len as u64).unwrap();
}

/// What a case does to its copy of the log.
type Damage = Box<dyn Fn(&Path)>;

/// What a path must do with a case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Refuse with `LogError::Corrupt` naming this file and offset.
    Refuse(PathBuf, u64),
    /// Succeed with every acknowledged record (the writer: reporting what it dropped).
    Recover,
    /// The writer only: succeed without reading the damaged bytes, changing no file (the
    /// damage is left to the paths that read them).
    NotRead,
}

struct Case {
    name: String,
    /// Usage records whose commit returned and that must survive.
    acked: usize,
    writer: Expect,
    reader: Expect,
    /// Where `verify` must report a problem (and of what kind); `None`: the log is valid.
    verify: Option<(PathBuf, u64, ProblemKind)>,
}

fn run(base: &Path, all: &Records, case: &Case, damage: &dyn Fn(&Path)) {
    let name = &case.name;
    let acked = &all[..case.acked];
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    copy_dir(base, &dir);
    damage(&dir);
    let resolve = |e: &Expect| match e {
        Expect::Refuse(p, o) => Expect::Refuse(dir.join(p), *o),
        other => other.clone(),
    };
    let (writer, reader_expect) = (resolve(&case.writer), resolve(&case.reader));

    // verify: names the file and offset, of the right kind; changes nothing.
    let before = snapshot(&dir);
    let v = tenure_log::verify(&dir).unwrap();
    assert_eq!(snapshot(&dir), before, "{name}: verify changed files");
    match &case.verify {
        None => assert!(v.is_clean(), "{name}: verify found {:?}", v.problems),
        Some((path, offset, kind)) => {
            let path = &dir.join(path);
            assert!(
                v.problems
                    .iter()
                    .any(|p| &p.path == path && p.offset == *offset && p.kind == *kind),
                "{name}: verify should report {kind:?} at {}:{offset}, reported {:#?}",
                path.display(),
                v.problems
            );
            for p in &v.problems {
                assert!(
                    !p.reason.is_empty()
                        && p.to_string().contains(&format!(": offset {}: ", p.offset))
                );
            }
        }
    }

    // LogReader::scan, then scan_from at a few starting points.
    match (&reader_expect, LogReader::open(&dir)) {
        (Expect::Refuse(path, offset), Err(e)) => {
            assert_refused(name, "reader open", e, path, *offset)
        }
        (expect, Err(e)) => panic!("{name}: reader open: {e}, expected {expect:?}"),
        (expect, Ok(reader)) => {
            match (expect, reader.read_lane("usage")) {
                (Expect::Refuse(path, offset), Err(e)) => {
                    assert_refused(name, "scan", e, path, *offset)
                }
                (Expect::Refuse(path, offset), Ok(r)) => {
                    panic!(
                        "{name}: scan read {} records, expected a refusal at {}:{offset}",
                        r.len(),
                        path.display()
                    )
                }
                (_, Err(e)) => panic!("{name}: scan: {e}"),
                (_, Ok(records)) => assert_holds(name, "scan", &records, acked),
            }
            for from in [0, 1, acked.len() as u64 / 2, acked.len().saturating_sub(1) as u64] {
                let mut got = Vec::new();
                let result = reader.scan_from("usage", from, |i, k, p| {
                    got.push((i, k, p.to_vec()));
                    Ok::<(), Infallible>(())
                });
                match result {
                    // A refusal must name a file of the lane and an offset in it.
                    Err(ScanError::Log(LogError::Corrupt { path, reason, .. })) => {
                        assert!(path.starts_with(dir.join("usage")) && !reason.is_empty(), "{name}")
                    }
                    Err(e) => panic!("{name}: scan_from({from}): {e}"),
                    Ok(()) => {
                        for (n, (i, k, p)) in got.iter().enumerate() {
                            assert_eq!(*i, from + n as u64, "{name}: scan_from({from}) numbering");
                            if let Some((key, pay)) = all.get(*i as usize) {
                                assert_eq!(
                                    (k, p),
                                    (key, pay),
                                    "{name}: scan_from({from}) record {i}"
                                );
                            }
                        }
                        let want = acked.len().saturating_sub(from as usize);
                        assert!(
                            got.len() >= want,
                            "{name}: scan_from({from}) returned {} of {want} acknowledged records, silently",
                            got.len()
                        );
                    }
                }
            }
        }
    }

    // The writer's open.
    let before = snapshot(&dir);
    match (
        &writer,
        Log::open(&dir, LogOptions { segment_bytes: SEGMENT_BYTES, key_memory: KEY_MEMORY }),
    ) {
        (Expect::Refuse(path, offset), Err(e)) => {
            assert_refused(name, "writer open", e, path, *offset);
            assert_eq!(snapshot(&dir), before, "{name}: a refused open changed files");
        }
        (expect, Err(e)) => panic!("{name}: writer open: {e}, expected {expect:?}"),
        (Expect::Refuse(path, offset), Ok(_)) => {
            panic!("{name}: writer opened, expected a refusal at {}:{offset}", path.display())
        }
        (Expect::NotRead, Ok((log, report))) => {
            assert!(report.truncated.is_empty(), "{name}: {report:?}");
            drop(log);
            assert_eq!(snapshot(&dir), before, "{name}: the writer changed files it did not read");
        }
        (Expect::Recover, Ok((log, report))) => {
            for (k, _) in acked {
                assert!(log.contains(*k).unwrap(), "{name}: key {k} forgotten");
            }
            drop(log);
            let after = snapshot(&dir);
            let changed = after != before;
            assert_reported(name, &report, changed);
            let records = LogReader::open(&dir).unwrap().read_lane("usage").unwrap();
            assert_holds(name, "after the writer's recovery", &records, acked);
            // Recovery leaves a log that verifies clean and opens clean.
            let v = tenure_log::verify(&dir).unwrap();
            assert!(v.is_clean(), "{name}: after recovery verify found {:#?}", v.problems);
            let (_, again) = Log::open(
                &dir,
                LogOptions { segment_bytes: SEGMENT_BYTES, key_memory: KEY_MEMORY },
            )
            .unwrap();
            assert!(again.truncated.is_empty(), "{name}: a second open dropped more: {again:?}");
        }
    }

    // repair: a dry run changes nothing and says what it would do; applied, it leaves a
    // log that verifies clean, holds a prefix of the records, and loses no acknowledged
    // record it did not name.
    let t2 = tempfile::tempdir().unwrap();
    let dir = t2.path().join("log");
    copy_dir(base, &dir);
    damage(&dir);
    let before = snapshot(&dir);
    let dry = tenure_log::repair(&dir, false).unwrap();
    assert_eq!(snapshot(&dir), before, "{name}: a dry run changed files");
    assert_eq!(dry.is_empty(), case.verify.is_none(), "{name}: {dry:#?}");
    let done = tenure_log::repair(&dir, true).unwrap();
    assert_eq!(done.actions, dry.actions, "{name}: the repair did something else than it said");
    let v = tenure_log::verify(&dir).unwrap();
    assert!(v.is_clean(), "{name}: after repair verify found {:#?}\nrepair: {done:#?}", v.problems);
    let (log, report) =
        Log::open(&dir, LogOptions { segment_bytes: SEGMENT_BYTES, key_memory: KEY_MEMORY })
            .unwrap();
    assert!(report.truncated.is_empty(), "{name}: after repair the writer dropped {report:?}");
    let records = LogReader::open(&dir).unwrap().read_lane("usage").unwrap();
    assert_eq!(records[..], all[..records.len()], "{name}: after repair the lane is not a prefix");
    // The key index after a repair (kept or rebuilt) holds exactly the records kept: a
    // dropped record's key would drop its re-import silently.
    for (i, (k, _)) in all.iter().enumerate() {
        let held = log.contains(*k).unwrap();
        assert_eq!(held, i < records.len(), "{name}: after repair, key of record {i} held: {held}");
    }
    drop(log);
    let lost = acked.len().saturating_sub(records.len()) as u64;
    if done.acknowledged_lost() == 0 && !done.actions.iter().any(|a| a.uncounted) {
        assert_eq!(
            lost, 0,
            "{name}: repair lost {lost} acknowledged records and said none: {done:#?}"
        );
    }
}

fn assert_refused(name: &str, what: &str, e: LogError, path: &Path, offset: u64) {
    match e {
        LogError::Corrupt { path: p, offset: o, reason } => {
            assert_eq!((p.as_path(), o), (path, offset), "{name}: {what} refused with {reason}");
            assert!(!reason.is_empty());
        }
        other => {
            panic!("{name}: {what}: expected Corrupt at {}:{offset}, got {other}", path.display())
        }
    }
}

/// Every acknowledged record, in order, at the start of `records`.
fn assert_holds(name: &str, what: &str, records: &Records, acked: &[(u128, Vec<u8>)]) {
    assert!(
        records.len() >= acked.len() && records[..acked.len()] == *acked,
        "{name}: {what}: {} records, {} acknowledged ones expected first: acknowledged data lost silently",
        records.len(),
        acked.len()
    );
}

/// A recovery that changed files must say so.
fn assert_reported(name: &str, report: &RecoveryReport, changed: bool) {
    if changed {
        assert!(
            !report.is_clean() && !report.lines().is_empty(),
            "{name}: files changed, report empty: {report:?}"
        );
        for t in &report.truncated {
            assert_eq!(t.acknowledged, tenure_log::Acknowledged::No, "{name}");
            assert!(t.to_string().contains(&format!("offset {}", t.offset)), "{name}");
        }
    }
}

#[test]
fn crash_and_corruption_matrix() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("log");
    let all = build(&base);
    let n = all.len();
    let segs = segments(&base);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let last = segs.last().unwrap().clone();
    let sealed = segs[1].clone();
    // Both copies of each commit record of the last segment.
    let commits = last.commits();
    assert!(commits.len() >= 6, "the last segment needs three commits: {:?}", last.items);
    let len = std::fs::metadata(&last.path).unwrap().len() as usize;
    // The last commit's two copies, and where its group starts.
    let (copy_a, copy_b) = (commits[commits.len() - 2], commits[commits.len() - 1]);
    assert_eq!(copy_b, copy_a + COMMIT_RECORD_LEN);
    let group_start = commits[commits.len() - 3] + COMMIT_RECORD_LEN;
    let last_records = last.records();
    let in_last_group = last_records.iter().filter(|&&r| r >= group_start).count();
    assert_eq!(in_last_group as u64, PER_GROUP);
    let lp: &Path = &last.path;
    let mut cases: Vec<(Case, Damage)> = Vec::new();
    // Cases name files relative to the log directory: each runs in a copy of it.
    let rel = |p: &Path| p.strip_prefix(&base).unwrap().to_path_buf();
    let case = |name: String,
                acked: usize,
                writer: Expect,
                reader: Expect,
                verify: Option<(PathBuf, u64, ProblemKind)>| Case {
        name,
        acked,
        writer,
        reader,
        verify,
    };

    // Torn tail: the last group cut at every byte (its commit counted as never returned).
    for c in group_start..len {
        let kept = c >= copy_b;
        let clean = c == group_start || c == copy_b;
        let offset = if kept { copy_b } else { group_start } as u64;
        let lpc = rel(lp);
        cases.push((
            case(
                format!("torn tail cut at {c}"),
                n - PER_GROUP as usize,
                Expect::Recover,
                Expect::Recover,
                (!clean).then(|| (lpc.clone(), offset, ProblemKind::TornTail)),
            ),
            Box::new(move |d: &Path| cut(&d.join(&lpc), c)),
        ));
    }
    // A zero-filled tail (the size grew, the data never came), and zeros over the group.
    {
        let lpc = rel(lp);
        cases.push((
            case(
                "zero-filled tail".into(),
                n,
                Expect::Recover,
                Expect::Recover,
                Some((lpc.clone(), len as u64, ProblemKind::TornTail)),
            ),
            Box::new(move |d: &Path| {
                let p = d.join(&lpc);
                let mut b = std::fs::read(&p).unwrap();
                b.extend_from_slice(&[0u8; 4096]);
                std::fs::write(&p, b).unwrap();
            }),
        ));
        let lpc = rel(lp);
        cases.push((
            case(
                "zeros over the last group".into(),
                n - PER_GROUP as usize,
                Expect::Recover,
                Expect::Recover,
                Some((lpc.clone(), group_start as u64, ProblemKind::TornTail)),
            ),
            Box::new(move |d: &Path| {
                let p = d.join(&lpc);
                let mut b = std::fs::read(&p).unwrap();
                b[group_start..].fill(0);
                std::fs::write(&p, b).unwrap();
            }),
        ));
    }
    // A crash while the next segment was being created: empty, or zeros for its header.
    for (what, content) in [("empty", &[][..]), ("zero-filled", &[0u8; SEGMENT_HEADER_LEN][..])] {
        let next = rel(&lp.with_file_name(format!("{n:020}.seg")));
        let content = content.to_vec();
        cases.push((
            case(
                format!("{what} new last segment"),
                n,
                Expect::Recover,
                Expect::Recover,
                Some((next.clone(), 0, ProblemKind::TornTail)),
            ),
            Box::new(move |d: &Path| std::fs::write(d.join(&next), &content).unwrap()),
        ));
    }
    // A flipped byte in each region: (name, file, byte, where the refusal points).
    let first_rec = last_records[0];
    let mid_rec = last_records[last_records.len() / 2];
    let last_rec = *last_records.last().unwrap();
    // The second commit of the last segment (the last one's copies are the last two).
    let earlier_commit = commits[2];
    let flips: Vec<(&str, &Path, usize, u64)> = vec![
        ("last segment magic", lp, 0, 0),
        ("last segment version", lp, 8, 8),
        ("last segment header checksum", lp, 11, 10),
        ("last segment header zero bytes", lp, 15, 14),
        ("record length", lp, first_rec, first_rec as u64),
        ("record checksum", lp, first_rec + 5, first_rec as u64),
        ("record key", lp, first_rec + 8 + 3, first_rec as u64),
        ("record payload", lp, first_rec + RECORD_HEADER_LEN + 1, first_rec as u64),
        ("a committed record in the middle", lp, mid_rec + RECORD_HEADER_LEN + 2, mid_rec as u64),
        ("the last committed record", lp, last_rec + RECORD_HEADER_LEN + 2, last_rec as u64),
        ("the last commit record, first copy", lp, copy_a + 12, copy_a as u64),
        ("an earlier commit record, first copy", lp, earlier_commit + 20, earlier_commit as u64),
        (
            "an earlier commit record, second copy",
            lp,
            earlier_commit + COMMIT_RECORD_LEN + 20,
            (earlier_commit + COMMIT_RECORD_LEN) as u64,
        ),
        ("an earlier commit record's tag", lp, earlier_commit + 1, earlier_commit as u64),
    ];
    for (what, file, byte, offset) in flips {
        let f = rel(file);
        cases.push((
            case(
                format!("flipped byte: {what}"),
                n,
                Expect::Refuse(f.clone(), offset),
                Expect::Refuse(f.clone(), offset),
                Some((f.clone(), offset, ProblemKind::Corrupt)),
            ),
            Box::new(move |d: &Path| flip(&d.join(&f), byte)),
        ));
    }
    // The last commit record's second copy: the first is still the evidence; 40 bytes of
    // nothing are cut off.
    {
        let f = rel(lp);
        cases.push((
            case(
                "flipped byte: the last commit record, second copy".into(),
                n,
                Expect::Recover,
                Expect::Recover,
                Some((f.clone(), copy_b as u64, ProblemKind::TornTail)),
            ),
            Box::new(move |d: &Path| flip(&d.join(&f), copy_b + 12)),
        ));
    }
    // A sealed segment (with its key index): the writer does not read it, readers and
    // verify do.
    let sealed_rec = sealed.records()[1];
    for (what, byte, offset) in [
        ("sealed segment magic", 0usize, 0u64),
        ("sealed segment header zero bytes", 14, 14),
        ("sealed segment record payload", sealed_rec + RECORD_HEADER_LEN + 1, sealed_rec as u64),
        ("sealed segment record length", sealed_rec + 1, sealed_rec as u64),
    ] {
        let f = rel(&sealed.path);
        cases.push((
            case(
                format!("flipped byte: {what}"),
                n,
                Expect::NotRead,
                Expect::Refuse(f.clone(), offset),
                Some((f.clone(), offset, ProblemKind::Corrupt)),
            ),
            Box::new(move |d: &Path| flip(&d.join(&f), byte)),
        ));
    }
    // Its key index: damaged, truncated, or stale. The segment's keys are in the key index's
    // runs, so the writer's open reads only the index's header (its own checksum): damage
    // behind it is left to verify and repair.
    let keys = sealed.path.with_extension("keys");
    for (what, how, writer) in [
        ("header", 10usize, Expect::Recover),
        ("a key", 40, Expect::NotRead),
        ("checksum", usize::MAX, Expect::NotRead),
    ] {
        let k = rel(&keys);
        cases.push((
            case(
                format!("key index: flipped byte in the {what}"),
                n,
                writer,
                Expect::Recover,
                Some((k.clone(), 0, ProblemKind::Index)),
            ),
            Box::new(move |d: &Path| {
                let p = d.join(&k);
                let l = std::fs::metadata(&p).unwrap().len() as usize;
                flip(&p, how.min(l - 1))
            }),
        ));
    }
    {
        let k = rel(&keys);
        cases.push((
            case(
                "key index truncated".into(),
                n,
                Expect::Recover,
                Expect::Recover,
                Some((k.clone(), 0, ProblemKind::Index)),
            ),
            Box::new(move |d: &Path| {
                let p = d.join(&k);
                let l = std::fs::metadata(&p).unwrap().len() as usize;
                cut(&p, l / 2)
            }),
        ));
    }
    // A sealed segment that lost its last bytes.
    {
        let f = rel(&sealed.path);
        let l = std::fs::metadata(&sealed.path).unwrap().len() as usize;
        let tail_item = *sealed.items.last().unwrap();
        let offset = match tail_item {
            Item::Record { at, .. } => at,
            Item::Commit { at } => at,
        } as u64;
        cases.push((
            case(
                "sealed segment truncated".into(),
                n,
                Expect::Refuse(f.clone(), offset),
                Expect::Refuse(f.clone(), offset),
                Some((f.clone(), offset, ProblemKind::Corrupt)),
            ),
            Box::new(move |d: &Path| cut(&d.join(&f), l - 3)),
        ));
    }
    // Missing segments: the first, one in the middle, the last.
    for (what, i) in [("first", 0), ("middle", 1), ("last", segs.len() - 1)] {
        // The reader's open checks a lane's ends, its scans every boundary; all name the
        // missing file.
        let gone = rel(&segs[i].path);
        cases.push((
            case(
                format!("missing {what} segment"),
                n,
                Expect::Refuse(gone.clone(), 0),
                Expect::Refuse(gone.clone(), 0),
                Some((gone.clone(), 0, ProblemKind::Missing)),
            ),
            Box::new(move |d: &Path| std::fs::remove_file(d.join(&gone)).unwrap()),
        ));
    }

    let count = cases.len();
    for (c, damage) in &cases {
        run(&base, &all, c, damage.as_ref());
    }
    eprintln!("{count} cases");
}
