//! Rendering the renewal forecast and its backtest as a table, JSON or CSV (the CLI's
//! `tenure forecast` and the service's `/api/v1/forecast` answer with the same JSON).

use crate::{OutFormat, csv_cell, money_json};
use serde_json::{Value as Json, json};
use tenure_core::money::{Currency, format_minor};
use tenure_core::time::PeriodUnit;
use tenure_health::forecast::{Accuracy, Category, Forecast, Item, Method, PastPeriod, Totals};

fn totals_json(t: &Totals, cur: Currency) -> Json {
    let cats: serde_json::Map<String, Json> = Category::ALL
        .iter()
        .map(|c| {
            let x = &t.categories[*c as usize];
            (
                c.as_str().to_string(),
                json!({"contracts": x.contracts, "arr_due": money_json(x.arr_due, cur),
                       "expected_arr": money_json(x.expected, cur)}),
            )
        })
        .collect();
    json!({
        "contracts": t.contracts,
        "arr_due": money_json(t.arr_due, cur),
        "expected_arr": money_json(t.expected, cur),
        "interval": [money_json(t.low, cur), money_json(t.high, cur)],
        "interval_method": t.method,
        "categories": cats,
    })
}

fn method_json(m: &Method) -> Json {
    json!({"source": m.source.as_str(), "examples": m.examples, "base_rate": m.base_rate})
}

fn item_json(i: &Item, cur: Currency) -> Json {
    let o = i.overridden.as_ref().map(|o| {
        json!({"category": o.category.as_str(), "amount": o.amount.map(|a| money_json(a, cur)),
               "reason": o.reason, "author": o.author, "at": o.at.to_string()})
    });
    json!({
        "account_id": i.account,
        "subscription_id": i.subscription_id,
        "kind": i.kind.as_str(),
        "due": i.due.to_string(),
        "arr_due": money_json(i.arr_due, cur),
        "arr_if_renewed": money_json(i.arr_if_renewed, cur),
        "probability": i.p,
        "probability_logit_se": i.se,
        "source": i.source.as_str(),
        "expected_arr": money_json(i.expected().round() as i64, cur),
        "category": i.category.as_str(),
        "override": o,
        "csm": i.csm,
        "segment": i.segment,
        "drivers": i.drivers,
    })
}

/// The forecast as JSON: totals (model and with overrides), groups, every item.
pub fn forecast_json(
    f: &Forecast,
    groups: &[(String, Totals, Totals)],
    by: Option<&str>,
    cur: Currency,
) -> Json {
    let gs: Vec<Json> = groups
        .iter()
        .map(|(k, m, c)| json!({"key": k, "model": totals_json(m, cur), "with_overrides": totals_json(c, cur)}))
        .collect();
    json!({
        "as_of": f.as_of.to_string(),
        "period": {"start": f.period.start.to_string(), "end": f.period.end.to_string()},
        "currency": cur.to_string(),
        "interval_level": f.level,
        "model": totals_json(&f.model, cur),
        "with_overrides": totals_json(&f.called, cur),
        "term_contracts": method_json(&f.term),
        "month_to_month": method_json(&f.month_to_month),
        "expansion_at_renewal": f.expansion,
        "month_to_month_growth": f.month_to_month_growth,
        "amount_spread": {"term": f.spread.term, "month_to_month": f.spread.month_to_month,
                          "term_mean_se": f.spread.term_se,
                          "month_to_month_mean_se": f.spread.month_to_month_se},
        "by": by,
        "groups": gs,
        "items": f.items.iter().map(|i| item_json(i, cur)).collect::<Vec<_>>(),
    })
}

fn pct(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// Renders a forecast; `top` limits the items listed in a table (0 = all).
pub fn forecast(
    f: &Forecast,
    groups: &[(String, Totals, Totals)],
    by: Option<&str>,
    cur: Currency,
    format: OutFormat,
    top: usize,
) -> String {
    let money = |m: i64| format_minor(m, cur);
    match format {
        OutFormat::Json => {
            serde_json::to_string_pretty(&forecast_json(f, groups, by, cur)).unwrap_or_default()
                + "\n"
        }
        OutFormat::Csv => {
            let mut s = String::from(
                "account_id,subscription_id,kind,due,arr_due,arr_if_renewed,probability,expected_arr,category,override_category,override_amount,override_reason,csm,segment,drivers\n",
            );
            for i in &f.items {
                let o = i.overridden.as_ref();
                let cells = [
                    csv_cell(&i.account),
                    csv_cell(i.subscription_id.as_deref().unwrap_or("")),
                    i.kind.as_str().into(),
                    i.due.date_string(),
                    money(i.arr_due),
                    money(i.arr_if_renewed),
                    format!("{:.4}", i.p),
                    money(i.expected().round() as i64),
                    i.category.as_str().into(),
                    o.map_or(String::new(), |o| o.category.as_str().into()),
                    o.and_then(|o| o.amount).map_or(String::new(), money),
                    csv_cell(o.and_then(|o| o.reason.as_deref()).unwrap_or("")),
                    csv_cell(i.csm.as_deref().unwrap_or("")),
                    csv_cell(i.segment.as_deref().unwrap_or("")),
                    csv_cell(&i.drivers.join("; ")),
                ];
                s.push_str(&cells.join(","));
                s.push('\n');
            }
            s
        }
        OutFormat::Table => {
            let m = &f.model;
            let mut s = format!(
                "Renewal forecast for {} to {} (as of {})\n\n",
                f.period.start.date_string(),
                f.period.end.date_string(),
                f.as_of
            );
            let line = |label: &str, t: &Totals| {
                format!(
                    "{label:<16} {:>5} renewals  {:>14} ARR due  {:>14} expected  {} interval {} .. {}\n",
                    t.contracts,
                    money(t.arr_due),
                    money(t.expected),
                    pct(f.level),
                    money(t.low),
                    money(t.high)
                )
            };
            s.push_str(&line("model", m));
            s.push_str(&line("with overrides", &f.called));
            s.push('\n');
            for c in Category::ALL {
                let x = &f.called.categories[*c as usize];
                s.push_str(&format!(
                    "  {:<10} {:>5} renewals  {:>14} ARR due  {:>14} expected\n",
                    c.as_str(),
                    x.contracts,
                    money(x.arr_due),
                    money(x.expected)
                ));
            }
            let src = |x: &Method| match x.base_rate {
                Some(r) => format!(
                    "{} ({} past outcomes, {} renewed)",
                    x.source.as_str(),
                    x.examples,
                    pct(r)
                ),
                None => x.source.as_str().to_string(),
            };
            s.push_str(&format!(
                "\nprobabilities: term contracts {}; month-to-month {}\nARR back per ARR due at renewal {:.3}; month-to-month ARR kept grows by {:.3}\n",
                src(&f.term),
                src(&f.month_to_month),
                f.expansion,
                f.month_to_month_growth
            ));
            if let Some(by) = by {
                s.push_str(&format!("\nBy {by}:\n"));
                for (k, gm, gc) in groups {
                    s.push_str(&format!(
                        "  {:<20} {:>5} renewals {:>14} due {:>14} expected ({} .. {}); with overrides {}\n",
                        k,
                        gm.contracts,
                        money(gm.arr_due),
                        money(gm.expected),
                        money(gm.low),
                        money(gm.high),
                        money(gc.expected)
                    ));
                }
            }
            let shown = if top == 0 { f.items.len() } else { top.min(f.items.len()) };
            s.push_str(&format!(
                "\n{:<22} {:<10} {:>12} {:>7} {:>12}  {:<9} {:<14} drivers\n",
                "account", "due", "ARR due", "renew", "expected", "category", "override"
            ));
            for i in &f.items[..shown] {
                let o = i.overridden.as_ref().map_or("-".to_string(), |o| {
                    let amount = o.amount.map_or(String::new(), |a| format!(" {}", money(a)));
                    format!("{}{amount}", o.category.as_str())
                });
                s.push_str(&format!(
                    "{:<22} {:<10} {:>12} {:>6.1}% {:>12}  {:<9} {:<14} {}\n",
                    i.account,
                    i.due.date_string(),
                    money(i.arr_due),
                    i.p * 100.0,
                    money(i.expected().round() as i64),
                    i.category.as_str(),
                    o,
                    if i.drivers.is_empty() { "-".into() } else { i.drivers.join("; ") }
                ));
            }
            if shown < f.items.len() {
                s.push_str(&format!("... {} more (--top 0 lists all)\n", f.items.len() - shown));
            }
            s
        }
    }
}

fn past_json(p: &PastPeriod, cur: Currency) -> Json {
    json!({
        "period": PeriodUnit::Quarter.label(p.period.start),
        "start": p.period.start.to_string(),
        "end": p.period.end.to_string(),
        "contracts": p.contracts,
        "arr_due": money_json(p.arr_due, cur),
        "forecast": money_json(p.forecast, cur),
        "interval": [money_json(p.low, cur), money_json(p.high, cur)],
        "naive_forecast": p.naive.map(|n| money_json(n, cur)),
        "actual": p.actual.map(|a| money_json(a, cur)),
        "covered": p.covered(),
    })
}

/// The periods left out of a backtest, with why.
pub type Skipped = [(tenure_core::time::Period, String)];

/// The backtest as JSON.
pub fn backtest_json(
    past: &[PastPeriod],
    skipped: &Skipped,
    acc: &Accuracy,
    level: f64,
    cur: Currency,
) -> Json {
    json!({
        "currency": cur.to_string(),
        "interval_level": level,
        "periods": past.iter().map(|p| past_json(p, cur)).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|(p, why)| json!({"period": PeriodUnit::Quarter.label(p.start), "reason": why})).collect::<Vec<_>>(),
        "summary": {"periods_with_actual": acc.periods, "coverage": acc.coverage,
                    "mape": acc.mape, "naive_mape": acc.naive_mape},
    })
}

/// The quarters the service shows: the one holding `t` and the next.
pub fn served_quarters(t: tenure_core::time::Timestamp) -> [tenure_core::time::Period; 2] {
    use tenure_core::time::Period;
    let q = PeriodUnit::Quarter.floor(t);
    [Period::new(q, q.add_months(3)), Period::new(q.add_months(3), q.add_months(6))]
}

/// What DATA/models/forecast.json holds (`tenure forecast --save` writes it, and the service
/// remakes it daily): this quarter's and the next one's forecasts and the 8 past quarters'
/// backtest, made at `now.as_of`; with a line per quarter saying what it holds, and why
/// there is no backtest when there is none (a young company has no past quarter to test
/// on: the page says so).
pub fn saved_document(
    builder: &tenure_ledger::LedgerBuilder,
    revenue: &tenure_ledger::RevenueConfig,
    now: &tenure_ledger::Ledger,
    usage: &tenure_health::UsageByAccount,
    ctx: &tenure_health::features::Context<'_>,
    s: &tenure_health::forecast::Settings,
    cur: Currency,
) -> Result<(Json, Vec<String>), tenure_health::HealthError> {
    use tenure_health::forecast as f;
    let t = now.as_of;
    let mut notes = Vec::new();
    let mut quarters = Vec::new();
    for p in served_quarters(t) {
        let fc = f::forecast(now, usage, ctx, p, s)?;
        notes.push(format!(
            "{}: {} renewals, {} ARR due, {} expected",
            PeriodUnit::Quarter.label(p.start),
            fc.items.len(),
            format_minor(fc.model.arr_due, cur),
            format_minor(fc.model.expected, cur)
        ));
        quarters.push(forecast_json(&fc, &[], None, cur));
    }
    let last = PeriodUnit::Quarter.floor(t).add_months(-3);
    let periods: Vec<tenure_core::time::Period> = (0..8)
        .rev()
        .map(|k| last.add_months(-3 * k))
        .map(|q| tenure_core::time::Period::new(q, q.add_months(3)))
        .collect();
    let backtest = match f::backtest(builder, revenue, now, usage, ctx, &periods, s) {
        Ok((past, skipped)) => backtest_json(&past, &skipped, &f::accuracy(&past), s.level, cur),
        Err(e) => {
            notes.push(format!("no backtest: {e}"));
            Json::Null
        }
    };
    let doc = json!({"made_at": t.to_string(), "quarters": quarters, "backtest": backtest});
    Ok((doc, notes))
}

/// Renders the backtest of past periods' forecasts.
pub fn backtest(
    past: &[PastPeriod],
    skipped: &Skipped,
    acc: &Accuracy,
    level: f64,
    cur: Currency,
    format: OutFormat,
) -> String {
    let money = |m: i64| format_minor(m, cur);
    let opt = |m: Option<i64>| m.map_or("n/a".into(), money);
    match format {
        OutFormat::Json => {
            serde_json::to_string_pretty(&backtest_json(past, skipped, acc, level, cur))
                .unwrap_or_default()
                + "\n"
        }
        OutFormat::Csv => {
            let mut s = String::from(
                "period,contracts,arr_due,forecast,low,high,naive_forecast,actual,covered\n",
            );
            for p in past {
                s.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{}\n",
                    PeriodUnit::Quarter.label(p.period.start),
                    p.contracts,
                    money(p.arr_due),
                    money(p.forecast),
                    money(p.low),
                    money(p.high),
                    p.naive.map_or(String::new(), money),
                    p.actual.map_or(String::new(), money),
                    p.covered().map_or(String::new(), |c| c.to_string())
                ));
            }
            s
        }
        OutFormat::Table => {
            let mut s = format!(
                "Forecasts made at each period's start against what renewed ({} intervals)\n\n{:<8} {:>6} {:>14} {:>14} {:>29} {:>14} {:>14}  covered\n",
                pct(level),
                "period",
                "due",
                "ARR due",
                "forecast",
                "interval",
                "naive",
                "actual"
            );
            for p in past {
                s.push_str(&format!(
                    "{:<8} {:>6} {:>14} {:>14} {:>29} {:>14} {:>14}  {}\n",
                    PeriodUnit::Quarter.label(p.period.start),
                    p.contracts,
                    money(p.arr_due),
                    money(p.forecast),
                    format!("{} .. {}", money(p.low), money(p.high)),
                    opt(p.naive),
                    opt(p.actual),
                    p.covered().map_or("n/a", |c| if c { "yes" } else { "no" })
                ));
            }
            for (p, why) in skipped {
                s.push_str(&format!(
                    "{:<8} not forecast: {why}\n",
                    PeriodUnit::Quarter.label(p.start)
                ));
            }
            let f = |x: Option<f64>| x.map_or("n/a".into(), pct);
            s.push_str(&format!(
                "\n{} periods with an outcome: interval coverage {}; mean absolute error {} (naive: last year's renewal rates x ARR due, {})\n",
                acc.periods,
                f(acc.coverage),
                f(acc.mape),
                f(acc.naive_mape)
            ));
            s
        }
    }
}

/// Reads back a forecast from its JSON (as [`forecast_json`] writes it): the service serves
/// the forecast `tenure forecast --save` wrote, with the calls CSMs made since applied
/// again. `None` when the text is not such a forecast.
pub fn forecast_from_json(j: &Json, cur: Currency) -> Option<Forecast> {
    use tenure_core::time::{Period, Timestamp};
    use tenure_health::forecast::{Kind, Source};
    let scale = 10f64.powi(cur.exponent() as i32);
    let minor = |v: &Json| v.as_f64().map(|x| (x * scale).round() as i64);
    let ts = |v: &Json| v.as_str().and_then(|s| Timestamp::parse(s).ok());
    let text = |v: &Json| v.as_str().map(str::to_string);
    let source = |s: &str| match s {
        "model" => Some(Source::Model),
        "base_rate" => Some(Source::BaseRate),
        "churn_model" => Some(Source::ChurnModel),
        "known" => Some(Source::Known),
        _ => None,
    };
    let method = |m: &Json| -> Option<Method> {
        Some(Method {
            source: source(m["source"].as_str()?)?,
            examples: m["examples"].as_u64()? as usize,
            base_rate: m["base_rate"].as_f64(),
        })
    };
    let mut items = Vec::new();
    for i in j["items"].as_array()? {
        let kind = match i["kind"].as_str()? {
            "term" => Kind::Term,
            "month_to_month" => Kind::MonthToMonth,
            _ => return None,
        };
        let p = i["probability"].as_f64().filter(|p| (0.0..=1.0).contains(p))?;
        items.push(Item {
            account: text(&i["account_id"])?,
            subscription_id: text(&i["subscription_id"]),
            kind,
            due: ts(&i["due"])?,
            arr_due: minor(&i["arr_due"])?,
            arr_if_renewed: minor(&i["arr_if_renewed"]).filter(|a| *a >= 0)?,
            p,
            // A forecast saved before the calibration's uncertainty was kept has none.
            se: match &i["probability_logit_se"] {
                Json::Null => 0.0,
                v => v.as_f64().filter(|s| s.is_finite() && *s >= 0.0)?,
            },
            source: source(i["source"].as_str()?)?,
            category: Category::parse(i["category"].as_str()?)?,
            csm: text(&i["csm"]),
            segment: text(&i["segment"]),
            drivers: i["drivers"]
                .as_array()
                .map(|d| d.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            overridden: None,
        });
    }
    let level = j["interval_level"].as_f64().filter(|l| *l > 0.0 && *l < 1.0)?;
    let spread_of = |v: &Json| -> Option<Vec<f64>> {
        let v: Vec<f64> = v.as_array()?.iter().map(|x| x.as_f64()).collect::<Option<_>>()?;
        (!v.is_empty() && v.iter().all(|x| x.is_finite() && *x >= 0.0)).then_some(v)
    };
    let se_of = |v: &Json| -> Option<f64> {
        match v {
            Json::Null => Some(0.0),
            v => v.as_f64().filter(|s| s.is_finite() && *s >= 0.0),
        }
    };
    let spread = tenure_health::forecast::Spread {
        term: spread_of(&j["amount_spread"]["term"]).unwrap_or_else(|| vec![1.0]),
        month_to_month: spread_of(&j["amount_spread"]["month_to_month"])
            .unwrap_or_else(|| vec![1.0]),
        // Saved before the level's uncertainty was kept: none.
        term_se: se_of(&j["amount_spread"]["term_mean_se"])?,
        month_to_month_se: se_of(&j["amount_spread"]["month_to_month_mean_se"])?,
    };
    let refs: Vec<&Item> = items.iter().collect();
    let model = tenure_health::forecast::totals(&refs, level, false, &spread);
    let called = tenure_health::forecast::totals(&refs, level, true, &spread);
    Some(Forecast {
        as_of: ts(&j["as_of"])?,
        period: Period::new(ts(&j["period"]["start"])?, ts(&j["period"]["end"])?),
        level,
        model,
        called,
        term: method(&j["term_contracts"])?,
        month_to_month: method(&j["month_to_month"])?,
        expansion: j["expansion_at_renewal"].as_f64()?,
        month_to_month_growth: j["month_to_month_growth"].as_f64().unwrap_or(1.0),
        spread,
        items,
    })
}
