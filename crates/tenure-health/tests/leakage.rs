//! No leakage: the features of every account at an instant `t` are the same whether the
//! ledger and the usage hold the whole history or only the events before `t`.

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use tenure_core::event::{Event, EventBody};
use tenure_core::time::{PeriodUnit, Timestamp};
use tenure_health::features::{self, Context, F};
use tenure_health::{UsageByAccount, UsageMonth};
use tenure_kpi::usage::Feature;
use tenure_ledger::{Ledger, LedgerBuilder, Preset, RevenueConfig};

/// The generated company's events, every line accepted.
fn company() -> Vec<Event> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tenure_sim::SimConfig {
        accounts: 400,
        months: 24,
        seed: 11,
        start: (2023, 1),
        usage_events: None,
        format: tenure_sim::OutputFormat::Jsonl,
    };
    let summary = tenure_sim::generate(&cfg, dir.path(), &|_| {}).unwrap();
    let ingest = tenure_ingest::IngestConfig::defaults(None);
    let mut events = Vec::new();
    for f in summary.files.iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")) {
        let text = std::fs::read_to_string(f).unwrap();
        let kind = tenure_ingest::kind_from_file_name(&f.display().to_string());
        let (ok, rejected) = tenure_ingest::parse_jsonl_block(&text, 1, kind, &ingest);
        assert!(rejected.is_empty(), "{}: {:?}", f.display(), &rejected[..1]);
        events.extend(ok.into_iter().map(|(_, e)| e));
    }
    events
}

fn ledger(events: &[Event], as_of: Timestamp) -> Ledger {
    let mut b = LedgerBuilder::new();
    for e in events {
        b.push(e.clone());
    }
    let fx = tenure_core::money::FxTable::new(tenure_core::money::Currency::USD);
    b.finish(&RevenueConfig::preset(Preset::Tenure, fx), as_of)
}

/// Monthly usage as `tenure-analytics` computes it from `usage_daily`.
fn usage(events: &[Event], catalogue: &[Feature]) -> UsageByAccount {
    #[derive(Default)]
    struct Acc {
        events: u64,
        users: BTreeSet<String>,
        days: BTreeSet<i64>,
        features: u64,
        last: i64,
    }
    let mut by: BTreeMap<(String, Timestamp), Acc> = BTreeMap::new();
    for e in events {
        let EventBody::Usage { user_id, event, feature, .. } = &e.body else { continue };
        let m = PeriodUnit::Month.floor(e.ts);
        let a = by.entry((e.account.clone().unwrap(), m)).or_default();
        let day = PeriodUnit::Day.floor(e.ts).0;
        a.events += 1;
        a.users.insert(user_id.clone());
        a.days.insert(day);
        a.last = a.last.max(day);
        let name = feature.as_deref().unwrap_or(event);
        if let Some(i) = catalogue.iter().position(|f| f.name == name) {
            a.features |= 1 << i;
        }
    }
    let mut out: UsageByAccount = FxHashMap::default();
    for ((id, m), a) in by {
        out.entry(id).or_default().push(UsageMonth {
            month: m,
            events: a.events,
            users: a.users.len() as u64,
            days: a.days.len() as u64,
            features: a.features,
            last_day: Timestamp(a.last),
        });
    }
    out
}

#[test]
fn features_at_t_see_nothing_of_the_events_after_t() {
    let events = company();
    let end = Timestamp::parse("2025-02-01").unwrap();
    let catalogue: Vec<Feature> = ["dashboards", "reports", "automations", "api"]
        .iter()
        .map(|n| Feature {
            name: n.to_string(),
            advanced: false,
            released: None,
            plans: Vec::new(),
        })
        .collect();
    let ctx = Context { catalogue: &catalogue, segment_key: "segment" };
    let full = ledger(&events, end);
    let full_usage = usage(&events, &catalogue);
    // A month start and an instant inside a month.
    for t in ["2024-01-01T00:00:00Z", "2024-06-17T13:45:00Z"] {
        let t = Timestamp::parse(t).unwrap();
        let before: Vec<Event> = events.iter().filter(|e| e.ts < t).cloned().collect();
        let cut = ledger(&before, t);
        let cut_usage = usage(&before, &catalogue);
        let (mut rows, mut seen) = (0, [0usize; features::N]);
        for a in &full.accounts {
            let u = |m: &UsageByAccount| m.get(&a.id).cloned().unwrap_or_default();
            let whole = features::snapshot(a, &u(&full_usage), t, &ctx);
            let past =
                cut.account(&a.id).and_then(|c| features::snapshot(c, &u(&cut_usage), t, &ctx));
            assert_eq!(
                whole.is_some(),
                past.is_some(),
                "{} at {t}: a customer in one view only",
                a.id
            );
            let (Some(w), Some(p)) = (whole, past) else { continue };
            rows += 1;
            for (f, (x, y)) in w.num.iter().zip(&p.num).enumerate() {
                assert!(
                    x.to_bits() == y.to_bits(),
                    "{} at {t}: {} is {x} with the whole history, {y} with the past only",
                    a.id,
                    features::DEFS[f].name
                );
                seen[f] += (x.is_finite() && *x != 0.0) as usize;
            }
            assert_eq!((w.plan, w.segment, w.mrr), (p.plan, p.segment, p.mrr));
        }
        // The check has teeth: many accounts, and the signals that change often are set.
        assert!(rows > 150, "{rows} snapshots at {t}");
        for f in [
            F::MAU,
            F::TICKETS,
            F::NPS,
            F::DAYS_TO_RENEWAL,
            F::CHAMPION_LEFT,
            F::DEPTH,
            F::MRR_CHANGE,
        ] {
            assert!(seen[f as usize] > 0, "{} never set at {t}", features::DEFS[f as usize].name);
        }
    }
}

/// docs/health.md names every feature (and so stays in step with the code).
#[test]
fn the_documentation_lists_every_feature() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/health.md"))
        .unwrap();
    for d in features::DEFS {
        assert!(doc.contains(&format!("`{}`", d.name)), "docs/health.md does not name {}", d.name);
    }
}

/// After new events, updating only the accounts they touched gives the state a full
/// rebuild gives, and recomputes nothing else.
#[test]
fn an_update_recomputes_only_the_touched_accounts_and_matches_a_rebuild() {
    use tenure_health::scorecard::Scorecards;
    use tenure_health::state::HealthState;
    let events = company();
    let (june, t) =
        (Timestamp::parse("2024-06-01").unwrap(), Timestamp::parse("2024-07-01").unwrap());
    let catalogue: Vec<Feature> = Vec::new();
    let ctx = Context { catalogue: &catalogue, segment_key: "segment" };
    let cards = Scorecards::default_set();
    let before: Vec<Event> = events.iter().filter(|e| e.ts < june).cloned().collect();
    let mut state =
        HealthState::build(&ledger(&before, t), &usage(&before, &catalogue), t, &ctx, &cards, None);
    // June's events arrive.
    let all: Vec<Event> = events.iter().filter(|e| e.ts < t).cloned().collect();
    let (new, new_usage) = (ledger(&all, t), usage(&all, &catalogue));
    let mut touched: Vec<&str> =
        all.iter().filter(|e| e.ts >= june).filter_map(|e| e.account.as_deref()).collect();
    touched.sort();
    touched.dedup();
    assert!(!touched.is_empty() && touched.len() < new.accounts.len(), "{} touched", touched.len());
    let changed = state.update(&new, &new_usage, &touched, &ctx, &cards, None);
    assert_eq!(state.recomputed, touched.len());
    assert!(!changed.is_empty());
    let rebuilt = HealthState::build(&new, &new_usage, t, &ctx, &cards, None);
    assert_eq!(state.accounts.len(), rebuilt.accounts.len());
    for (id, h) in &rebuilt.accounts {
        let s = &state.accounts[id];
        assert_eq!((s.score, s.colour, &s.scorecard), (h.score, h.colour, &h.scorecard), "{id}");
        assert!(s.row.num.iter().zip(&h.row.num).all(|(a, b)| a.to_bits() == b.to_bits()), "{id}");
    }
}
