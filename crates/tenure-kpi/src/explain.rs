//! Explaining a revenue figure: the accounts, movements and source events behind one KPI of
//! a period (and cut), whose lines sum to the figure exactly.
//!
//! The lines are computed from the ledger's movements and the figure by the catalogue
//! ([`crate::revenue`]): two computations that must agree, which the tests check for every
//! figure, for cuts and for periods of several months.

use crate::{By, KpiConfig, Value};
use tenure_core::time::{Period, Timestamp};
use tenure_ledger::{AccountLedger, Ledger, Movement, MovementKind, SourceRef};

/// A KPI that can be explained: a sum of movements (for `mrr_start` and `mrr_end`, of the
/// MRR accounts hold at an instant, itself the sum of the movements that built it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kpi {
    MrrStart,
    MrrEnd,
    New,
    Expansion,
    Contraction,
    Churn,
    Reactivation,
    NetChange,
    Upsell,
    CrossSell,
}

/// The ids of the KPIs that can be explained, as [`Kpi::id`] spells them.
pub const IDS: &[&str] = &[
    "mrr_start",
    "mrr_end",
    "mrr_new",
    "mrr_expansion",
    "mrr_contraction",
    "mrr_churn",
    "mrr_reactivation",
    "mrr_net_change",
    "upsell",
    "cross_sell",
];

impl Kpi {
    pub const ALL: [Kpi; 10] = [
        Kpi::MrrStart,
        Kpi::MrrEnd,
        Kpi::New,
        Kpi::Expansion,
        Kpi::Contraction,
        Kpi::Churn,
        Kpi::Reactivation,
        Kpi::NetChange,
        Kpi::Upsell,
        Kpi::CrossSell,
    ];

    /// The catalogue id.
    pub fn id(self) -> &'static str {
        match self {
            Kpi::MrrStart => "mrr_start",
            Kpi::MrrEnd => "mrr_end",
            Kpi::New => "mrr_new",
            Kpi::Expansion => "mrr_expansion",
            Kpi::Contraction => "mrr_contraction",
            Kpi::Churn => "mrr_churn",
            Kpi::Reactivation => "mrr_reactivation",
            Kpi::NetChange => "mrr_net_change",
            Kpi::Upsell => "upsell",
            Kpi::CrossSell => "cross_sell",
        }
    }

    pub fn parse(s: &str) -> Option<Kpi> {
        Kpi::ALL.into_iter().find(|k| k.id() == s)
    }

    /// The ids, for messages: `mrr_start | mrr_end | ...`.
    pub fn expected() -> String {
        IDS.join(" | ")
    }

    /// The movement kind the KPI sums, if it sums one kind.
    pub fn movement_kind(self) -> Option<MovementKind> {
        match self {
            Kpi::New => Some(MovementKind::New),
            Kpi::Expansion | Kpi::Upsell | Kpi::CrossSell => Some(MovementKind::Expansion),
            Kpi::Contraction => Some(MovementKind::Contraction),
            Kpi::Churn => Some(MovementKind::Churn),
            Kpi::Reactivation => Some(MovementKind::Reactivation),
            Kpi::MrrStart | Kpi::MrrEnd | Kpi::NetChange => None,
        }
    }

    /// What a movement adds to the figure (`None`: it is not part of it).
    fn part(self, m: &Movement) -> Option<i64> {
        let amount = match self {
            Kpi::MrrStart | Kpi::MrrEnd | Kpi::NetChange => m.delta(),
            Kpi::Upsell if m.kind == MovementKind::Expansion => m.upsell,
            Kpi::CrossSell if m.kind == MovementKind::Expansion => m.cross_sell,
            k if k.movement_kind() == Some(m.kind) => m.amount,
            _ => return None,
        };
        // An expansion that was all cross-sell is not part of upsell, and the other way round.
        (amount != 0 || !matches!(self, Kpi::Upsell | Kpi::CrossSell)).then_some(amount)
    }
}

/// Which accounts an explanation covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// A cut as `tenure kpi --by` makes it. With `segment`, only the accounts of that segment
    /// (`Some(None)`: those without the attribute); without, every account, each labelled
    /// with its segment, and a subtotal per segment.
    pub by: Option<By>,
    pub segment: Option<Option<String>>,
    /// Only this account.
    pub account: Option<String>,
}

impl Selection {
    /// Reads a cut as `tenure explain --by` takes it: `KEY` (as `tenure kpi --by`: an
    /// attribute, `plan`, `tenure_band`) for every segment, or `KEY=VALUE` for one segment
    /// (`KEY=(none)`: the accounts without the attribute, as the KPI table labels them).
    pub fn parse_by(s: &str) -> (By, Option<Option<String>>) {
        match s.split_once('=') {
            None => (By::parse(s), None),
            Some((k, "(none)")) => (By::parse(k), Some(None)),
            Some((k, v)) => (By::parse(k), Some(Some(v.to_string()))),
        }
    }
}

/// One movement in an explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub ts: Timestamp,
    pub kind: MovementKind,
    /// What it adds to the figure, base minor units: the movement's amount, its upsell or
    /// cross-sell part, or (for net change and MRR at an instant) its signed change.
    pub amount: i64,
    pub involuntary: bool,
    /// The subscription events it classifies (empty when the ledger was folded without them).
    pub sources: Vec<SourceRef>,
}

/// One account's part of the figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub account: String,
    pub name: Option<String>,
    /// Its segment, when the selection cuts.
    pub segment: Option<Option<String>>,
    /// The sum of `items`.
    pub amount: i64,
    pub items: Vec<Item>,
}

/// A segment's subtotal, when the selection cuts without choosing a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTotal {
    pub segment: Option<String>,
    /// The sum of the segment's lines.
    pub total: i64,
    /// The catalogue's figure for the segment.
    pub figure: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub kpi: Kpi,
    pub period: Period,
    pub selection: Selection,
    /// For `mrr_start` and `mrr_end`: the instant (the period's start or end, exclusive).
    pub at: Option<Timestamp>,
    /// Largest parts first (by magnitude), then by account id.
    pub lines: Vec<Line>,
    pub segments: Vec<SegmentTotal>,
    /// The sum of the lines, base minor units.
    pub total: i64,
    /// The figure the catalogue reports for the same selection: equal to `total` (when not,
    /// that is a bug, and the renderers say so).
    pub figure: i64,
}

impl Explanation {
    /// Whether the lines sum to the catalogue's figure (and each segment's to its own).
    pub fn balances(&self) -> bool {
        self.total == self.figure && self.segments.iter().all(|s| s.total == s.figure)
    }
}

/// The movements that make up an account's MRR just before `t`: those since its MRR was
/// last 0 (their signed changes sum to the MRR, as every change of MRR is a movement).
fn building(a: &AccountLedger, t: Timestamp) -> &[Movement] {
    let upto = a.movements.partition_point(|m| m.ts < t);
    let mut from = 0;
    let mut running: i64 = 0;
    for (i, m) in a.movements[..upto].iter().enumerate() {
        running = running.saturating_add(m.delta());
        if running == 0 {
            from = i + 1;
        }
    }
    &a.movements[from..upto]
}

fn line_of(a: &AccountLedger, kpi: Kpi, p: Period) -> Option<Line> {
    let (movements, at) = match kpi {
        Kpi::MrrStart => (building(a, p.start), true),
        Kpi::MrrEnd => (building(a, p.end), true),
        _ => (a.movements_in(p.start, p.end), false),
    };
    let items: Vec<Item> = movements
        .iter()
        .filter_map(|m| {
            Some(Item {
                ts: m.ts,
                kind: m.kind,
                amount: kpi.part(m)?,
                involuntary: m.involuntary,
                sources: m.sources.to_vec(),
            })
        })
        .collect();
    let amount = items.iter().fold(0i64, |s, i| s.saturating_add(i.amount));
    // At an instant an account that holds no MRR is no part of the figure.
    if items.is_empty() || (at && amount == 0) {
        return None;
    }
    Some(Line { account: a.id.clone(), name: a.name.clone(), segment: None, amount, items })
}

fn money(rows: &[crate::Row], kpi: Kpi, segment: Option<&Option<String>>) -> i64 {
    rows.iter()
        .filter(|r| segment.is_none() || r.segment.as_ref() == segment)
        .filter_map(|r| match r.kpis.get(kpi.id()) {
            Some(Value::Money(m)) => Some(*m),
            _ => None,
        })
        .fold(0, i64::saturating_add)
}

/// The lines behind `kpi` over `period` for the `selection`, with the catalogue's figure.
pub fn explain(
    ledger: &Ledger,
    kpi: Kpi,
    period: Period,
    selection: &Selection,
    cfg: &KpiConfig,
) -> Explanation {
    let accounts: Vec<&AccountLedger> = match &selection.account {
        Some(id) => ledger.account(id).into_iter().collect(),
        None => ledger.accounts.iter().collect(),
    };
    let mut lines: Vec<Line> = Vec::new();
    for a in accounts {
        let segment = selection.by.as_ref().map(|b| b.segment(a, period));
        if let (Some(want), Some(seg)) = (&selection.segment, &segment)
            && want != seg
        {
            continue;
        }
        if let Some(mut line) = line_of(a, kpi, period) {
            line.segment = segment;
            lines.push(line);
        }
    }
    lines.sort_by(|x, y| {
        (y.amount.unsigned_abs(), &x.account).cmp(&(x.amount.unsigned_abs(), &y.account))
    });
    let total = lines.iter().fold(0i64, |s, l| s.saturating_add(l.amount));

    // The catalogue over the same accounts: a ledger of the one account, or all of them;
    // cut as asked.
    let one;
    let scope = match &selection.account {
        Some(id) => {
            one = Ledger {
                accounts: ledger.account(id).cloned().into_iter().collect(),
                as_of: ledger.as_of,
                ..Ledger::default()
            };
            &one
        }
        None => ledger,
    };
    let rows = crate::revenue(scope, &[period], selection.by.as_ref(), cfg);
    let figure = money(&rows, kpi, selection.segment.as_ref());
    let mut segments = Vec::new();
    if selection.by.is_some() && selection.segment.is_none() {
        for r in &rows {
            let Some(seg) = &r.segment else { continue };
            segments.push(SegmentTotal {
                segment: seg.clone(),
                total: lines
                    .iter()
                    .filter(|l| l.segment.as_ref() == Some(seg))
                    .fold(0, |s, l| s.saturating_add(l.amount)),
                figure: money(std::slice::from_ref(r), kpi, None),
            });
        }
    }
    let at = match kpi {
        Kpi::MrrStart => Some(period.start),
        Kpi::MrrEnd => Some(period.end),
        _ => None,
    };
    Explanation { kpi, period, selection: selection.clone(), at, lines, segments, total, figure }
}

/// Every source the explanation names, each once, in order (for reading them back).
pub fn sources(e: &Explanation) -> Vec<SourceRef> {
    let mut out: Vec<SourceRef> = e
        .lines
        .iter()
        .flat_map(|l| l.items.iter().flat_map(|i| i.sources.iter().cloned()))
        .collect();
    out.sort();
    out.dedup();
    out
}
