//! Saved usage figures of closed periods (`columnar/figures/`): a report of a period that
//! has ended reads each account's figures from here instead of running the usage queries
//! again, for as long as the columnar files of the months it reads are the same.
//!
//! An entry is named by the period and the advanced features, and holds the build of
//! `tenure` that computed it (another may compute differently) and the exact list of
//! Parquet files (their names carry the records they hold) of every month before the
//! period's end in the tables the figures are computed from; events of later months leave
//! it alone. When that list changes (a late event in one of those months), the accounts
//! the new files name are computed again and the others kept, provided every file listed
//! before is still there and those accounts are few; otherwise (a month compacted, the
//! store rebuilt, many accounts) the whole period is. A period still running at `as_of` is
//! always computed: its window moves with `as_of`. A damaged or foreign entry is never
//! trusted.

use crate::usage::{Only, accounts_in, compute, effective_end};
use crate::{AnalyticsError, Engine, columnar_dir};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenure_core::codec::{Cursor, put_i64, put_str, put_u64};
use tenure_core::time::{Period, Timestamp};
use tenure_kpi::usage::{AccountUsage, Usage, UsageTable};

const MAGIC: &[u8; 8] = b"TNRUSGFG";
/// The layout of an entry; another one is computed again.
const FORMAT: u32 = 2;
/// Tables whose files the figures are computed from.
const TABLES: &[&str] = &["usage_daily", "usage_features", "emails", "web_visits"];
/// Entries kept; the least recently used go first. A report of more than half as many
/// closed periods computes them each time rather than turn the cache over.
const KEEP: usize = 48;
/// A key longer than this is not an entry's (a damaged length).
const MAX_KEY: usize = 1 << 24;

/// What [`usage_figures`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FiguresRun {
    /// Periods read from saved entries.
    pub read: usize,
    /// Periods computed (and saved when closed).
    pub computed: usize,
    /// Periods whose saved figures were computed again for the accounts of late events
    /// only, and how many accounts that was.
    pub updated: usize,
    pub accounts_updated: usize,
    /// Entries found damaged, with why (they were computed again).
    pub damaged: Vec<String>,
    /// Entries that could not be saved, with why (the report is whole; the next one
    /// computes them again).
    pub unsaved: Vec<String>,
}

/// [`crate::usage_stats`] of every account, reading the periods closed by `as_of` from saved
/// entries when the files they were computed from are unchanged, and saving those computed.
/// The figures are the same as `usage_stats`'s. `build` names the code that computes them
/// (the caller's binary): an entry of another build is computed again.
pub fn usage_figures(
    data: &Path,
    engine: &Engine,
    periods: &[Period],
    advanced: &[String],
    as_of: Timestamp,
    build: &str,
) -> Result<(Usage, FiguresRun), AnalyticsError> {
    let _lock = crate::lock(data, false)?;
    let dir = columnar_dir(data).join("figures");
    let mut run = FiguresRun::default();
    let mut out: Vec<Option<UsageTable>> = vec![None; periods.len()];
    let mut entries: Vec<Option<Entry>> = (0..periods.len()).map(|_| None).collect();
    let closed = periods.iter().filter(|p| effective_end(**p, as_of) == p.end).count();
    // Saving more than half the entries kept would turn the folder over at each report.
    let saving = closed <= KEEP / 2;
    let saved = |e: &Entry, m: &UsageTable, run: &mut FiguresRun| {
        if saving && let Err(e) = save(&dir, &e.path, &e.key(), m) {
            run.unsaved.push(e.to_string());
        }
    };
    for (i, p) in periods.iter().enumerate() {
        if effective_end(*p, as_of) != p.end {
            continue;
        }
        let e = entry(data, &dir, *p, advanced, build);
        match read(&e.path, &e.head, &e.files) {
            Ok(Found::Current(m)) => {
                out[i] = Some(m);
                run.read += 1;
                continue;
            }
            Ok(Found::Stale { files, mut figures }) => {
                // Few accounts with late events: those alone computed again. Not on a
                // Ballista cluster: there the plan joined with the accounts' table never
                // finished (measured with Ballista's executors of this build), so the whole
                // period is computed.
                if matches!(engine, Engine::Embedded)
                    && let Some(ids) = late_accounts(data, &files, &e.files)
                    && ids.len() <= figures.len() / 4 + 64
                {
                    if !ids.is_empty() {
                        let fresh =
                            compute(data, engine, &[*p], advanced, as_of, Only::Accounts(&ids))?;
                        let fresh = fresh.into_iter().next().unwrap_or_default();
                        figures.replace(&ids, fresh);
                    }
                    run.updated += 1;
                    run.accounts_updated += ids.len();
                    saved(&e, &figures, &mut run);
                    out[i] = Some(figures);
                    continue;
                }
            }
            Ok(Found::None) => {}
            Err(why) => run.damaged.push(format!("{}: {why}", e.path.display())),
        }
        entries[i] = Some(e);
    }
    let missing: Vec<usize> = (0..periods.len()).filter(|&i| out[i].is_none()).collect();
    if !missing.is_empty() {
        let todo: Vec<Period> = missing.iter().map(|&i| periods[i]).collect();
        let computed = compute(data, engine, &todo, advanced, as_of, Only::All)?;
        run.computed = missing.len();
        for (i, m) in missing.into_iter().zip(computed) {
            if let Some(e) = &entries[i] {
                saved(e, &m, &mut run);
            }
            out[i] = Some(m);
        }
    }
    if run.computed + run.updated > 0 {
        prune(&dir);
    }
    Ok((out.into_iter().map(Option::unwrap_or_default).collect(), run))
}

/// A period's entry: its file, and the key it must hold to be read: the `head` (what
/// computes the figures) then the `files` they are computed from.
struct Entry {
    path: PathBuf,
    head: String,
    files: String,
}

impl Entry {
    fn key(&self) -> String {
        format!("{}{}", self.head, self.files)
    }
}

/// The entry of period `p`.
fn entry(data: &Path, dir: &Path, p: Period, advanced: &[String], build: &str) -> Entry {
    let mut head = format!(
        "tenure usage figures {FORMAT}\nstore {}\nperiod {} {}\nadvanced",
        crate::store::FORMAT,
        p.start,
        p.end
    );
    for a in advanced {
        head.push(' ');
        head.push_str(&a.len().to_string());
        head.push(':');
        head.push_str(a);
    }
    // The name depends on the period and features only: a later entry of the same period
    // replaces the earlier one.
    let name = format!("{:08x}", crc32fast::hash(head.as_bytes()));
    head.push_str("\nbuild ");
    head.push_str(build);
    let mut files = String::new();
    for t in TABLES {
        files.push_str(&format!("\n{t}"));
        for f in files_before(&crate::store::table_dir(data, t), p.end) {
            files.push(' ');
            files.push_str(&f);
        }
    }
    Entry { path: dir.join(format!("{name}.figures")), head, files }
}

/// Each table's file names in the `files` part of a key.
fn listed(files: &str) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out = BTreeMap::new();
    for line in files.split('\n').filter(|l| !l.is_empty()) {
        let mut words = line.split(' ');
        let table = words.next().unwrap_or_default();
        out.insert(table, words.collect());
    }
    out
}

/// The accounts whose figures may differ from those an entry computed from the files
/// `old` lists, now that they are `new`: those of the event files not listed before (a
/// month's `usage_features` follows its `usage_daily`). `None` when that cannot be told: a
/// file listed before is gone (a month compacted, the store rebuilt), or a new one does
/// not read.
fn late_accounts(data: &Path, old: &str, new: &str) -> Option<Vec<String>> {
    let (old, new) = (listed(old), listed(new));
    let mut added = Vec::new();
    for t in ["usage_daily", "emails", "web_visits"] {
        let none = BTreeSet::new();
        let (was, now) = (old.get(t).unwrap_or(&none), new.get(t).unwrap_or(&none));
        if !was.is_subset(now) {
            return None;
        }
        let dir = crate::store::table_dir(data, t);
        added.extend(now.difference(was).map(|f| dir.join(f).display().to_string()));
    }
    if added.is_empty() {
        return Some(Vec::new());
    }
    accounts_in(&added).ok()
}

/// The names of a table's Parquet files of months that start before `end`, sorted (a name
/// whose month does not read counts: it may hold anything).
fn files_before(dir: &Path, end: Timestamp) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .filter(|n| {
            let month = n.split('.').next().unwrap_or_default();
            Timestamp::parse(&format!("{month}-01")).map_or(true, |start| start < end)
        })
        .collect();
    out.sort();
    out
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnalyticsError + '_ {
    move |source| AnalyticsError::Io { path: path.to_path_buf(), source }
}

/// What an entry's file holds.
enum Found {
    /// Nothing this build would read (no file, another layout, period or build).
    None,
    /// The figures, computed from the files listed now.
    Current(UsageTable),
    /// The figures this build computed for the period from the files `files` lists.
    Stale { files: String, figures: UsageTable },
}

/// The entry at `path` for a key of `head` and `files`; `Err` with why when it is damaged.
/// The header and key are read first: an entry of another period or build is not read
/// whole.
fn read(path: &Path, head: &str, files: &str) -> Result<Found, String> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::None),
        Err(e) => return Err(e.to_string()),
    };
    let short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "cut short".to_string(),
        _ => e.to_string(),
    };
    let mut header = [0u8; 16];
    f.read_exact(&mut header).map_err(short)?;
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if &header[..8] != MAGIC {
        return Err("not a usage figures file".into());
    }
    if word(8) != FORMAT {
        return Ok(Found::None);
    }
    let len = word(12) as usize;
    if len > MAX_KEY {
        return Err("key length out of range".into());
    }
    if len < head.len() {
        return Ok(Found::None);
    }
    let mut stored = vec![0u8; len];
    f.read_exact(&mut stored).map_err(short)?;
    let Some(rest) = stored.strip_prefix(head.as_bytes()) else { return Ok(Found::None) };
    let Ok(stored_files) = std::str::from_utf8(rest) else { return Ok(Found::None) };
    let current = stored_files == files;
    let stored_files = stored_files.to_string();
    let mut crc = [0u8; 4];
    f.read_exact(&mut crc).map_err(short)?;
    let mut body = Vec::new();
    f.read_to_end(&mut body).map_err(|e| e.to_string())?;
    if crc32fast::hash(&body) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch".into());
    }
    let figures = decode(&body).map_err(|e| format!("does not decode ({e})"))?;
    if !current {
        return Ok(Found::Stale { files: stored_files, figures });
    }
    // Read entries are the last to go when the folder is pruned.
    let _ = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Ok(Found::Current(figures))
}

/// Writes an entry aside, then renames it over the old one: a reader sees one or the other.
fn save(dir: &Path, path: &Path, key: &str, m: &UsageTable) -> Result<(), AnalyticsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let body = encode(m);
    let mut buf = Vec::with_capacity(body.len() + key.len() + 20);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&FORMAT.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    buf.extend_from_slice(&body);
    // Two reports (or two threads) may save the same entry at once: each writes its own
    // file aside.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let written = std::fs::write(&tmp, &buf)
        .map_err(io(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Keeps the [`KEEP`] entries last used (a cache: losing one costs a computation, never a
/// figure), and removes files left aside by a save cut short an hour or more ago.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let Some(modified) = e.metadata().ok().and_then(|m| m.modified().ok()) else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".figures") {
            files.push((modified, e.path()));
        } else if name.contains(".tmp") && modified < hour_ago {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if files.len() <= KEEP {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - KEEP] {
        let _ = std::fs::remove_file(p);
    }
}

/// The counts of an account's figures, in the order they are written.
fn counts(u: &AccountUsage) -> [u64; 12] {
    [
        u.mau,
        u.wau,
        u.user_days,
        u.advanced_users,
        u.events,
        u.events_prev,
        u.mau_prev,
        u.emails_sent,
        u.emails_opened,
        u.emails_clicked,
        u.docs_visits,
        u.website_visits,
    ]
}

/// Accounts per section of an entry: sections decode in parallel.
const SECTION: usize = 1 << 16;

/// Features as indexes into a table written first, then sections of accounts (a directory
/// of their counts and lengths first), accounts sorted by id: the same figures give the
/// same bytes.
fn encode(m: &UsageTable) -> Vec<u8> {
    fn index<'a>(s: &'a str, names: &mut FxHashMap<&'a str, u64>, table: &mut Vec<&'a str>) -> u64 {
        *names.entry(s).or_insert_with(|| {
            table.push(s);
            table.len() as u64 - 1
        })
    }
    let (mut names, mut table) = (FxHashMap::default(), Vec::new());
    let rows: Vec<&(String, AccountUsage)> = m.iter().collect();
    let mut sections = Vec::new();
    for rows in rows.chunks(SECTION) {
        let mut out = Vec::new();
        for (id, u) in rows.iter().copied() {
            put_str(&mut out, id);
            for c in counts(u) {
                put_u64(&mut out, c);
            }
            put_u64(&mut out, u.features.len() as u64);
            for f in &u.features {
                put_u64(&mut out, index(f, &mut names, &mut table));
            }
            put_u64(&mut out, u.features_ever.len() as u64);
            for (f, last) in &u.features_ever {
                put_u64(&mut out, index(f, &mut names, &mut table));
                put_i64(&mut out, last.0);
            }
        }
        sections.push((rows.len(), out));
    }
    let mut out = Vec::with_capacity(sections.iter().map(|s| s.1.len()).sum::<usize>() + 1024);
    put_u64(&mut out, table.len() as u64);
    for s in &table {
        put_str(&mut out, s);
    }
    put_u64(&mut out, sections.len() as u64);
    for (n, bytes) in &sections {
        put_u64(&mut out, *n as u64);
        put_u64(&mut out, bytes.len() as u64);
    }
    for (_, bytes) in &sections {
        out.extend_from_slice(bytes);
    }
    out
}

/// A count read from `bytes`, refused past their length: a damaged count cannot allocate
/// much.
fn bounded(n: u64, bytes: &[u8]) -> Result<usize, String> {
    usize::try_from(n).ok().filter(|&n| n <= bytes.len()).ok_or_else(|| "count out of range".into())
}

fn decode(body: &[u8]) -> Result<UsageTable, String> {
    use rayon::prelude::*;
    let mut c = Cursor::new(body);
    let e = |e: tenure_core::codec::CodecError| e.to_string();
    let bounded = |n: u64| bounded(n, body);
    let n = bounded(c.u64().map_err(e)?)?;
    // Each name takes a byte at least: a long table cannot come from a short body.
    let table: Vec<Arc<str>> =
        (0..n).map(|_| c.str().map(Arc::from).map_err(e)).collect::<Result<_, _>>()?;
    // A section takes two bytes of the directory at least.
    let n = bounded(c.u64().map_err(e)?)?;
    let mut directory = Vec::with_capacity(n.min(body.len() / 2));
    for _ in 0..n {
        directory.push((bounded(c.u64().map_err(e)?)?, bounded(c.u64().map_err(e)?)?));
    }
    let mut slices = Vec::with_capacity(directory.len());
    for (accounts, len) in directory {
        slices.push((accounts, c.bytes(len).map_err(e)?));
    }
    if !c.is_done() {
        return Err("bytes past the last section".into());
    }
    let sections: Vec<Vec<(String, AccountUsage)>> = slices
        .into_par_iter()
        .map(|(n, bytes)| section(&table, n, bytes))
        .collect::<Result<_, _>>()?;
    // Written in id order: any other order is damage (an account twice among them).
    UsageTable::from_parts(sections).ok_or_else(|| "accounts out of order or twice".into())
}

/// The `n` accounts of one section.
fn section(
    table: &[Arc<str>],
    n: usize,
    bytes: &[u8],
) -> Result<Vec<(String, AccountUsage)>, String> {
    let mut c = Cursor::new(bytes);
    let e = |e: tenure_core::codec::CodecError| e.to_string();
    let bounded = |n: u64| bounded(n, bytes);
    let name = |i: u64| {
        table.get(i as usize).cloned().ok_or_else(|| "feature index out of range".to_string())
    };
    // An account takes 15 bytes at least (its id's length, 12 counts, two list lengths):
    // a damaged count cannot reserve more than the bytes could hold.
    if n > bytes.len() / 15 {
        return Err("count out of range".into());
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = c.str().map_err(e)?.to_string();
        let mut v = [0u64; 12];
        for x in &mut v {
            *x = c.u64().map_err(e)?;
        }
        // Lists grow as they are read (no reservation from a count the bytes may not hold).
        let k = bounded(c.u64().map_err(e)?)?;
        let mut features = Vec::new();
        for _ in 0..k {
            features.push(name(c.u64().map_err(e)?)?);
        }
        let k = bounded(c.u64().map_err(e)?)?;
        let mut features_ever = Vec::new();
        for _ in 0..k {
            let f = name(c.u64().map_err(e)?)?;
            let z = c.u64().map_err(e)?;
            features_ever.push((f, Timestamp(((z >> 1) as i64) ^ -((z & 1) as i64))));
        }
        let [
            mau,
            wau,
            user_days,
            advanced_users,
            events,
            events_prev,
            mau_prev,
            emails_sent,
            emails_opened,
            emails_clicked,
            docs_visits,
            website_visits,
        ] = v;
        out.push((
            id,
            AccountUsage {
                mau,
                wau,
                user_days,
                advanced_users,
                features,
                features_ever,
                events,
                events_prev,
                mau_prev,
                emails_sent,
                emails_opened,
                emails_clicked,
                docs_visits,
                website_visits,
            },
        ));
    }
    if !c.is_done() {
        return Err("bytes past the section's last account".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(i: u64, names: &[Arc<str>]) -> AccountUsage {
        AccountUsage {
            mau: i % 7,
            wau: i % 5,
            user_days: i * 3,
            advanced_users: i % 2,
            features: names.iter().take((i % 4) as usize).cloned().collect(),
            features_ever: names
                .iter()
                .take((i % 5) as usize)
                .map(|n| (n.clone(), Timestamp(i as i64 * -1_000_003)))
                .collect(),
            events: i << 40,
            events_prev: u64::MAX - i,
            mau_prev: 1,
            emails_sent: 2,
            emails_opened: 1,
            emails_clicked: 0,
            docs_visits: i,
            website_visits: 9,
        }
    }

    /// More accounts than a section holds: every figure comes back, whatever its size or
    /// sign, with the same bytes for the same figures.
    #[test]
    fn entries_decode_to_the_figures_encoded() {
        let names: Vec<Arc<str>> = ["reports", "exports", "api", "ünïcode"].map(Arc::from).to_vec();
        let m: UsageTable = (0..SECTION as u64 * 2 + 17)
            .map(|i| (format!("acc-{i:07}"), account(i, &names)))
            .collect();
        let bytes = encode(&m);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.len(), m.len());
        assert_eq!(back["acc-0131088"], account(131_088, &names), "in the third section");
        let mut pairs: Vec<(String, AccountUsage)> = m.iter().cloned().collect();
        pairs.reverse();
        let again: UsageTable = pairs.into_iter().collect();
        assert_eq!(encode(&again), bytes);
        assert_eq!(decode(&encode(&UsageTable::default())).unwrap(), UsageTable::default());
    }

    /// Bodies a damaged or hostile file may hold are refused, never trusted: huge counts,
    /// indexes past the table, an account twice, bytes left over.
    #[test]
    fn damaged_bodies_are_refused() {
        let mut huge = Vec::new();
        put_u64(&mut huge, u64::MAX);
        assert!(decode(&huge).unwrap_err().contains("out of range"));
        // One section claiming a million accounts in a few bytes.
        let mut many = Vec::new();
        put_u64(&mut many, 0);
        put_u64(&mut many, 1);
        put_u64(&mut many, 1_000_000);
        put_u64(&mut many, 20);
        many.extend([0u8; 20]);
        assert!(decode(&many).unwrap_err().contains("out of range"));
        let two = |first: &str, second: Option<&str>, feature: u64, extra: bool| {
            let mut acc = Vec::new();
            for id in std::iter::once(first).chain(second) {
                put_str(&mut acc, id);
                acc.extend([0u8; 12]);
                put_u64(&mut acc, 1);
                put_u64(&mut acc, feature);
                put_u64(&mut acc, 0);
            }
            if extra {
                acc.push(0);
            }
            let mut out = Vec::new();
            put_u64(&mut out, 1);
            put_str(&mut out, "reports");
            put_u64(&mut out, 1);
            put_u64(&mut out, 1 + second.is_some() as u64);
            put_u64(&mut out, acc.len() as u64);
            out.extend(acc);
            decode(&out)
        };
        assert_eq!(two("a", None, 0, false).unwrap()["a"].features[0].as_ref(), "reports");
        assert_eq!(two("a", Some("b"), 0, false).unwrap().len(), 2);
        assert!(two("a", None, 1, false).unwrap_err().contains("index out of range"));
        assert!(two("a", Some("a"), 0, false).unwrap_err().contains("twice"));
        assert!(two("b", Some("a"), 0, false).unwrap_err().contains("out of order"));
        assert!(two("a", None, 0, true).unwrap_err().contains("bytes past"));
    }
}
