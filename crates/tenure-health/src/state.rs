//! The health of every account at one instant, kept up to date as events arrive: after
//! new events, only the accounts they touched are recomputed (their features, score and
//! churn probability; drivers are explained when asked); the rest are left as they were.
//! This is what the service, its alerts and the dashboard read.

use crate::UsageByAccount;
use crate::features::{self, Context, Row};
use crate::model::{Driver, Model};
use crate::scorecard::Scorecards;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use tenure_core::time::Timestamp;
use tenure_ledger::{AccountLedger, Ledger};

/// One account's health at the state's instant.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountHealth {
    pub row: Row,
    pub scorecard: Option<String>,
    pub score: Option<f64>,
    pub colour: &'static str,
    pub probability: Option<f64>,
}

impl AccountHealth {
    /// Up to `top` drivers of the account's churn probability under `model`, the model that
    /// gave [`probability`](Self::probability) (none without one). Explained when asked:
    /// explaining a model costs a hundred times its prediction, and only the accounts shown
    /// or alerted on need it.
    pub fn drivers(&self, model: Option<&Model>, top: usize) -> Vec<Driver> {
        match model.filter(|_| self.probability.is_some()) {
            Some(m) => m.explain(&[&self.row], top).pop().map(|x| x.1).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

/// Every paying account's health at `t`.
pub struct HealthState {
    pub t: Timestamp,
    pub accounts: FxHashMap<String, AccountHealth>,
    /// Accounts computed by updates since the state was built (the work they did).
    pub recomputed: usize,
}

/// The health of `accounts` at `t` (`None`: not a paying customer), computed in parallel;
/// the model predicts their rows together.
fn compute(
    accounts: &[&AccountLedger],
    usage: &UsageByAccount,
    t: Timestamp,
    ctx: &Context<'_>,
    cards: &Scorecards,
    model: Option<&Model>,
) -> Vec<Option<AccountHealth>> {
    let mut out: Vec<Option<AccountHealth>> = accounts
        .par_iter()
        .map(|a| {
            let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
            let row = features::snapshot(a, u, t, ctx)?;
            let card = cards.for_row(&row);
            let score = card.map(|c| c.score(&row));
            Some(AccountHealth {
                scorecard: card.map(|c| c.name.clone()),
                score: score.as_ref().and_then(|s| s.value),
                colour: score.as_ref().map_or("grey", |s| s.colour),
                probability: None,
                row,
            })
        })
        .collect();
    if let Some(m) = model {
        let p = m.predict(&out.iter().flatten().map(|h| &h.row).collect::<Vec<_>>());
        for (h, p) in out.iter_mut().flatten().zip(p) {
            h.probability = Some(p);
        }
    }
    out
}

/// Accounts computed together: their rows are held, and predicted, a block at a time.
const BLOCK: usize = 4096;

impl HealthState {
    /// Computes every account (in parallel).
    pub fn build(
        ledger: &Ledger,
        usage: &UsageByAccount,
        t: Timestamp,
        ctx: &Context<'_>,
        cards: &Scorecards,
        model: Option<&Model>,
    ) -> HealthState {
        let mut accounts = FxHashMap::default();
        accounts.reserve(ledger.accounts.len());
        for block in ledger.accounts.chunks(BLOCK) {
            let refs: Vec<&AccountLedger> = block.iter().collect();
            let computed = compute(&refs, usage, t, ctx, cards, model);
            for (a, h) in block.iter().zip(computed) {
                if let Some(h) = h {
                    accounts.insert(a.id.clone(), h);
                }
            }
        }
        HealthState { t, accounts, recomputed: 0 }
    }

    /// Recomputes the accounts in `touched` from the updated ledger and usage (an account
    /// no longer paying leaves the state) and returns those whose score, colour or
    /// probability changed. Every other account keeps its entry: at the same instant an
    /// account's features depend on its own events only (a contact who turns up under
    /// another account touches both accounts). At a new instant (`t` moved), every
    /// account needs recomputing: a rebuild, or updates that together name them all.
    pub fn update(
        &mut self,
        ledger: &Ledger,
        usage: &UsageByAccount,
        touched: &[&str],
        ctx: &Context<'_>,
        cards: &Scorecards,
        model: Option<&Model>,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        // Computed in parallel, a block at a time; taken in order.
        let t = self.t;
        let computed = touched.chunks(BLOCK).flat_map(|block| {
            let found: Vec<Option<&AccountLedger>> =
                block.iter().map(|id| ledger.account(id)).collect();
            let mut new = compute(
                &found.iter().flatten().copied().collect::<Vec<_>>(),
                usage,
                t,
                ctx,
                cards,
                model,
            )
            .into_iter();
            let new: Vec<Option<AccountHealth>> =
                found.iter().map(|a| a.and_then(|_| new.next().flatten())).collect();
            block.iter().zip(new)
        });
        for (id, new) in computed {
            self.recomputed += 1;
            let differs = match (self.accounts.get(*id), &new) {
                (Some(o), Some(n)) => {
                    o.score != n.score || o.colour != n.colour || o.probability != n.probability
                }
                (None, None) => false,
                _ => true,
            };
            if differs {
                changed.push(id.to_string());
            }
            match new {
                Some(n) => {
                    self.accounts.insert(id.to_string(), n);
                }
                None => {
                    self.accounts.remove(*id);
                }
            }
        }
        changed
    }
}
