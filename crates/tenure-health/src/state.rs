//! The health of every account at one instant, kept up to date as events arrive: after
//! new events, only the accounts they touched are recomputed (their features, score, churn
//! probability and drivers); the rest are left as they were. This is what the service, its
//! alerts and the dashboard read.

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
    pub drivers: Vec<Driver>,
}

/// Every paying account's health at `t`.
pub struct HealthState {
    pub t: Timestamp,
    pub accounts: FxHashMap<String, AccountHealth>,
    /// Accounts computed by updates since the state was built (the work they did).
    pub recomputed: usize,
}

fn compute(
    a: &AccountLedger,
    usage: &UsageByAccount,
    t: Timestamp,
    ctx: &Context<'_>,
    cards: &Scorecards,
    model: Option<&Model>,
) -> Option<AccountHealth> {
    let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
    let row = features::snapshot(a, u, t, ctx)?;
    let card = cards.for_row(&row);
    let score = card.map(|c| c.score(&row));
    let (probability, drivers) = match model {
        Some(m) => {
            let (p, d) = m.explain(&[&row], 3).pop().expect("one row in, one out");
            (Some(p), d)
        }
        None => (None, Vec::new()),
    };
    Some(AccountHealth {
        scorecard: card.map(|c| c.name.clone()),
        score: score.as_ref().and_then(|s| s.value),
        colour: score.as_ref().map_or("grey", |s| s.colour),
        probability,
        drivers,
        row,
    })
}

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
        let accounts = ledger
            .accounts
            .par_iter()
            .filter_map(|a| compute(a, usage, t, ctx, cards, model).map(|h| (a.id.clone(), h)))
            .collect();
        HealthState { t, accounts, recomputed: 0 }
    }

    /// Recomputes the accounts in `touched` from the updated ledger and usage (an account
    /// no longer paying leaves the state) and returns those whose score, colour or
    /// probability changed. Every other account keeps its entry: at the same instant an
    /// account's features depend on its own events only (a contact who turns up under
    /// another account touches both accounts). A new instant needs a rebuild.
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
        let computed = touched.chunks(4096).flat_map(|block| {
            let new: Vec<_> = block
                .par_iter()
                .map(|id| ledger.account(id).and_then(|a| compute(a, usage, t, ctx, cards, model)))
                .collect();
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
