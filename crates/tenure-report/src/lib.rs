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

/// The source events of an explanation read back from the log, by reference: each one's
/// record index in the subscription lane and the event.
pub type Resolved =
    std::collections::HashMap<tenure_ledger::SourceRef, (u64, tenure_core::event::Event)>;

fn source_json(r: &tenure_ledger::SourceRef, events: &Resolved) -> Json {
    let mut o = Map::new();
    o.insert("ref".into(), json!(r.to_string()));
    let Some((position, e)) = events.get(r) else {
        o.insert("found".into(), json!(false));
        return Json::Object(o);
    };
    o.insert("found".into(), json!(true));
    o.insert("position".into(), json!(position));
    o.insert("type".into(), json!(e.kind().as_str()));
    o.insert("ts".into(), json!(e.ts.to_string()));
    o.insert("message_id".into(), e.message_id.as_ref().map_or(Json::Null, |m| json!(m)));
    if let tenure_core::event::EventBody::Subscription(s) = &e.body {
        o.insert("subscription_id".into(), json!(s.subscription_id));
        o.insert("product".into(), s.product.as_ref().map_or(Json::Null, |p| json!(p)));
        o.insert("plan".into(), s.plan.as_ref().map_or(Json::Null, |p| json!(p)));
        o.insert("status".into(), json!(s.status.as_str()));
        o.insert("amount".into(), money_json(s.amount.minor, s.amount.currency));
        o.insert("currency".into(), json!(s.amount.currency.to_string()));
        o.insert("interval_months".into(), json!(s.interval_months));
        o.insert("quantity".into(), json!(s.quantity));
    }
    Json::Object(o)
}

fn by_label(by: &tenure_kpi::By) -> String {
    match by {
        tenure_kpi::By::Attribute(a) => a.clone(),
        tenure_kpi::By::Plan => "plan".into(),
        tenure_kpi::By::TenureBand => "tenure_band".into(),
        tenure_kpi::By::Account => "account".into(),
    }
}

/// An explanation as JSON (the CLI's `--format json` and `GET /api/v1/kpis/explain`):
/// money in major units of `cur`, every source with the event it names (or `found: false`).
pub fn explain_json(
    e: &tenure_kpi::explain::Explanation,
    cur: Currency,
    as_of: tenure_core::time::Timestamp,
    events: &Resolved,
) -> Json {
    let seg = |s: &Option<String>| s.as_ref().map_or(Json::Null, |s| json!(s));
    let mut o = Map::new();
    o.insert("kpi".into(), json!(e.kpi.id()));
    o.insert(
        "period".into(),
        json!({"start": e.period.start.to_string(), "end": e.period.end.to_string()}),
    );
    o.insert("as_of".into(), json!(as_of.to_string()));
    o.insert("currency".into(), json!(cur.to_string()));
    o.insert("at".into(), e.at.map_or(Json::Null, |t| json!(t.to_string())));
    o.insert("by".into(), e.selection.by.as_ref().map_or(Json::Null, |b| json!(by_label(b))));
    // Present only when a segment was chosen (null: the accounts without the attribute).
    if let Some(s) = &e.selection.segment {
        o.insert("segment".into(), seg(s));
    }
    o.insert("account".into(), e.selection.account.as_ref().map_or(Json::Null, |a| json!(a)));
    o.insert("figure".into(), money_json(e.figure, cur));
    o.insert("total".into(), money_json(e.total, cur));
    o.insert("balanced".into(), json!(e.balances()));
    if e.selection.by.is_some() && e.selection.segment.is_none() {
        let segments: Vec<Json> = e
            .segments
            .iter()
            .map(|s| {
                json!({
                    "segment": seg(&s.segment),
                    "total": money_json(s.total, cur),
                    "figure": money_json(s.figure, cur),
                })
            })
            .collect();
        o.insert("segments".into(), Json::Array(segments));
    }
    let accounts: Vec<Json> = e
        .lines
        .iter()
        .map(|l| {
            let movements: Vec<Json> = l
                .items
                .iter()
                .map(|i| {
                    json!({
                        "ts": i.ts.to_string(),
                        "kind": i.kind.as_str(),
                        "amount": money_json(i.amount, cur),
                        "involuntary": i.involuntary,
                        "sources": i.sources.iter().map(|r| source_json(r, events)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let mut a = Map::new();
            a.insert("account".into(), json!(l.account));
            a.insert("name".into(), l.name.as_ref().map_or(Json::Null, |n| json!(n)));
            if let Some(s) = &l.segment {
                a.insert("segment".into(), seg(s));
            }
            a.insert("amount".into(), money_json(l.amount, cur));
            a.insert("movements".into(), Json::Array(movements));
            Json::Object(a)
        })
        .collect();
    o.insert("accounts_total".into(), json!(e.lines.len()));
    o.insert("accounts".into(), Json::Array(accounts));
    Json::Object(o)
}

fn source_text(r: &tenure_ledger::SourceRef, events: &Resolved) -> String {
    let Some((position, e)) = events.get(r) else {
        return "not found in the log".into();
    };
    let mut s = format!("{} {}", e.kind().as_str(), e.ts);
    if let tenure_core::event::EventBody::Subscription(sub) = &e.body {
        s += &format!(
            ", line {} {} {}/{}m {}",
            sub.subscription_id,
            tenure_core::money::format_minor(sub.amount.minor, sub.amount.currency),
            sub.amount.currency,
            sub.interval_months,
            sub.status.as_str()
        );
    }
    // A reference by message id gets where the event is; one by position, its message id.
    match (r, &e.message_id) {
        (tenure_ledger::SourceRef::Message(_), _) => s + &format!(" (log position {position})"),
        (tenure_ledger::SourceRef::Log(_), Some(m)) => s + &format!(" (message {m})"),
        (tenure_ledger::SourceRef::Log(_), None) => s,
    }
}

/// An explanation as text: the figure, then each account with its movements and under
/// each movement the events it classifies; the total last.
pub fn explain_table(
    e: &tenure_kpi::explain::Explanation,
    cur: Currency,
    as_of: tenure_core::time::Timestamp,
    events: &Resolved,
) -> String {
    let m = |x: i64| tenure_core::money::format_minor(x, cur);
    let mut out = format!(
        "{} over {}..{} in {cur}, as of {as_of}: {}\n",
        e.kpi.id(),
        e.period.start.date_string(),
        e.period.end.date_string(),
        m(e.figure)
    );
    if let Some(at) = e.at {
        out += &format!("MRR just before {at}\n");
    }
    if let Some(b) = &e.selection.by {
        out += &format!("cut by {}", by_label(b));
        if let Some(s) = &e.selection.segment {
            out += &format!(": {}", s.as_deref().unwrap_or("(none)"));
        }
        out += "\n";
    }
    if let Some(a) = &e.selection.account {
        out += &format!("account {a}\n");
    }
    for s in &e.segments {
        out += &format!("  segment {}: {}\n", s.segment.as_deref().unwrap_or("(none)"), m(s.total));
    }
    let width = e.lines.iter().map(|l| m(l.amount).len()).max().unwrap_or(0);
    for l in &e.lines {
        out += &format!("\n{:>width$}  {}", m(l.amount), l.account);
        if let Some(n) = &l.name {
            out += &format!(" ({n})");
        }
        if let Some(s) = &l.segment {
            out += &format!(" [{}]", s.as_deref().unwrap_or("(none)"));
        }
        out += "\n";
        for i in &l.items {
            out += &format!(
                "    {} {}{} {}\n",
                i.ts,
                i.kind.as_str(),
                if i.involuntary { " (involuntary)" } else { "" },
                m(i.amount)
            );
            for r in &i.sources {
                out += &format!("      {r}: {}\n", source_text(r, events));
            }
        }
    }
    out += &format!(
        "\ntotal {} over {} account{}",
        m(e.total),
        e.lines.len(),
        if e.lines.len() == 1 { "" } else { "s" }
    );
    if e.balances() {
        out += &format!(" = {} {}\n", e.kpi.id(), m(e.figure));
    } else {
        out += &format!(
            " DIFFERS from {} {}: this is a bug, please report it\n",
            e.kpi.id(),
            m(e.figure)
        );
    }
    out
}

/// An explanation as CSV: one row per movement (money in major units), so that the amount
/// column sums to the figure; its sources space-separated.
pub fn explain_csv(e: &tenure_kpi::explain::Explanation, cur: Currency) -> String {
    let mut out = String::from("account,name,segment,ts,kind,amount,involuntary,sources\n");
    for l in &e.lines {
        for i in &l.items {
            let sources: Vec<String> = i.sources.iter().map(|r| r.to_string()).collect();
            out += &format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_cell(&l.account),
                csv_cell(l.name.as_deref().unwrap_or("")),
                csv_cell(l.segment.as_ref().and_then(|s| s.as_deref()).unwrap_or("")),
                i.ts,
                i.kind.as_str(),
                money_json(i.amount, cur),
                i.involuntary,
                csv_cell(&sources.join(" "))
            );
        }
    }
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
