//! tenure-report: rendering reports (KPI rows, cohort tables, renewals, NPS, the account
//! view) as a table, JSON or CSV; the CLI prints them and the service answers with them.

pub mod forecast;

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
pub fn money_json(minor: i64, cur: Currency) -> Json {
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
    // Ids may hold a churn reason's text, so header cells are quoted like any other.
    for (k, v) in &first.kpis.0 {
        if matches!(v, Value::Interval(_)) {
            out +=
                &format!(",{},{}", csv_cell(&format!("{k}_low")), csv_cell(&format!("{k}_high")));
        } else {
            out += &format!(",{}", csv_cell(k));
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

/// NPS for a period, with the migration matrices when asked.
pub fn nps(row: &Row, migration: Option<&tenure_kpi::cs::Migration>, format: OutFormat) -> String {
    use tenure_kpi::cs::NpsCategory;
    let cats = [NpsCategory::Detractor, NpsCategory::Passive, NpsCategory::Promoter];
    let get = |id: &str| row.kpis.get(id).map_or(Json::Null, |v| value_json(v, Currency::USD));
    match format {
        OutFormat::Json => {
            let mut o = Map::new();
            o.insert(
                "period".into(),
                json!({"start": row.period.start.to_string(), "end": row.period.end.to_string()}),
            );
            for id in [
                "nps",
                "nps_se",
                "nps_responses",
                "nps_promoters",
                "nps_passives",
                "nps_detractors",
            ] {
                o.insert(id.into(), get(id));
            }
            if let Some(m) = migration {
                let matrix = |x: &[[u64; 3]; 3]| {
                    let mut from = Map::new();
                    for a in cats {
                        let mut to = Map::new();
                        for b in cats {
                            to.insert(b.as_str().into(), json!(x[a as usize][b as usize]));
                        }
                        from.insert(a.as_str().into(), Json::Object(to));
                    }
                    Json::Object(from)
                };
                o.insert("contacts".into(), matrix(&m.contacts));
                o.insert("accounts".into(), matrix(&m.accounts));
                o.insert(
                    "detractor_conversion_rate".into(),
                    m.detractor_conversion_rate().map_or(Json::Null, |x| json!(x)),
                );
                o.insert(
                    "promoter_decay_rate".into(),
                    m.promoter_decay_rate().map_or(Json::Null, |x| json!(x)),
                );
            }
            serde_json::to_string_pretty(&Json::Object(o)).unwrap_or_default() + "\n"
        }
        OutFormat::Table | OutFormat::Csv => {
            let text = |id: &str| {
                row.kpis.get(id).map_or("n/a".to_string(), |v| value_text(v, Currency::USD))
            };
            let mut out = format!(
                "NPS {} (standard error {}) from {} respondents: {} promoters, {} passives, {} detractors\n",
                text("nps"),
                text("nps_se"),
                text("nps_responses"),
                text("nps_promoters"),
                text("nps_passives"),
                text("nps_detractors")
            );
            if let Some(m) = migration {
                for (what, x) in [("contacts", &m.contacts), ("accounts", &m.accounts)] {
                    out += &format!(
                        "\n{what:<12} {:>10} {:>10} {:>10}   (from the row to the column)\n",
                        "detractor", "passive", "promoter"
                    );
                    for a in cats {
                        out += &format!(
                            "{:<12} {:>10} {:>10} {:>10}\n",
                            a.as_str(),
                            x[a as usize][0],
                            x[a as usize][1],
                            x[a as usize][2]
                        );
                    }
                }
                let pct = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{:.1}%", x * 100.0));
                out += &format!(
                    "\npromoter decay {} of promoters became passives or detractors; detractor conversion {}\n",
                    pct(m.promoter_decay_rate()),
                    pct(m.detractor_conversion_rate())
                );
            }
            out
        }
    }
}

/// One account: attributes, revenue history, renewals, contacts, surveys, tickets,
/// milestones, and its KPIs for a period.
/// One month of an account's usage trend.
pub struct UsageMonth {
    pub month: tenure_core::time::Period,
    pub events: u64,
    /// Users active in the 30 days before the month end.
    pub mau: u64,
}

impl UsageMonth {
    fn label(&self) -> String {
        let (y, m, _) = self.month.start.ymd();
        format!("{y:04}-{m:02}")
    }
}

pub fn account(
    a: &tenure_ledger::AccountLedger,
    row: &Row,
    trend: &[UsageMonth],
    cur: Currency,
    as_of: tenure_core::time::Timestamp,
    format: OutFormat,
) -> String {
    use tenure_ledger::RenewalOutcome;
    let money = |m: i64| tenure_core::money::format_minor(m, cur);
    let now = a.state_before(tenure_core::time::Timestamp(as_of.0.saturating_add(1)));
    let mut attrs: Vec<(String, String)> = Vec::new();
    for (_, k, v) in &a.attributes {
        match attrs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.label(),
            None => attrs.push((k.clone(), v.label())),
        }
    }
    attrs.sort();
    let contacts = a.cs.contacts_before(tenure_core::time::Timestamp(as_of.0.saturating_add(1)));
    let outcome = |o: &RenewalOutcome| match o {
        RenewalOutcome::Won { at, arr } => (format!("won {}", at.date_string()), Some(*arr)),
        RenewalOutcome::Lost { at } => (format!("lost {}", at.date_string()), None),
        RenewalOutcome::Open => ("open".to_string(), None),
    };
    if format == OutFormat::Json {
        let j = json!({
            "account_id": a.id,
            "name": a.name,
            "attributes": attrs.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<String, Json>>(),
            "mrr": money_json(now.map_or(0, |s| s.mrr), cur),
            "arr": money_json(now.map_or(0, |s| s.arr), cur),
            "customer": now.is_some_and(|s| s.customer),
            "seats": now.map_or(0, |s| s.seats),
            "plan": now.and_then(|s| s.plan.as_deref()),
            "first_paid": a.first_paid().map(|t| t.to_string()),
            "movements": a.movements.iter().map(|m| json!({
                "at": m.ts.to_string(), "kind": m.kind.as_str(), "mrr": money_json(m.delta(), cur),
                "upsell": money_json(m.upsell, cur), "cross_sell": money_json(m.cross_sell, cur), "involuntary": m.involuntary,
                "cancel_reason": m.cancel_reason.as_deref(),
            })).collect::<Vec<_>>(),
            "renewals": a.renewals.iter().map(|r| {
                let (o, arr) = outcome(&r.outcome);
                json!({"subscription_id": r.subscription_id, "due": r.due.to_string(), "arr_due": money_json(r.arr_due, cur), "outcome": o, "arr_renewed": arr.map(|x| money_json(x, cur))})
            }).collect::<Vec<_>>(),
            "cancellations_scheduled": a.cancellations_scheduled.iter().map(|(given, at)| json!({"given": given.to_string(), "effective": at.to_string()})).collect::<Vec<_>>(),
            "contacts": contacts.iter().map(|c| json!({
                "contact_id": c.contact_id, "name": c.name, "email": c.email, "role": c.role.map(|r| r.as_str()),
                "active": c.active, "left_at": c.left_at.map(|t| t.to_string()),
            })).collect::<Vec<_>>(),
            "departures": a.cs.departures.iter().map(|d| json!({"at": d.ts.to_string(), "contact_id": d.contact_id, "role": d.role.map(|r| r.as_str()), "moved_to": d.moved_to})).collect::<Vec<_>>(),
            "nps_history": a.cs.responses.iter().filter_map(|r| match r.score {
                tenure_core::event::SurveyScore::Nps(s) => Some(json!({"at": r.ts.to_string(), "contact_id": r.contact_id, "score": s, "comment": r.comment})),
                _ => None,
            }).collect::<Vec<_>>(),
            "tickets": a.cs.tickets.iter().map(|t| json!({
                "ticket_id": t.ticket_id, "opened": t.opened.to_string(), "closed": t.closed.map(|x| x.to_string()),
                "category": t.category.map(|c| c.as_str()), "severity": t.severity.map(|c| c.as_str()), "csat": t.csat,
            })).collect::<Vec<_>>(),
            "milestones": a.cs.milestones.iter().map(|(t, n)| json!({"at": t.to_string(), "name": n})).collect::<Vec<_>>(),
            "usage_trend": trend.iter().map(|m| json!({"month": m.label(), "events": m.events, "mau": m.mau})).collect::<Vec<_>>(),
            "kpis": row_json(row, cur),
        });
        return serde_json::to_string_pretty(&j).unwrap_or_default() + "\n";
    }
    let mut out =
        format!("{} {}\n", a.id, a.name.as_deref().map(|n| format!("({n})")).unwrap_or_default());
    if !attrs.is_empty() {
        out += &format!(
            "  {}\n",
            attrs.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        );
    }
    out += &format!(
        "  MRR {} {cur} (ARR {}), {} seats, plan {}, {}\n",
        money(now.map_or(0, |s| s.mrr)),
        money(now.map_or(0, |s| s.arr)),
        now.map_or(0, |s| s.seats),
        now.and_then(|s| s.plan.as_deref()).unwrap_or("-"),
        match (now.is_some_and(|s| s.customer), a.first_paid()) {
            (true, Some(t)) => format!("customer since {}", t.date_string()),
            (false, Some(_)) => "not a customer now".to_string(),
            _ => "never paid".to_string(),
        }
    );
    out += "\nMRR movements\n";
    for m in &a.movements {
        out += &format!(
            "  {}  {:<12} {:>12}{}{}\n",
            m.ts.date_string(),
            m.kind.as_str(),
            money(m.delta()),
            if m.involuntary { "  (involuntary)" } else { "" },
            m.cancel_reason.as_deref().map_or(String::new(), |r| format!(
                "  reason: {}",
                r.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        );
    }
    if !a.renewals.is_empty() {
        out += "\nRenewals\n";
        for r in &a.renewals {
            out += &format!(
                "  {}  {}  ARR {}  {}\n",
                r.due.date_string(),
                r.subscription_id,
                money(r.arr_due),
                outcome(&r.outcome).0
            );
        }
    }
    for (given, at) in &a.cancellations_scheduled {
        out += &format!(
            "  cancellation scheduled on {} for {}\n",
            given.date_string(),
            at.date_string()
        );
    }
    if !contacts.is_empty() {
        out += "\nContacts\n";
        for c in &contacts {
            out += &format!(
                "  {:<20} {:<18} {}\n",
                c.name.as_deref().unwrap_or(&c.contact_id),
                c.role.map_or("-", |r| r.as_str()),
                match c.left_at {
                    Some(t) if !c.active => format!("left {}", t.date_string()),
                    _ => "active".to_string(),
                }
            );
        }
    }
    let scores: Vec<String> =
        a.cs.responses
            .iter()
            .filter_map(|r| match r.score {
                tenure_core::event::SurveyScore::Nps(s) => {
                    Some(format!("{} {}", r.ts.date_string(), s))
                }
                _ => None,
            })
            .collect();
    if !scores.is_empty() {
        out += &format!(
            "\nNPS responses ({}): {}\n",
            scores.len(),
            scores.iter().rev().take(8).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if trend.iter().any(|m| m.events > 0) {
        out += "\nUsage (events, users active in the 30 days to the month end)\n";
        for m in trend {
            out += &format!("  {}  {:>10} {:>6}\n", m.label(), m.events, m.mau);
        }
    }
    if !a.cs.tickets.is_empty() {
        let open = a.cs.tickets.iter().filter(|t| t.closed.is_none()).count();
        out += &format!("\nTickets: {} in all, {open} open; latest:\n", a.cs.tickets.len());
        for t in a.cs.tickets.iter().rev().take(5) {
            out += &format!(
                "  {}  {:<10} {:<8} {:<8} {}\n",
                t.opened.date_string(),
                t.ticket_id,
                t.category.map_or("-", |c| c.as_str()),
                t.severity.map_or("-", |c| c.as_str()),
                t.closed.map_or("open".to_string(), |c| format!("closed {}", c.date_string()))
            );
        }
    }
    if !a.cs.milestones.is_empty() {
        out += &format!(
            "\nMilestones: {}\n",
            a.cs.milestones
                .iter()
                .map(|(t, n)| format!("{n} {}", t.date_string()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out +=
        &format!("\nKPIs, {}..{}\n", row.period.start.date_string(), row.period.end.date_string());
    out += &kpis_table(std::slice::from_ref(row), cur, &["value".to_string()]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use tenure_core::time::Period;
    use tenure_kpi::Kpis;

    #[test]
    fn csv_quotes_ids_that_carry_a_churn_reason() {
        let row = Row {
            period: Period::parse("2026-Q3").unwrap(),
            segment: None,
            kpis: Kpis(vec![
                (Cow::Borrowed("mrr_churn"), Value::Money(12_345)),
                (
                    Cow::Owned("mrr_churn_by_reason.too slow, \"buggy\"".into()),
                    Value::Money(12_345),
                ),
            ]),
        };
        assert_eq!(
            kpis_csv(&[row], Currency::USD),
            "period_start,period_end,mrr_churn,\"mrr_churn_by_reason.too slow, \"\"buggy\"\"\"\n\
             2026-07-01T00:00:00Z,2026-10-01T00:00:00Z,123.45,123.45\n"
        );
    }
}
