//! Rendering reports: KPI rows and cohort tables as a table, JSON or CSV.

use serde_json::{Map, Value as Json, json};
use tenure_core::money::Currency;
use tenure_kpi::{CohortMetric, CohortTable, Row, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    Table,
    Json,
    Csv,
}

/// Money in major units as a JSON number: minor / 10^exp is correctly rounded, so it prints
/// as the exact decimal.
fn money_json(minor: i64, cur: Currency) -> Json {
    json!(minor as f64 / 10f64.powi(cur.exponent() as i32))
}

fn value_json(v: &Value, cur: Currency) -> Json {
    match v {
        Value::Money(m) => money_json(*m, cur),
        Value::MaybeMoney(m) => m.map_or(Json::Null, |m| money_json(m, cur)),
        Value::Rate(r) | Value::Number(r) => {
            r.filter(|x| x.is_finite()).map_or(Json::Null, |x| json!(x))
        }
        Value::Count(c) => json!(c),
        Value::Interval(i) => i.map_or(Json::Null, |(lo, hi)| json!([lo, hi])),
    }
}

fn value_text(v: &Value, cur: Currency) -> String {
    match v {
        Value::Money(m) => tenure_core::money::format_minor(*m, cur),
        Value::MaybeMoney(m) => {
            m.map_or("n/a".into(), |m| tenure_core::money::format_minor(m, cur))
        }
        Value::Rate(r) => r.map_or("n/a".into(), |x| format!("{:.2}%", x * 100.0)),
        Value::Number(r) => r.map_or("n/a".into(), |x| format!("{x:.2}")),
        Value::Count(c) => c.to_string(),
        Value::Interval(i) => {
            i.map_or("n/a".into(), |(lo, hi)| format!("{:.2}%..{:.2}%", lo * 100.0, hi * 100.0))
        }
    }
}

fn row_json(r: &Row, cur: Currency) -> Json {
    let mut o = Map::new();
    o.insert(
        "period".into(),
        json!({"start": r.period.start.to_string(), "end": r.period.end.to_string()}),
    );
    if let Some(seg) = &r.segment {
        o.insert("segment".into(), seg.as_ref().map_or(Json::Null, |s| json!(s)));
    }
    let kpis: Map<String, Json> =
        r.kpis.0.iter().map(|(k, v)| (k.to_string(), value_json(v, cur))).collect();
    o.insert("kpis".into(), Json::Object(kpis));
    Json::Object(o)
}

/// One period, uncut: an object. Otherwise (a cut, a series, or both): a list of rows.
pub fn kpis_json(rows: &[Row], cur: Currency, single: bool) -> String {
    let v = if single && rows.len() == 1 && rows[0].segment.is_none() {
        row_json(&rows[0], cur)
    } else {
        Json::Array(rows.iter().map(|r| row_json(r, cur)).collect())
    };
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Wide CSV: one line per (period, segment), one column per KPI; money in major units.
pub fn kpis_csv(rows: &[Row], cur: Currency) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else { return out };
    let by = first.segment.is_some();
    out += "period_start,period_end";
    if by {
        out += ",segment";
    }
    for (k, v) in &first.kpis.0 {
        if matches!(v, Value::Interval(_)) {
            out += &format!(",{k}_low,{k}_high");
        } else {
            out += &format!(",{k}");
        }
    }
    out += "\n";
    for r in rows {
        out += &format!("{},{}", r.period.start, r.period.end);
        if let Some(seg) = &r.segment {
            out += &format!(",{}", csv_cell(seg.as_deref().unwrap_or("")));
        }
        for (_, v) in &r.kpis.0 {
            let cell = match value_json(v, cur) {
                Json::Null => {
                    if matches!(v, Value::Interval(_)) {
                        ",".to_string()
                    } else {
                        String::new()
                    }
                }
                Json::Array(a) => a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
                x => x.to_string(),
            };
            out += &format!(",{cell}");
        }
        out += "\n";
    }
    out
}

/// A table: KPIs down, one column per (period, segment).
pub fn kpis_table(rows: &[Row], cur: Currency, labels: &[String]) -> String {
    let Some(first) = rows.first() else { return String::new() };
    let mut cols: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["kpi".to_string()];
    head.extend(labels.iter().cloned());
    cols.push(first.kpis.0.iter().map(|(k, _)| k.to_string()).collect());
    for r in rows {
        cols.push(r.kpis.0.iter().map(|(_, v)| value_text(v, cur)).collect());
    }
    let widths: Vec<usize> = cols
        .iter()
        .zip(&head)
        .map(|(c, h)| c.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(h.chars().count()))
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    out += &line(head.iter().map(String::as_str).collect());
    for i in 0..cols[0].len() {
        out += &line(cols.iter().map(|c| c[i].as_str()).collect());
    }
    out
}

pub fn cohorts_json(t: &CohortTable, cur: Currency) -> String {
    let rows: Vec<Json> = t
        .rows
        .iter()
        .map(|r| {
            json!({
                "cohort": r.label,
                "start": r.start.to_string(),
                "accounts": r.accounts,
                "base_mrr": money_json(r.base_mrr, cur),
                "retention": r.values.iter().map(|v| v.map_or(Json::Null, |x| json!(x))).collect::<Vec<_>>(),
            })
        })
        .collect();
    let metric = match t.metric {
        CohortMetric::Logo => "logo",
        CohortMetric::Revenue => "revenue",
    };
    serde_json::to_string_pretty(&json!({"metric": metric, "cohorts": rows})).unwrap_or_default()
}

pub fn cohorts_text(t: &CohortTable, csv: bool) -> String {
    let n = t.rows.iter().map(|r| r.values.len()).max().unwrap_or(0);
    let sep = if csv { "," } else { " " };
    let mut out = String::new();
    let mut head = vec!["cohort".to_string(), "accounts".to_string()];
    head.extend((0..n).map(|k| format!("{}{k}", if csv { "p" } else { "+" })));
    let cell = |s: &str, w: usize| if csv { s.to_string() } else { format!("{s:>w$}") };
    out += &head
        .iter()
        .enumerate()
        .map(|(i, h)| cell(h, if i == 0 { 8 } else { 7 }))
        .collect::<Vec<_>>()
        .join(sep);
    out += "\n";
    for r in &t.rows {
        let mut cells = vec![cell(&r.label, 8), cell(&r.accounts.to_string(), 7)];
        for v in &r.values {
            let s = match v {
                Some(x) if csv => format!("{x:.6}"),
                Some(x) => format!("{:.1}%", x * 100.0),
                None => String::new(),
            };
            cells.push(cell(&s, 7));
        }
        out += cells.join(sep).trim_end();
        out += "\n";
    }
    out
}

/// The renewals due in a period, one per contract term.
pub fn renewals(
    list: &[(&str, &tenure_ledger::Renewal)],
    cur: Currency,
    format: OutFormat,
) -> String {
    use tenure_ledger::RenewalOutcome::*;
    let fields = |r: &tenure_ledger::Renewal| match r.outcome {
        Won { at, arr } => ("won", Some(at), Some(arr)),
        Lost { at } => ("lost", Some(at), None),
        Open => ("open", None, None),
    };
    match format {
        OutFormat::Json => {
            let rows: Vec<Json> = list
                .iter()
                .map(|(a, r)| {
                    let (outcome, at, arr) = fields(r);
                    json!({
                        "account_id": a,
                        "subscription_id": r.subscription_id,
                        "due": r.due.to_string(),
                        "arr_due": money_json(r.arr_due, cur),
                        "outcome": outcome,
                        "decided_at": at.map(|t| t.to_string()),
                        "arr_renewed": arr.map(|m| money_json(m, cur)),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
        }
        OutFormat::Csv | OutFormat::Table => {
            let sep = if format == OutFormat::Csv { "," } else { "  " };
            let mut out = [
                "account_id",
                "subscription_id",
                "due",
                "arr_due",
                "outcome",
                "decided_at",
                "arr_renewed",
            ]
            .join(sep)
                + "\n";
            for (a, r) in list {
                let (outcome, at, arr) = fields(r);
                let cells = [
                    csv_cell(a),
                    csv_cell(&r.subscription_id),
                    r.due.date_string(),
                    tenure_core::money::format_minor(r.arr_due, cur),
                    outcome.to_string(),
                    at.map(|t| t.date_string()).unwrap_or_default(),
                    arr.map(|m| tenure_core::money::format_minor(m, cur)).unwrap_or_default(),
                ];
                out += &cells.join(sep);
                out += "\n";
            }
            out
        }
    }
}
