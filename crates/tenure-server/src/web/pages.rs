//! The dashboard's pages, each a function of the live state, the session and the query.

use super::Session;
use super::charts::{self, Line};
use super::html::{self, esc, money, money_short, pct, pct1, url};
use crate::AppState;
use axum::http::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use tenure_core::time::{Period, PeriodUnit, Timestamp};
use tenure_health::features::{Context, F};
use tenure_kpi::{By, Value};
use tenure_ledger::AccountLedger;

type Page = Result<String, (StatusCode, String)>;

fn unavailable<T>(_: T) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, "the live state is unavailable".into())
}

fn kpi(row: &tenure_kpi::Row, id: &str, exp: u32) -> Option<f64> {
    match row.kpis.get(id)? {
        Value::Money(m) | Value::MaybeMoney(Some(m)) => Some(*m as f64 / 10f64.powi(exp as i32)),
        Value::Count(c) => Some(*c as f64),
        Value::Rate(r) | Value::Number(r) => *r,
        _ => None,
    }
}

fn month_label(t: Timestamp) -> String {
    let (y, m, _) = t.ymd();
    format!("{y:04}-{m:02}")
}

/// A tile: label, value, and the change on the previous period.
/// A change to show under a tile: the difference, whether up is good, its format.
type Change = Option<(f64, bool, fn(f64) -> String)>;

fn tile(out: &mut String, label: &str, value: String, change: Change) {
    let ch = match change {
        Some((d, good_up, fmt)) if d.is_finite() && d.abs() > 1e-9 => {
            let good = (d > 0.0) == good_up;
            format!(
                "<small class=\"{}\">{}{} on the month before</small>",
                if good { "up" } else { "down" },
                if d > 0.0 { "▲ " } else { "▼ " },
                esc(&fmt(d.abs()))
            )
        }
        Some(_) => "<small class=\"muted\">no change</small>".into(),
        None => "<small class=\"muted\">&nbsp;</small>".into(),
    };
    let _ = write!(
        out,
        "<div class=\"tile\"><small>{}</small><b>{}</b>{ch}</div>",
        esc(label),
        esc(&value)
    );
}

fn segments(live: &crate::live::Live) -> Vec<String> {
    let mut s: Vec<String> = live
        .ledger
        .accounts
        .iter()
        .filter_map(|a| crate::api::attr(a, "segment", live.t))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    s.truncate(200);
    s
}

/// A `<select>` of (value, label) options with `current` selected.
fn select<V: AsRef<str>, L: AsRef<str>>(
    name: &str,
    current: Option<&str>,
    options: &[(V, L)],
) -> String {
    // An accessible name of its own (a wrapping <label> may give a better one).
    select_named(name, &name.replace('_', " "), current, options)
}

/// A select with its accessible name (`label`); every value and label is escaped.
fn select_named<V: AsRef<str>, L: AsRef<str>>(
    name: &str,
    label: &str,
    current: Option<&str>,
    options: &[(V, L)],
) -> String {
    let mut out = format!("<select name=\"{}\" aria-label=\"{}\">", esc(name), esc(label));
    for (v, l) in options {
        let v = v.as_ref();
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            esc(v),
            if current == Some(v) { " selected" } else { "" },
            esc(l.as_ref())
        );
    }
    out + "</select>"
}

/// How long the KPI rows of closed months are reused once events of the current month have
/// come since they were computed (closed months change with them only through movement
/// grouping windows); an event dated in a closed month makes them be computed again at once.
const KPI_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// The KPI rows of the `months` full months before the current one, by segment when `cut`;
/// computed once per few minutes (the portfolio's costly part at 100,000 accounts).
/// The ledger a page computes over: the live one whole, or for someone who sees a book only,
/// a ledger holding the book's accounts (without the company-wide costs).
enum Book<'a> {
    Whole(&'a tenure_ledger::Ledger),
    Part(tenure_ledger::Ledger),
}

impl std::ops::Deref for Book<'_> {
    type Target = tenure_ledger::Ledger;
    fn deref(&self) -> &tenure_ledger::Ledger {
        match self {
            Book::Whole(l) => l,
            Book::Part(l) => l,
        }
    }
}

fn ledger_of<'a>(s: &AppState, sess: &Session, live: &'a crate::live::Live) -> Book<'a> {
    if sess.principal.is_all() {
        return Book::Whole(&live.ledger);
    }
    let accounts = live
        .ledger
        .accounts
        .iter()
        .filter(|a| s.sees(&sess.principal, a, live.t))
        .cloned()
        .collect();
    Book::Part(tenure_ledger::Ledger {
        accounts,
        costs: Vec::new(),
        diagnostics: Vec::new(),
        as_of: live.ledger.as_of,
        fx: live.ledger.fx.clone(),
    })
}

pub(crate) fn monthly_kpis(
    core: &crate::Core,
    live: &crate::live::Live,
    months: i64,
    cut: bool,
) -> std::sync::Arc<Vec<tenure_kpi::Row>> {
    let end = PeriodUnit::Month.floor(live.t);
    let key = (months, cut, end.0);
    if let Ok(c) = core.kpi_cache.lock()
        && let Some((at, (generation, history), rows)) = c.get(&key)
        && (*generation == live.generation
            || (*history == live.history_generation && at.elapsed() < KPI_TTL))
    {
        return rows.clone();
    }
    let periods = Period::new(end.add_months(-months), end).split(PeriodUnit::Month);
    let by = cut.then(|| By::Attribute("segment".into()));
    let rows =
        std::sync::Arc::new(tenure_kpi::report(&live.ledger, &periods, by.as_ref(), &live.cfg.kpi));
    if let Ok(mut c) = core.kpi_cache.lock() {
        c.retain(|_, (at, g, _)| {
            g.0 == live.generation || (g.1 == live.history_generation && at.elapsed() < KPI_TTL)
        });
        let g = (live.generation, live.history_generation);
        c.insert(key, (std::time::Instant::now(), g, rows.clone()));
    }
    rows
}

pub fn portfolio(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    let t = live.t;
    let cur = live.cfg.revenue.fx.base;
    let exp = cur.exponent();
    let months: i64 =
        p.get("months").and_then(|m| m.parse().ok()).filter(|m| (3..=60).contains(m)).unwrap_or(12);
    let segment = p.get("segment").filter(|v| !v.is_empty()).cloned();
    let book = ledger_of(s, sess, &live);
    let all = match &book {
        Book::Whole(_) => monthly_kpis(&s.0.core, &live, months, segment.is_some()),
        // A book's figures: computed for the page (a book is small), not cached.
        Book::Part(l) => {
            let end = PeriodUnit::Month.floor(live.t);
            let periods = Period::new(end.add_months(-months), end).split(PeriodUnit::Month);
            let by = segment.is_some().then(|| By::Attribute("segment".into()));
            std::sync::Arc::new(tenure_kpi::report(l, &periods, by.as_ref(), &live.cfg.kpi))
        }
    };
    let rows: Vec<&tenure_kpi::Row> = all
        .iter()
        .filter(|r| {
            segment.is_none() || r.segment.as_ref().and_then(|x| x.as_deref()) == segment.as_deref()
        })
        .collect();
    let in_segment =
        |a: &AccountLedger| segment.is_none() || crate::api::attr(a, "segment", t) == segment;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Portfolio</h1><form class=\"filters\" method=\"get\">{}{}<button>Show</button></form>",
        select(
            "months",
            Some(&months.to_string()),
            &[("6", "Last 6 months"), ("12", "Last 12 months"), ("24", "Last 24 months")]
        ),
        select(
            "segment",
            Some(segment.as_deref().unwrap_or("")),
            &std::iter::once((String::new(), "All segments".to_string()))
                .chain(segments(&live).into_iter().map(|s| (s.clone(), s)))
                .collect::<Vec<_>>()
        )
    );
    // Risk and health now, over the accounts shown.
    let mut at_risk = (0usize, 0usize, 0f64, 0f64, 0f64);
    let (mut mau, mut seats) = (0f64, 0f64);
    let mut colours: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_seg: BTreeMap<String, (usize, f64, f64, usize)> = BTreeMap::new();
    for a in book.accounts.iter().filter(|a| in_segment(a)) {
        let Some(h) = live.health.accounts.get(&a.id) else { continue };
        *colours.entry(h.colour).or_default() += 1;
        let mrr = h.row.mrr as f64 / 10f64.powi(exp as i32);
        at_risk.1 += 1;
        at_risk.4 += mrr;
        let u = h.row.get(F::MAU);
        let st = h.row.get(F::SEATS);
        if u.is_finite() && st.is_finite() && st > 0.0 {
            mau += u.min(st);
            seats += st;
        }
        let seg = crate::api::attr(a, "segment", t).unwrap_or_else(|| "(none)".into());
        let e = by_seg.entry(seg).or_default();
        e.0 += 1;
        e.1 += mrr;
        if let Some(pr) = h.probability {
            at_risk.3 += mrr * pr;
            e.2 += mrr * pr;
            if pr >= s.0.at_risk {
                at_risk.0 += 1;
                at_risk.2 += mrr;
                e.3 += 1;
            }
        } else if h.colour == "red" {
            at_risk.0 += 1;
            at_risk.2 += mrr;
            e.3 += 1;
        }
    }
    body.push_str("<div class=\"tiles\">");
    let last = rows.last();
    let prev = rows.len().checked_sub(2).map(|i| rows[i]);
    let pair = |id: &str| (last.and_then(|r| kpi(r, id, exp)), prev.and_then(|r| kpi(r, id, exp)));
    let points: fn(f64) -> String = |d| format!("{d:.1} pts");
    let change =
        |(a, b): (Option<f64>, Option<f64>), scale: f64, good_up: bool, f: fn(f64) -> String| {
            a.zip(b).map(|(a, b)| ((a - b) * scale, good_up, f))
        };
    let m = pair("mrr_end");
    tile(&mut body, "MRR", m.0.map_or("–".into(), money), change(m, 1.0, true, money));
    let c = pair("committed_mrr_end");
    tile(
        &mut body,
        "Committed MRR (after scheduled cancellations)",
        c.0.map_or("–".into(), money),
        change(c, 1.0, true, money),
    );
    let a = pair("arr_end");
    tile(&mut body, "ARR", a.0.map_or("–".into(), money), change(a, 1.0, true, money));
    for (id, label, good_up) in [
        ("nrr", "NRR (month)", true),
        ("grr", "GRR (month)", true),
        ("logo_churn_rate", "Logo churn (month)", false),
        ("contract_renewal_rate", "Renewal rate (month)", true),
    ] {
        let v = pair(id);
        tile(&mut body, label, pct1(v.0), change(v, 100.0, good_up, points));
    }
    let n = pair("nps");
    tile(
        &mut body,
        "NPS (month)",
        n.0.map_or("–".into(), |x| format!("{x:.0}")),
        change(n, 1.0, true, points),
    );
    tile(&mut body, "Licence utilisation", pct((seats > 0.0).then(|| mau / seats)), None);
    tile(
        &mut body,
        "Accounts at risk",
        pct((at_risk.1 > 0).then(|| at_risk.0 as f64 / at_risk.1 as f64)),
        None,
    );
    tile(
        &mut body,
        if live.model.is_some() {
            "Revenue at risk (expected MRR loss)"
        } else {
            "Revenue at risk (MRR, red)"
        },
        money(if live.model.is_some() { at_risk.3 } else { at_risk.2 }),
        None,
    );
    body.push_str("</div>");
    let labels: Vec<String> = rows.iter().map(|r| month_label(r.period.start)).collect();
    let series = |id: &str, sign: f64| -> Vec<f64> {
        rows.iter().map(|r| sign * kpi(r, id, exp).unwrap_or(0.0)).collect()
    };
    // Each bar leads to its explanation: the accounts, movements and events behind it.
    let ids = ["mrr_new", "mrr_expansion", "mrr_reactivation", "mrr_contraction", "mrr_churn"];
    let cut = segment
        .as_deref()
        .map_or(String::new(), |s| format!("&by={}", url(&format!("segment={s}"))));
    let movements = charts::stacked_linked(
        "MRR movements per month",
        &labels,
        &[
            ("New", "#059669", series(ids[0], 1.0)),
            ("Expansion", "#2563eb", series(ids[1], 1.0)),
            ("Reactivation", "#7c3aed", series(ids[2], 1.0)),
            ("Contraction", "#d97706", series(ids[3], -1.0)),
            ("Churn", "#dc2626", series(ids[4], -1.0)),
        ],
        money_short,
        |k, i| Some(format!("/explain?kpi={}&period={}{cut}", ids[k], labels[i])),
    );
    let rate = |id: &str| -> Vec<Option<f64>> { rows.iter().map(|r| kpi(r, id, exp)).collect() };
    let nrr = charts::lines(
        "NRR and GRR per month",
        &labels,
        &[
            Line { name: "NRR", colour: "#2563eb", points: rate("nrr"), band: None },
            Line { name: "GRR", colour: "#059669", points: rate("grr"), band: None },
        ],
        |v| format!("{:.0}%", 100.0 * v),
    );
    let health = charts::hbars(
        "Health distribution",
        &["green", "yellow", "red", "grey"]
            .iter()
            .map(|c| {
                let col = match *c {
                    "green" => "#059669",
                    "yellow" => "#d97706",
                    "red" => "#dc2626",
                    _ => "#9ca3af",
                };
                (c.to_string(), *colours.get(c).unwrap_or(&0) as f64, col)
            })
            .collect::<Vec<_>>(),
        |v| format!("{v:.0}"),
    );
    let _ = write!(
        body,
        "<div class=\"grid2\"><div class=\"card\"><h2>MRR movements</h2>{movements}<p class=\"muted\">A bar opens the accounts, movements and events behind it.</p></div><div class=\"card\"><h2>NRR and GRR</h2>{nrr}</div>\
         <div class=\"card\"><h2>Health</h2>{health}</div><div class=\"card\"><h2>Risk by segment</h2><div class=\"scroll\"><table><thead><tr><th>Segment</th><th class=\"num\">Accounts</th><th class=\"num\">MRR</th><th class=\"num\">At risk</th><th class=\"num\">Expected MRR loss</th></tr></thead><tbody>"
    );
    for (seg, (n, mrr, loss, risky)) in &by_seg {
        let _ = write!(
            body,
            "<tr><td><a href=\"/accounts?segment={}&amp;sort=risk\">{}</a></td><td class=\"num\">{n}</td><td class=\"num\">{}</td><td class=\"num\">{risky}</td><td class=\"num\">{}</td></tr>",
            url(seg),
            esc(seg),
            money(*mrr),
            if live.model.is_some() { money(*loss) } else { "–".into() }
        );
    }
    body.push_str("</tbody></table></div></div></div>");
    if let Some(r) = last {
        body.push_str(&bridge(r, &rows, cur, &cut));
    }
    if live.model.is_none() {
        body.push_str("<p class=\"muted\">No churn model is saved: risk here is the red health colour. Train one with <code>tenure model train</code>.</p>");
    }
    Ok(html::page("Portfolio", "/", &sess.csrf, &body))
}

/// An exact amount in minor units as major units with its decimals, grouped by thousands.
fn amount(minor: i64, exp: u32) -> String {
    let scale = 10i128.pow(exp);
    let (units, frac) = (i128::from(minor).abs() / scale, i128::from(minor).abs() % scale);
    let digits = units.to_string();
    let mut out = String::new();
    if minor < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if exp > 0 {
        let _ = write!(out, ".{frac:0w$}", w = exp as usize);
    }
    out
}

/// The finance view of the last month shown: the MRR bridge from start to end, exact, with
/// churn split by cause and the FX impact closing it at closing rates; committed MRR beside
/// it; and the lost MRR by cancel reason over every month shown. Each movement links to
/// its explanation.
fn bridge(
    r: &tenure_kpi::Row,
    rows: &[&tenure_kpi::Row],
    cur: tenure_core::money::Currency,
    cut: &str,
) -> String {
    let exp = cur.exponent();
    let money_of = |row: &tenure_kpi::Row, id: &str| match row.kpis.get(id) {
        Some(Value::Money(m) | Value::MaybeMoney(Some(m))) => Some(*m),
        _ => None,
    };
    let get = |id: &str| money_of(r, id);
    let month = month_label(r.period.start);
    let link = |id: &str, text: &str| {
        format!("<a href=\"/explain?kpi={id}&amp;period={month}{}\">{}</a>", esc(cut), esc(text))
    };
    // At closing rates when the rates are known (the bridge then closes with the FX row);
    // at the rates of each line's booking otherwise.
    let fx = get("mrr_fx_impact");
    let (start, end) = match fx {
        Some(_) => (get("mrr_start_at_closing_rates"), get("mrr_end_at_closing_rates")),
        None => (get("mrr_start"), get("mrr_end")),
    };
    let mut lines: Vec<(String, Option<i64>, &str)> = vec![
        (format!("MRR at the start of {month}"), start, "total"),
        (link("mrr_new", "New"), get("mrr_new"), ""),
        (link("mrr_expansion", "Expansion"), get("mrr_expansion"), ""),
        (link("mrr_reactivation", "Reactivation"), get("mrr_reactivation"), ""),
        (link("mrr_contraction", "Contraction"), get("mrr_contraction").map(|x| -x), ""),
        (
            format!("{}, voluntary (cancelled)", link("mrr_churn", "Churn")),
            get("mrr_churn_voluntary").map(|x| -x),
            "",
        ),
        (
            format!("{}, involuntary (payment failed)", link("mrr_churn", "Churn")),
            get("mrr_churn_involuntary").map(|x| -x),
            "",
        ),
    ];
    if fx.is_some() {
        lines.push(("FX impact (exchange rates moved)".into(), fx, ""));
    }
    lines.push((format!("MRR at the end of {month}"), end, "total"));
    lines.push((
        "Committed MRR at the end (after scheduled cancellations)".into(),
        get("committed_mrr_end"),
        "",
    ));
    let mut out = format!(
        "<div class=\"grid2\"><div class=\"card\"><h2>Revenue bridge, {month} ({cur})</h2><div class=\"scroll\"><table><thead><tr><th>Movement</th><th class=\"num\">{cur}</th></tr></thead><tbody>"
    );
    for (label, v, class) in lines {
        let shown = v.map_or("–".into(), |x| amount(x, exp));
        let sign = match v {
            Some(x) if x < 0 && class.is_empty() => " down",
            Some(x) if x > 0 && class.is_empty() => " up",
            _ => "",
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{label}</td><td class=\"num{sign}\">{}</td></tr>",
            esc(&shown)
        );
    }
    out.push_str("</tbody></table></div>");
    if fx.is_some() {
        out.push_str("<p class=\"muted\">At the month's closing exchange rates: start plus movements plus the FX impact equals the end.</p>");
    } else {
        out.push_str("<p class=\"muted\">No FX impact: an exchange rate for the month is missing, so the figures are at the rates of each line's booking.</p>");
    }
    out.push_str("</div>");
    // Lost MRR by cancel reason, over the months shown.
    let mut by_reason: BTreeMap<&str, i64> = BTreeMap::new();
    for row in rows {
        for (id, v) in &row.kpis.0 {
            if let (Some(reason), Value::Money(m)) = (id.strip_prefix("mrr_churn_by_reason."), v) {
                *by_reason.entry(reason).or_default() += m;
            }
        }
    }
    let mut reasons: Vec<(&str, i64)> = by_reason.into_iter().filter(|r| r.1 != 0).collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: i64 = reasons.iter().map(|r| r.1).sum();
    let _ = write!(
        out,
        "<div class=\"card\"><h2>Lost MRR by cancel reason, last {} months ({cur})</h2>",
        rows.len()
    );
    if reasons.is_empty() {
        out.push_str("<p class=\"muted\">No churn in these months.</p>");
    } else {
        out.push_str("<div class=\"scroll\"><table><thead><tr><th>Reason</th><th class=\"num\">Lost MRR</th><th class=\"num\">Share</th></tr></thead><tbody>");
        for (reason, m) in &reasons {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&reason.replace('_', " ")),
                esc(&amount(*m, exp)),
                pct(Some(*m as f64 / total as f64))
            );
        }
        let _ = write!(
            out,
            "<tr class=\"total\"><td>All reasons</td><td class=\"num\">{}</td><td class=\"num\">100%</td></tr></tbody></table></div>",
            esc(&amount(total, exp))
        );
    }
    out.push_str("</div></div>");
    out
}

pub fn accounts(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    let t = live.t;
    let cur = live.cfg.revenue.fx.base;
    let exp = cur.exponent();
    // Customers only unless asked otherwise: prospects and churned accounts are not a
    // CSM's daily list.
    let mut p = p.clone();
    p.entry("customer".into()).or_insert_with(|| "true".into());
    let p = &p;
    let list = crate::api::select(&live, p, |a| s.sees(&sess.principal, a, t))
        .map_err(|e| (StatusCode::BAD_REQUEST, e.message))?;
    let limit = 100;
    let pages = list.len().div_ceil(limit).max(1);
    let page: usize =
        p.get("page").and_then(|v| v.parse().ok()).filter(|n| (1..=pages).contains(n)).unwrap_or(1);
    let offset = (page - 1) * limit;
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    // Names that more than one account shares get the id beside them.
    let mut names: HashMap<&str, usize> = HashMap::new();
    for a in &list {
        *names.entry(a.name.as_deref().unwrap_or(&a.id)).or_default() += 1;
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Accounts</h1><form class=\"filters\" method=\"get\"><input name=\"q\" placeholder=\"Search\" aria-label=\"Search names and ids\" value=\"{}\"><label>Segment {}</label><label>Health {}</label><label>Accounts {}</label><input name=\"csm\" placeholder=\"CSM\" aria-label=\"CSM\" value=\"{}\"><input type=\"hidden\" name=\"sort\" value=\"{}\"><button>Filter</button></form>",
        esc(get("q")),
        select(
            "segment",
            Some(get("segment")),
            &std::iter::once((String::new(), "All segments".to_string()))
                .chain(segments(&live).into_iter().map(|s| (s.clone(), s)))
                .collect::<Vec<_>>()
        ),
        select(
            "colour",
            Some(get("colour")),
            &[
                ("", "Any health"),
                ("red", "Red"),
                ("yellow", "Yellow"),
                ("green", "Green"),
                ("grey", "Not scored")
            ]
        ),
        select(
            "customer",
            Some(get("customer")),
            &[("true", "Customers only"), ("false", "All accounts")]
        ),
        esc(get("csm")),
        esc(get("sort"))
    );
    // Column headers sort; the other parameters are kept.
    let keep: String = ["q", "segment", "colour", "csm", "customer"]
        .iter()
        .filter(|k| !get(k).is_empty())
        .map(|k| format!("&amp;{k}={}", url(get(k))))
        .collect();
    let th = |key: &str, label: &str, num: bool| {
        let on = get("sort") == key;
        let order = if on && get("order") == "asc" {
            "desc"
        } else if on {
            "asc"
        } else {
            ""
        };
        format!(
            "<th{}><a href=\"/accounts?sort={key}{}{keep}\">{label}{}</a></th>",
            if num { " class=\"num\"" } else { "" },
            if order.is_empty() { String::new() } else { format!("&amp;order={order}") },
            if on { " ↕" } else { "" }
        )
    };
    let _ = write!(
        body,
        "<p class=\"muted\">{} accounts</p><div class=\"scroll\"><table><thead><tr>{}{}{}{}{}{}{}{}{}<th class=\"num\">Open tasks</th></tr></thead><tbody>",
        list.len(),
        th("name", "Account", false),
        th("health", "Health", true),
        th("risk", "Churn risk", true),
        th("mrr", &format!("MRR ({cur})"), true),
        th("renewal", "Renewal", false),
        th("csm", "CSM", false),
        th("segment", "Segment", false),
        th("utilisation", "Licences used", true),
        th("nps", "NPS", true),
    );
    for a in list.iter().skip(offset).take(limit) {
        let h = live.health.accounts.get(&a.id);
        let mrr = a.mrr_before(Timestamp(t.0 + 1)) as f64 / 10f64.powi(exp as i32);
        let _ = write!(
            body,
            "<tr><td><a href=\"/accounts/{}\">{}</a>{}</td><td class=\"num\">{} {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            url(&a.id),
            esc(a.name.as_deref().unwrap_or(&a.id)),
            if names.get(a.name.as_deref().unwrap_or(&a.id)).copied().unwrap_or(0) > 1 {
                format!(" <small class=\"muted\">{}</small>", esc(&a.id))
            } else {
                String::new()
            },
            html::colour(h.map_or("grey", |h| h.colour)),
            h.and_then(|h| h.score).map_or("–".into(), |x| format!("{x:.0}")),
            pct(h.and_then(|h| h.probability)),
            money(mrr),
            a.next_renewal(t).map_or("–".into(), |d| d.date_string()),
            esc(&crate::api::attr(a, "csm", t).unwrap_or_default()),
            esc(&crate::api::attr(a, "segment", t).unwrap_or_default()),
            pct(h.map(|h| h.row.get(F::UTILISATION))),
            h.map(|h| h.row.get(F::NPS))
                .filter(|x| x.is_finite())
                .map_or("–".into(), |x| format!("{x:.0}")),
            a.cs.tasks.iter().filter(|t| t.is_active()).count()
        );
    }
    body.push_str("</tbody></table></div>");
    let base: String = ["q", "segment", "colour", "csm", "customer", "sort", "order"]
        .iter()
        .filter(|k| !get(k).is_empty())
        .map(|k| format!("&amp;{k}={}", url(get(k))))
        .collect();
    body.push_str(&pager(page, pages, &|n| format!("/accounts?page={n}{base}")));
    Ok(html::page("Accounts", "/accounts", &sess.csrf, &body))
}

/// A task's forms: assign, comment, resolve with a root cause.
/// A task's forms: assign, comment, resolve (with a root cause only when `asks`: the
/// task's rule is about risk, not routine). Every control has an accessible name.
pub(crate) fn task_forms(
    task: &tenure_ledger::cs::Task,
    sess: &Session,
    back: &str,
    asks: bool,
) -> String {
    // Read-only people (viewers, read keys) get no forms they could not send.
    if !sess.writes {
        return String::new();
    }
    let csrf = &sess.csrf;
    let action = format!("/inbox/tasks/{}", url(&task.task_id));
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\">",
        esc(csrf),
        esc(back)
    );
    let what = esc(task.title.as_deref().unwrap_or(&task.task_id));
    let mut out = String::new();
    let _ = write!(
        out,
        "<form class=\"inline\" method=\"post\" action=\"{action}\">{hidden}<input name=\"owner\" placeholder=\"Owner\" aria-label=\"Owner of {what}\" value=\"{}\" size=\"10\"><button class=\"plain\">Assign</button></form> \
         <form class=\"inline\" method=\"post\" action=\"{action}\">{hidden}<input name=\"note\" placeholder=\"Comment\" aria-label=\"Comment on {what}\" size=\"18\"><button class=\"plain\">Comment</button></form> ",
        esc(task.owner.as_deref().unwrap_or(""))
    );
    if task.is_active() {
        let cause = if asks {
            select_named(
                "root_cause",
                // Raw: `select_named` escapes it (`what` is escaped already).
                &format!("Root cause of {}", task.title.as_deref().unwrap_or(&task.task_id)),
                None,
                &root_causes("Root cause…"),
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<form class=\"inline\" method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"status\" value=\"done\">{cause}<input name=\"note\" placeholder=\"What was done\" aria-label=\"What was done for {what}\" size=\"14\"><button>Resolve</button></form>"
        );
    }
    out
}

/// Numbered page links (the first, the last and three either side of the current one).
fn pager(page: usize, pages: usize, href: &dyn Fn(usize) -> String) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut out = String::from("<nav class=\"pages\" aria-label=\"Pages\">");
    for n in 1..=pages {
        if n == page {
            let _ = write!(out, "<b aria-current=\"page\">{n}</b> ");
        } else if n == 1 || n == pages || n.abs_diff(page) <= 3 {
            let _ = write!(out, "<a href=\"{}\">{n}</a> ", href(n));
        } else if n.abs_diff(page) == 4 {
            out.push_str("… ");
        }
    }
    out + "</nav>"
}

/// Whether closing the task asks for a root cause: its rule is about risk, not routine
/// (a task of no rule known, imported say, asks).
pub(crate) fn asks(live: &crate::live::Live, task: &tenure_ledger::cs::Task) -> bool {
    live.rules.of_task(task.rule.as_deref()).is_none_or(|r| r.root_cause)
}

/// The one root-cause taxonomy the API accepts and the reports count by, after a first,
/// empty choice saying `first`.
fn root_causes(first: &str) -> Vec<(String, String)> {
    std::iter::once((String::new(), first.to_string()))
        .chain(
            tenure_core::event::RootCause::ALL.iter().map(|c| (c.as_str().to_string(), c.label())),
        )
        .collect()
}

fn severity_of(a: &AccountLedger, task: &tenure_ledger::cs::Task) -> &'static str {
    task.alert_id
        .as_ref()
        .and_then(|id| a.cs.alerts.iter().find(|x| &x.alert_id == id))
        .map_or("normal", |x| x.severity.as_str())
}

pub fn account(s: &AppState, sess: &Session, id: &str) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    // An account outside the book is as unknown as one that does not exist.
    let a = live
        .ledger
        .account(id)
        .filter(|a| s.sees(&sess.principal, a, live.t))
        .ok_or((StatusCode::NOT_FOUND, format!("no account {id:?}")))?;
    let t = live.t;
    let cur = live.cfg.revenue.fx.base;
    let exp = cur.exponent();
    let major = |m: i64| m as f64 / 10f64.powi(exp as i32);
    let h = live.health.accounts.get(id);
    let now = a.state_before(Timestamp(t.0 + 1));
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p class=\"muted\">{} · {} · CSM {}</p>{}<div class=\"tiles\">",
        esc(a.name.as_deref().unwrap_or(&a.id)),
        esc(&a.id),
        esc(&crate::api::attr(a, "segment", t).unwrap_or_else(|| "no segment".into())),
        esc(&crate::api::attr(a, &s.0.owner_key, Timestamp(t.0 + 1))
            .unwrap_or_else(|| "unassigned".into())),
        if sess.writes {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/accounts/{}/owner\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input name=\"owner\" aria-label=\"New owner of the account\" placeholder=\"New owner\" size=\"14\"><button class=\"plain\">Assign the account</button></form>",
                url(&a.id),
                esc(&sess.csrf)
            )
        } else {
            String::new()
        }
    );
    tile(&mut body, "MRR", money(major(now.map_or(0, |s| s.mrr))), None);
    tile(&mut body, "Renewal", a.next_renewal(t).map_or("–".into(), |d| d.date_string()), None);
    let _ = write!(
        body,
        "<div class=\"tile\"><small>Health</small><b>{} {}</b><small>{}</small></div>",
        html::colour(h.map_or("grey", |h| h.colour)),
        h.and_then(|h| h.score).map_or("–".into(), |x| format!("{x:.0}")),
        esc(h.and_then(|h| h.scorecard.as_deref()).unwrap_or(""))
    );
    tile(&mut body, "Churn risk", pct(h.and_then(|h| h.probability)), None);
    tile(&mut body, "Seats", now.map_or("–".into(), |s| s.seats.to_string()), None);
    // Lifetime value from the paid invoices (the forecaster's latest, when it has run).
    let values = s.0.core.lifetime.lock().ok().and_then(|v| v.clone());
    if let Some((v, (_, _, _, sc))) =
        values.as_deref().and_then(|v| v.accounts.get(id).map(|x| (v, x)))
    {
        let _ = write!(
            body,
            "<div class=\"tile\" id=\"lifetime\"><small>Value, next {} months</small><b>{}</b><small>{} payments expected; {} likely still buying</small></div>",
            v.horizon_months,
            sc.clv.map_or("–".into(), |c| money(c / 10f64.powi(exp as i32))),
            sc.expected_transactions.map_or("–".into(), |x| format!("{x:.1}")),
            pct(sc.p_alive)
        );
    }
    body.push_str("</div>");
    let drivers = h.map(|h| h.drivers(live.model.as_ref(), 3)).unwrap_or_default();
    if let Some(h) = h.filter(|_| !drivers.is_empty()) {
        // The heading agrees with the figure: drivers of a low risk are what moves it, not
        // why the account is at risk.
        let risky = match h.probability {
            Some(p) => p >= s.0.at_risk,
            None => h.colour == "red",
        };
        body.push_str(if risky {
            "<h2>Why at risk</h2><ul>"
        } else {
            "<h2>What moves its risk</h2><ul>"
        });
        for d in &drivers {
            let _ = write!(body, "<li>{}</li>", esc(&d.text));
        }
        body.push_str("</ul>");
    }
    // Monthly history: MRR, usage against seats, and the health score with its measures.
    let end = PeriodUnit::Month.floor(t);
    let starts: Vec<Timestamp> = (0..=12).rev().map(|k| end.add_months(-k)).collect();
    let labels: Vec<String> = starts.iter().map(|m| month_label(*m)).collect();
    let mrr: Vec<Option<f64>> = starts
        .iter()
        .map(|m| Some(major(a.mrr_before(m.add_months(1).min(Timestamp(t.0 + 1))))))
        .collect();
    let usage = live.usage.get(id).map_or(&[][..], |v| v.as_slice());
    let users: Vec<Option<f64>> = starts
        .iter()
        .map(|m| Some(usage.iter().find(|u| u.month == *m).map_or(0.0, |u| u.users as f64)))
        .collect();
    let seats: Vec<Option<f64>> = starts
        .iter()
        .map(|m| a.state_before(m.add_months(1).min(Timestamp(t.0 + 1))).map(|s| s.seats as f64))
        .collect();
    let ctx = Context { catalogue: &live.cfg.kpi.features, segment_key: "segment" };
    let mut score_hist = Vec::new();
    let mut parts_hist: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for (k, m) in starts.iter().enumerate() {
        let at = if k + 1 == starts.len() { t } else { m.add_months(1) };
        let row = tenure_health::features::snapshot(a, usage, at, &ctx);
        let sc = row.as_ref().and_then(|r| live.cards.for_row(r).map(|c| c.score(r)));
        score_hist.push(sc.as_ref().and_then(|s| s.value));
        for part in sc.iter().flat_map(|s| &s.parts) {
            parts_hist.entry(part.measure.clone()).or_insert_with(|| vec![None; starts.len()])[k] =
                Some(part.points);
        }
    }
    let mrr_chart = charts::lines(
        "MRR by month",
        &labels,
        &[Line { name: "MRR", colour: "#2563eb", points: mrr, band: None }],
        money_short,
    );
    let usage_chart = charts::lines(
        "Active users and seats by month",
        &labels,
        &[
            Line { name: "Active users", colour: "#059669", points: users, band: None },
            Line { name: "Seats", colour: "#9ca3af", points: seats, band: None },
        ],
        |v| format!("{v:.0}"),
    );
    let palette =
        ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9ca3af"];
    let part_names: Vec<String> = parts_hist.keys().cloned().collect();
    let parts_series: Vec<(&str, &str, Vec<f64>)> = part_names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.as_str(),
                palette[i % palette.len()],
                parts_hist[n].iter().map(|x| x.unwrap_or(0.0)).collect(),
            )
        })
        .collect();
    let health_chart = charts::lines(
        "Health score by month",
        &labels,
        &[Line { name: "Score", colour: "#111827", points: score_hist, band: None }],
        |v| format!("{v:.0}"),
    );
    let parts_chart =
        charts::stacked("Points each measure adds to the score", &labels, &parts_series, |v| {
            format!("{v:.0}")
        });
    let _ = write!(
        body,
        "<div class=\"grid2\"><div class=\"card\"><h2>MRR</h2>{mrr_chart}</div><div class=\"card\"><h2>Usage</h2>{usage_chart}</div>\
         <div class=\"card\"><h2>Health history</h2>{health_chart}</div><div class=\"card\"><h2>Health by measure</h2>{parts_chart}</div></div>"
    );
    // Tasks.
    let back = format!("/accounts/{}", url(id));
    let open: Vec<&tenure_ledger::cs::Task> = a.cs.tasks.iter().filter(|t| t.is_active()).collect();
    let _ = write!(body, "<h2>Open tasks ({})</h2>", open.len());
    if !open.is_empty() {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th>Task</th><th>Owner</th><th>Due</th><th>Latest note</th><th></th></tr></thead><tbody>");
        for task in &open {
            let _ = write!(
                body,
                "<tr><td class=\"sev-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                severity_of(a, task),
                esc(task.title.as_deref().unwrap_or(&task.task_id)),
                esc(task.owner.as_deref().unwrap_or("–")),
                task.due.map_or("–".into(), |d| d.date_string()),
                esc(task.notes.last().map_or("", |n| n.2.as_str())),
                task_forms(task, sess, &back, asks(&live, task))
            );
        }
        body.push_str("</tbody></table></div>");
    }
    // Contacts.
    let contacts = a.cs.contacts_before(Timestamp(t.0 + 1));
    body.push_str("<h2>Contacts</h2><div class=\"scroll\"><table><thead><tr><th>Contact</th><th>Role</th><th>Email</th><th>Status</th></tr></thead><tbody>");
    for c in &contacts {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.name.as_deref().unwrap_or(&c.contact_id)),
            esc(&c.role.map_or("–".into(), |r| r.as_str().replace('_', " "))),
            esc(c.email.as_deref().unwrap_or("")),
            if c.active {
                "active".to_string()
            } else {
                format!(
                    "<b class=\"down\">left {}</b>",
                    c.left_at.map_or(String::new(), |d| d.date_string())
                )
            }
        );
    }
    body.push_str("</tbody></table></div>");
    // The timeline of everything that happened, newest first.
    let mut ev: Vec<(Timestamp, String)> = Vec::new();
    for m in &a.movements {
        ev.push((m.ts, format!("MRR {} {}", m.kind.as_str(), money(major(m.delta())))));
    }
    for r in &a.renewals {
        ev.push((
            r.due,
            format!(
                "renewal of {} due ({})",
                esc(&r.subscription_id),
                match &r.outcome {
                    tenure_ledger::RenewalOutcome::Won { .. } => "renewed",
                    tenure_ledger::RenewalOutcome::Lost { .. } => "lost",
                    tenure_ledger::RenewalOutcome::Open => "open",
                }
            ),
        ));
    }
    for tk in &a.cs.tickets {
        ev.push((
            tk.opened,
            format!(
                "ticket {} opened{}{}",
                esc(&tk.ticket_id),
                tk.category.map_or(String::new(), |c| format!(" · {}", c.as_str())),
                tk.severity.map_or(String::new(), |c| format!(" · {}", c.as_str()))
            ),
        ));
    }
    for r in &a.cs.responses {
        let score = match &r.score {
            tenure_core::event::SurveyScore::Nps(x) | tenure_core::event::SurveyScore::Csat(x) => {
                x.to_string()
            }
            tenure_core::event::SurveyScore::Success(x) => x.as_str().to_string(),
        };
        ev.push((
            r.ts,
            format!(
                "{} answer {score}{}{}",
                r.survey.as_str().to_uppercase(),
                r.contact_id.as_deref().map_or(String::new(), |c| format!(" from {}", esc(c))),
                r.comment.as_deref().map_or(String::new(), |c| format!(": “{}”", esc(c)))
            ),
        ));
    }
    for c in &a.cs.contact_changes {
        ev.push((
            c.ts,
            format!(
                "contact {}{}{}",
                esc(&c.contact_id),
                c.role.map_or(String::new(), |r| format!(" · {}", r.as_str().replace('_', " "))),
                c.status.map_or(String::new(), |s| format!(" · {}", s.as_str()))
            ),
        ));
    }
    for d in a.cs.departures.iter().filter(|d| d.moved_to.is_some()) {
        ev.push((
            d.ts,
            format!(
                "contact {} moved to {}",
                esc(&d.contact_id),
                esc(d.moved_to.as_deref().unwrap_or(""))
            ),
        ));
    }
    for tp in &a.cs.touchpoints {
        ev.push((
            tp.0,
            format!(
                "touchpoint {}{}",
                esc(&tp.1),
                tp.2.map_or(String::new(), |s| format!(" · {}", s.as_str()))
            ),
        ));
    }
    for al in &a.cs.alerts {
        ev.push((
            al.ts,
            format!(
                "<span class=\"sev-{}\">alert {}</span>{}",
                al.severity.as_str(),
                esc(&al.rule),
                al.message.as_deref().map_or(String::new(), |m| format!(": {}", esc(m)))
            ),
        ));
    }
    for tk in &a.cs.tasks {
        for (ts, by, note) in &tk.notes {
            ev.push((
                *ts,
                format!(
                    "task “{}” note{}: {}",
                    esc(tk.title.as_deref().unwrap_or(&tk.task_id)),
                    by.as_deref().map_or(String::new(), |b| format!(" by {}", esc(b))),
                    esc(note)
                ),
            ));
        }
        if let Some(r) = tk.resolved {
            ev.push((
                r,
                format!(
                    "task “{}” {}{}",
                    esc(tk.title.as_deref().unwrap_or(&tk.task_id)),
                    tk.status.as_str(),
                    tk.root_cause
                        .as_deref()
                        .map_or(String::new(), |c| format!(" · root cause {}", esc(c)))
                ),
            ));
        }
    }
    ev.retain(|(ts, _)| *ts <= t);
    ev.sort_by_key(|e| std::cmp::Reverse(e.0));
    let _ = write!(body, "<h2>Timeline</h2><ul class=\"timeline\">");
    for (ts, text) in ev.iter().take(150) {
        let _ = write!(body, "<li><time>{}</time>{text}</li>", ts.date_string());
    }
    if ev.len() > 150 {
        let _ = write!(body, "<li class=\"muted\">and {} earlier</li>", ev.len() - 150);
    }
    body.push_str("</ul>");
    Ok(html::page(a.name.as_deref().unwrap_or(&a.id), "/accounts", &sess.csrf, &body))
}

pub fn cohorts(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    let book = ledger_of(s, sess, &live);
    let unit = match p.get("unit").map(String::as_str) {
        Some("quarter") => PeriodUnit::Quarter,
        _ => PeriodUnit::Month,
    };
    let by = p.get("by").filter(|b| !b.is_empty()).cloned().unwrap_or_else(|| "segment".into());
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Cohorts and survival</h1><form class=\"filters\" method=\"get\">{}{}<button>Show</button></form>",
        select(
            "unit",
            p.get("unit").map(String::as_str),
            &[("month", "Monthly cohorts"), ("quarter", "Quarterly cohorts")]
        ),
        select(
            "by",
            Some(&by),
            &[("segment", "Survival by segment"), ("plan", "by plan"), ("cohort", "by start year")]
        )
    );
    for (metric, title) in [
        (tenure_kpi::CohortMetric::Logo, "Logo retention"),
        (tenure_kpi::CohortMetric::Revenue, "Revenue retention"),
    ] {
        let table = tenure_kpi::cohorts(&book, unit, metric);
        let text = tenure_report::cohorts_json(&table, live.cfg.revenue.fx.base);
        let j: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let rows_json = j["cohorts"].as_array().cloned().unwrap_or_default();
        let rows_json: Vec<serde_json::Value> =
            rows_json.into_iter().rev().take(24).rev().collect();
        let width = rows_json
            .iter()
            .map(|r| r["retention"].as_array().map_or(0, Vec::len))
            .max()
            .unwrap_or(0)
            .min(25);
        let columns: Vec<String> = (0..width).map(|k| k.to_string()).collect();
        let rows: Vec<(String, Vec<Option<f64>>)> = rows_json
            .iter()
            .map(|r| {
                let cells = r["retention"]
                    .as_array()
                    .map(|v| v.iter().take(width).map(serde_json::Value::as_f64).collect())
                    .unwrap_or_default();
                (
                    format!(
                        "{} ({})",
                        r["cohort"].as_str().unwrap_or(""),
                        r["accounts"].as_u64().unwrap_or(0)
                    ),
                    cells,
                )
            })
            .collect();
        let _ = write!(
            body,
            "<div class=\"card\"><h2>{title}</h2><p class=\"muted\">Share of each cohort's {} still there after N {}s.</p>{}</div>",
            if title.starts_with("Logo") { "accounts" } else { "starting MRR" },
            if unit == PeriodUnit::Month { "month" } else { "quarter" },
            charts::heatmap(&columns, &rows, |v| format!("{:.0}", 100.0 * v))
        );
    }
    // Kaplan-Meier by group with 95% bands, on a monthly grid.
    let life = tenure_health::survival::lifetimes(&book, &by);
    let mut groups: BTreeMap<String, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
    for l in &life {
        let g = groups.entry(l.group.clone()).or_default();
        g.0.push(l.days);
        g.1.push(l.churned);
    }
    let mut sizes: Vec<(String, usize)> =
        groups.iter().map(|(k, v)| (k.clone(), v.0.len())).collect();
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let max_days = life.iter().map(|l| l.days).fold(0.0, f64::max).min(36.0 * 30.44);
    let months = (max_days / 30.44).ceil() as usize;
    let labels: Vec<String> = (0..=months).map(|m| m.to_string()).collect();
    let palette = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"];
    let mut lines = Vec::new();
    for (i, (g, _)) in sizes.iter().take(6).enumerate() {
        let (d, e) = &groups[g];
        let Ok(km) = tenure_stats::km::kaplan_meier(d, e, 0.05, tenure_stats::km::CiMethod::LogLog)
        else {
            continue;
        };
        let at = |day: f64| -> (f64, [f64; 2]) {
            let i = km.rows.partition_point(|r| r.t <= day);
            if i == 0 { (1.0, [1.0, 1.0]) } else { (km.rows[i - 1].survival, km.rows[i - 1].ci) }
        };
        let pts: Vec<(f64, [f64; 2])> = (0..=months).map(|m| at(m as f64 * 30.44)).collect();
        lines.push((g.clone(), palette[i], pts));
    }
    let series: Vec<Line<'_>> = lines
        .iter()
        .map(|(g, c, pts)| Line {
            name: g,
            colour: c,
            points: pts.iter().map(|p| Some(p.0)).collect(),
            band: Some(pts.iter().map(|p| Some((p.1[0], p.1[1]))).collect()),
        })
        .collect();
    let _ = write!(
        body,
        "<div class=\"card\"><h2>Customers still paying, by months since they started ({})</h2>{}<p class=\"muted\">Kaplan-Meier estimates with 95% confidence bands (log-log).</p></div>",
        esc(&by),
        charts::lines("Survival curves", &labels, &series, |v| format!("{:.0}%", 100.0 * v))
    );
    Ok(html::page("Cohorts", "/cohorts", &sess.csrf, &body))
}

pub fn inbox(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let status = if get("status").is_empty() { "active" } else { get("status") };
    let mut owners: std::collections::BTreeSet<String> = Default::default();
    let mut rows: Vec<(&AccountLedger, &tenure_ledger::cs::Task, &'static str)> = Vec::new();
    for a in live.ledger.accounts.iter().filter(|a| s.sees(&sess.principal, a, live.t)) {
        for task in &a.cs.tasks {
            if let Some(o) = &task.owner {
                owners.insert(o.clone());
            }
            let sev = severity_of(a, task);
            let keep = (get("owner").is_empty() || task.owner.as_deref() == Some(get("owner")))
                && (get("severity").is_empty() || sev == get("severity"))
                && match status {
                    "active" => task.is_active(),
                    "all" => true,
                    st => task.status.as_str() == st,
                };
            if keep {
                rows.push((a, task, sev));
            }
        }
    }
    let rank = |s: &str| match s {
        "urgent" => 0,
        "high" => 1,
        "normal" => 2,
        _ => 3,
    };
    // What is at stake: the account's expected MRR loss (MRR x churn probability; without
    // a model, MRR x 1 for red health, 0.5 yellow, 0.1 green), and whether it renews within
    // 60 days. Ranked by severity, then renewals due soon, then the stake, then due date.
    let exp = live.cfg.revenue.fx.base.exponent();
    let stake = |a: &AccountLedger| -> f64 {
        let Some(h) = live.health.accounts.get(&a.id) else { return 0.0 };
        let p = h.probability.unwrap_or(match h.colour {
            "red" => 1.0,
            "yellow" => 0.5,
            "green" => 0.1,
            _ => 0.0,
        });
        h.row.mrr as f64 / 10f64.powi(exp as i32) * p
    };
    let soon = Timestamp(live.t.0 + 60 * tenure_core::time::DAY);
    let renewal = |a: &AccountLedger| a.next_renewal(live.t);
    let mut rows: Vec<_> =
        rows.into_iter().map(|(a, t, sev)| (a, t, sev, stake(a), renewal(a))).collect();
    rows.sort_by(|a, b| {
        let key = |r: &(&AccountLedger, &tenure_ledger::cs::Task, &str, f64, Option<Timestamp>)| {
            (rank(r.2), r.4.is_none_or(|d| d > soon))
        };
        key(a)
            .cmp(&key(b))
            .then(b.3.total_cmp(&a.3))
            .then(a.1.due.cmp(&b.1.due))
            .then(a.1.task_id.cmp(&b.1.task_id))
    });
    const PER_PAGE: usize = 50;
    let pages = rows.len().div_ceil(PER_PAGE).max(1);
    let page: usize =
        p.get("page").and_then(|v| v.parse().ok()).filter(|n| (1..=pages).contains(n)).unwrap_or(1);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Alerts and tasks</h1><form class=\"filters\" method=\"get\"><label>Owner {}</label><label>Severity {}</label><label>Status {}</label><button>Filter</button></form><p class=\"muted\">{} tasks, most at stake first: severity, renewals within 60 days, expected MRR loss</p>",
        select(
            "owner",
            Some(get("owner")),
            &std::iter::once((String::new(), "Every owner".into()))
                .chain(owners.iter().map(|o| (o.clone(), o.clone())))
                .collect::<Vec<_>>()
        ),
        select(
            "severity",
            Some(get("severity")),
            &[
                ("", "Any severity"),
                ("urgent", "Urgent"),
                ("high", "High"),
                ("normal", "Normal"),
                ("low", "Low")
            ]
        ),
        select(
            "status",
            Some(status),
            &[
                ("active", "Open or in progress"),
                ("open", "Open"),
                ("in_progress", "In progress"),
                ("done", "Done"),
                ("dismissed", "Dismissed"),
                ("all", "All")
            ]
        ),
        rows.len()
    );
    // Alerts recorded without a task each (a first start, a bulk import, a storm): one line
    // per rule and instant, for the accounts in the book.
    let digests = tenure_alerting::raise::digests(
        live.ledger.accounts.iter().filter(|a| s.sees(&sess.principal, a, live.t)),
    );
    if !digests.is_empty() {
        body.push_str("<div class=\"card\"><h2>Digests: alerts without a task each</h2><p class=\"muted\">When one evaluation finds more accounts for a rule than a team can take at once, Tenure records the alerts and opens no task for each. Review them here.</p><ul>");
        for d in digests.iter().take(20) {
            let _ = write!(
                body,
                "<li><a href=\"/inbox/digest?rule={}&amp;at={}\">{}: {} accounts on {}</a></li>",
                url(&d.rule),
                url(&d.at.to_string()),
                esc(&d.rule),
                d.accounts.len(),
                d.at.date_string()
            );
        }
        body.push_str("</ul></div>");
    }
    let query = format!(
        "owner={}&severity={}&status={}",
        url(get("owner")),
        url(get("severity")),
        url(status)
    );
    let back = format!("/inbox?{query}&page={page}");
    // Bulk actions: the rows' checkboxes belong to this form (`form="bulk"`), so that each
    // row keeps its own forms (HTML forms do not nest).
    if sess.writes {
        let _ = write!(
            body,
            "<form id=\"bulk\" class=\"filters\" method=\"post\" action=\"/inbox/bulk\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\"><label>With the selected tasks {}</label><label>Owner <input name=\"owner\" size=\"10\"></label><label>Days <input name=\"days\" size=\"3\" inputmode=\"numeric\"></label><label>Root cause {}</label><button>Apply</button></form>",
            esc(&sess.csrf),
            esc(&back),
            select(
                "action",
                None,
                &[
                    ("assign", "assign to the owner"),
                    ("snooze", "snooze for the days"),
                    ("resolve", "resolve")
                ]
            ),
            select("root_cause", None, &root_causes("(if the rule asks)"))
        );
    }
    let cur = live.cfg.revenue.fx.base;
    body.push_str("<div class=\"scroll\"><table><thead><tr><th><span class=\"sr\">Select</span></th><th>Severity</th><th>Account</th><th>Task</th><th>Owner</th><th>Due</th><th class=\"num\">At stake (MRR)</th><th>Renews</th><th>Status</th><th>Latest note</th></tr></thead><tbody>");
    for (a, task, sev, at_stake, renews) in rows.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE) {
        let _ = write!(
            body,
            "<tr class=\"task\"><td>{}</td><td class=\"sev-{sev}\">{sev}</td><td><a href=\"/accounts/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{} {}</td><td>{}</td><td>{}{}</td><td>{}</td></tr><tr class=\"actions\"><td></td><td colspan=\"9\">{}</td></tr>",
            if sess.writes {
                format!(
                    "<input type=\"checkbox\" form=\"bulk\" name=\"task\" value=\"{}\" aria-label=\"Select {}\">",
                    esc(&task.task_id),
                    esc(task.title.as_deref().unwrap_or(&task.task_id))
                )
            } else {
                String::new()
            },
            url(&a.id),
            esc(a.name.as_deref().unwrap_or(&a.id)),
            esc(task.title.as_deref().unwrap_or(&task.task_id)),
            esc(task.owner.as_deref().unwrap_or("–")),
            task.due.map_or("–".into(), |d| d.date_string()),
            money(*at_stake),
            cur,
            renews.map_or("–".into(), |d| d.date_string()),
            task.status.as_str(),
            task.root_cause.as_deref().map_or(String::new(), |c| format!(" · {}", esc(c))),
            esc(task.notes.last().map_or("", |n| n.2.as_str())),
            task_forms(task, sess, &back, asks(&live, task))
        );
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&pager(page, pages, &|n| format!("/inbox?{}&amp;page={n}", esc(&query))));
    Ok(html::page("Alerts and tasks", "/inbox", &sess.csrf, &body))
}

/// One digest: the accounts alerted by a rule at an instant without a task each, with
/// their alert, and a form to open a task for each of them.
pub fn digest(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    let rule = p.get("rule").cloned().unwrap_or_default();
    let at = p
        .get("at")
        .and_then(|a| Timestamp::parse(a).ok())
        .ok_or((StatusCode::BAD_REQUEST, "at: an instant is needed".to_string()))?;
    let d = tenure_alerting::raise::digests(
        live.ledger.accounts.iter().filter(|a| s.sees(&sess.principal, a, live.t)),
    )
    .into_iter()
    .find(|d| d.rule == rule && d.at == at)
    .ok_or((StatusCode::NOT_FOUND, format!("no digest of {rule:?} at {at}")))?;
    let mut body = format!(
        "<h1>Digest: {}</h1><p class=\"muted\">{} accounts alerted on {} without a task each.</p>",
        esc(&rule),
        d.accounts.len(),
        d.at.date_string()
    );
    if sess.writes {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/inbox/digest\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"rule\" value=\"{}\"><input type=\"hidden\" name=\"at\" value=\"{}\"><button>Open a task for each of these {} accounts</button></form>",
            esc(&sess.csrf),
            esc(&rule),
            esc(&d.at.to_string()),
            d.accounts.len()
        );
    }
    body.push_str("<div class=\"scroll\"><table><thead><tr><th>Account</th><th>CSM</th><th>Alert</th></tr></thead><tbody>");
    for id in d.accounts.iter().take(500) {
        let Some(a) = live.ledger.account(id) else { continue };
        let msg =
            a.cs.alerts
                .iter()
                .find(|x| x.ts == d.at && x.rule == rule)
                .and_then(|x| x.message.as_deref())
                .unwrap_or("");
        let _ = write!(
            body,
            "<tr><td><a href=\"/accounts/{}\">{}</a> <small class=\"muted\">{}</small></td><td>{}</td><td>{}</td></tr>",
            url(&a.id),
            esc(a.name.as_deref().unwrap_or(&a.id)),
            esc(&a.id),
            esc(&crate::api::attr(a, &s.0.owner_key, live.t).unwrap_or_else(|| "–".into())),
            esc(msg)
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(html::page("Digest", "/inbox", &sess.csrf, &body))
}

/// The team view: one line per owner (the accounts' owner attribute) of the accounts in
/// the person's book, a manager's team, everyone's for an admin: accounts, MRR, at risk,
/// open and overdue tasks, renewals in the next 90 days.
pub fn team(s: &AppState, sess: &Session) -> Page {
    let live = s.0.core.live.read().map_err(unavailable)?;
    let t = live.t;
    let cur = live.cfg.revenue.fx.base;
    let major = |m: i64| m as f64 / 10f64.powi(cur.exponent() as i32);
    let horizon = Timestamp(t.0 + 90 * tenure_core::time::DAY);
    #[derive(Default)]
    struct Line {
        accounts: usize,
        mrr: f64,
        at_risk: usize,
        loss: f64,
        open: usize,
        overdue: usize,
        renewals: usize,
        arr_due: f64,
    }
    let mut by: BTreeMap<String, Line> = BTreeMap::new();
    let now = Timestamp(t.0 + 1);
    for a in live.ledger.accounts.iter().filter(|a| s.sees(&sess.principal, a, t)) {
        if !a.customer_before(now) {
            continue;
        }
        let owner = crate::api::attr(a, &s.0.owner_key, t).unwrap_or_else(|| "(no owner)".into());
        let l = by.entry(owner).or_default();
        let mrr = major(a.mrr_before(now));
        l.accounts += 1;
        l.mrr += mrr;
        if let Some(h) = live.health.accounts.get(&a.id) {
            let risky = match h.probability {
                Some(p) => {
                    l.loss += mrr * p;
                    p >= s.0.at_risk
                }
                None => h.colour == "red",
            };
            l.at_risk += usize::from(risky);
        }
        for task in a.cs.tasks.iter().filter(|x| x.is_active()) {
            l.open += 1;
            l.overdue += usize::from(task.due.is_some_and(|d| d < t));
        }
        // Renewals still to win (one decided early is not work).
        let open = |r: &&tenure_ledger::Renewal| r.outcome == tenure_ledger::RenewalOutcome::Open;
        for r in a.renewals.iter().filter(open).filter(|r| r.due >= t && r.due <= horizon) {
            l.renewals += 1;
            l.arr_due += major(r.arr_due);
        }
    }
    let mut body = format!(
        "<h1>Team</h1><p class=\"muted\">Paying accounts by owner (the <code>{}</code> attribute){}. At risk: a churn probability of {:.0}% or more (red health without a model).</p>",
        esc(&s.0.owner_key),
        if sess.principal.is_all() { "" } else { ", in your book" },
        s.0.at_risk * 100.0
    );
    let _ = write!(
        body,
        "<div class=\"scroll\"><table><thead><tr><th>Owner</th><th class=\"num\">Accounts</th><th class=\"num\">MRR ({cur})</th><th class=\"num\">At risk</th><th class=\"num\">Expected MRR loss ({cur})</th><th class=\"num\">Open tasks</th><th class=\"num\">Overdue</th><th class=\"num\">Renewals, 90 days</th><th class=\"num\">ARR due ({cur})</th></tr></thead><tbody>"
    );
    for (owner, l) in &by {
        let _ = write!(
            body,
            "<tr><td><a href=\"/accounts?csm={}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\"><a href=\"/inbox?owner={}\">{}</a></td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            url(owner),
            esc(owner),
            l.accounts,
            money(l.mrr),
            l.at_risk,
            if live.model.is_some() { money(l.loss) } else { "–".into() },
            url(owner),
            l.open,
            if l.overdue > 0 { " down" } else { "" },
            l.overdue,
            l.renewals,
            money(l.arr_due)
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(html::page("Team", "/team", &sess.csrf, &body))
}

/// The audit log, newest first, with its CSV export: every change for admins, one's own
/// changes for everyone else (the whole log names everyone).
pub fn audit(s: &AppState, sess: &Session) -> Page {
    let entries = audit_entries(s, sess)?;
    let whose = if s.0.keys.get().allows(&sess.key_id, crate::keys::Scope::Admin) {
        "changes by people"
    } else {
        "of your changes"
    };
    let mut body = format!(
        "<h1>Audit log</h1><p class=\"muted\">{} {whose}: task changes and forecast calls (from the event log, with their author) and changes to people and keys (from the command line). Newest first; the latest 500 shown. <a href=\"/audit.csv\">Export as CSV</a></p>",
        entries.len()
    );
    body.push_str("<div class=\"scroll\"><table><thead><tr><th>When</th><th>Who</th><th>What</th><th>Account</th><th>Of</th><th>Detail</th></tr></thead><tbody>");
    for e in entries.iter().rev().take(500) {
        let account = e.account.as_deref().map_or("–".to_string(), |a| {
            format!("<a href=\"/accounts/{}\">{}</a>", url(a), esc(a))
        });
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{account}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.at),
            esc(&e.who),
            esc(&e.action),
            esc(e.target.as_deref().unwrap_or("–")),
            esc(&e.detail)
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(html::page("Audit log", "/audit", &sess.csrf, &body))
}

/// The audit entries a session may see: all for an admin, their own otherwise.
pub(crate) fn audit_entries(
    s: &AppState,
    sess: &Session,
) -> Result<Vec<tenure_engine::audit::Entry>, (StatusCode, String)> {
    let mut entries = tenure_engine::audit::audit(&s.0.data, None, None)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if !s.0.keys.get().allows(&sess.key_id, crate::keys::Scope::Admin) {
        entries.retain(|e| e.who == sess.name);
    }
    Ok(entries)
}

pub fn model(s: &AppState, sess: &Session) -> Page {
    let path = s.0.data.join("models").join("backtest.json");
    let mut body = String::from("<h1>Model</h1>");
    // Which model scores the accounts now, and since when (a model saved while the service
    // runs is in use within seconds).
    let live = s.0.core.health_setup.lock().map(|x| x.clone()).unwrap_or_default();
    let since = live.since.map_or("start".into(), |t| t.to_string());
    match &live.model {
        Some(m) => {
            let _ = write!(
                body,
                "<p id=\"live-model\">In use since {}: the {} model ({} within {} days), trained on {} snapshots from {} to {} ({} {}).</p>",
                esc(&since),
                esc(&m.outcome),
                esc(&m.outcome),
                m.horizon_days,
                m.n_snapshots,
                esc(&m.first_snapshot),
                esc(&m.last_snapshot),
                m.n_churned,
                if m.outcome == "churn" { "churned" } else { "lost" }
            );
            let sel = &m.selection;
            if !sel.chosen.is_empty() {
                let _ = write!(
                    body,
                    "<h2>Which learner, and why</h2><p id=\"verdict\"><b>{}</b></p><p id=\"verdict-why\">{}</p>",
                    esc(&sel.chosen),
                    esc(&sel.verdict)
                );
            }
            if !sel.candidates.is_empty() {
                let g = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:.3}"));
                let _ = write!(
                    body,
                    "<div class=\"scroll\"><table id=\"learners\"><caption>Learners compared on {} snapshots of the training window ({} churned), best log-loss first</caption><thead><tr><th>Learner</th><th class=\"num\">Log-loss</th><th class=\"num\">AUC</th><th class=\"num\">Calibration error</th></tr></thead><tbody>",
                    sel.validation_snapshots, sel.validation_churned
                );
                for c in &sel.candidates {
                    let chosen = c.name == sel.chosen;
                    let _ = write!(
                        body,
                        "<tr{}><td>{}{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                        if chosen { " class=\"chosen\"" } else { "" },
                        esc(&c.name),
                        if chosen { " <b>(in use)</b>" } else { "" },
                        c.log_loss,
                        g(c.auc),
                        g(c.ece)
                    );
                }
                let _ = write!(
                    body,
                    "</tbody></table></div><p class=\"muted\">The rule: {}.</p>",
                    esc(&sel.rule)
                );
            }
        }
        None => {
            let _ = write!(
                body,
                "<p id=\"live-model\">No churn model in use (since {}): accounts have health scores but no churn probability. <code>tenure model train</code> saves one, which the service uses within seconds.</p>",
                esc(&since)
            );
        }
    }
    if let Some(e) = &live.error {
        let _ = write!(
            body,
            "<p class=\"down\" role=\"alert\">The latest model or scorecards file cannot be used, so the one above stays: {}</p>",
            esc(e)
        );
    }
    let Ok(text) = std::fs::read_to_string(&path) else {
        body.push_str("<p>No backtest yet. Run <code>tenure model backtest</code>: it saves its report here.</p>");
        return Ok(html::page("Model", "/model", &sess.csrf, &body));
    };
    let j: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", path.display())))?;
    let m = &j;
    let f = |v: &serde_json::Value| v.as_f64().map_or("–".into(), |x| format!("{x:.3}"));
    let _ = write!(
        body,
        "<p class=\"muted\">Trained on snapshots whose outcome was known by {}, tested on {}..{}: {} snapshots, {} churned.</p><div class=\"tiles\">",
        esc(j["from"].as_str().unwrap_or("?")),
        esc(j["from"].as_str().unwrap_or("?")),
        esc(j["to"].as_str().unwrap_or("?")),
        m["n_snapshots"].as_u64().unwrap_or(0),
        m["n_churned"].as_u64().unwrap_or(0)
    );
    for (k, label) in [
        ("auc", "AUC"),
        ("pr_auc", "PR AUC"),
        ("brier", "Brier"),
        ("ece", "Calibration error"),
        ("lift_top_decile", "Lift, top decile"),
    ] {
        let _ = write!(
            body,
            "<div class=\"tile\"><small>{label}</small><b>{}</b><small>baseline {}</small></div>",
            f(&m[k]),
            f(&j["baseline"][k])
        );
    }
    body.push_str("</div>");
    let pts = |v: &serde_json::Value, x: &str, y: &str| -> Vec<(f64, f64)> {
        v.as_array()
            .map(|a| a.iter().filter_map(|p| Some((p[x].as_f64()?, p[y].as_f64()?))).collect())
            .unwrap_or_default()
    };
    // ROC on a grid of false-positive rates (the curve's steps sampled).
    let roc: Vec<(f64, f64)> = m["roc"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect())
        .unwrap_or_default();
    let grid: Vec<f64> = (0..=20).map(|k| k as f64 / 20.0).collect();
    let tpr_at =
        |fpr: f64| roc.iter().filter(|p| p.0 <= fpr + 1e-12).map(|p| p.1).fold(0.0, f64::max);
    let roc_chart = charts::lines(
        "ROC curve",
        &grid.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>(),
        &[
            Line {
                name: "Model",
                colour: "#2563eb",
                points: grid.iter().map(|g| Some(tpr_at(*g))).collect(),
                band: None,
            },
            Line {
                name: "Chance",
                colour: "#9ca3af",
                points: grid.iter().map(|g| Some(*g)).collect(),
                band: None,
            },
        ],
        |v| format!("{v:.2}"),
    );
    let cal = pts(&m["calibration"], "predicted", "observed");
    let cal_chart = charts::lines(
        "Calibration",
        &cal.iter().map(|p| format!("{:.0}%", 100.0 * p.0)).collect::<Vec<_>>(),
        &[
            Line {
                name: "Observed",
                colour: "#2563eb",
                points: cal.iter().map(|p| Some(p.1)).collect(),
                band: None,
            },
            Line {
                name: "Predicted",
                colour: "#9ca3af",
                points: cal.iter().map(|p| Some(p.0)).collect(),
                band: None,
            },
        ],
        |v| format!("{:.0}%", 100.0 * v),
    );
    body.push_str("<h2>Against the health scorecards (same test snapshots)</h2><div class=\"scroll\"><table><thead><tr><th>Predictor</th><th class=\"num\">AUC</th><th class=\"num\">Lift, top decile</th></tr></thead><tbody>");
    let _ = write!(
        body,
        "<tr><td>Churn model</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        f(&m["auc"]),
        f(&m["lift_top_decile"])
    );
    let _ = write!(
        body,
        "<tr><td>Logistic baseline</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        f(&j["baseline"]["auc"]),
        f(&j["baseline"]["lift_top_decile"])
    );
    for (name, c) in j["scorecards"].as_object().into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><td>Scorecard {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            f(&c["auc"]),
            f(&c["lift_top_decile"])
        );
    }
    body.push_str("</tbody></table></div>");
    let _ = write!(
        body,
        "<div class=\"grid2\"><div class=\"card\"><h2>ROC</h2>{roc_chart}<p class=\"muted\">True against false positive rate as the threshold falls.</p></div><div class=\"card\"><h2>Calibration</h2>{cal_chart}<p class=\"muted\">Observed churn in each band of predicted probability.</p></div></div>"
    );
    Ok(html::page("Model", "/model", &sess.csrf, &body))
}

/// Renewals: this quarter's and the next one's forecasts (saved by `tenure forecast
/// --save`) with the CSMs' calls made since, and the past quarters' forecasts against what
/// renewed. Each renewal has a form to make a call on it.
pub fn renewals(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    use tenure_health::forecast::{Category, Kind};
    let mut body = String::from("<h1>Renewals</h1>");
    let saved = crate::forecast::saved(s).map_err(|e| (e.status, e.message))?;
    let Some(saved) = saved else {
        body.push_str("<p>No forecast yet. Run <code>tenure forecast --save</code> on the data directory (daily, say): this page shows what it saved, with the calls CSMs make here applied at once.</p>");
        return Ok(html::page("Renewals", "/renewals", &sess.csrf, &body));
    };
    let live = s.0.core.live.read().map_err(unavailable)?;
    let exp = live.cfg.revenue.fx.base.exponent();
    let m = |minor: i64| money(minor as f64 / 10f64.powi(exp as i32));
    let by = p.get("by").and_then(|b| tenure_health::forecast::GroupBy::parse(b));
    let _ = write!(
        body,
        "<p class=\"muted\">Forecast made {} from the renewal model; calls made since are applied. Intervals hold the renewed ARR with the probability shown.</p><form class=\"filters\" method=\"get\">{}<button>Show</button></form>",
        esc(&saved.made_at),
        select(
            "by",
            p.get("by").map(String::as_str),
            &[
                ("", "No breakdown"),
                ("month", "By month"),
                ("csm", "By CSM"),
                ("segment", "By segment")
            ]
        )
    );
    for f in &saved.quarters {
        let f = f.clone().with_overrides(&live.ledger);
        let f = crate::forecast::in_book(s, &sess.principal, &live, f);
        let label = PeriodUnit::Quarter.label(f.period.start);
        let _ = write!(
            body,
            "<h2>{label}</h2><div class=\"tiles\"><div class=\"tile\"><small>ARR up for renewal</small><b>{}</b><small>{} renewals</small></div><div class=\"tile\"><small>Expected renewed ARR (model)</small><b>{}</b><small>{:.0}% interval {} – {}</small></div><div class=\"tile\"><small>With CSM calls</small><b>{}</b><small>{} – {}</small></div>",
            m(f.model.arr_due),
            f.model.contracts,
            m(f.model.expected),
            f.level * 100.0,
            m(f.model.low),
            m(f.model.high),
            m(f.called.expected),
            m(f.called.low),
            m(f.called.high)
        );
        for c in Category::ALL {
            let x = &f.called.categories[*c as usize];
            let _ = write!(
                body,
                "<div class=\"tile\"><small>{}</small><b>{}</b><small>{} renewals, {} due</small></div>",
                esc(&c.as_str().replace('_', " ")),
                m(x.expected),
                x.contracts,
                m(x.arr_due)
            );
        }
        body.push_str("</div>");
        if let Some(b) = by {
            body.push_str("<div class=\"scroll\"><table><thead><tr><th>Group</th><th class=\"num\">Renewals</th><th class=\"num\">ARR due</th><th class=\"num\">Expected</th><th class=\"num\">Interval</th><th class=\"num\">With calls</th></tr></thead><tbody>");
            for (k, gm, gc) in tenure_health::forecast::groups(&f.items, b, f.level, &f.spread) {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} – {}</td><td class=\"num\">{}</td></tr>",
                    esc(&k),
                    gm.contracts,
                    m(gm.arr_due),
                    m(gm.expected),
                    m(gm.low),
                    m(gm.high),
                    m(gc.expected)
                );
            }
            body.push_str("</tbody></table></div>");
        }
        let shown = f.items.len().min(200);
        let _ = write!(
            body,
            "<p class=\"muted\">{} renewals, largest ARR first{}.</p><div class=\"scroll\"><table><thead><tr><th>Account</th><th>Due</th><th class=\"num\">ARR due</th><th class=\"num\">Renews</th><th class=\"num\">Expected</th><th>Category</th><th>CSM call</th><th>Drivers</th></tr></thead><tbody>",
            f.items.len(),
            if shown < f.items.len() {
                format!(" (the first {shown} shown; the API lists all)")
            } else {
                String::new()
            }
        );
        for i in &f.items[..shown] {
            let call = i.overridden.as_ref().map_or("–".to_string(), |o| {
                format!(
                    "{}{}{}{}",
                    esc(&o.category.as_str().replace('_', " ")),
                    o.amount.map_or(String::new(), |a| format!(", {}", m(a))),
                    o.reason.as_deref().map_or(String::new(), |r| format!(": {}", esc(r))),
                    o.author.as_deref().map_or(String::new(), |a| format!(" ({})", esc(a)))
                )
            });
            let due = if i.kind == Kind::MonthToMonth {
                "monthly".to_string()
            } else {
                i.due.date_string()
            };
            let _ = write!(
                body,
                "<tr class=\"task\"><td><a href=\"/accounts/{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}%</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                url(&i.account),
                esc(&i.account),
                due,
                m(i.arr_due),
                i.p * 100.0,
                m(i.expected().round() as i64),
                esc(&i.category.as_str().replace('_', " ")),
                call,
                esc(&i.drivers.join("; ")),
            );
            // A CSM's call, for those who may change things.
            if sess.writes {
                let _ = write!(
                    body,
                    "<tr class=\"actions\"><td></td><td colspan=\"7\"><form class=\"inline\" method=\"post\" action=\"/renewals/{}/call\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"subscription_id\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\">{}<input name=\"amount\" placeholder=\"ARR expected\" size=\"10\" inputmode=\"decimal\"><input name=\"reason\" placeholder=\"Why\" size=\"18\"><button class=\"plain\">Call it</button></form></td></tr>",
                    url(&i.account),
                    esc(&sess.csrf),
                    esc(i.subscription_id.as_deref().unwrap_or("")),
                    esc(&format!(
                        "/renewals?by={}",
                        url(p.get("by").map(String::as_str).unwrap_or(""))
                    )),
                    select(
                        "category",
                        None,
                        &[("commit", "Commit"), ("probable", "Probable"), ("at_risk", "At risk")]
                    )
                );
            }
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("<h2>Past quarters: forecast against what renewed</h2>");
    let bt = &saved.backtest;
    match bt["periods"].as_array() {
        None => body.push_str("<p class=\"muted\">No past quarter to test yet.</p>"),
        Some(periods) => {
            let num = |v: &serde_json::Value| v.as_f64().map_or("–".into(), money);
            body.push_str("<div class=\"scroll\"><table><thead><tr><th>Quarter</th><th class=\"num\">ARR due</th><th class=\"num\">Forecast</th><th class=\"num\">Interval</th><th class=\"num\">Naive</th><th class=\"num\">Renewed</th><th>Held</th></tr></thead><tbody>");
            for q in periods {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} – {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(q["period"].as_str().unwrap_or("")),
                    num(&q["arr_due"]),
                    num(&q["forecast"]),
                    num(&q["interval"][0]),
                    num(&q["interval"][1]),
                    num(&q["naive_forecast"]),
                    num(&q["actual"]),
                    match q["covered"].as_bool() {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "–",
                    }
                );
            }
            let sm = &bt["summary"];
            let _ = write!(
                body,
                "</tbody></table></div><p class=\"muted\">{} quarters with an outcome: the interval held the renewed ARR in {}; mean absolute error {} (naive, last year's renewal rates × ARR due: {}).</p>",
                sm["periods_with_actual"].as_u64().unwrap_or(0),
                pct(sm["coverage"].as_f64()),
                pct1(sm["mape"].as_f64()),
                pct1(sm["naive_mape"].as_f64())
            );
        }
    }
    Ok(html::page("Renewals", "/renewals", &sess.csrf, &body))
}

/// The most accounts the explanation page lists (the totals are of all of them).
const EXPLAIN_ROWS: usize = 500;

/// A source event, one line: what it was and what it set the line to.
fn source_html(r: &tenure_ledger::SourceRef, events: &tenure_report::Resolved) -> String {
    let Some((position, e)) = events.get(r) else {
        return format!(
            "<div><code>{}</code> <span class=\"muted\">not in the log</span></div>",
            esc(&r.to_string())
        );
    };
    let mut s = format!(
        "<div><code>{}</code> {} {}",
        esc(&r.to_string()),
        esc(e.kind().as_str()),
        esc(&e.ts.to_string())
    );
    if let tenure_core::event::EventBody::Subscription(sub) = &e.body {
        let _ = write!(
            s,
            " · line {} · {} {} / {} mo · {}",
            esc(&sub.subscription_id),
            esc(&tenure_core::money::format_minor(sub.amount.minor, sub.amount.currency)),
            esc(&sub.amount.currency.to_string()),
            sub.interval_months,
            esc(sub.status.as_str())
        );
    }
    if let Some(m) = &e.message_id {
        let _ = write!(s, " · message {}", esc(m));
    }
    let _ = write!(s, " <span class=\"muted\">(log position {position})</span></div>");
    s
}

/// `/explain?kpi=..&period=..[&by=..][&account=..]`: a figure, then its accounts, their
/// movements and the subscription events behind each; the lines sum to the figure.
pub fn explain(s: &AppState, sess: &Session, p: &HashMap<String, String>) -> Page {
    use tenure_kpi::explain::IDS;
    let live = s.0.core.live.read().map_err(unavailable)?;
    let cur = live.cfg.revenue.fx.base;
    let m = |x: i64| tenure_core::money::format_minor(x, cur);
    let mut q = p.clone();
    q.entry("kpi".into()).or_insert_with(|| "mrr_churn".into());
    let (kpi, period, selection) =
        crate::api::explain_request(&q, live.t).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let book = ledger_of(s, sess, &live);
    let mut e = tenure_kpi::explain::explain(&book, kpi, period, &selection, &live.cfg.kpi);
    drop(book);
    drop(live);
    let period_text = p.get("period").cloned().unwrap_or_else(|| month_label(period.start));
    let by_text = p.get("by").cloned().unwrap_or_default();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Explaining {} · {}</h1><form class=\"filters\" method=\"get\">{}<input name=\"period\" value=\"{}\" aria-label=\"Period\" size=\"18\"><input type=\"hidden\" name=\"by\" value=\"{}\"><input type=\"hidden\" name=\"account\" value=\"{}\"><button>Show</button></form>",
        esc(kpi.id()),
        esc(&period_text),
        select("kpi", Some(kpi.id()), &IDS.iter().map(|i| (*i, *i)).collect::<Vec<_>>()),
        esc(&period_text),
        esc(&by_text),
        esc(selection.account.as_deref().unwrap_or("")),
    );
    let mut scope = String::new();
    if let (Some(by), Some(seg)) = (&selection.by, &selection.segment) {
        let key = match by {
            By::Attribute(a) => a.clone(),
            By::Plan => "plan".into(),
            By::TenureBand => "tenure_band".into(),
            By::Account => "account".into(),
        };
        let _ = write!(scope, " of {} {}", esc(&key), esc(seg.as_deref().unwrap_or("(none)")));
    }
    if let Some(a) = &selection.account {
        let _ = write!(scope, " of account <a href=\"/accounts/{}\">{}</a>", url(a), esc(a));
    }
    let at = e.at.map_or(String::new(), |t| format!(" (MRR just before {})", esc(&t.to_string())));
    let _ = write!(
        body,
        "<div class=\"tiles\"><div class=\"tile\"><small>{}{scope}{at}</small><b>{}</b><small class=\"muted\">in {}, {} to {}</small></div>",
        esc(kpi.id()),
        esc(&m(e.figure)),
        esc(&cur.to_string()),
        esc(&period.start.date_string()),
        esc(&period.end.date_string())
    );
    let check = if e.balances() {
        format!("<small class=\"up\">= {} exactly</small>", esc(kpi.id()))
    } else {
        "<small class=\"down\">differs from the figure: a bug, please report it</small>".to_string()
    };
    let _ = write!(
        body,
        "<div class=\"tile\"><small>Sum of the {} account{} below</small><b>{}</b>{check}</div></div>",
        e.lines.len(),
        if e.lines.len() == 1 { "" } else { "s" },
        esc(&m(e.total))
    );
    if !e.segments.is_empty() {
        body.push_str("<h2>By segment</h2><div class=\"scroll\"><table><thead><tr><th>Segment</th><th class=\"num\">Sum</th></tr></thead><tbody>");
        let key = by_text.split('=').next().unwrap_or("");
        for sg in &e.segments {
            let label = sg.segment.as_deref().unwrap_or("(none)");
            let _ = write!(
                body,
                "<tr><td><a href=\"/explain?kpi={}&amp;period={}&amp;by={}\">{}</a></td><td class=\"num\">{}</td></tr>",
                url(kpi.id()),
                url(&period_text),
                url(&format!("{key}={label}")),
                esc(label),
                esc(&m(sg.total))
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let shown = e.lines.len().min(EXPLAIN_ROWS);
    let more = e.lines.len() - shown;
    e.lines.truncate(shown);
    let events = crate::api::resolve_sources(&s.0.data, &e).map_err(|_| {
        (StatusCode::INTERNAL_SERVER_ERROR, "the log could not be read".to_string())
    })?;
    body.push_str("<h2>Accounts, movements and source events</h2><div class=\"scroll\"><table><thead><tr><th>Account</th><th>Movement</th><th class=\"num\">Amount</th><th>Source events</th></tr></thead><tbody>");
    for l in &e.lines {
        let mut who = format!(
            "<a href=\"/accounts/{}\">{}</a>",
            url(&l.account),
            esc(l.name.as_deref().unwrap_or(&l.account))
        );
        if let Some(seg) = &l.segment {
            let _ = write!(
                who,
                " <span class=\"muted\">{}</span>",
                esc(seg.as_deref().unwrap_or("(none)"))
            );
        }
        for (k, i) in l.items.iter().enumerate() {
            let sources: String = i.sources.iter().map(|r| source_html(r, &events)).collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{} {}{}</td><td class=\"num\">{}</td><td class=\"wrap\">{}</td></tr>",
                if k == 0 { who.as_str() } else { "" },
                esc(&i.ts.date_string()),
                esc(i.kind.as_str()),
                if i.involuntary { " (involuntary)" } else { "" },
                esc(&m(i.amount)),
                if sources.is_empty() {
                    "<span class=\"muted\">–</span>".to_string()
                } else {
                    sources
                }
            );
        }
        if l.items.len() > 1 {
            let _ = write!(
                body,
                "<tr><td></td><td class=\"muted\">account total</td><td class=\"num\"><b>{}</b></td><td></td></tr>",
                esc(&m(l.amount))
            );
        }
    }
    let _ = write!(
        body,
        "<tr><td><b>Total</b></td><td></td><td class=\"num\"><b>{}</b></td><td></td></tr></tbody></table></div>",
        esc(&m(e.total))
    );
    if more > 0 {
        let _ = write!(
            body,
            "<p class=\"muted\">And {more} more account{} (the total is of all of them): <code>tenure explain</code> or <code>/api/v1/kpis/explain</code> list every one.</p>",
            if more == 1 { "" } else { "s" }
        );
    }
    Ok(html::page("Explain", "/", &sess.csrf, &body))
}
