//! The service's live state: the ledger, the usage of the recent days, every account's
//! health, and the alert rules' memory (when each rule last alerted for each account), kept
//! up to date as committed events arrive. It is a fold of the log like every other state:
//! it starts from the log's history ([`History`], and the usage figures the caller loaded
//! from the columnar store), and applying an event changes only the accounts it names.
//! Pure: the caller reads the disk and the clock and passes what they gave.

use crate::rules::{self, AccountState, Firing, Rules};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use tenure_core::event::{Event, EventBody, EventKind};
use tenure_core::time::{DAY, PeriodUnit, Timestamp};
use tenure_health::features::Context;
use tenure_health::scorecard::Scorecards;
use tenure_health::state::HealthState;
use tenure_health::{Model, UsageByAccount};
use tenure_kpi::KpiConfig;
use tenure_kpi::usage::UsageMonth;
use tenure_ledger::{AccountLedger, Ledger, LedgerBuilder, Refold, RevenueConfig};

mod snapshot;
pub use snapshot::{FORMAT as SNAPSHOT_FORMAT, Snapshot, SnapshotError};

/// The engine's settings the live state folds and scores with (of the configuration file).
#[derive(Clone, Debug)]
pub struct Settings {
    pub revenue: RevenueConfig,
    pub kpi: KpiConfig,
}

/// One account's usage on one day by one user: (account, day number since the epoch, user,
/// feature, events), as the columnar store's daily rollup gives them.
pub type DayRow = (String, i64, String, String, u64);

/// The usage the live state starts from, as loaded from the columnar store.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// Every account's usage per calendar month before the start (the current month is
    /// rebuilt from `days`).
    pub monthly: UsageByAccount,
    /// The day-level rows from [`Live::window_start`] to the start.
    pub days: Vec<DayRow>,
}

/// The log's history the live state starts from: its events pushed in log order. Usage,
/// emails and web visits are not folded into the ledger (usage comes as [`Usage`]).
pub struct History {
    builder: LedgerBuilder,
    /// When each (account, rule) last alerted, of the alerts pushed.
    last_alert: FxHashMap<(String, String), Timestamp>,
}

impl Default for History {
    /// The ledger keeps each movement's source events, so that the service can explain
    /// its figures (`/api/v1/kpis/explain`).
    fn default() -> History {
        History { builder: LedgerBuilder::new().keep_sources(), last_alert: FxHashMap::default() }
    }
}

impl History {
    pub fn push(&mut self, e: Event) {
        self.push_at(e, None);
    }

    /// As [`push`](Self::push), with the event's record index in its lane (the source of a
    /// subscription event without `message_id`).
    pub fn push_at(&mut self, e: Event, position: Option<u64>) {
        if light(e.kind()) {
            return;
        }
        if let (EventBody::Alert { rule, .. }, Some(a)) = (&e.body, &e.account) {
            let slot = self.last_alert.entry((a.clone(), rule.clone())).or_insert(e.ts);
            *slot = (*slot).max(e.ts);
        }
        self.builder.push_at(e, position);
    }
}

/// Activity: kept by day, not folded into the ledger.
fn light(k: EventKind) -> bool {
    matches!(k, EventKind::Usage | EventKind::Email | EventKind::WebVisit)
}

/// One account's usage on one day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Day {
    events: u64,
    users: FxHashSet<u64>,
    features: u64,
}

/// The accounts some events touched: by any event but the service's own alerts and tasks
/// (`all`), by new usage, and by alerts and tasks only (`quiet`: re-folded, but not
/// re-evaluated by the aggregate rules, which would otherwise answer their own alerts).
#[derive(Default)]
pub struct Touched {
    all: FxHashSet<String>,
    usage: FxHashSet<String>,
    quiet: FxHashSet<String>,
}

/// What the service knows, at `t`.
pub struct Live {
    pub cfg: Settings,
    pub rules: Rules,
    pub cards: Scorecards,
    pub model: Option<Model>,
    builder: LedgerBuilder,
    pub ledger: Ledger,
    pub usage: UsageByAccount,
    /// Day-level usage of the current month and the usage rules' windows, per account.
    recent: FxHashMap<String, BTreeMap<i64, Day>>,
    pub health: HealthState,
    /// When each (account, rule) last alerted.
    last_alert: FxHashMap<(String, String), Timestamp>,
    feature_bits: FxHashMap<String, u64>,
    pub t: Timestamp,
    /// Bumped by every change: what was computed at the same generation is still exact.
    pub generation: u64,
    /// Bumped when events dated before the current month are taken (an import of history,
    /// a late event): figures of closed months computed at the same value differ from
    /// exact ones only by what a current event reaches back to (movement grouping windows).
    pub history_generation: u64,
    /// Immediate rules skip events older than this many days (an import of history through
    /// the API raises nothing).
    pub immediate_horizon_days: i64,
    /// When each account was last re-scored.
    rescored: FxHashMap<String, Timestamp>,
    /// Whether the builder holds the history (not while a state read from a snapshot
    /// waits for it: [`warming`](Self::warming)).
    installed: bool,
}

/// What a refresh starts from ([`Live::refresh_plan`]).
pub struct RefreshPlan {
    refold: Option<Refold>,
    unknown: Vec<String>,
    now: Timestamp,
    /// The state's generation it was made at.
    generation: u64,
}

/// The parts of the state an install replaces whole: the usage and days when given anew,
/// the builder, the rules' memory.
struct Parts {
    usage: Option<UsageByAccount>,
    recent: Option<FxHashMap<String, BTreeMap<i64, Day>>>,
    builder: LedgerBuilder,
    last_alert: FxHashMap<(String, String), Timestamp>,
}

impl Parts {
    /// Exchanges these with `live`'s (the usage and days only when given): afterwards they
    /// hold what `live` had.
    fn swap(&mut self, live: &mut Live) {
        if let Some(u) = &mut self.usage {
            std::mem::swap(u, &mut live.usage);
        }
        if let Some(r) = &mut self.recent {
            std::mem::swap(r, &mut live.recent);
        }
        std::mem::swap(&mut self.builder, &mut live.builder);
        std::mem::swap(&mut self.last_alert, &mut live.last_alert);
    }
}

/// A saved state's history made ready to install ([`Live::prepare_install`]).
pub struct Installing {
    parts: Parts,
    /// Accounts the history does not name.
    leave: FxHashSet<String>,
    /// The history's accounts the state lacks, folded, by id.
    folded: Vec<AccountLedger>,
}

/// What [`Live::finish_install`] replaced: dropped after the state's lock is released.
#[expect(dead_code, reason = "held only to be dropped later")]
pub struct Replaced {
    parts: Parts,
    accounts: Vec<AccountLedger>,
    health: Vec<tenure_health::state::AccountHealth>,
}

/// A refresh in progress ([`Live::refresh_start`]).
pub struct Refreshing {
    refold: Option<Refold>,
    /// The first account (of the ledger, in order) not yet refreshed.
    next: usize,
    now: Timestamp,
}

/// Accounts refreshed at a step: 60-160 ms of work at a million accounts (measured on two
/// cores), so that requests wait little.
const REFRESH_BLOCK: usize = 4096;

/// A settle in progress ([`Live::settle_start`]): the accounts to re-score, in order, a
/// block at a time.
pub struct Settling {
    scored: Vec<String>,
    /// Of those, the ones whose events changed (folded again)...
    fold: FxHashSet<String>,
    /// ...those whose current month's usage is rewritten...
    due: FxHashSet<String>,
    /// ...and those the aggregate rules are evaluated on.
    evaluate: FxHashSet<String>,
    next: usize,
    block: usize,
    now: Timestamp,
}

impl Settling {
    /// The same work in blocks of `block` accounts (tests settle one account at a time,
    /// to check that blocks change nothing).
    pub fn in_blocks_of(mut self, block: usize) -> Settling {
        self.block = block.max(1);
        self
    }

    /// Accounts to re-score in all.
    pub fn len(&self) -> usize {
        self.scored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scored.is_empty()
    }
}

/// How often an account with only new usage is re-scored, microseconds (a minute).
const RESCORE_USAGE_EVERY: i64 = 60_000_000;

/// How the recent days count usage: each user by [`hash`], each feature by its bit (the
/// catalogue's order), a day by its UTC date. A change of any bumps it, so that a state
/// saved before has its days read again rather than kept ([`Live::days_setup`]).
pub const DAYS_FORMAT: u32 = 1;

fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

fn month_start(t: Timestamp) -> Timestamp {
    PeriodUnit::Month.floor(t)
}

impl Live {
    /// The state at `now` of the log's `history` and the `usage` loaded from the columnar
    /// store (its days from [`window_start`](Self::window_start) on).
    pub fn new(
        history: History,
        cfg: Settings,
        rules: Rules,
        cards: Scorecards,
        model: Option<Model>,
        usage: Usage,
        now: Timestamp,
    ) -> Live {
        let History { builder, last_alert: _ } = history;
        let Usage { monthly: mut usage, days: rows } = usage;
        let ledger = builder.fold_all(&cfg.revenue, now);
        let mut live = Live::empty(builder, cfg, rules, cards, model, now);
        live.ledger = ledger;
        live.add_days(rows);
        // The current month comes from the day-level rows (so that it can grow exactly).
        let m = month_start(now);
        for months in usage.values_mut() {
            months.retain(|u| u.month < m);
        }
        live.usage = usage;
        let ids: Vec<String> = live.recent.keys().cloned().collect();
        for id in ids {
            live.refresh_month(&id);
        }
        live.remember_alerts();
        live.health = live.build_health(now);
        live
    }

    /// A state of no account at `now`, folding with `builder`.
    fn empty(
        builder: LedgerBuilder,
        cfg: Settings,
        rules: Rules,
        cards: Scorecards,
        model: Option<Model>,
        now: Timestamp,
    ) -> Live {
        let feature_bits = cfg
            .kpi
            .features
            .iter()
            .take(64)
            .enumerate()
            .map(|(i, f)| (f.name.clone(), 1u64 << i))
            .collect();
        Live {
            ledger: Ledger { as_of: now, fx: Some(cfg.revenue.fx.clone()), ..Ledger::default() },
            builder,
            usage: UsageByAccount::default(),
            recent: FxHashMap::default(),
            health: HealthState { t: now, accounts: FxHashMap::default(), recomputed: 0 },
            last_alert: FxHashMap::default(),
            feature_bits,
            cfg,
            rules,
            cards,
            model,
            t: now,
            generation: 0,
            history_generation: 0,
            immediate_horizon_days: 7,
            rescored: FxHashMap::default(),
            installed: true,
        }
    }

    /// The rules' memory from the alerts in the ledger: when each (account, rule) last
    /// alerted.
    fn remember_alerts(&mut self) {
        for a in &self.ledger.accounts {
            for al in &a.cs.alerts {
                let slot = self.last_alert.entry((a.id.clone(), al.rule.clone())).or_insert(al.ts);
                *slot = (*slot).max(al.ts);
            }
        }
    }

    /// Whether the state, read from a snapshot, still waits for its history
    /// ([`install`](Self::install)): it answers, but takes no event and refreshes nothing.
    pub fn warming(&self) -> bool {
        !self.installed
    }

    /// Gives a state read from a snapshot its history: the log replayed up to where the
    /// snapshot was made (the state is its fold). Each account keeps its fold and health
    /// until the next refresh, which folds them from it; the rules' memory takes the
    /// history's alerts too (those recorded after the state last took events, as the
    /// service stopped). `closed`, when given, is every account's usage of the months
    /// before `now`'s as the columnar store gives them now: it replaces the state's (a
    /// running state only ever rewrites its current month, so usage dated in an earlier
    /// month since it started is read there); the current month stays the state's, from
    /// its days. `days`, when given, are the day-level rows from
    /// [`window_start`](Self::window_start) as the columnar store gives them now: they
    /// replace the state's days (saved with other rules or features, those may be of too
    /// short a window, or name features by other bits; saved by a build that counts them
    /// otherwise, [`DAYS_FORMAT`]), and its current month goes with them: the refresh
    /// that follows makes it again from them (an account without days then has none, as
    /// after a replay). Usage the state had not taken, when its days are kept, comes with
    /// [`add_days`](Self::add_days).
    pub fn install(
        &mut self,
        history: History,
        closed: Option<(UsageByAccount, Timestamp)>,
        days: Option<Vec<DayRow>>,
    ) {
        let ready = self.prepare_install(history, closed, days);
        drop(self.finish_install(ready));
    }

    /// The work of [`install`](Self::install) that reads the state without changing it
    /// (trimming the closed months, folding the accounts new since the save, building the
    /// days): the service does it under a read lock, so that the write lock of
    /// [`finish_install`](Self::finish_install) only swaps. Nothing may change the state
    /// in between.
    pub fn prepare_install(
        &self,
        history: History,
        closed: Option<(UsageByAccount, Timestamp)>,
        days: Option<Vec<DayRow>>,
    ) -> Installing {
        let usage = closed.map(|(mut closed, now)| {
            let m = month_start(now);
            for months in closed.values_mut() {
                months.retain(|u| u.month < m);
            }
            // The current month is kept with the days it was made from.
            if days.is_none() {
                for (id, months) in &self.usage {
                    let current = months.iter().filter(|u| u.month >= m).cloned();
                    let mut current = current.peekable();
                    if current.peek().is_some() {
                        closed.entry(id.clone()).or_default().extend(current);
                    }
                }
            }
            closed
        });
        let recent = days.map(|rows| {
            let mut recent = FxHashMap::default();
            for row in rows {
                self.add_day_row(&mut recent, row);
            }
            recent
        });
        let History { builder, last_alert: alerted } = history;
        let mut last_alert = self.last_alert.clone();
        for (k, t) in alerted {
            let slot = last_alert.entry(k).or_insert(t);
            *slot = (*slot).max(t);
        }
        // The ledger's accounts made the builder's: the history's accounts the state lacks
        // (new in records after it was saved) are folded at its instant; accounts the
        // history does not name (first seen through activity, which it does not keep)
        // leave, as after a start that replays the log.
        let leave: FxHashSet<String> = self
            .ledger
            .accounts
            .iter()
            .map(|a| &a.id)
            .chain(self.health.accounts.keys())
            .filter(|id| !builder.contains(id))
            .cloned()
            .collect();
        let ledger = &self.ledger;
        let missing: Vec<&str> =
            builder.account_ids().filter(|id| ledger.account(id).is_none()).collect();
        let (cfg, t) = (&self.cfg.revenue, self.t);
        let mut folded: Vec<AccountLedger> = missing
            .par_iter()
            .filter_map(|id| builder.fold_one(id, cfg, t).map(|(a, _)| a))
            .collect();
        folded.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Installing { parts: Parts { usage, recent, builder, last_alert }, leave, folded }
    }

    /// Installs what [`prepare_install`](Self::prepare_install) made ready, and returns what
    /// it replaced: the caller drops that after releasing the state's lock (at a million
    /// accounts, freeing the maps takes longer than swapping them).
    pub fn finish_install(&mut self, ready: Installing) -> Replaced {
        let Installing { mut parts, leave, folded } = ready;
        parts.swap(self);
        let mut old = Replaced { parts, accounts: Vec::new(), health: Vec::new() };
        if !leave.is_empty() {
            let (stay, gone) = std::mem::take(&mut self.ledger.accounts)
                .into_iter()
                .partition(|a| !leave.contains(&a.id));
            self.ledger.accounts = stay;
            old.accounts = gone;
            for id in &leave {
                if let Some(h) = self.health.accounts.remove(id) {
                    old.health.push(h);
                }
            }
        }
        if !folded.is_empty() {
            // Both sorted by id, neither naming an account the other does: merged.
            let accounts = std::mem::take(&mut self.ledger.accounts);
            let mut merged = Vec::with_capacity(accounts.len() + folded.len());
            let (mut a, mut b) = (accounts.into_iter().peekable(), folded.into_iter().peekable());
            while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
                let next = if x.id < y.id { a.next() } else { b.next() };
                merged.extend(next);
            }
            merged.extend(a);
            merged.extend(b);
            self.ledger.accounts = merged;
        }
        self.installed = true;
        old
    }

    /// What a state's recent days are, for a saved state's setup: how they are counted
    /// ([`DAYS_FORMAT`]) and how many days the rules read. A state saved by another build
    /// keeps its days when these agree; otherwise they are read again.
    pub fn days_setup(rules: &Rules) -> String {
        let longest = rules.rules.iter().map(|r| r.usage_days()).max().unwrap_or(0);
        format!("days {DAYS_FORMAT} window {longest}")
    }

    /// The first day the usage rules and the current month need: where the day-level
    /// usage given to [`new`](Self::new) starts.
    pub fn window_start(rules: &Rules, now: Timestamp) -> Timestamp {
        let longest = rules.rules.iter().map(|r| r.usage_days()).max().unwrap_or(0);
        month_start(now).min(Timestamp(now.0 - longest * DAY))
    }

    /// Adds `e` to `account`'s recent days when it is usage; whether it was.
    fn add_day(&mut self, account: &str, e: &Event) -> bool {
        let EventBody::Usage { user_id, event, feature, .. } = &e.body else { return false };
        let bit = self.bit(feature.as_deref().unwrap_or(event));
        let days = match self.recent.get_mut(account) {
            Some(d) => d,
            None => self.recent.entry(account.to_string()).or_default(),
        };
        let d = days.entry(e.ts.day()).or_default();
        d.events += 1;
        d.users.insert(hash(user_id));
        d.features |= bit;
        true
    }

    /// Adds day-level usage rows to the recent days: also the usage a state read from its
    /// snapshot had not taken (its tail in the log), with its history at
    /// [`install`](Self::install); the refresh that follows rewrites the current month
    /// from the days.
    pub fn add_days(&mut self, rows: Vec<DayRow>) {
        let mut recent = std::mem::take(&mut self.recent);
        for row in rows {
            self.add_day_row(&mut recent, row);
        }
        self.recent = recent;
    }

    /// Adds one day-level row to `recent`.
    fn add_day_row(&self, recent: &mut FxHashMap<String, BTreeMap<i64, Day>>, row: DayRow) {
        let (account, day, user, feature, n) = row;
        let d = recent.entry(account).or_default().entry(day).or_default();
        d.events += n;
        d.users.insert(hash(&user));
        d.features |= self.bit(&feature);
    }

    fn bit(&self, feature: &str) -> u64 {
        self.feature_bits.get(feature).copied().unwrap_or(0)
    }

    fn ctx(&self) -> Context<'_> {
        Context { catalogue: &self.cfg.kpi.features, segment_key: "segment" }
    }

    fn build_health(&self, t: Timestamp) -> HealthState {
        HealthState::build(
            &self.ledger,
            &self.usage,
            t,
            &self.ctx(),
            &self.cards,
            self.model.as_ref(),
        )
    }

    /// Rewrites the account's current-month usage from its days.
    fn refresh_month(&mut self, id: &str) {
        let m = month_start(self.t);
        let Some(days) = self.recent.get(id) else { return };
        let mut u = UsageMonth { month: m, ..UsageMonth::default() };
        let mut users = FxHashSet::default();
        for (day, d) in days.range(m.day()..) {
            u.events += d.events;
            u.days += 1;
            u.features |= d.features;
            u.last_day = Timestamp(day * DAY);
            users.extend(d.users.iter().copied());
        }
        u.users = users.len() as u64;
        let months = self.usage.entry(id.to_string()).or_default();
        months.retain(|x| x.month < m);
        if u.events > 0 {
            months.push(u);
        }
    }

    /// The builder the ledger is folded from (a copy of it refolds the ledger at any
    /// instant: the forecast's backtest does).
    pub fn builder(&self) -> &LedgerBuilder {
        &self.builder
    }

    /// Usage events of an account on days `[from, to)`.
    pub fn events_between(&self, id: &str, from: i64, to: i64) -> u64 {
        self.recent.get(id).map_or(0, |d| d.range(from..to).map(|(_, x)| x.events).sum())
    }

    /// Takes committed events at `now`: immediate rules see each event against the state
    /// before it; the accounts named are re-folded and re-scored, and aggregate rules are
    /// evaluated on them. Returns what fired and passed the cooldown.
    pub fn apply(&mut self, events: &[Event], now: Timestamp) -> Vec<Firing> {
        let (mut fired, touched) = self.take(events, now);
        fired.extend(self.settle(touched, now));
        fired
    }

    /// The first half of [`apply`](Self::apply), cheap per event: records the events and
    /// returns the immediate rules' firings (past their cooldown) and the accounts touched,
    /// for [`settle`](Self::settle). Alerts on single events need not wait for re-scoring.
    pub fn take(&mut self, events: &[Event], now: Timestamp) -> (Vec<Firing>, Touched) {
        self.take_at(events, &[], now)
    }

    /// As [`take`](Self::take), with each event's record index in its log lane
    /// (`positions[i]` for `events[i]`, when known): the source a movement names for a
    /// subscription event without `message_id`.
    pub fn take_at(
        &mut self,
        events: &[Event],
        positions: &[u64],
        now: Timestamp,
    ) -> (Vec<Firing>, Touched) {
        let mut fired = Vec::new();
        let mut touched: FxHashSet<String> = FxHashSet::default();
        let mut usage_touched: FxHashSet<String> = FxHashSet::default();
        let mut quiet: FxHashSet<String> = FxHashSet::default();
        let horizon = self.immediate_horizon(now);
        let mut batch = rules::Batch::default();
        self.advance(now);
        let month = tenure_core::time::PeriodUnit::Month.floor(now);
        if events.iter().any(|e| e.ts < month) {
            self.history_generation += 1;
        }
        for (i, e) in events.iter().enumerate() {
            let position = positions.get(i).copied();
            let Some(account) = e.account.clone() else {
                self.builder.push_at(e.clone(), position);
                continue;
            };
            // Before this event is pushed (below).
            let moved_from = self.moved_from(e, &account);
            if e.ts >= horizon {
                fired.extend(self.immediate(e, position, moved_from.as_deref(), &batch));
            }
            batch.note(e);
            if let Some(from) = moved_from {
                touched.insert(from);
            }
            if self.add_day(&account, e) {
                usage_touched.insert(account.clone());
            }
            // Activity does not change the ledger (but an account it names first exists).
            let light = light(e.kind());
            if !light || !self.builder.contains(&account) {
                self.builder.push_at(e.clone(), position);
                if light {
                    touched.insert(account.clone());
                }
            }
            if matches!(e.kind(), EventKind::Alert | EventKind::Task) {
                quiet.insert(account);
            } else if !light {
                touched.insert(account);
            }
        }
        let fired = self.pass_cooldown(fired, now);
        (fired, Touched { all: touched, usage: usage_touched, quiet })
    }

    /// The immediate rules' firings (past their cooldown) on records the state has not
    /// taken, each with its record index in its lane, evaluated against the state as it
    /// stands (the earlier ones of `events` as a batch's): a saved state's tail, the records
    /// appended after it was saved (an import while the service was down, events taken
    /// after the save before a crash), which its history's replay folds in later. Nothing
    /// is folded here. A contact seen under another account counts as a move only where the
    /// state knows the contact's sightings (a state read from a snapshot does not until its
    /// history is in).
    pub fn fire_on_tail(&mut self, events: &[(Event, u64)], now: Timestamp) -> Vec<Firing> {
        let horizon = self.immediate_horizon(now);
        let mut batch = rules::Batch::default();
        let mut fired = Vec::new();
        for (e, i) in events {
            let Some(account) = e.account.as_deref() else { continue };
            if e.ts >= horizon {
                let moved_from = self.moved_from(e, account);
                fired.extend(self.immediate(e, Some(*i), moved_from.as_deref(), &batch));
            }
            batch.note(e);
        }
        self.pass_cooldown(fired, now)
    }

    /// The earliest instant of an event immediate rules see at `now`
    /// (`immediate_horizon_days` before it).
    pub fn immediate_horizon(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.0.saturating_sub(self.immediate_horizon_days.saturating_mul(DAY)))
    }

    /// The account a contact event's contact was last seen under, when another one and
    /// not later than the event: the contact has moved from it.
    fn moved_from(&self, e: &Event, account: &str) -> Option<String> {
        let EventBody::Contact { contact_id, .. } = &e.body else { return None };
        self.builder
            .last_seen(contact_id)
            .filter(|(ts, a)| *a != account && e.ts >= *ts)
            .map(|(_, a)| a.to_string())
    }

    /// The immediate rules `e` fires against the state and the batch's earlier events,
    /// each naming `e`'s record (its lane and `position` there) when known.
    fn immediate(
        &self,
        e: &Event,
        position: Option<u64>,
        moved_from: Option<&str>,
        batch: &rules::Batch,
    ) -> Vec<Firing> {
        let ledger = &self.ledger;
        let lookup = |id: &str| ledger.account(id);
        let source = position.map(|p| format!("{}:{p}", e.kind().as_str()));
        let fires = rules::immediate(&self.rules, e, &lookup, moved_from, batch);
        fires.into_iter().map(|f| Firing { source: source.clone(), ..f }).collect()
    }

    /// The second half of [`apply`](Self::apply): re-folds and re-scores the touched
    /// accounts and returns the aggregate rules' firings past their cooldown.
    /// [`settle_start`](Self::settle_start) and its steps, at once.
    pub fn settle(&mut self, touched: Touched, now: Timestamp) -> Vec<Firing> {
        let mut s = self.settle_start(touched, now);
        let mut fired = Vec::new();
        while let Some(f) = self.settle_step(&mut s) {
            fired.extend(f);
        }
        fired
    }

    /// What [`settle`](Self::settle) will do, worked out without changing the state: the
    /// accounts to re-score, in order, and of those the ones to fold again, to have their
    /// month's usage rewritten and to evaluate. [`settle_step`](Self::settle_step) then
    /// does them a block at a time, so that the service lets requests in between (a bulk
    /// import may touch most accounts: seconds of work at a million).
    pub fn settle_start(&self, touched: Touched, now: Timestamp) -> Settling {
        let Touched { all: touched, usage: usage_touched, quiet } = touched;
        // Accounts with new usage only are re-scored at most once a minute: a stream of
        // usage would otherwise re-score its accounts on every batch.
        let due: FxHashSet<String> = usage_touched
            .into_iter()
            .filter(|id| {
                touched.contains(id)
                    || self.rescored.get(id).is_none_or(|t| now.0 - t.0 >= RESCORE_USAGE_EVERY)
            })
            .collect();
        let evaluate: FxHashSet<String> = touched.iter().chain(&due).cloned().collect();
        let mut fold: Vec<String> = touched.into_iter().chain(quiet).collect();
        fold.sort_unstable();
        fold.dedup();
        let mut scored: Vec<String> = fold.iter().chain(&due).cloned().collect();
        scored.sort_unstable();
        scored.dedup();
        let fold = fold.into_iter().collect();
        Settling { scored, fold, due, evaluate, next: 0, block: REFRESH_BLOCK, now }
    }

    /// Settles the next block of accounts (their month's usage rewritten, folded again in
    /// parallel, re-scored, the aggregate rules evaluated on those touched) and returns the
    /// firings past their cooldown; `None` once every account is done. Until its step, an
    /// account keeps the fold and health it had before the events were taken.
    pub fn settle_step(&mut self, s: &mut Settling) -> Option<Vec<Firing>> {
        let now = s.now;
        // Scored at the batch's instant, even when it touched no account.
        self.health.t = now;
        if s.next >= s.scored.len() {
            return None;
        }
        let range = s.next..(s.next + s.block.max(1)).min(s.scored.len());
        s.next = range.end;
        let block = &s.scored[range];
        for id in block.iter().filter(|id| s.due.contains(*id)) {
            self.refresh_month(id);
        }
        let refold: Vec<&str> =
            block.iter().filter(|id| s.fold.contains(*id)).map(String::as_str).collect();
        let (builder, cfg) = (&self.builder, &self.cfg.revenue);
        let folded: Vec<Option<AccountLedger>> =
            refold.par_iter().map(|id| builder.fold_one(id, cfg, now).map(|(a, _)| a)).collect();
        for (id, a) in refold.iter().zip(folded) {
            let Some(a) = a else { continue };
            match self.ledger.accounts.binary_search_by(|x| x.id.as_str().cmp(id)) {
                Ok(i) => self.ledger.accounts[i] = a,
                Err(i) => self.ledger.accounts.insert(i, a),
            }
        }
        for id in block {
            self.rescored.insert(id.clone(), now);
        }
        let refs: Vec<&str> = block.iter().map(String::as_str).collect();
        let ctx = Context { catalogue: &self.cfg.kpi.features, segment_key: "segment" };
        self.health.update(
            &self.ledger,
            &self.usage,
            &refs,
            &ctx,
            &self.cards,
            self.model.as_ref(),
        );
        let mut fired = Vec::new();
        for id in refs.iter().filter(|id| s.evaluate.contains(**id)) {
            fired.extend(self.aggregate_for(id, now));
        }
        Some(self.pass_cooldown(fired, now))
    }

    fn aggregate_for(&self, id: &str, now: Timestamp) -> Vec<Firing> {
        let Some(a) = self.ledger.account(id) else { return Vec::new() };
        let between = |from: i64, to: i64| self.events_between(id, from, to);
        let cooling = |i: usize| self.cooling(id, i, now);
        let state = AccountState {
            ledger: a,
            health: self.health.accounts.get(id),
            events_between: &between,
            model: self.model.as_ref(),
            cooling: &cooling,
        };
        rules::aggregate(&self.rules, &state, now)
    }

    /// Moves the state's clock: a new day drops usage days no rule needs any more.
    fn advance(&mut self, now: Timestamp) {
        if now.day() != self.t.day() {
            let keep = Self::window_start(&self.rules, now).day();
            for days in self.recent.values_mut() {
                days.retain(|d, _| *d >= keep);
            }
        }
        self.t = now;
        self.ledger.as_of = now;
        self.generation += 1;
    }

    /// Re-folds and re-scores every account at `now` and evaluates the aggregate rules on
    /// all of them (features move with time even without events: days since last use, days
    /// to renewal). [`refresh_start`](Self::refresh_start) and its steps, at once.
    pub fn refresh(&mut self, now: Timestamp) -> Vec<Firing> {
        let mut r = self.refresh_start(now);
        let mut fired = Vec::new();
        while let Some(f) = self.refresh_step(&mut r) {
            fired.extend(f);
        }
        fired
    }

    /// Starts a refresh at `now`, to be done a block of accounts at a time by
    /// [`refresh_step`](Self::refresh_step): the service lets requests in between its
    /// blocks (a refresh of a million accounts takes seconds). Until the last step, an
    /// account not yet reached keeps its fold and health of the instant before (with a
    /// new model, its probability of the old one, explained by the new).
    pub fn refresh_start(&mut self, now: Timestamp) -> Refreshing {
        let plan = self.refresh_plan(now);
        self.refresh_start_with(plan)
    }

    /// What [`refresh_start`](Self::refresh_start) works out without changing the state
    /// (a second's work at a million accounts: the service does it under a read lock).
    pub fn refresh_plan(&self, now: Timestamp) -> RefreshPlan {
        RefreshPlan {
            refold: self.builder.refold_start(&self.ledger, now),
            // Usage of accounts the ledger does not know: their months move too.
            unknown: self
                .recent
                .keys()
                .filter(|id| self.ledger.account(id).is_none())
                .cloned()
                .collect(),
            now,
            generation: self.generation,
        }
    }

    /// [`refresh_start`](Self::refresh_start) with its plan (made again if the state
    /// changed since it was made).
    pub fn refresh_start_with(&mut self, plan: RefreshPlan) -> Refreshing {
        let plan =
            if plan.generation == self.generation { plan } else { self.refresh_plan(plan.now) };
        let RefreshPlan { refold, unknown, now, generation: _ } = plan;
        self.advance(now);
        if refold.is_none() {
            // Not a fold of the builder's accounts (never, as events are taken): anew.
            self.ledger = self.builder.fold_all(&self.cfg.revenue, now);
        }
        for id in unknown {
            self.refresh_month(&id);
        }
        self.health.t = now;
        Refreshing { refold, next: 0, now }
    }

    /// Refreshes the next block of accounts (folded again, their current month's usage
    /// rewritten, re-scored, the aggregate rules evaluated) and returns the firings past
    /// their cooldown; `None` once every account is done (the ledger's costs and
    /// diagnostics then brought to the refresh's instant).
    pub fn refresh_step(&mut self, r: &mut Refreshing) -> Option<Vec<Firing>> {
        let now = r.now;
        let len = self.ledger.accounts.len();
        if r.next >= len {
            if let Some(f) = r.refold.take() {
                self.builder.refold_finish(&mut self.ledger, f, &self.cfg.revenue);
            }
            self.health.recomputed = 0;
            self.generation += 1;
            // Figures of closed months computed while the refresh ran (accounts of two
            // instants, the ledger's costs of the one before) are not kept.
            self.history_generation += 1;
            return None;
        }
        let range = r.next..(r.next + REFRESH_BLOCK).min(len);
        r.next = range.end;
        if let Some(f) = &mut r.refold {
            self.builder.refold_block(
                &mut self.ledger.accounts[range.clone()],
                f,
                &self.cfg.revenue,
            );
        }
        let ids: Vec<String> = self.ledger.accounts[range].iter().map(|a| a.id.clone()).collect();
        for id in &ids {
            self.refresh_month(id);
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ctx = Context { catalogue: &self.cfg.kpi.features, segment_key: "segment" };
        self.health.update(
            &self.ledger,
            &self.usage,
            &refs,
            &ctx,
            &self.cards,
            self.model.as_ref(),
        );
        let fired: Vec<Firing> =
            refs.par_iter().flat_map_iter(|id| self.aggregate_for(id, now)).collect();
        self.generation += 1;
        Some(self.pass_cooldown(fired, now))
    }

    /// Evaluates the aggregate rules on every account as the state stands, at its instant
    /// ([`t`](Self::t)): what a start evaluates, the state having just been folded and
    /// scored at that instant. Returns the firings past their cooldown.
    pub fn evaluate(&mut self) -> Vec<Firing> {
        let now = self.t;
        let fired: Vec<Firing> = self
            .ledger
            .accounts
            .par_iter()
            .flat_map_iter(|a| self.aggregate_for(&a.id, now))
            .collect();
        self.pass_cooldown(fired, now)
    }

    /// Whether rule `rule` alerted `account` within its cooldown before `now`.
    fn cooling(&self, account: &str, rule: usize, now: Timestamp) -> bool {
        let rule = &self.rules.rules[rule];
        rule.cooldown_days > 0
            && self
                .last_alert
                .get(&(account.to_string(), rule.id.clone()))
                .is_some_and(|t| now.0 - t.0 < rule.cooldown_days * DAY)
    }

    /// Keeps the firings whose (account, rule) is out of its cooldown, and remembers them.
    fn pass_cooldown(&mut self, fired: Vec<Firing>, now: Timestamp) -> Vec<Firing> {
        let mut out = Vec::new();
        for f in fired {
            let cooling = self.cooling(&f.account, f.rule, now);
            let key = (f.account.clone(), self.rules.rules[f.rule].id.clone());
            if !cooling {
                self.last_alert.insert(key, now);
                out.push(f);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// A saved state's days hold their users as these hashes, and a state saved by an
    /// earlier build keeps its days: a change of the function needs a new `DAYS_FORMAT`
    /// (else the users of those days would count twice). The values are
    /// the reference implementation's (XXH3_64bits of the xxHash C library, through
    /// python-xxhash 3; the first is its published value for no input).
    #[test]
    fn users_are_hashed_as_saved_states_hashed_them() {
        assert_eq!(super::hash(""), 0x2d06_8005_38d3_94c2);
        assert_eq!(super::hash("u-000001-34"), 0x8c5d_5035_519b_eec7);
    }
}
