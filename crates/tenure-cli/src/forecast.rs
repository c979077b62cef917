//! `tenure forecast`: the renewal forecast of a period and the backtest of past periods'
//! forecasts (the computing is tenure-health's; this is IO and arguments).

use crate::report::OutFormat;
use crate::{DataArgs, as_of, config, existing_data_dir, out, refresh_columnar, usage};
use anyhow::{Result, bail};
use clap::Args;
use tenure_core::time::{Period, PeriodUnit};
use tenure_engine::Config;
use tenure_health::forecast::{self, GroupBy, Settings};
use tenure_health::{Context, UsageByAccount};

#[derive(Args)]
pub struct ForecastArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The period whose renewals are forecast: 2027-Q1, 2027-02, 2027-01..2027-07
    /// [default: the quarter holding --as-of]
    #[arg(long, short)]
    period: Option<String>,
    /// Totals by the month renewals are due, the account's CSM (the `csm_attribute` of
    /// `[forecast]`) or its segment
    #[arg(long, value_parser = ["month", "csm", "segment"])]
    by: Option<String>,
    /// Backtest instead: forecast each past quarter as of its start and compare with what
    /// renewed (and with last year's renewal rates x ARR due)
    #[arg(long)]
    backtest: bool,
    /// First backtest quarter, e.g. 2025-Q1 [default: 8 quarters before --to]
    #[arg(long, requires = "backtest")]
    from: Option<String>,
    /// Last backtest quarter [default: the last quarter ended by --as-of]
    #[arg(long, requires = "backtest")]
    to: Option<String>,
    /// Save the forecasts of this quarter and the next, and the backtest of the last 8
    /// quarters, to DATA/models/forecast.json: what `tenure serve` shows (dashboard page
    /// Renewals, /api/v1/forecast). Run it daily
    #[arg(long, conflicts_with_all = ["backtest", "period", "by"])]
    save: bool,
    /// Renewals listed in a table, largest ARR due first (0 = all; JSON and CSV list all)
    #[arg(long, default_value_t = 30)]
    top: usize,
    /// The interval's probability [default: `interval` of `[forecast]`, 0.8]
    #[arg(long)]
    level: Option<f64>,
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    /// Forecast as of this instant: nothing after it is read [default: now]
    #[arg(long)]
    as_of: Option<String>,
}

/// The forecast's settings from the configuration file and the command line.
pub fn settings(cfg: &Config, level: Option<f64>) -> Result<Settings> {
    let f = &cfg.forecast;
    let level = level.unwrap_or(f.interval);
    if !(level > 0.0 && level < 1.0) {
        bail!(usage(format!("--level {level}: expected a probability between 0 and 1")));
    }
    Ok(Settings {
        commit: f.commit,
        probable: f.probable,
        level,
        csm_key: f.csm_attribute.clone(),
        ..Settings::default()
    })
}

fn quarter(s: &str, what: &str) -> Result<Period> {
    let p = Period::parse(s).map_err(|e| usage(format!("{what}: {e}")))?;
    if PeriodUnit::Quarter.floor(p.start) != p.start
        || PeriodUnit::Quarter.advance(p.start, 1) != p.end
    {
        bail!(usage(format!("{what} {s:?}: expected a quarter, e.g. 2025-Q1")));
    }
    Ok(p)
}

pub fn run(a: ForecastArgs) -> Result<()> {
    let cfg = config(&a.data)?;
    let dir = existing_data_dir(&a.data)?;
    let t = as_of(&a.as_of)?;
    let s = settings(&cfg, a.level)?;
    let by = a.by.as_deref().map(|b| GroupBy::parse(b).expect("clap checked the value"));
    let period = match &a.period {
        Some(p) => Some(Period::parse(p).map_err(|e| usage(format!("--period: {e}")))?),
        None => None,
    };
    refresh_columnar(&dir, &cfg)?;
    let builder = tenure_engine::ledger_builder(&dir, tenure_engine::Scope::ALL)?;
    let now = builder.fold_all(&cfg.revenue, t);
    let names: Vec<String> = cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
    let usage_by: UsageByAccount =
        tenure_analytics::usage_monthly(&dir, &crate::engine(&cfg), &names, t)?;
    let ctx = Context { catalogue: &cfg.kpi.features, segment_key: "segment" };
    let cur = cfg.revenue.fx.base;
    if a.save {
        return save(&dir, &builder, &cfg, &now, &usage_by, &ctx, &s);
    }
    if a.backtest {
        if period.is_some() || by.is_some() {
            bail!(usage("--backtest takes --from and --to, not --period or --by"));
        }
        let last = PeriodUnit::Quarter.floor(t).add_months(-3);
        let to = match &a.to {
            Some(q) => quarter(q, "--to")?.start,
            None => last,
        };
        let from = match &a.from {
            Some(q) => quarter(q, "--from")?.start,
            None => to.add_months(-3 * 7),
        };
        if from > to {
            bail!(usage("--from is after --to"));
        }
        let mut periods = Vec::new();
        let mut q = from;
        while q <= to {
            periods.push(Period::new(q, q.add_months(3)));
            q = q.add_months(3);
        }
        let (past, skipped) =
            forecast::backtest(&builder, &cfg.revenue, &now, &usage_by, &ctx, &periods, &s)
                .map_err(|e| usage(e.to_string()))?;
        let acc = forecast::accuracy(&past);
        return out(&tenure_report::forecast::backtest(
            &past, &skipped, &acc, s.level, cur, a.format,
        ));
    }
    let period = period.unwrap_or_else(|| {
        let q = PeriodUnit::Quarter.floor(t);
        Period::new(q, q.add_months(3))
    });
    let f =
        forecast::forecast(&now, &usage_by, &ctx, period, &s).map_err(|e| usage(e.to_string()))?;
    let groups = by.map(|b| forecast::groups(&f.items, b, s.level, &f.spread)).unwrap_or_default();
    out(&tenure_report::forecast::forecast(&f, &groups, a.by.as_deref(), cur, a.format, a.top))
}

/// `--save`: this quarter's and the next one's forecasts and the last 8 quarters' backtest,
/// written atomically to DATA/models/forecast.json.
fn save(
    dir: &std::path::Path,
    builder: &tenure_ledger::LedgerBuilder,
    cfg: &Config,
    now: &tenure_ledger::Ledger,
    usage_by: &UsageByAccount,
    ctx: &Context<'_>,
    s: &Settings,
) -> Result<()> {
    let cur = cfg.revenue.fx.base;
    let (doc, notes) =
        tenure_report::forecast::saved_document(builder, &cfg.revenue, now, usage_by, ctx, s, cur)
            .map_err(|e| usage(e.to_string()))?;
    for n in notes {
        eprintln!("{n}");
    }
    let models = dir.join("models");
    std::fs::create_dir_all(&models)?;
    let path = models.join("forecast.json");
    crate::health::write_atomic(&path, &serde_json::to_string(&doc)?)?;
    eprintln!("saved {}", path.display());
    Ok(())
}

/// For `tenure demo`: saves the forecasts the dashboard's Renewals page shows.
pub fn demo(dir: &std::path::Path) -> Result<()> {
    run(ForecastArgs {
        data: DataArgs { data: Some(dir.to_path_buf()), config: None },
        period: None,
        by: None,
        backtest: false,
        from: None,
        to: None,
        save: true,
        top: 30,
        level: None,
        format: OutFormat::Table,
        as_of: None,
    })
}
