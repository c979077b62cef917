//! The live state saved when the service stops, and read back when it starts: the ledger
//! (a full `tenure_ledger::checkpoint`, every part of every account) and the rest of the
//! state (its instant, the monthly and daily usage, every account's health) in a compact
//! binary form (bytes in, bytes out). Read back, the state answers at once; its history
//! (the events each account is folded from) comes after, replayed from the log
//! ([`Live::install`]), before it takes any event.
//!
//! The rules' memory (when each rule last alerted each account) is kept: it holds firings
//! whose alerts the ledger may not (yet) show. Not kept, as a start rebuilds them: where
//! contacts were last seen (from the history), when accounts were last re-scored (a start
//! re-scores everyone).

use super::{Day, Live, Settings};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use tenure_core::codec::{Cursor, put_i64, put_str, put_u64};
use tenure_core::time::Timestamp;
use tenure_health::features::{N, Row};
use tenure_health::scorecard::Scorecards;
use tenure_health::state::{AccountHealth, HealthState};
use tenure_health::{Model, UsageByAccount};
use tenure_kpi::usage::UsageMonth;
use tenure_ledger::checkpoint::{self, CheckpointError, Image, LedgerCheckpoint, Source, Want};
use tenure_ledger::{Ledger, LedgerBuilder};

use crate::rules::Rules;

const MAGIC: &[u8; 8] = b"TNRLIVE\0";
/// The layout of the rest; a change of layout changes it. States are read by later builds
/// of the same format (the test `a_state_saved_by_an_earlier_build_is_read_as_it_was_saved`
/// fails until it is bumped, for what its saved state holds).
pub const FORMAT: u32 = 1;
/// Entries of a section encoded, and decoded, together (in parallel).
const BLOCK: usize = 16_384;
/// The colours a scorecard gives (`Scorecard::colour`).
const COLOURS: [&str; 4] = ["grey", "red", "yellow", "green"];

/// Why a snapshot cannot be used (the caller replays the log instead).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the ledger part: {0}")]
    Ledger(#[from] CheckpointError),
    #[error("not a snapshot of the live state (bad magic)")]
    Magic,
    #[error("snapshot format {0}, this build reads {FORMAT}")]
    Format(u32),
    #[error("snapshot damaged: {0}")]
    Damaged(&'static str),
}

type R<T> = Result<T, SnapshotError>;

/// A live state encoded: its ledger as a full checkpoint, and the rest.
pub struct Snapshot {
    pub ledger: Image,
    pub rest: Vec<u8>,
}

impl Live {
    /// The state encoded. The ledger's checkpoint is keyed `key` and noted at `position`
    /// (the caller's note of where the log stood: the state must be the fold of the log
    /// there); the rest carries neither, the caller keeps them with it.
    pub fn snapshot(&self, key: &[u8], position: &[u8]) -> Snapshot {
        let ledger = checkpoint::encode_full(
            key,
            position,
            self.t,
            &self.ledger.accounts,
            &self.ledger.diagnostics,
        );
        Snapshot { ledger, rest: self.snapshot_rest() }
    }

    /// As [`snapshot`](Self::snapshot), the ledger's chunks handed to `out` as they are
    /// encoded (not held: a state of a million accounts is 1.3 GB of them); returns the
    /// ledger's header (which goes before them) and the rest.
    pub fn snapshot_to(
        &self,
        key: &[u8],
        position: &[u8],
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let head = checkpoint::encode_full_to(
            key,
            position,
            self.t,
            &self.ledger.accounts,
            &self.ledger.diagnostics,
            out,
        )?;
        Ok((head, self.snapshot_rest()))
    }

    /// Every part of the state a snapshot holds, as text, entries in the order of their
    /// keys (a day's users by their hashes): what the tests of saved states compare (a
    /// layout read back in another order of same-typed fields encodes to the same bytes, but
    /// not to the same text). Large: a line an account and more.
    pub fn saved_text(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("instant {:?}, health's {:?}\n", self.t, self.health.t);
        let mut line = |text: std::fmt::Arguments<'_>| {
            let _ = s.write_fmt(text);
            s.push('\n');
        };
        for a in &self.ledger.accounts {
            line(format_args!("account {a:?}"));
        }
        line(format_args!("costs {:?}", self.ledger.costs));
        line(format_args!("diagnostics {:?}", self.ledger.diagnostics));
        let sorted = |mut v: Vec<String>| {
            v.sort_unstable();
            v
        };
        let mut parts =
            sorted(self.usage.iter().map(|(id, m)| format!("usage {id} {m:?}")).collect());
        parts.extend(sorted(
            self.recent
                .iter()
                .flat_map(|(id, days)| {
                    days.iter().map(move |(day, d)| {
                        let mut users: Vec<u64> = d.users.iter().copied().collect();
                        users.sort_unstable();
                        format!(
                            "day {id} {day} events {} features {:#x} users {users:?}",
                            d.events, d.features
                        )
                    })
                })
                .collect(),
        ));
        parts.extend(sorted(
            self.last_alert.iter().map(|((a, r), t)| format!("alerted {a} {r} {t:?}")).collect(),
        ));
        parts.extend(sorted(
            self.health.accounts.iter().map(|(id, h)| format!("health {id} {h:?}")).collect(),
        ));
        for p in parts {
            line(format_args!("{p}"));
        }
        s
    }

    /// The rest of the state, encoded.
    fn snapshot_rest(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_i64(&mut body, self.t.0);
        put_i64(&mut body, self.health.t.0);
        put_u64(&mut body, self.ledger.costs.len() as u64);
        for c in &self.ledger.costs {
            body.push(c.category.index());
            put_i64(&mut body, c.amount);
            put_i64(&mut body, c.start.0);
            put_i64(&mut body, c.end.0);
        }
        // Entries in the order of their keys (users by their hashes): a state is encoded
        // as one sequence of bytes whatever its maps' histories, so that a state read back
        // encodes to the bytes it was read from (what the test of a state saved by an
        // earlier build checks).
        let mut usage: Vec<_> = self.usage.iter().collect();
        usage.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
        blocks(&mut body, &usage, |out, (id, months)| {
            put_str(out, id);
            put_u64(out, months.len() as u64);
            for m in months.iter() {
                put_i64(out, m.month.0);
                put_u64(out, m.events);
                put_u64(out, m.users);
                put_u64(out, m.days);
                put_u64(out, m.features);
                put_i64(out, m.last_day.0);
            }
        });
        let mut recent: Vec<_> = self.recent.iter().collect();
        recent.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
        blocks(&mut body, &recent, |out, (id, days)| {
            put_str(out, id);
            put_u64(out, days.len() as u64);
            // One buffer for the account's days (not one allocation a day).
            let mut users: Vec<u64> = Vec::new();
            for (day, d) in days.iter() {
                put_i64(out, *day);
                put_u64(out, d.events);
                put_u64(out, d.features);
                users.clear();
                users.extend(d.users.iter().copied());
                users.sort_unstable();
                put_u64(out, users.len() as u64);
                for u in &users {
                    out.extend_from_slice(&u.to_le_bytes());
                }
            }
        });
        let mut alerts: Vec<_> = self.last_alert.iter().collect();
        alerts.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
        blocks(&mut body, &alerts, |out, ((account, rule), t)| {
            put_str(out, account);
            put_str(out, rule);
            put_i64(out, t.0);
        });
        let mut health: Vec<_> = self.health.accounts.iter().collect();
        health.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
        put_u64(&mut body, N as u64);
        blocks(&mut body, &health, |out, (id, h)| {
            put_str(out, id);
            for v in &h.row.num {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            opt_str(out, h.row.plan.as_deref());
            opt_str(out, h.row.segment.as_deref());
            put_i64(out, h.row.mrr);
            opt_str(out, h.scorecard.as_deref());
            opt_f64(out, h.score);
            out.push(COLOURS.iter().position(|c| *c == h.colour).unwrap_or(0) as u8);
            opt_f64(out, h.probability);
        });
        let mut rest = Vec::with_capacity(body.len() + 24);
        rest.extend_from_slice(MAGIC);
        rest.extend_from_slice(&FORMAT.to_le_bytes());
        rest.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        rest.extend_from_slice(&(body.len() as u64).to_le_bytes());
        rest.extend_from_slice(&body);
        rest
    }

    /// The state a snapshot holds: its ledger from `ledger` (a full checkpoint, opened with
    /// its key), the rest from `rest`, with the settings, rules and scoring given (those it
    /// was made with: the caller keys the snapshot by them). It answers as the state did,
    /// but takes no event and refreshes nothing until [`install`](Self::install) gives it
    /// its history ([`warming`](Self::warming) says so).
    pub fn from_snapshot<S: Source>(
        ledger: &LedgerCheckpoint<S>,
        rest: &[u8],
        cfg: Settings,
        rules: Rules,
        cards: Scorecards,
        model: Option<Model>,
    ) -> R<Live> {
        if rest.len() < 24 || &rest[..8] != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
        if word(8) != FORMAT {
            return Err(SnapshotError::Format(word(8)));
        }
        let len = u64::from_le_bytes(rest[16..24].try_into().expect("8 bytes"));
        let body = &rest[24..];
        if len != body.len() as u64 {
            return Err(SnapshotError::Damaged("length"));
        }
        if crc32fast::hash(body) != word(12) {
            return Err(SnapshotError::Damaged("CRC mismatch"));
        }
        // The ledger's accounts are decoded (in parallel) while the rest is.
        let (accounts, rest) = rayon::join(|| ledger.accounts(Want::FULL), || decode_rest(body));
        let accounts = accounts?;
        if accounts.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(SnapshotError::Damaged("accounts out of order"));
        }
        let Rest { t, health_t, costs, usage, recent, last_alert, health } = rest?;
        if ledger.as_of() != t {
            return Err(SnapshotError::Damaged("the ledger's instant"));
        }
        let fx = Some(cfg.revenue.fx.clone());
        let ledger =
            Ledger { accounts, costs, diagnostics: ledger.diagnostics().to_vec(), as_of: t, fx };
        let mut live =
            Live::empty(LedgerBuilder::new().keep_sources(), cfg, rules, cards, model, t);
        live.ledger = ledger;
        live.usage = usage;
        live.recent = recent;
        live.health = HealthState { t: health_t, accounts: health, recomputed: 0 };
        live.last_alert = last_alert;
        live.installed = false;
        Ok(live)
    }
}

/// The rest of a snapshot, decoded.
struct Rest {
    t: Timestamp,
    health_t: Timestamp,
    costs: Vec<tenure_ledger::CostEntry>,
    usage: UsageByAccount,
    recent: FxHashMap<String, BTreeMap<i64, Day>>,
    last_alert: FxHashMap<(String, String), Timestamp>,
    health: FxHashMap<String, AccountHealth>,
}

fn decode_rest(body: &[u8]) -> R<Rest> {
    let mut c = In(Cursor::new(body));
    let t = c.ts()?;
    let health_t = c.ts()?;
    let n = c.len()?;
    let mut costs = Vec::with_capacity(n);
    for _ in 0..n {
        let category = tenure_core::event::CostCategory::from_index(c.byte()?)
            .ok_or(SnapshotError::Damaged("cost category"))?;
        costs.push(tenure_ledger::CostEntry {
            category,
            amount: c.i()?,
            start: c.ts()?,
            end: c.ts()?,
        });
    }
    let usage = c.blocks(|c| {
        let id = c.str()?.to_string();
        let n = c.len()?;
        let mut months = Vec::with_capacity(n);
        for _ in 0..n {
            months.push(UsageMonth {
                month: c.ts()?,
                events: c.u()?,
                users: c.u()?,
                days: c.u()?,
                features: c.u()?,
                last_day: c.ts()?,
            });
        }
        Ok((id, months))
    })?;
    let recent = c.blocks(|c| {
        let id = c.str()?.to_string();
        let mut days = BTreeMap::new();
        for _ in 0..c.len()? {
            let day = c.i()?;
            let (events, features) = (c.u()?, c.u()?);
            let n = c.len()?;
            let mut users = FxHashSet::with_capacity_and_hasher(n, Default::default());
            for _ in 0..n {
                users.insert(u64::from_le_bytes(c.bytes(8)?.try_into().expect("8 bytes")));
            }
            days.insert(day, Day { events, users, features });
        }
        Ok((id, days))
    })?;
    let last_alert = c.blocks(|c| {
        let key = (c.str()?.to_string(), c.str()?.to_string());
        Ok((key, c.ts()?))
    })?;
    if c.u()? != N as u64 {
        return Err(SnapshotError::Damaged("feature count"));
    }
    let health = c.blocks(|c| {
        let id = c.str()?.to_string();
        let mut num = [0f64; N];
        for v in &mut num {
            *v = c.f64()?;
        }
        let row = Row { num, plan: c.opt_str()?, segment: c.opt_str()?, mrr: c.i()? };
        let scorecard = c.opt_str()?;
        let score = c.opt_f64()?;
        let colour = *COLOURS.get(c.byte()? as usize).ok_or(SnapshotError::Damaged("colour"))?;
        Ok((id, AccountHealth { row, scorecard, score, colour, probability: c.opt_f64()? }))
    })?;
    if !c.0.is_done() {
        return Err(SnapshotError::Damaged("trailing bytes"));
    }
    Ok(Rest { t, health_t, costs, usage, recent, last_alert, health })
}

/// Writes `items` in blocks of [`BLOCK`], each behind its item count and length, encoded
/// in parallel: their count first.
fn blocks<T: Sync>(out: &mut Vec<u8>, items: &[T], f: impl Fn(&mut Vec<u8>, &T) + Sync) {
    let parts: Vec<Vec<u8>> = items
        .par_chunks(BLOCK)
        .map(|b| {
            let mut v = Vec::with_capacity(b.len() * 64);
            for x in b {
                f(&mut v, x);
            }
            v
        })
        .collect();
    put_u64(out, parts.len() as u64);
    for (p, b) in parts.iter().zip(items.chunks(BLOCK)) {
        put_u64(out, b.len() as u64);
        put_u64(out, p.len() as u64);
        out.extend_from_slice(p);
    }
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// A reader of the rest's bytes.
struct In<'a>(Cursor<'a>);

impl<'a> In<'a> {
    fn u(&mut self) -> R<u64> {
        self.0.u64().map_err(|_| SnapshotError::Damaged("truncated"))
    }

    fn i(&mut self) -> R<i64> {
        let v = self.u()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// An instant within the years an event can hold.
    fn ts(&mut self) -> R<Timestamp> {
        let v = self.i()?;
        if v.unsigned_abs() > 320_000_000_000_000_000 {
            return Err(SnapshotError::Damaged("instant out of range"));
        }
        Ok(Timestamp(v))
    }

    /// A count, which cannot exceed the bytes left (every item takes one at least).
    fn len(&mut self) -> R<usize> {
        let v = self.u()?;
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= self.0.remaining())
            .ok_or(SnapshotError::Damaged("length"))
    }

    fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        self.0.bytes(n).map_err(|_| SnapshotError::Damaged("truncated"))
    }

    fn byte(&mut self) -> R<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn str(&mut self) -> R<&'a str> {
        self.0.str().map_err(|_| SnapshotError::Damaged("string"))
    }

    fn opt_str(&mut self) -> R<Option<String>> {
        Ok(match self.byte()? {
            0 => None,
            1 => Some(self.str()?.to_string()),
            _ => return Err(SnapshotError::Damaged("flag")),
        })
    }

    fn f64(&mut self) -> R<f64> {
        Ok(f64::from_bits(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes"))))
    }

    fn opt_f64(&mut self) -> R<Option<f64>> {
        Ok(match self.byte()? {
            0 => None,
            1 => Some(self.f64()?),
            _ => return Err(SnapshotError::Damaged("flag")),
        })
    }

    /// What [`blocks`] wrote, each block decoded (in parallel) by `item`, collected.
    fn blocks<K, V, C>(&mut self, item: impl Fn(&mut In<'a>) -> R<(K, V)> + Sync) -> R<C>
    where
        K: Send,
        V: Send,
        C: FromIterator<(K, V)>,
    {
        let n = self.len()?;
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            let count = self.u()?;
            let len = self.len()?;
            parts.push((count, self.bytes(len)?));
        }
        let decoded: Vec<R<Vec<(K, V)>>> = parts
            .into_par_iter()
            .map(|(count, bytes)| {
                let mut r = In(Cursor::new(bytes));
                let count = usize::try_from(count)
                    .ok()
                    .filter(|c| *c <= bytes.len())
                    .ok_or(SnapshotError::Damaged("count"))?;
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(item(&mut r)?);
                }
                if !r.0.is_done() {
                    return Err(SnapshotError::Damaged("block length"));
                }
                Ok(v)
            })
            .collect();
        let mut all = Vec::new();
        for d in decoded {
            all.push(d?);
        }
        Ok(all.into_iter().flatten().collect())
    }
}
