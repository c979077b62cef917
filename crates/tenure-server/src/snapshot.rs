//! The live state saved when the service stops and while it runs (`DATA/state/live.state`
//! and its ledger's file), and read back at the next start instead of replaying the log:
//! the service then answers within seconds, while the history each account is folded from
//! is replayed behind it (the applier's first work, `applier.rs`).
//!
//! A snapshot is used when this build reads its format ([`key`]) and every lane of the log
//! still holds what it held when it was made. Records appended since (an import while the
//! service was down, events taken after the save before a crash) are its tail: the
//! history is then replayed to the log's end, the tail's usage added to the recent days,
//! and the refresh that installs the history folds the rest in, as a replay start would
//! (the answers meanwhile are the saved state's). That refresh folds and scores every
//! account again, so a snapshot made by another build (an upgrade) is used as this
//! build's would be; one made with other settings, rules, scorecards or model is used too,
//! its days read again from the columnar store first. Anything else (a log cut by a
//! repair, another format, a state that cannot be decoded) falls back to the replay, and
//! is logged with its reason. Stopping while the history is still being replayed saves
//! nothing (the state has not taken the events since).

use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tenure_alerting::live::{Live, Settings};
use tenure_alerting::rules::Rules;
use tenure_core::codec::{Cursor, put_u64};
use tenure_core::event::EventKind;
use tenure_engine::state::{self, Marks};
use tenure_health::Model;
use tenure_health::scorecard::Scorecards;
use tenure_ledger::checkpoint::{LedgerCheckpoint, Source};

/// The state's file under `DATA/state/`: its key, its setup, the build that saved it, where
/// the log stood, its ledger's file, the rest of the state (`tenure_alerting::live::Snapshot`).
pub const FILE: &str = "live.state";
/// Its ledger, a full checkpoint (read a chunk at a time), in a file of its own each save
/// (`live-ledger.TAG.state`, named in [`FILE`]): the rename of [`FILE`] is the one step
/// that replaces a saved state, so that a crash or a full disk mid-save leaves the one
/// saved before whole. The others are removed after a save.
const LEDGER_PREFIX: &str = "live-ledger.";
const LEDGER_SUFFIX: &str = ".state";

/// Whether `name` is a ledger file's name a save gives.
fn ledger_name(name: &str) -> bool {
    name.strip_prefix(LEDGER_PREFIX)
        .and_then(|n| n.strip_suffix(LEDGER_SUFFIX))
        .is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The layout of [`FILE`]'s own header (key, setup, build, marks, ledger file).
const CONTAINER: u32 = 2;

/// What a snapshot must have been encoded as to be read at all: the formats of its file,
/// of the ledger's checkpoint and of the rest of the state. A build that encodes them as an
/// earlier one did reads its state (an upgrade answers within seconds, as a restart does);
/// a change of either layout changes its `FORMAT` (the alerting crate's test of a state
/// saved by an earlier build fails until it does, for what that state holds), and the
/// state saved before is then refused and the log replayed. The build that saved it is
/// noted, not matched: whichever build saved it, a state answers only until its history
/// is in, then every account is folded and scored again by this one.
pub fn key() -> Vec<u8> {
    let formats = format!(
        "live state|container {CONTAINER}|ledger {}|live {}",
        tenure_ledger::checkpoint::FORMAT,
        tenure_alerting::live::SNAPSHOT_FORMAT
    );
    state::digest(&formats).to_vec()
}

/// The options' part of a state's setup ([`setup`]): the engine's settings, the rules and
/// playbooks, and what the recent days are (`Live::days_setup`).
pub fn settings(o: &crate::Options, rules: &Rules) -> String {
    format!(
        "{:?}|{:?}|{:?}|{}",
        o.engine,
        o.config.rules,
        o.config.playbooks,
        Live::days_setup(rules)
    )
}

/// What a state was folded and scored with: `settings` ([`settings`]) and the scorecards'
/// and model's files as they are now (the applier reads them again when they change: a
/// state is saved with the setup of the files it was scored with). A state of another
/// setup is read all the same, and everything it computed is computed again once its
/// history is in (the refresh that installs it folds and scores every account, the
/// days and months are read from the columnar store again): it answers only meanwhile.
pub fn setup(data: &Path, settings: &str) -> Vec<u8> {
    let file = |name: &str| {
        let bytes = std::fs::read(data.join(name)).unwrap_or_default();
        xxhash(&bytes)
    };
    let text = format!("{settings}|{:x}|{:x}", file("scorecards.toml"), file("models/churn.json"));
    state::digest(&text).to_vec()
}

fn xxhash(b: &[u8]) -> u128 {
    u128::from_le_bytes(state::digest_bytes(b))
}

/// Every lane: the live state reads usage, emails and visits as well as the ledger's.
fn lanes() -> &'static [EventKind] {
    EventKind::ALL
}

/// Saves `live` under `key` with its `setup`, noted at `marks`: where the log stood when
/// the state had taken every record before them and none after (a save while running:
/// the writer's marks, taken between two commits, reached the applier after the batches
/// committed before them). `None` at the stop: the log as it stands, the applier having
/// stopped after taking every committed batch and the writer, still holding the log,
/// having committed what the applier raised meanwhile. Those last alerts and tasks are in
/// the log but not in the state: the next start's history brings them in (the rules'
/// memory takes them at once, the accounts' folds at the refresh that follows). Logs what
/// it did, and returns whether it saved.
pub fn save(data: &Path, live: &Live, key: &[u8], setup: &[u8], marks: Option<Marks>) -> bool {
    if live.warming() {
        crate::log(
            "info",
            "the live state is not saved: its history is not in yet",
            serde_json::json!({}),
        );
        return false;
    }
    let started = Instant::now();
    // When the state was encoded (the ledger's chunks written aside), and when the
    // ledger's file was written and synced: the save's phases, logged.
    let (mut encoded, mut ledger_written) = (None, None);
    let saved = (|| -> Result<u64, String> {
        let marks = match marks {
            Some(m) => m,
            None => Marks::take(data, lanes()).map_err(|e| e.to_string())?,
        }
        .encode();
        // The ledger's chunks go to a scratch file as they are encoded (not held in
        // memory), then after its header into the file.
        std::fs::create_dir_all(state::dir(data)).map_err(|e| e.to_string())?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = state::digest_bytes(&[marks.as_slice(), &nanos.to_le_bytes()].concat());
        let ledger_file = format!(
            "{LEDGER_PREFIX}{:016x}{LEDGER_SUFFIX}",
            u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"))
        );
        let scratch = state::scratch(data, &ledger_file, "chunks");
        let written = (|| -> std::io::Result<(Vec<u8>, Vec<u8>, u64)> {
            let mut chunks = std::io::BufWriter::new(std::fs::File::create(&scratch)?);
            let mut n = 0u64;
            let (ledger_head, rest) = live.snapshot_to(key, &marks, &mut |b| {
                n += b.len() as u64;
                chunks.write_all(b)
            })?;
            chunks.flush()?;
            Ok((ledger_head, rest, n))
        })();
        encoded = Some(started.elapsed().as_secs_f64());
        let (ledger_head, rest, n) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&scratch);
                return Err(e.to_string());
            }
        };
        let copied = state::write_with(data, &ledger_file, |f| {
            f.write_all(&ledger_head)?;
            std::io::copy(&mut std::fs::File::open(&scratch)?, f).map(|_| ())
        });
        let _ = std::fs::remove_file(&scratch);
        copied.map_err(|e| e.to_string())?;
        ledger_written = Some(started.elapsed().as_secs_f64());
        let mut head = Vec::new();
        put_u64(&mut head, key.len() as u64);
        head.extend_from_slice(key);
        put_u64(&mut head, setup.len() as u64);
        head.extend_from_slice(setup);
        let build = state::digest(&state::build());
        put_u64(&mut head, build.len() as u64);
        head.extend_from_slice(&build);
        put_u64(&mut head, marks.len() as u64);
        head.extend_from_slice(&marks);
        put_u64(&mut head, ledger_file.len() as u64);
        head.extend_from_slice(ledger_file.as_bytes());
        if let Err(e) = state::write_parts(data, FILE, &[&head, &rest]) {
            let _ = std::fs::remove_file(state::dir(data).join(&ledger_file));
            return Err(e.to_string());
        }
        // The states saved before are replaced: their ledgers go, and the scratch files of
        // a save a crash cut short (the service is the data directory's only saver).
        if let Ok(dir) = std::fs::read_dir(state::dir(data)) {
            for f in dir.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let dead = name.starts_with(".live-ledger.") && name.ends_with(".tmp");
                if dead
                    || name != ledger_file && (ledger_name(&name) || name == "live-ledger.state")
                {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        Ok(ledger_head.len() as u64 + n + (head.len() + rest.len()) as u64)
    })();
    match saved {
        Ok(bytes) => {
            crate::log(
                "info",
                "live state saved: the next start reads it",
                serde_json::json!({"accounts": live.ledger.accounts.len(), "bytes": bytes,
                       "secs": started.elapsed().as_secs_f64(), "encoded_secs": encoded,
                       "ledger_written_secs": ledger_written}),
            );
            true
        }
        Err(e) => {
            crate::log(
                "error",
                "the live state could not be saved: the next start reads the one saved before, if any, or replays the log",
                serde_json::json!({"error": e}),
            );
            false
        }
    }
}

/// A saved state found to be of the log as it stands, or of a part of it ([`check`]), not
/// yet read.
pub struct Found {
    marks: Marks,
    /// The rest of the state (after the key and the position).
    rest: Vec<u8>,
    at: usize,
    position: Vec<u8>,
    key: Vec<u8>,
    /// Its ledger's file under `DATA/state/`.
    ledger_file: String,
    /// Whether it was folded and scored with the setup in force.
    same_setup: bool,
    started: Instant,
}

/// A state read back, and where the log stood when it was saved.
pub struct Loaded {
    pub live: Live,
    marks: Marks,
    same_setup: bool,
}

/// Where a saved state's history ends, and what its tail holds ([`Loaded::history`]).
pub struct Tail {
    /// Each lane's record count at the start: the history is the log up to them.
    pub until: Vec<(String, u64)>,
    /// Each lane's record count when the state was saved: its tail is the log from them
    /// to `until`.
    pub from: Vec<(String, u64)>,
    /// Records appended since the state was saved.
    pub records: u64,
    /// Whether usage is among them (added to the state's recent days from the log).
    pub usage: bool,
    /// Whether the state was made with the settings, rules, scorecards and model in force
    /// (otherwise its recent days are read again from the columnar store, before the
    /// service takes events).
    pub same_setup: bool,
}

impl Loaded {
    /// Where the state's history ends: the log as it stands, checked once the log is open
    /// for writing (its lock held: nothing else appends until the service takes events),
    /// and what was appended since the state was saved. `None` (logged) when the log no
    /// longer holds what the state was saved from: a repair cut it since [`check`].
    pub fn history(&self, data: &Path) -> Option<Tail> {
        let Some(until) = self.marks.ends_now(data).ok().flatten() else {
            not_used("the log changed while the service started");
            return None;
        };
        let from = self.marks.counts();
        let mut records = 0;
        let mut usage = false;
        for ((lane, end), (_, was)) in until.iter().zip(&from) {
            let new = end.saturating_sub(*was);
            records += new;
            usage |= new > 0 && tenure_engine::lane(EventKind::Usage) == lane;
        }
        if records > 0 {
            crate::log(
                "info",
                "the saved live state is behind the log: its history is replayed to the log's end and every account refreshed from it",
                serde_json::json!({"records_since": records}),
            );
        }
        Some(Tail { until, from, records, usage, same_setup: self.same_setup })
    }
}

/// The saved state when there is one made with `key`, of the log as it stands or of a part
/// of it (its files alone checked: cheap); `None` (with the reason logged) for anything
/// else. Made with another `setup`, it is read all the same ([`setup`]). Check it before
/// the log is opened for writing: an open may change the log (a torn tail cut).
pub fn check(data: &Path, key: &[u8], setup: &[u8]) -> Option<Found> {
    let started = Instant::now();
    let found = (|| -> Result<Option<Found>, String> {
        let Some(rest) = std::fs::read(state::dir(data).join(FILE)).map(Some).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound { Ok(None) } else { Err(e.to_string()) }
        })?
        else {
            return Ok(None);
        };
        let mut c = Cursor::new(&rest);
        let damaged = |_| "the file is damaged".to_string();
        let n = c.u64().map_err(damaged)? as usize;
        if c.bytes(n).map_err(damaged)? != key {
            return Err("saved in a format this build does not read".into());
        }
        let n = c.u64().map_err(damaged)? as usize;
        let same_setup = c.bytes(n).map_err(damaged)? == setup;
        if !same_setup {
            crate::log(
                "info",
                "the saved live state was made with other settings, rules, scorecards or model: it answers until its history is in, then every account is folded and scored again, its usage read again first",
                serde_json::json!({}),
            );
        }
        let n = c.u64().map_err(damaged)? as usize;
        if c.bytes(n).map_err(damaged)? != state::digest(&state::build()) {
            crate::log(
                "info",
                "the saved live state was made by another build: it answers until its history is in, then every account is folded and scored again by this one",
                serde_json::json!({}),
            );
        }
        let n = c.u64().map_err(damaged)? as usize;
        let position = c.bytes(n).map_err(damaged)?.to_vec();
        let marks = Marks::decode(&position).ok_or("the file is damaged")?;
        let n = c.u64().map_err(damaged)? as usize;
        let ledger_file = std::str::from_utf8(c.bytes(n).map_err(damaged)?)
            .ok()
            .filter(|n| ledger_name(n))
            .ok_or("the file is damaged")?
            .to_string();
        if marks.tail_now(data).map_err(|e| e.to_string())?.is_none() {
            return Err("the log no longer holds what it was saved from".into());
        }
        let at = rest.len() - c.remaining();
        Ok(Some(Found {
            marks,
            rest,
            at,
            position,
            key: key.to_vec(),
            ledger_file,
            same_setup,
            started,
        }))
    })();
    found.unwrap_or_else(|why| {
        not_used(&why);
        None
    })
}

fn not_used(why: &str) {
    crate::log(
        "info",
        "the saved live state is not used: the log is replayed",
        serde_json::json!({"reason": why}),
    );
}

/// The state `found` holds, read with the settings, rules and scoring in force;
/// `None` (with the reason logged) when it cannot be read.
pub fn read(
    data: &Path,
    found: Found,
    cfg: Settings,
    rules: Rules,
    cards: Scorecards,
    model: Option<Model>,
) -> Option<Loaded> {
    let Found { marks, rest, at, position, key, ledger_file, same_setup, started } = found;
    // The check's part of the time (its file read), apart from the decoding's.
    let checked = started.elapsed().as_secs_f64();
    // A decoder that panics on what an earlier build wrote (a layout changed without its
    // format) costs this start its saved state, not the start (an abort, such as a failed
    // allocation, is not caught).
    let read =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Live, String> {
            let file = state::open(data, &ledger_file)
                .map_err(|e| e.to_string())?
                .ok_or("its ledger's file is missing")?;
            let size = file.metadata().map_err(|e| e.to_string())?.len();
            let ledger = LedgerCheckpoint::open(File(file, size), &key)
                .map_err(|e| format!("its ledger: {e}"))?;
            if ledger.position() != position {
                return Err("its ledger was saved at another time".into());
            }
            Live::from_snapshot(&ledger, &rest[at..], cfg, rules, cards, model)
                .map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(format!("decoding it panicked: {why}"))
        });
    match read {
        Ok(live) => {
            crate::log(
                "info",
                "live state read from its snapshot: the log's history is replayed behind it",
                serde_json::json!({"accounts": live.ledger.accounts.len(),
                       "as_of": live.t.to_string(), "secs": started.elapsed().as_secs_f64(),
                       "check_secs": checked}),
            );
            Some(Loaded { live, marks, same_setup })
        }
        Err(why) => {
            not_used(&why);
            None
        }
    }
}

/// A file read at offsets (a chunk of the ledger at a time).
struct File(std::fs::File, u64);

impl Source for File {
    fn size(&self) -> u64 {
        self.1
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
}
