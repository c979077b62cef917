//! Fixture helpers shared by the KPI tests.

use tenure_core::time::Timestamp;
use tenure_ingest::{IngestConfig, parse_jsonl_block};
use tenure_ledger::{Ledger, LedgerBuilder, Preset, RevenueConfig};

/// The ledger of JSONL events (every line must be accepted), default rules in USD, as of
/// 2030-01-01.
pub fn ledger(jsonl: &str) -> Ledger {
    let (events, rejected) = parse_jsonl_block(jsonl, 1, None, &IngestConfig::defaults(None));
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut b = LedgerBuilder::new();
    for (_, e) in events {
        b.push(e);
    }
    let cfg = RevenueConfig::preset(
        Preset::Tenure,
        tenure_core::money::FxTable::new(tenure_core::money::Currency::USD),
    );
    b.finish(&cfg, Timestamp::parse("2030-01-01").unwrap())
}
