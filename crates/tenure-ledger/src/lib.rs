//! Per-account folds of the event log: the MRR timeline, its movements and renewals.
//!
//! The ledger is derived state: [`LedgerBuilder`] takes events in log order and
//! [`LedgerBuilder::finish`] folds each account independently (in parallel) with the
//! business's [`RevenueConfig`] and an explicit `as_of`; events after `as_of` are not known.
//! No IO, no clock.

mod bodies;
pub mod checkpoint;
pub mod config;
pub mod cs;
mod fold;

pub use config::{ChurnRecognition, PauseMode, Preset, RevenueConfig};
pub use cs::CsLedger;

use bodies::Bodies;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tenure_core::event::{AttrValue, Event, EventBody, Subscription};
use tenure_core::event::{CostCategory, InvoiceStatus};
use tenure_core::money::{Currency, FxTable, Money};
use tenure_core::time::Timestamp;

/// A classified change of an account's MRR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MovementKind {
    New,
    Expansion,
    Contraction,
    Churn,
    Reactivation,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::New => "new",
            MovementKind::Expansion => "expansion",
            MovementKind::Contraction => "contraction",
            MovementKind::Churn => "churn",
            MovementKind::Reactivation => "reactivation",
        }
    }
}

/// One movement: `amount` is the magnitude in base-currency minor units (always >= 0);
/// the MRR moved by +amount for new/expansion/reactivation and -amount otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub ts: Timestamp,
    pub kind: MovementKind,
    pub amount: i64,
    /// For expansions: the part from more of a product already held, and from a new one.
    pub upsell: i64,
    pub cross_sell: i64,
    /// Churn (or contraction) for want of payment rather than chosen by the customer: a line
    /// auto-churned by the past-due rule, ended while past due or with the cancel reason
    /// [`PAYMENT_FAILED`].
    pub involuntary: bool,
    /// For churn: the `cancel_reason` of the line that carried the most MRR among those that
    /// stopped in this movement (`None` when it gave none).
    pub cancel_reason: Option<Arc<str>>,
    /// The subscription events whose changes this movement classifies, in log order (empty
    /// unless the builder keeps sources: see [`LedgerBuilder::keep_sources`]). A boxed slice:
    /// 16 bytes on every movement, allocated only when there are sources.
    pub sources: Box<[SourceRef]>,
}

/// Where a subscription event came from, so that a figure can be traced back to it: its
/// `message_id` when it has one (stable across re-imports), else its place in the log (the
/// record index in the subscription lane).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceRef {
    Message(Box<str>),
    Log(u64),
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceRef::Message(m) => write!(f, "{m}"),
            SourceRef::Log(i) => write!(f, "log:subscription:{i}"),
        }
    }
}

/// The cancel reason that marks a cancellation as for want of payment: Stripe's
/// `cancellation_details.reason`, which the Stripe import writes as `cancel_reason` when the
/// customer left no feedback.
pub const PAYMENT_FAILED: &str = "payment_failed";

impl Movement {
    /// The signed change of MRR.
    pub fn delta(&self) -> i64 {
        match self.kind {
            MovementKind::New | MovementKind::Expansion | MovementKind::Reactivation => self.amount,
            MovementKind::Contraction | MovementKind::Churn => -self.amount,
        }
    }
}

/// The account's state from `ts` on (until the next step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub ts: Timestamp,
    /// Base-currency minor units.
    pub mrr: i64,
    /// Annualised from prices (exact for contracts billed in divisors of a year); base
    /// minor units. Differs from 12 x `mrr` only by the rounding of MRR to the minor unit.
    pub arr: i64,
    /// The part of `mrr` from service lines (`kind: service`).
    pub service_mrr: i64,
    /// Licensed seats on paid product lines.
    pub seats: u64,
    pub customer: bool,
    /// The plan of the account's largest line.
    pub plan: Option<Arc<str>>,
    /// MRR and ARR of the lines with no end known: without those whose cancellation is
    /// scheduled (or, with term-end recognition, sent and waiting for the term end).
    pub committed_mrr: i64,
    pub committed_arr: i64,
    /// The lines in other currencies than the base, one entry per line with MRR: (currency,
    /// native minor units per month, base minor units at the line's booked rate).
    pub fx: Box<[(Currency, i64, i64)]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewalOutcome {
    /// A follow-on term started at `at`, worth `arr` (base minor units).
    Won {
        at: Timestamp,
        arr: i64,
    },
    Lost {
        at: Timestamp,
    },
    Open,
}

/// A contract term end: a renewal due date and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    pub subscription_id: String,
    /// When the term (and so this due date) became known: the event that opened it.
    pub opened: Timestamp,
    pub due: Timestamp,
    /// ARR of the line in the term that ends (base minor units).
    pub arr_due: i64,
    pub outcome: RenewalOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub ts: Timestamp,
    pub invoice_id: String,
    pub amount: i64,
    pub status: InvoiceStatus,
}

/// One account's folded revenue history.
#[derive(Clone, Debug, Default)]
pub struct AccountLedger {
    pub id: String,
    pub name: Option<String>,
    /// Attribute upserts in time order: (ts, key, value).
    pub attributes: Vec<(Timestamp, String, AttrValue)>,
    /// MRR timeline, ascending; before the first step the account had nothing.
    pub steps: Vec<Step>,
    pub movements: Vec<Movement>,
    pub renewals: Vec<Renewal>,
    pub invoices: Vec<Invoice>,
    /// Cancellations scheduled (notice given), for CS signals: (when given, effective at).
    pub cancellations_scheduled: Vec<(Timestamp, Timestamp)>,
    /// The first subscription event (a trial start, say): where time to value starts.
    pub first_subscription: Option<Timestamp>,
    /// Contacts, surveys, tickets, touchpoints, milestones, objectives, assessments.
    pub cs: CsLedger,
    /// Spans `(a, b)` of instants at which a fold sees another past before them than this
    /// one does: a group of changes from `a` to `b` (a fold at an instant inside holds only
    /// its first part), or a renewal opened at `a` whose due date an amendment at `b` moved
    /// earlier. Empty for nearly every account; whoever answers for an instant `t` with
    /// `a < t <= b` from this fold must fold at `t` instead (`tenure_health::checkpoint`).
    pub rewrites: Vec<(Timestamp, Timestamp)>,
    /// The earliest instant after the fold's `as_of` at which a fold of the same events
    /// sees more of this account: an event dated later, or a change the events imply (a
    /// scheduled cancellation or a term end taking effect, an unpaid line churning). A fold
    /// at any instant from `as_of` until then gives this same account; `None`: no such
    /// instant (`tenure_ledger::checkpoint` keeps a fold until it).
    pub changes_at: Option<Timestamp>,
}

impl AccountLedger {
    /// The state just before `t`: changes at exactly `t` belong to the period starting at `t`.
    pub fn state_before(&self, t: Timestamp) -> Option<&Step> {
        let i = self.steps.partition_point(|s| s.ts < t);
        if i == 0 { None } else { Some(&self.steps[i - 1]) }
    }

    pub fn mrr_before(&self, t: Timestamp) -> i64 {
        self.state_before(t).map_or(0, |s| s.mrr)
    }

    pub fn customer_before(&self, t: Timestamp) -> bool {
        self.state_before(t).is_some_and(|s| s.customer)
    }

    /// Committed MRR and ARR just before `t`: MRR without the lines whose end is known then.
    pub fn committed_before(&self, t: Timestamp) -> (i64, i64) {
        self.state_before(t).map_or((0, 0), |s| (s.committed_mrr, s.committed_arr))
    }

    /// What the MRR just before `t` changes by when its foreign-currency lines are valued at
    /// the closing rate of `t` (the rate in force just before it) instead of their booked
    /// rates: per line, the native MRR converted (rounded half away from zero) minus the
    /// booked base MRR. `None` when a currency has no rate.
    pub fn fx_revaluation_before(&self, t: Timestamp, fx: &FxTable) -> Option<i64> {
        let Some(s) = self.state_before(t) else { return Some(0) };
        let closing = Timestamp(t.0.saturating_sub(1));
        let mut total = 0i64;
        for (cur, native, booked) in s.fx.iter() {
            total += fx.convert(*native, *cur, closing)? - booked;
        }
        Some(total)
    }

    /// Movements with `start <= ts < end`.
    pub fn movements_in(&self, start: Timestamp, end: Timestamp) -> &[Movement] {
        let a = self.movements.partition_point(|m| m.ts < start);
        let b = self.movements.partition_point(|m| m.ts < end);
        &self.movements[a..b]
    }

    /// The latest value of an attribute set before `t`, else its earliest value (an account
    /// described after the fact still belongs to a segment).
    pub fn attribute_at(&self, key: &str, t: Timestamp) -> Option<&AttrValue> {
        let mut first = None;
        let mut latest = None;
        for (ts, k, v) in &self.attributes {
            if k != key {
                continue;
            }
            if first.is_none() {
                first = Some(v);
            }
            if *ts < t {
                latest = Some(v);
            }
        }
        latest.or(first)
    }

    /// Whether the account was a customer at any time in `[start, end)`.
    pub fn customer_during(&self, start: Timestamp, end: Timestamp) -> bool {
        self.customer_before(start)
            || self.steps.iter().any(|s| s.customer && start <= s.ts && s.ts < end)
    }

    /// The integral of service MRR over `[start, end)`, in base minor units (MRR x months).
    pub fn service_revenue(&self, start: Timestamp, end: Timestamp) -> i64 {
        let month = tenure_core::time::DAY as f64 * 365.25 / 12.0;
        let mut total = 0.0;
        let mut t = start;
        let mut mrr = self.state_before(start).map_or(0, |s| s.service_mrr);
        for s in self.steps.iter().filter(|s| start <= s.ts && s.ts < end) {
            total += mrr as f64 * (s.ts.0 - t.0) as f64 / month;
            t = s.ts;
            mrr = s.service_mrr;
        }
        total += mrr as f64 * (end.0 - t.0) as f64 / month;
        total.round() as i64
    }

    /// The due date of the account's next renewal still open at `t` (due at or after it).
    pub fn next_renewal(&self, t: Timestamp) -> Option<Timestamp> {
        self.renewals
            .iter()
            .filter(|r| r.outcome == RenewalOutcome::Open && r.due >= t)
            .map(|r| r.due)
            .min()
    }

    /// When the account first became a paying customer.
    pub fn first_paid(&self) -> Option<Timestamp> {
        self.movements.iter().find(|m| m.kind == MovementKind::New).map(|m| m.ts)
    }
}

/// A company-level cost (no account), converted to base currency at its period start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostEntry {
    pub category: CostCategory,
    pub amount: i64,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Something the fold noticed that a person should know (missing FX rate, ...).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic(pub String);

#[derive(Debug, Default)]
pub struct Ledger {
    /// Sorted by account id.
    pub accounts: Vec<AccountLedger>,
    pub costs: Vec<CostEntry>,
    pub diagnostics: Vec<Diagnostic>,
    pub as_of: Timestamp,
    /// The rates amounts were converted with (closing-rate figures need them); `None`: none.
    pub fx: Option<FxTable>,
}

impl Ledger {
    pub fn account(&self, id: &str) -> Option<&AccountLedger> {
        self.accounts.binary_search_by(|a| a.id.as_str().cmp(id)).ok().map(|i| &self.accounts[i])
    }
}

/// Raw per-account inputs in log order.
#[derive(Clone, Debug, Default)]
struct RawAccount {
    id: String,
    name: Option<(Timestamp, String)>,
    /// `account` events' attributes (their names are in `name`).
    attributes: Bodies,
    subs: Bodies,
    /// Where each of `subs` came from (same index; empty when sources are not kept, and
    /// possibly shorter than `subs` when builders with and without sources were merged).
    sub_sources: Vec<Option<SourceRef>>,
    invoices: Bodies,
    /// The customer-success events, folded by `cs::fold`.
    cs: Bodies,
}

/// Collects events (any order of arrival; log order breaks timestamp ties) for a fold.
#[derive(Clone, Debug, Default)]
pub struct LedgerBuilder {
    index: FxHashMap<String, usize>,
    /// Shared, so that a copy of the builder (a forecast's, taken under the service's
    /// lock) copies pointers to the accounts' events rather than the events; an account
    /// pushed to afterwards is copied alone. The ids and contact sightings are copied.
    raw: Vec<Arc<RawAccount>>,
    costs: Vec<RawCost>,
    /// Every (ts, contact, account) a contact event names, to find contacts who moved: the
    /// contact by its index in `contact_ids`, the account by its index in `raw` (16 bytes
    /// a sighting, where the two ids took about 120).
    contacts: Vec<(Timestamp, u32, u32)>,
    /// Each contact's index in `contact_ids`, and its sightings (indexes into `contacts`,
    /// for folding one account).
    by_contact: FxHashMap<Arc<str>, (u32, Vec<u32>)>,
    contact_ids: Vec<Arc<str>>,
    /// Whether subscription events keep their [`SourceRef`] (for `tenure explain`).
    sources: bool,
}

impl LedgerBuilder {
    pub fn new() -> LedgerBuilder {
        LedgerBuilder::default()
    }

    fn slot(&mut self, id: &str) -> &mut RawAccount {
        let i = self.slot_index(id);
        Arc::make_mut(&mut self.raw[i])
    }

    /// The index in `raw` of the account `id`, created if new.
    fn slot_index(&mut self, id: &str) -> usize {
        match self.index.get(id) {
            Some(i) => *i,
            None => {
                self.raw.push(Arc::new(RawAccount { id: id.to_string(), ..RawAccount::default() }));
                self.index.insert(id.to_string(), self.raw.len() - 1);
                self.raw.len() - 1
            }
        }
    }

    /// Notes that `contact` was seen at `ts` under the account at `account` in `raw`.
    fn sighting(&mut self, ts: Timestamp, contact: &str, account: u32) {
        let at = u32::try_from(self.contacts.len()).expect("fewer than 4 G contact events");
        match self.by_contact.get_mut(contact) {
            Some((c, seen)) => {
                seen.push(at);
                self.contacts.push((ts, *c, account));
            }
            None => {
                let c = u32::try_from(self.contact_ids.len()).expect("fewer than 4 G contacts");
                let id: Arc<str> = Arc::from(contact);
                self.contact_ids.push(Arc::clone(&id));
                self.by_contact.insert(id, (c, vec![at]));
                self.contacts.push((ts, c, account));
            }
        }
    }

    /// Where `contact` was last seen: the account of its latest sighting (of two at one
    /// instant, the one pushed last), and when.
    pub fn last_seen(&self, contact: &str) -> Option<(Timestamp, &str)> {
        let (_, seen) = self.by_contact.get(contact)?;
        let mut last: Option<(Timestamp, u32)> = None;
        for &i in seen {
            let (ts, _, a) = self.contacts[i as usize];
            if last.is_none_or(|(t, _)| ts >= t) {
                last = Some((ts, a));
            }
        }
        last.map(|(ts, a)| (ts, self.raw[a as usize].id.as_str()))
    }

    /// Each account's contacts seen later under another account, in every sighting.
    fn moves_by_account(&self) -> FxHashMap<String, Vec<(Timestamp, String, String)>> {
        self.moves_among(0..self.contacts.len() as u32)
    }

    /// Contacts seen under a second account have left the first: from the sightings at
    /// `at` (indexes into `contacts`, any order), each account's moves (when, contact,
    /// account joined), in the order of the contacts' ids, then time, then arrival. Ids are
    /// written out only for the moves.
    fn moves_among(
        &self,
        at: impl IntoIterator<Item = u32>,
    ) -> FxHashMap<String, Vec<(Timestamp, String, String)>> {
        let mut order: Vec<u32> = at.into_iter().collect();
        order.sort_by_key(|&i| {
            let (ts, c, _) = self.contacts[i as usize];
            (c, ts, i)
        });
        let mut moves: FxHashMap<String, Vec<(Timestamp, String, String)>> = FxHashMap::default();
        let contact = |i: &u32| self.contacts[*i as usize].1;
        for group in order.chunk_by(|a, b| contact(a) == contact(b)) {
            let mut current: Option<u32> = None;
            for &i in group {
                let (ts, c, a) = self.contacts[i as usize];
                if let Some(prev) = current
                    && prev != a
                {
                    moves.entry(self.raw[prev as usize].id.clone()).or_default().push((
                        ts,
                        self.contact_ids[c as usize].to_string(),
                        self.raw[a as usize].id.clone(),
                    ));
                }
                current = Some(a);
            }
        }
        // Grouped by the contacts' indexes (first seen first): by their ids instead.
        for list in moves.values_mut() {
            list.sort_by(|x, y| x.1.cmp(&y.1));
        }
        moves
    }

    /// Keeps where each subscription event came from, so that every [`Movement`] names
    /// its events (`sources`). Off by default: reports that do not explain a figure do not
    /// pay for it.
    pub fn keep_sources(mut self) -> LedgerBuilder {
        self.sources = true;
        self
    }

    /// Takes one event. Any event naming an unknown account creates it; kinds the revenue
    /// fold does not read only do that.
    pub fn push(&mut self, e: Event) {
        self.push_at(e, None);
    }

    /// As [`push`](Self::push), with the event's record index in its log lane, its source
    /// when it has no `message_id` (and the builder keeps sources).
    pub fn push_at(&mut self, e: Event, position: Option<u64>) {
        let keep = self.sources;
        let Event { ts, account, body, message_id } = e;
        let Some(account) = account else {
            if let EventBody::Cost { category, amount, period_start, period_end } = body {
                self.costs.push((ts, category, amount, period_start, period_end));
            }
            return;
        };
        let sighting = match &body {
            EventBody::Contact { contact_id, .. } => Some(contact_id.clone()),
            _ => None,
        };
        let account_ix = self.slot_index(&account);
        let slot = Arc::make_mut(&mut self.raw[account_ix]);
        match body {
            EventBody::Account { name, attributes } => {
                if let Some(n) = name
                    && slot.name.as_ref().is_none_or(|(t, _)| *t <= ts)
                {
                    slot.name = Some((ts, n));
                }
                if !attributes.is_empty() {
                    slot.attributes.push(ts, &EventBody::Account { name: None, attributes });
                }
            }
            EventBody::Subscription(s) => {
                if keep {
                    let source = match message_id {
                        Some(m) => Some(SourceRef::Message(m.into_boxed_str())),
                        None => position.map(SourceRef::Log),
                    };
                    slot.sub_sources.resize(slot.subs.len(), None);
                    slot.sub_sources.push(source);
                }
                slot.subs.push(ts, &EventBody::Subscription(s))
            }
            invoice @ EventBody::Invoice { .. } => slot.invoices.push(ts, &invoice),
            // High-volume activity is not folded here (the columnar store reads it).
            EventBody::Usage { .. } | EventBody::Email { .. } | EventBody::WebVisit { .. } => {}
            other => slot.cs.push(ts, &other),
        }
        if let Some(contact) = sighting {
            let account = u32::try_from(account_ix).expect("fewer than 4 G accounts");
            self.sighting(ts, &contact, account);
        }
    }

    pub fn accounts(&self) -> usize {
        self.raw.len()
    }

    /// Takes everything `other` collected, as if its events had been pushed after ours.
    /// Builders fed from different lanes (one per event kind) merge into the same result
    /// as one builder fed with every lane, which lets lanes be read in parallel.
    pub fn merge(&mut self, other: LedgerBuilder) {
        // `other`'s accounts by their index there, for its sightings.
        let ids: Vec<String> = other.raw.iter().map(|r| r.id.clone()).collect();
        for raw in other.raw {
            let raw = Arc::unwrap_or_clone(raw);
            let slot = self.slot(&raw.id);
            if let Some((ts, name)) = raw.name
                && slot.name.as_ref().is_none_or(|(t, _)| *t <= ts)
            {
                slot.name = Some((ts, name));
            }
            // Move rather than copy when this side holds nothing yet (the common case:
            // one lane per builder).
            fn take<T>(into: &mut Vec<T>, from: Vec<T>) {
                if into.is_empty() {
                    *into = from;
                } else {
                    into.extend(from);
                }
            }
            slot.attributes.append(raw.attributes);
            if !raw.sub_sources.is_empty() {
                slot.sub_sources.resize(slot.subs.len(), None);
                take(&mut slot.sub_sources, raw.sub_sources);
            }
            slot.subs.append(raw.subs);
            slot.invoices.append(raw.invoices);
            slot.cs.append(raw.cs);
        }
        self.sources |= other.sources;
        self.costs.extend(other.costs);
        // `other`'s sightings after ours, in its order, named again by our indexes.
        for (ts, c, a) in other.contacts {
            let account =
                u32::try_from(self.index[&ids[a as usize]]).expect("fewer than 4 G accounts");
            self.sighting(ts, &other.contact_ids[c as usize], account);
        }
    }

    /// Whether an event has named the account.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The ids of every account seen, in arrival order.
    pub fn account_ids(&self) -> impl Iterator<Item = &str> {
        self.raw.iter().map(|r| r.id.as_str())
    }

    /// Folds one account as [`finish`](Self::finish) would, leaving the builder as it was:
    /// a live service keeps the builder and re-folds the accounts new events touch.
    pub fn fold_one(
        &self,
        id: &str,
        cfg: &RevenueConfig,
        as_of: Timestamp,
    ) -> Option<(AccountLedger, Vec<Diagnostic>)> {
        let raw = &self.raw[*self.index.get(id)?];
        // This account's contacts, wherever they were seen: those seen later elsewhere moved.
        let contacts = raw.cs.contacts();
        let mut mine: Vec<&str> = contacts.iter().map(String::as_str).collect();
        mine.sort_unstable();
        mine.dedup();
        let at = mine
            .iter()
            .flat_map(|c| self.by_contact.get(*c).into_iter().flat_map(|(_, seen)| seen))
            .copied();
        let moves = self.moves_among(at).remove(id).unwrap_or_default();
        Some(fold::fold_account(raw, cfg, as_of, &moves))
    }

    /// Folds every account (in parallel) as known at `as_of`.
    pub fn finish(self, cfg: &RevenueConfig, as_of: Timestamp) -> Ledger {
        let moves = self.moves_by_account();
        let results: Vec<(AccountLedger, Vec<Diagnostic>)> = self
            .raw
            .into_par_iter()
            .map(|raw| {
                let m = moves.get(&raw.id).map_or(&[][..], Vec::as_slice);
                fold::fold_account(&raw, cfg, as_of, m)
            })
            .collect();
        assemble(results, &self.costs, cfg, as_of)
    }

    /// Folds every account as [`finish`](Self::finish) does, leaving the builder as it
    /// was: each account is folded from its inputs where they are, not copied (a live
    /// service and a forecast's backtests fold the same builder at several instants).
    pub fn fold_all(&self, cfg: &RevenueConfig, as_of: Timestamp) -> Ledger {
        let moves = self.moves_by_account();
        let results: Vec<(AccountLedger, Vec<Diagnostic>)> = self
            .raw
            .par_iter()
            .map(|raw| {
                let m = moves.get(&raw.id).map_or(&[][..], Vec::as_slice);
                fold::fold_account(raw, cfg, as_of, m)
            })
            .collect();
        assemble(results, &self.costs, cfg, as_of)
    }

    /// Makes `ledger` what [`fold_all`](Self::fold_all) gives at `as_of`, in place when it
    /// is a fold of this builder's accounts (at any instant): a block of accounts is folded
    /// at a time, in parallel, and written over the old, so that two ledgers are never
    /// held at once (a live service's daily refresh at a million accounts). Each account
    /// is the old fold or the new one until the end. Otherwise it is folded anew.
    pub fn refold(&self, ledger: &mut Ledger, cfg: &RevenueConfig, as_of: Timestamp) {
        let Some(mut r) = self.refold_start(ledger, as_of) else {
            *ledger = self.fold_all(cfg, as_of);
            return;
        };
        for block in ledger.accounts.chunks_mut(4096) {
            self.refold_block(block, &mut r, cfg);
        }
        self.refold_finish(ledger, r, cfg);
    }

    /// The start of [`refold`](Self::refold) done a step at a time (a live service answers
    /// between its blocks): `None` when `ledger` is not a fold of this builder's accounts
    /// (fold it anew); otherwise fold its accounts with [`refold_block`](Self::refold_block),
    /// every one once, then [`refold_finish`](Self::refold_finish).
    pub fn refold_start(&self, ledger: &Ledger, as_of: Timestamp) -> Option<Refold> {
        let same = ledger.accounts.len() == self.raw.len()
            && ledger.accounts.iter().all(|a| self.index.contains_key(&a.id));
        same.then(|| Refold { moves: self.moves_by_account(), diagnostics: Vec::new(), as_of })
    }

    /// Folds `block` (accounts of the ledger given to [`refold_start`](Self::refold_start))
    /// again at the refold's instant, in parallel, in place.
    pub fn refold_block(&self, block: &mut [AccountLedger], r: &mut Refold, cfg: &RevenueConfig) {
        let (moves, as_of) = (&r.moves, r.as_of);
        let found: Vec<Vec<Diagnostic>> = block
            .par_iter_mut()
            .map(|a| {
                let raw = &self.raw[self.index[&a.id]];
                let m = moves.get(&raw.id).map_or(&[][..], Vec::as_slice);
                let (folded, d) = fold::fold_account(raw, cfg, as_of, m);
                *a = folded;
                d
            })
            .collect();
        r.diagnostics.extend(found.into_iter().flatten());
    }

    /// Ends a refold: the company's costs and the diagnostics at its instant.
    pub fn refold_finish(&self, ledger: &mut Ledger, r: Refold, cfg: &RevenueConfig) {
        let accounts = std::mem::take(&mut ledger.accounts);
        *ledger = finish(accounts, r.diagnostics, &self.costs, cfg, r.as_of);
    }
}

/// A refold in progress ([`LedgerBuilder::refold_start`]).
pub struct Refold {
    moves: FxHashMap<String, Vec<(Timestamp, String, String)>>,
    diagnostics: Vec<Diagnostic>,
    as_of: Timestamp,
}

type RawCost = (Timestamp, CostCategory, Money, Timestamp, Timestamp);

/// The ledger of the accounts' folds: sorted by id, with the company's costs known at
/// `as_of` converted, and every diagnostic once.
fn assemble(
    mut results: Vec<(AccountLedger, Vec<Diagnostic>)>,
    raw_costs: &[RawCost],
    cfg: &RevenueConfig,
    as_of: Timestamp,
) -> Ledger {
    results.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let diagnostics: Vec<Diagnostic> =
        results.iter().flat_map(|(_, d)| d.iter().cloned()).collect();
    let accounts = results.into_iter().map(|(a, _)| a).collect();
    finish(accounts, diagnostics, raw_costs, cfg, as_of)
}

/// The ledger of `accounts` (folded, sorted by id) and their `diagnostics`: with the
/// company's costs known at `as_of` converted, and every diagnostic once.
fn finish(
    accounts: Vec<AccountLedger>,
    mut diagnostics: Vec<Diagnostic>,
    raw_costs: &[RawCost],
    cfg: &RevenueConfig,
    as_of: Timestamp,
) -> Ledger {
    let mut costs = Vec::new();
    for &(ts, category, amount, start, end) in raw_costs {
        if ts > as_of {
            continue;
        }
        let converted = cfg.fx.convert(amount.minor, amount.currency, start).unwrap_or_else(|| {
            diagnostics.push(fold::missing_rate(amount.currency, &cfg.fx));
            amount.minor
        });
        costs.push(CostEntry { category, amount: converted, start, end });
    }
    diagnostics.sort();
    diagnostics.dedup();
    Ledger { accounts, costs, diagnostics, as_of, fx: Some(cfg.fx.clone()) }
}

#[cfg(test)]
mod tests;
