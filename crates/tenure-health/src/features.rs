//! Point-in-time account features: everything a snapshot at `t` knows is computed from
//! events strictly before `t` (usage from the calendar months before `t`'s month), so a
//! model trained on past snapshots never sees its own future.

use tenure_core::event::{
    ContactRole, Sentiment, Severity, SurveyKind, SurveyScore, TicketCategory,
};
use tenure_core::time::{DAY, PeriodUnit, Timestamp};
use tenure_kpi::usage::{Feature, UsageMonth};
use tenure_ledger::{AccountLedger, MovementKind};

/// Where a feature points when it drives risk: the causes a CSM acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    LowAdoption,
    ChampionLeft,
    SupportPain,
    Price,
    Detractor,
    Renewal,
    Account,
}

impl Cause {
    /// Whether a CSM can act on it: drivers name these; the account's size, age, plan and
    /// renewal date explain risk but are not causes.
    pub fn actionable(self) -> bool {
        self != Cause::Account
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::LowAdoption => "low_adoption",
            Cause::ChampionLeft => "champion_left",
            Cause::SupportPain => "support_pain",
            Cause::Price => "price",
            Cause::Detractor => "detractor",
            Cause::Renewal => "renewal",
            Cause::Account => "account",
        }
    }
}

/// A numeric feature: its name (as in scorecards and model files), its cause and how its
/// value reads in a sentence.
pub struct Def {
    pub name: &'static str,
    pub cause: Cause,
    /// Which side of the usual value is the risky one (`Neither` for size and context).
    pub risky: Risky,
    pub describe: fn(f64) -> String,
}

/// The side of a feature's usual value where churn risk lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Risky {
    Higher,
    Lower,
    /// A change: risky when negative (a decline), and more than usual.
    Decline,
    /// A change: risky when positive (a surge), and more than usual.
    Rise,
    Neither,
}

fn pct(x: f64) -> String {
    format!("{:.0}%", (x * 100.0).abs())
}

fn days(x: f64) -> String {
    if x.round() == 1.0 { "1 day".into() } else { format!("{x:.0} days") }
}

/// `n thing` or `n things`.
fn count(x: f64, thing: &str) -> String {
    if x.round() == 1.0 { format!("1 {thing}") } else { format!("{x:.0} {thing}s") }
}

fn change(what: &str, x: f64, over: &str) -> String {
    if x < 0.0 {
        format!("{what} down {} over {over}", pct(x))
    } else {
        format!("{what} up {} over {over}", pct(x))
    }
}

macro_rules! defs {
    ($($id:ident = $name:literal, $cause:ident, $risky:ident, $describe:expr;)*) => {
        /// Indexes of the numeric features.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum F { $($id,)* }
        /// Every numeric feature, in index order.
        pub const DEFS: &[Def] =
            &[$(Def { name: $name, cause: Cause::$cause, risky: Risky::$risky, describe: $describe },)*];
    };
}

defs! {
    MRR = "mrr", Account, Neither, |x| format!("MRR {x:.0}");
    SEATS = "seats", Account, Neither, |x| count(x, "seat");
    TENURE = "tenure_months", Account, Neither, |x| format!("customer for {x:.0} months");
    MRR_CHANGE = "mrr_change_90d", Price, Decline, |x| change("MRR", x, "90 days");
    CONTRACTIONS = "contractions_180d", Price, Higher, |x| format!("{} in 180 days", count(x, "contraction"));
    EXPANSIONS = "expansions_180d", Account, Neither, |x| format!("{} in 180 days", count(x, "expansion"));
    FAILED_PAYMENTS = "failed_payments_90d", Price, Higher, |x| format!("{} in 90 days", count(x, "failed payment"));
    CANCEL_SCHEDULED = "cancellation_scheduled", Renewal, Higher, |x| {
        if x > 0.0 { "cancellation scheduled".into() } else { "no cancellation scheduled".into() }
    };
    DAYS_TO_RENEWAL = "days_to_renewal", Account, Neither, |x| format!("renewal in {}", days(x));
    MAU = "active_users", LowAdoption, Lower, |x| format!("{} last month", count(x, "active user"));
    UTILISATION = "licence_utilisation", LowAdoption, Lower, |x| format!("{} of seats active", pct(x));
    MAU_CHANGE = "active_users_change_3m", LowAdoption, Decline, |x| change("active users", x, "3 months");
    EVENTS_PER_USER = "events_per_user", LowAdoption, Lower, |x| format!("{x:.0} events per active user last month");
    EVENTS_CHANGE = "usage_change_3m", LowAdoption, Decline, |x| change("usage", x, "3 months");
    ACTIVE_DAYS = "active_days", LowAdoption, Lower, |x| format!("active on {x:.0} days last month");
    DEPTH = "depth_of_usage", LowAdoption, Lower, |x| format!("{} of the plan's features used", pct(x));
    DAYS_SINCE_USE = "days_since_last_use", LowAdoption, Higher, |x| format!("last used {} ago", days(x));
    TICKETS = "tickets_90d", SupportPain, Higher, |x| format!("{} in 90 days", count(x, "ticket"));
    DEFECTS = "defect_tickets_90d", SupportPain, Higher, |x| format!("{} in 90 days", count(x, "defect ticket"));
    URGENT = "urgent_tickets_90d", SupportPain, Higher, |x| format!("{} in 90 days", count(x, "high or urgent ticket"));
    TICKET_SURGE = "ticket_change_90d", SupportPain, Rise, |x| {
        if x >= 0.0 { format!("{x:.0} more tickets than the 90 days before") }
        else { format!("{:.0} fewer tickets than the 90 days before", -x) }
    };
    NPS = "nps_last", Detractor, Lower, |x| {
        let c = if x <= 6.0 { "detractor" } else if x <= 8.0 { "passive" } else { "promoter" };
        format!("latest NPS answer {x:.0} ({c})")
    };
    NPS_CHANGE = "nps_change", Detractor, Decline, |x| format!("NPS answer moved {x:+.0} points");
    DETRACTORS = "detractor_answers_180d", Detractor, Higher, |x| format!("{} in 180 days", count(x, "detractor answer"));
    CSAT = "csat_180d", SupportPain, Lower, |x| format!("CSAT {x:.1} on average in 180 days");
    DAYS_SINCE_RESPONSE = "days_since_survey_answer", Detractor, Higher, |x| format!("last survey answer {} ago", days(x));
    TOUCHPOINTS = "touchpoints_90d", Account, Neither, |x| format!("{} in 90 days", count(x, "touchpoint"));
    NEGATIVE_TOUCHPOINTS = "negative_touchpoints_90d", Detractor, Higher, |x| format!("{} in 90 days", count(x, "negative touchpoint"));
    CHAMPION = "champion", ChampionLeft, Lower, |x| {
        if x > 0.0 { "a champion in place".into() } else { "no champion".into() }
    };
    CHAMPION_LEFT = "days_since_champion_left", ChampionLeft, Lower, |x| format!("champion left {} ago", days(x));
    KEY_CONTACTS_LEFT = "key_contacts_left_90d", ChampionLeft, Higher, |x| format!("{} left in 90 days", count(x, "key contact"));
    COVERAGE = "contact_coverage", ChampionLeft, Lower, |x| format!("{} of champion, decision maker and sponsor known", pct(x));
    RELATIONSHIP = "csm_relationship", Account, Lower, |x| format!("CSM rates the relationship {x:.0}/5");
    STRATEGIC = "strategic_importance", Account, Neither, |x| format!("strategic importance {x:.0}/5");
    CHANGE_REQUESTS = "change_requests_180d", Account, Neither, |x| format!("{} in 180 days", count(x, "change request"));
}

/// Numeric features per row.
pub const N: usize = DEFS.len();

/// The categorical features, after the numeric ones.
pub const CATEGORICAL: [&str; 2] = ["plan", "segment"];

/// The index of a feature name (numeric first, then categorical).
pub fn index(name: &str) -> Option<usize> {
    DEFS.iter()
        .position(|d| d.name == name)
        .or_else(|| CATEGORICAL.iter().position(|c| *c == name).map(|i| N + i))
}

/// One account at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Numeric features (`NaN` = unknown), indexed by [`F`].
    pub num: [f64; N],
    pub plan: Option<String>,
    pub segment: Option<String>,
    /// MRR just before the snapshot, base minor units.
    pub mrr: i64,
}

impl Row {
    pub fn get(&self, f: F) -> f64 {
        self.num[f as usize]
    }
}

/// What the features need besides the account: the product's feature catalogue (its order
/// is the bit order of [`UsageMonth::features`]) and the attribute naming the segment.
pub struct Context<'a> {
    pub catalogue: &'a [Feature],
    pub segment_key: &'a str,
}

fn ago(t: Timestamp, d: i64) -> Timestamp {
    Timestamp(t.0 - d * DAY)
}

fn in_window(ts: Timestamp, t: Timestamp, d: i64) -> bool {
    ts >= ago(t, d) && ts < t
}

fn ratio_change(now: f64, before: f64) -> f64 {
    if before > 0.0 { (now - before) / before } else { f64::NAN }
}

/// The features of `a` at `t`; `None` when the account is not a paying customer just
/// before `t`. `usage` is the account's months in order.
pub fn snapshot(
    a: &AccountLedger,
    usage: &[UsageMonth],
    t: Timestamp,
    ctx: &Context<'_>,
) -> Option<Row> {
    let state = a.state_before(t).filter(|s| s.customer && s.mrr > 0)?;
    let mut num = [f64::NAN; N];
    let mut set = |f: F, v: f64| num[f as usize] = v;
    set(F::MRR, state.mrr as f64 / 100.0);
    set(F::SEATS, state.seats as f64);
    if let Some(first) = a.first_paid().filter(|f| *f < t) {
        set(F::TENURE, (t.0 - first.0) as f64 / (DAY as f64 * 365.25 / 12.0));
    }
    let before = a.mrr_before(ago(t, 90)) as f64;
    set(F::MRR_CHANGE, ratio_change(state.mrr as f64, before));
    let moves = a.movements_in(ago(t, 180), t);
    set(
        F::CONTRACTIONS,
        moves.iter().filter(|m| m.kind == MovementKind::Contraction).count() as f64,
    );
    set(F::EXPANSIONS, moves.iter().filter(|m| m.kind == MovementKind::Expansion).count() as f64);
    set(
        F::FAILED_PAYMENTS,
        a.invoices
            .iter()
            .filter(|i| {
                in_window(i.ts, t, 90) && i.status == tenure_core::event::InvoiceStatus::Failed
            })
            .count() as f64,
    );
    set(
        F::CANCEL_SCHEDULED,
        a.cancellations_scheduled.iter().any(|(given, at)| *given < t && *at >= t) as u8 as f64,
    );
    if let Some(due) = a.renewals.iter().filter(|r| r.opened < t && r.due >= t).map(|r| r.due).min()
    {
        set(F::DAYS_TO_RENEWAL, (due.0 - t.0) as f64 / DAY as f64);
    }
    // Usage: the calendar months before t's month.
    let this = PeriodUnit::Month.floor(t);
    let month = |k: i64| {
        let m = this.add_months(-k);
        usage.binary_search_by_key(&m, |u| u.month).ok().map(|i| &usage[i])
    };
    let known = usage.partition_point(|u| u.month < this);
    let (last, back3) = (month(1), month(4));
    let users = last.map_or(0, |u| u.users) as f64;
    let users3 = back3.map_or(0, |u| u.users) as f64;
    let events = last.map_or(0, |u| u.events) as f64;
    let events3 = back3.map_or(0, |u| u.events) as f64;
    set(F::MAU, users);
    if state.seats > 0 {
        set(F::UTILISATION, users / state.seats as f64);
    }
    set(F::MAU_CHANGE, ratio_change(users, users3));
    if users > 0.0 {
        set(F::EVENTS_PER_USER, events / users);
    }
    set(F::EVENTS_CHANGE, ratio_change(events, events3));
    set(F::ACTIVE_DAYS, last.map_or(0, |u| u.days) as f64);
    let plan = state.plan.as_deref();
    let available: u64 = ctx
        .catalogue
        .iter()
        .take(64)
        .enumerate()
        .filter(|(_, f)| f.in_plan(plan))
        .fold(0, |m, (i, _)| m | 1 << i);
    if available != 0 {
        let used = last.map_or(0, |u| u.features) & available;
        set(F::DEPTH, f64::from(used.count_ones()) / f64::from(available.count_ones()));
    }
    if let Some(u) = usage[..known].iter().rev().find(|u| u.events > 0) {
        set(F::DAYS_SINCE_USE, ((t.0 - u.last_day.0) as f64 / DAY as f64).max(0.0).floor());
    }
    // Support.
    let cs = &a.cs;
    let opened = |lo: i64, hi: i64| {
        cs.tickets.iter().filter(move |k| k.opened >= ago(t, lo) && k.opened < ago(t, hi))
    };
    let recent: Vec<_> = opened(90, 0).collect();
    set(F::TICKETS, recent.len() as f64);
    set(
        F::DEFECTS,
        recent
            .iter()
            .filter(|k| matches!(k.category_first, Some((ts, TicketCategory::Defect)) if ts < t))
            .count() as f64,
    );
    set(
        F::URGENT,
        recent
            .iter()
            .filter(|k| matches!(k.severity_first, Some((ts, Severity::High | Severity::Urgent)) if ts < t))
            .count() as f64,
    );
    set(F::TICKET_SURGE, recent.len() as f64 - opened(180, 90).count() as f64);
    // Voice of the customer.
    let answers: Vec<(Timestamp, u8)> = cs
        .responses
        .iter()
        .filter(|r| r.ts < t)
        .filter_map(|r| match r.score {
            SurveyScore::Nps(s) if r.survey == SurveyKind::Nps => Some((r.ts, s)),
            _ => None,
        })
        .collect();
    if let Some((_, s)) = answers.last() {
        set(F::NPS, f64::from(*s));
        if answers.len() >= 2 {
            set(F::NPS_CHANGE, f64::from(*s) - f64::from(answers[answers.len() - 2].1));
        }
    }
    set(
        F::DETRACTORS,
        answers.iter().filter(|(ts, s)| in_window(*ts, t, 180) && *s <= 6).count() as f64,
    );
    let csat: Vec<f64> = cs
        .responses
        .iter()
        .filter(|r| in_window(r.ts, t, 180))
        .filter_map(|r| match r.score {
            SurveyScore::Csat(s) => Some(f64::from(s)),
            _ => None,
        })
        .collect();
    if !csat.is_empty() {
        set(F::CSAT, csat.iter().sum::<f64>() / csat.len() as f64);
    }
    if let Some(r) = cs.responses.iter().rev().find(|r| r.ts < t) {
        set(F::DAYS_SINCE_RESPONSE, ((t.0 - r.ts.0) / DAY) as f64);
    }
    let touch: Vec<_> = cs.touchpoints.iter().filter(|(ts, ..)| in_window(*ts, t, 90)).collect();
    set(F::TOUCHPOINTS, touch.len() as f64);
    set(
        F::NEGATIVE_TOUCHPOINTS,
        touch.iter().filter(|(_, _, s)| *s == Some(Sentiment::Negative)).count() as f64,
    );
    // Relationship.
    let contacts = cs.contacts_seen_before(t);
    let has = |r: ContactRole| contacts.iter().any(|c| c.active && c.role == Some(r));
    set(F::CHAMPION, has(ContactRole::Champion) as u8 as f64);
    let key = [ContactRole::Champion, ContactRole::DecisionMaker, ContactRole::ExecutiveSponsor];
    set(F::COVERAGE, key.iter().filter(|r| has(**r)).count() as f64 / 3.0);
    let left = |c: &tenure_ledger::cs::ContactSeen<'_>| c.left_at.filter(|l| *l < t);
    if let Some(l) =
        contacts.iter().filter(|c| c.role == Some(ContactRole::Champion)).filter_map(left).max()
    {
        set(F::CHAMPION_LEFT, ((t.0 - l.0) / DAY) as f64);
    }
    let key_left = contacts
        .iter()
        .filter(|c| {
            matches!(
                c.role,
                Some(
                    ContactRole::Champion
                        | ContactRole::ExecutiveSponsor
                        | ContactRole::Admin
                        | ContactRole::DecisionMaker
                )
            )
        })
        .filter_map(left)
        .filter(|l| *l >= ago(t, 90))
        .count();
    set(F::KEY_CONTACTS_LEFT, key_left as f64);
    if let Some((rel, imp)) = cs.assessment_before(t) {
        set(F::RELATIONSHIP, rel.map_or(f64::NAN, f64::from));
        set(F::STRATEGIC, imp.map_or(f64::NAN, f64::from));
    }
    set(
        F::CHANGE_REQUESTS,
        cs.change_requests.iter().filter(|(ts, ..)| in_window(*ts, t, 180)).count() as f64,
    );
    let segment = a.attribute_at(ctx.segment_key, t).map(|v| v.label());
    Some(Row { num, plan: state.plan.as_deref().map(str::to_string), segment, mrr: state.mrr })
}

/// What a model predicts of a snapshot at `t`, over `[t, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The account churns (an MRR churn movement).
    #[default]
    Churn,
    /// A contract term known at `t` and due in the window is not renewed. Only snapshots
    /// with such a term, decided by `as_of`, are labelled.
    RenewalLost,
}

impl Outcome {
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "churn" => Some(Outcome::Churn),
            "renewal" | "renewal_lost" | "nonrenewal" => Some(Outcome::RenewalLost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Churn => "churn",
            Outcome::RenewalLost => "renewal_lost",
        }
    }

    /// The label of a snapshot; `None` when it has none (no renewal due, or undecided).
    pub fn label(self, a: &AccountLedger, t: Timestamp, end: Timestamp) -> Option<bool> {
        match self {
            Outcome::Churn => Some(churned(a, t, end)),
            Outcome::RenewalLost => {
                let decided: Vec<bool> = a
                    .renewals
                    .iter()
                    .filter(|r| r.opened < t && r.due >= t && r.due < end)
                    .filter_map(|r| match r.outcome {
                        tenure_ledger::RenewalOutcome::Won { .. } => Some(false),
                        tenure_ledger::RenewalOutcome::Lost { .. } => Some(true),
                        tenure_ledger::RenewalOutcome::Open => None,
                    })
                    .collect();
                (!decided.is_empty()).then(|| decided.iter().any(|l| *l))
            }
        }
    }
}

/// Whether the account churned (an MRR churn movement) in `[t, end)`.
pub fn churned(a: &AccountLedger, t: Timestamp, end: Timestamp) -> bool {
    a.movements_in(t, end).iter().any(|m| m.kind == MovementKind::Churn)
}
