//! The REST API under `/api/v1`: accounts (list and 360), KPIs, cohorts, alerts, tasks and
//! scorecards, read from the live state; task changes are events, stored before the answer.
//! [`ROUTES`] is the one list of endpoints: the router is built from it and so is the
//! OpenAPI document, so the two cannot drift apart.

use crate::keys::Scope;
use crate::{ApiError, AppState, authorise, authorise_book, json_response, store};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{MethodRouter, get, patch, post};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use tenure_core::event::{RootCause, TaskStatus};
use tenure_core::time::{Period, PeriodUnit, Timestamp};
use tenure_health::features::F;
use tenure_health::scorecard::Reads;
use tenure_ledger::AccountLedger;
use tenure_ledger::cs::Task;
use tenure_report::{OutFormat, money_json};

/// One endpoint: method, path (axum syntax), the scope it needs (`None`: public), what it
/// does, and its parameters `(name, in, description)`.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub scope: Option<Scope>,
    pub summary: &'static str,
    pub params: &'static [(&'static str, &'static str, &'static str)],
}

const LIST: &[(&str, &str, &str)] = &[
    ("q", "query", "Search in account ids and names"),
    ("segment", "query", "Only this segment"),
    ("csm", "query", "Only accounts of this CSM"),
    ("colour", "query", "Only this health colour: red | yellow | green | grey"),
    ("customer", "query", "true: paying customers only"),
    ("min_risk", "query", "Only accounts whose churn probability is at least this"),
    (
        "sort",
        "query",
        "name | health | risk | mrr | renewal | csm | segment | utilisation | nps [name]",
    ),
    ("order", "query", "asc | desc [by sort: risk and mrr desc, others asc]"),
    ("limit", "query", "At most this many [50, max 1000]"),
    ("offset", "query", "Skip this many"),
];

/// Every endpoint of the service.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        scope: None,
        summary: "ok while events can be stored; 503 with the reason while the event log cannot be written",
        params: &[],
    },
    Route {
        method: "get",
        path: "/metrics",
        scope: None,
        summary: "Prometheus metrics: ingest, rejections, log size, alerts, latencies",
        params: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/openapi.json",
        scope: None,
        summary: "This document",
        params: &[],
    },
    Route {
        method: "post",
        path: "/api/v1/events",
        scope: Some(Scope::Ingest),
        summary: "Ingest events (JSON array or JSON lines of the input contract); answered once durable",
        params: &[],
    },
    Route {
        method: "post",
        path: "/v1/{call}",
        scope: Some(Scope::Ingest),
        summary: "The Segment HTTP API: track, identify, group, page, screen, alias, batch",
        params: &[("call", "path", "track | identify | group | page | screen | alias | batch")],
    },
    Route {
        method: "post",
        path: "/webhooks/stripe",
        scope: None,
        summary: "Stripe webhook endpoint: verified by its Stripe-Signature header (the signing secret in [service] stripe_webhook_secret; 404 without one); customer, subscription, invoice, credit note and refund events become events, once per Stripe event id",
        params: &[(
            "Stripe-Signature",
            "header",
            "t=TIMESTAMP,v1=HEX: HMAC-SHA256 of TIMESTAMP.BODY under the endpoint's signing secret, as Stripe sends it",
        )],
    },
    Route {
        method: "get",
        path: "/api/v1/accounts",
        scope: Some(Scope::Read),
        summary: "Accounts with health, risk and MRR: filter, sort, page",
        params: LIST,
    },
    Route {
        method: "get",
        path: "/api/v1/accounts/{id}",
        scope: Some(Scope::Read),
        summary: "Account 360: revenue, renewals, contacts, CS history, health, risk and drivers, alerts, tasks",
        params: &[("id", "path", "The account id")],
    },
    Route {
        method: "get",
        path: "/api/v1/kpis",
        scope: Some(Scope::Read),
        summary: "Revenue and CS KPIs for a period, optionally per sub-period and cut",
        params: &[
            ("period", "query", "START..END (dates or months) [the last 12 months]"),
            ("every", "query", "day | week | month | quarter | year: one row per sub-period"),
            ("by", "query", "Cut by an attribute (segment, csm, ...), plan or tenure_band"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/kpis/explain",
        scope: Some(Scope::Read),
        summary: "Explain a revenue figure: its accounts, their movements and the subscription events behind each, summing to the figure exactly",
        params: &[
            (
                "kpi",
                "query",
                "mrr_start | mrr_end | mrr_new | mrr_expansion | mrr_contraction | mrr_churn | mrr_reactivation | mrr_net_change | upsell | cross_sell",
            ),
            ("period", "query", "START..END (dates or months) [the last whole month]"),
            ("account", "query", "Only this account"),
            (
                "by",
                "query",
                "Cut as /api/v1/kpis does: KEY for every segment with its subtotal, KEY=VALUE for one segment (KEY=(none): without the attribute)",
            ),
            (
                "limit",
                "query",
                "At most this many accounts [1000, max 1000]; the totals are of all",
            ),
            ("offset", "query", "Skip this many accounts"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/cohorts",
        scope: Some(Scope::Read),
        summary: "Cohort retention table",
        params: &[
            ("unit", "query", "month | quarter | year [month]"),
            ("metric", "query", "logo | revenue [revenue]"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/alerts",
        scope: Some(Scope::Read),
        summary: "Alerts, newest first, a page at a time",
        params: &[
            ("account", "query", "Only this account"),
            ("rule", "query", "Only this rule"),
            ("severity", "query", "Only this severity"),
            ("limit", "query", "At most this many [100, max 1000]"),
            ("cursor", "query", "The page after this one: the next_cursor of the previous answer"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/tasks",
        scope: Some(Scope::Read),
        summary: "Tasks, by due date (those without one last), a page at a time",
        params: &[
            ("owner", "query", "Only this owner"),
            (
                "status",
                "query",
                "open | in_progress | done | dismissed | active (open or in progress)",
            ),
            ("account", "query", "Only this account"),
            ("rule", "query", "Only this rule"),
            ("limit", "query", "At most this many [100, max 1000]"),
            ("cursor", "query", "The page after this one: the next_cursor of the previous answer"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/tasks/{id}",
        scope: Some(Scope::Read),
        summary: "One task with its notes",
        params: &[("id", "path", "The task id")],
    },
    Route {
        method: "patch",
        path: "/api/v1/tasks/{id}",
        scope: Some(Scope::Write),
        summary: "Assign, change status, comment, resolve with a root cause (body: status, owner, due, note, root_cause); recorded under the key's name",
        params: &[("id", "path", "The task id")],
    },
    Route {
        method: "get",
        path: "/api/v1/scorecards",
        scope: Some(Scope::Read),
        summary: "The health scorecards in force",
        params: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/model",
        scope: Some(Scope::Read),
        summary: "The churn model in use and since when: the learner chosen, the learners it was compared with on the latest snapshots, and the verdict",
        params: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/forecast",
        scope: Some(Scope::Read),
        summary: "Renewal forecast of this quarter or the next (saved by `tenure forecast --save`), with the CSMs' calls made since: totals with interval, categories, every renewal",
        params: &[
            ("period", "query", "The quarter, e.g. 2027-Q1 [this quarter]"),
            ("by", "query", "month | csm | segment: totals per group"),
        ],
    },
    Route {
        method: "get",
        path: "/api/v1/forecast/backtest",
        scope: Some(Scope::Read),
        summary: "Past quarters: the forecast made at each one's start against the ARR renewed, and the naive forecast",
        params: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/audit",
        scope: Some(Scope::Admin),
        summary: "Who changed what: task changes and forecast calls (with their author), changes to people and keys; oldest first",
        params: &[
            ("from", "query", "From the start of this period on, e.g. 2026-06 or 2026-06-01"),
            ("to", "query", "Up to the end of this period"),
        ],
    },
    Route {
        method: "post",
        path: "/api/v1/accounts/{id}/forecast-override",
        scope: Some(Scope::Write),
        summary: "A CSM's call on the account's renewal (body: category commit | probable | at_risk, amount, subscription_id, reason); recorded under the key's name",
        params: &[("id", "path", "The account id")],
    },
];

/// The handler of a route of [`ROUTES`].
pub fn handler(r: &Route) -> MethodRouter<AppState> {
    match (r.method, r.path) {
        ("get", "/healthz") => get(crate::healthz),
        ("get", "/metrics") => get(crate::metrics_text),
        ("get", "/api/v1/openapi.json") => get(openapi_json),
        ("post", "/api/v1/events") => post(crate::ingest),
        ("post", "/v1/{call}") => post(crate::segment_call),
        ("post", "/webhooks/stripe") => post(crate::ingest::stripe_webhook),
        ("get", "/api/v1/accounts") => get(accounts),
        ("get", "/api/v1/accounts/{id}") => get(account),
        ("get", "/api/v1/kpis") => get(kpis),
        ("get", "/api/v1/kpis/explain") => get(kpis_explain),
        ("get", "/api/v1/cohorts") => get(cohorts),
        ("get", "/api/v1/alerts") => get(alerts),
        ("get", "/api/v1/tasks") => get(tasks),
        ("get", "/api/v1/tasks/{id}") => get(task),
        ("patch", "/api/v1/tasks/{id}") => patch(update_task),
        ("get", "/api/v1/scorecards") => get(scorecards),
        ("get", "/api/v1/model") => get(model),
        ("get", "/api/v1/forecast") => get(forecast),
        ("get", "/api/v1/forecast/backtest") => get(forecast_backtest),
        ("get", "/api/v1/audit") => get(audit),
        ("post", "/api/v1/accounts/{id}/forecast-override") => post(forecast_override),
        (m, p) => unreachable!("no handler for {m} {p}"),
    }
}

/// The OpenAPI 3.1 document of [`ROUTES`] and the error table (built in `openapi.rs`).
pub fn openapi() -> Value {
    crate::openapi::document()
}

async fn openapi_json() -> Response {
    json_response(StatusCode::OK, &openapi())
}

type Params = Query<HashMap<String, String>>;

pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new("invalid_request", message)
}

pub(crate) fn live_read(
    s: &AppState,
) -> Result<std::sync::RwLockReadGuard<'_, crate::live::Live>, ApiError> {
    s.0.core.live.read().map_err(|_| ApiError::new("internal", "the live state is unavailable"))
}

fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

pub(crate) fn attr(a: &AccountLedger, key: &str, t: Timestamp) -> Option<String> {
    a.attribute_at(key, t).map(|v| v.label())
}

/// One account as the list shows it.
fn summary(live: &crate::live::Live, a: &AccountLedger) -> Value {
    let t = live.t;
    let cur = live.cfg.revenue.fx.base;
    let now = a.state_before(Timestamp(t.0 + 1));
    let h = live.health.accounts.get(&a.id);
    json!({
        "account_id": a.id,
        "name": a.name,
        "segment": attr(a, "segment", t),
        "csm": attr(a, "csm", t),
        "customer": now.is_some_and(|s| s.customer),
        "mrr": money_json(now.map_or(0, |s| s.mrr), cur),
        "renewal_date": a.next_renewal(t).map(|d| d.date_string()),
        "health": h.map(|h| json!({"score": h.score, "colour": h.colour, "scorecard": h.scorecard})),
        "risk": h.and_then(|h| h.probability),
        "licence_utilisation": h.map_or(Value::Null, |h| num(h.row.get(F::UTILISATION))),
        "nps": h.map_or(Value::Null, |h| num(h.row.get(F::NPS))),
        "open_tasks": a.cs.tasks.iter().filter(|t| t.is_active()).count(),
    })
}

/// The accounts a list asks for (filters and sort of the query), in order.
pub(crate) fn select<'a>(
    live: &'a crate::live::Live,
    p: &HashMap<String, String>,
    sees: impl Fn(&AccountLedger) -> bool,
) -> Result<Vec<&'a AccountLedger>, ApiError> {
    let t = live.t;
    let f = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let parse_f64 = |k: &str| -> Result<Option<f64>, ApiError> {
        f(k).map(|v| v.parse::<f64>().map_err(|_| bad(format!("{k}: not a number: {v:?}"))))
            .transpose()
    };
    let min_risk = parse_f64("min_risk")?;
    let q = f("q").map(str::to_lowercase);
    let mut rows: Vec<&AccountLedger> = live
        .ledger
        .accounts
        .iter()
        .filter(|a| sees(a))
        .filter(|a| {
            let h = live.health.accounts.get(&a.id);
            q.as_ref().is_none_or(|q| {
                a.id.to_lowercase().contains(q)
                    || a.name.as_ref().is_some_and(|n| n.to_lowercase().contains(q))
            }) && f("segment").is_none_or(|v| attr(a, "segment", t).as_deref() == Some(v))
                && f("csm").is_none_or(|v| attr(a, "csm", t).as_deref() == Some(v))
                && f("colour").is_none_or(|v| h.map_or("grey", |h| h.colour) == v)
                && (f("customer") != Some("true") || a.customer_before(Timestamp(t.0 + 1)))
                && min_risk.is_none_or(|m| h.and_then(|h| h.probability).is_some_and(|p| p >= m))
        })
        .collect();
    let sort = f("sort").unwrap_or("name");
    let key = |a: &AccountLedger| -> Option<f64> {
        let h = live.health.accounts.get(&a.id);
        match sort {
            "health" => h.and_then(|h| h.score),
            "risk" => h.and_then(|h| h.probability),
            "mrr" => Some(a.mrr_before(Timestamp(t.0 + 1)) as f64),
            "renewal" => a.next_renewal(t).map(|d| d.0 as f64),
            "utilisation" => h.map(|h| h.row.get(F::UTILISATION)).filter(|x| x.is_finite()),
            "nps" => h.map(|h| h.row.get(F::NPS)).filter(|x| x.is_finite()),
            _ => None,
        }
    };
    let desc = match f("order") {
        Some("asc") => false,
        Some("desc") => true,
        None => matches!(sort, "risk" | "mrr"),
        Some(o) => return Err(bad(format!("order: {o:?} is not asc or desc"))),
    };
    match sort {
        // Keys computed once per account, not per comparison.
        "name" => rows.sort_by_cached_key(|x| {
            (x.name.as_deref().unwrap_or(&x.id).to_lowercase(), x.id.clone())
        }),
        // Unset last.
        "csm" | "segment" => rows.sort_by_cached_key(|x| {
            let v = attr(x, sort, t).map(|v| v.to_lowercase());
            (v.is_none(), v, x.id.clone())
        }),
        "health" | "risk" | "mrr" | "renewal" | "utilisation" | "nps" => {
            let mut keyed: Vec<(Option<f64>, &AccountLedger)> =
                rows.iter().map(|a| (key(a), *a)).collect();
            keyed.sort_by(|(ka, a), (kb, b)| {
                // Unknown values last, whichever the order.
                match (*ka, *kb) {
                    (Some(x), Some(y)) => {
                        let o = x.total_cmp(&y);
                        if desc { o.reverse() } else { o }
                    }
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
                .then(a.id.cmp(&b.id))
            });
            rows = keyed.into_iter().map(|(_, a)| a).collect();
        }
        other => {
            return Err(bad(format!(
                "sort: unknown {other:?} (name | health | risk | mrr | renewal | csm | segment | utilisation | nps)"
            )));
        }
    }
    if matches!(sort, "name" | "csm" | "segment") && desc {
        rows.reverse();
    }
    Ok(rows)
}

async fn accounts(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let (_, who) = authorise_book(&s, &h, Scope::Read)?;
    let live = live_read(&s)?;
    let t = live.t;
    let rows = select(&live, &p, |a| s.sees(&who, a, t))?;
    let f = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let limit = match f("limit") {
        None => 50,
        Some(v) => {
            v.parse::<usize>().map_err(|_| bad(format!("limit: not a count: {v:?}")))?.min(1000)
        }
    };
    let offset = match f("offset") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| bad(format!("offset: not a count: {v:?}")))?,
    };
    let total = rows.len();
    let page: Vec<Value> =
        rows.iter().skip(offset).take(limit).map(|a| summary(&live, a)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"as_of": t.to_string(), "total": total, "accounts": page}),
    ))
}

fn task_json(account: &str, t: &Task) -> Value {
    json!({
        "task_id": t.task_id, "account_id": account, "rule": t.rule, "alert_id": t.alert_id,
        "title": t.title, "owner": t.owner, "due": t.due.map(|d| d.to_string()),
        "status": t.status.as_str(), "opened": t.opened.to_string(),
        "resolved": t.resolved.map(|d| d.to_string()), "root_cause": t.root_cause,
        "alerts": t.alerts,
        "notes": t.notes.iter().map(|(ts, by, n)| json!({"at": ts.to_string(), "author": by, "note": n})).collect::<Vec<_>>(),
    })
}

async fn account(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (_, who) = authorise_book(&s, &h, Scope::Read)?;
    let live = live_read(&s)?;
    // Outside the caller's book: as unknown as a missing account.
    let a = live
        .ledger
        .account(&id)
        .filter(|a| s.sees(&who, a, live.t))
        .ok_or_else(|| ApiError::new("not_found", format!("no account {id:?}")))?;
    let t = live.t;
    let cur = live.cfg.revenue.fx.base;
    // The account's KPIs over the last 12 months, and its monthly usage.
    let one = tenure_ledger::Ledger {
        accounts: vec![a.clone()],
        costs: Vec::new(),
        diagnostics: Vec::new(),
        as_of: t,
        fx: Some(live.cfg.revenue.fx.clone()),
    };
    let period = Period::new(t.add_months(-12), t);
    let rows = tenure_kpi::report(&one, &[period], None, &live.cfg.kpi);
    let trend: Vec<tenure_report::UsageMonth> = live
        .usage
        .get(&id)
        .map(|months| {
            months
                .iter()
                .filter(|u| u.month >= t.add_months(-12))
                .map(|u| tenure_report::UsageMonth {
                    month: Period::new(u.month, u.month.add_months(1)),
                    events: u.events,
                    mau: u.users,
                })
                .collect()
        })
        .unwrap_or_default();
    let text = tenure_report::account(a, &rows[0], &trend, cur, t, OutFormat::Json);
    let mut j: Value =
        serde_json::from_str(&text).map_err(|e| ApiError::new("internal", e.to_string()))?;
    let hl = live.health.accounts.get(&id);
    j["as_of"] = json!(t.to_string());
    j["health"] = hl.map_or(
        Value::Null,
        |h| json!({"score": h.score, "colour": h.colour, "scorecard": h.scorecard}),
    );
    j["risk"] = hl.and_then(|h| h.probability).map_or(Value::Null, |p| {
        json!({
            "probability": p,
            "drivers": hl.map(|h| h.drivers(live.model.as_ref(), 3).iter().map(|d| json!({"feature": d.feature, "text": d.text, "contribution": d.contribution})).collect::<Vec<_>>()),
        })
    });
    j["alerts"] = a
        .cs
        .alerts
        .iter()
        .rev()
        .map(|x| json!({"alert_id": x.alert_id, "at": x.ts.to_string(), "rule": x.rule, "severity": x.severity.as_str(), "message": x.message}))
        .collect();
    j["tasks"] = a.cs.tasks.iter().map(|x| task_json(&id, x)).collect();
    let values = s.0.core.lifetime.lock().ok().and_then(|v| v.clone());
    j["lifetime_value"] = crate::lifetime::json(values.as_deref(), &id, cur.exponent());
    Ok(json_response(StatusCode::OK, &j))
}

/// Runs a computation over every account on a blocking thread (the async workers keep
/// acknowledging events meanwhile).
async fn blocking(
    f: impl FnOnce() -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(ApiError::new("internal", "the computation failed")))
}

async fn kpis(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Read)?;
    blocking(move || kpis_of(&s, &p)).await
}

fn kpis_of(s: &AppState, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let live = live_read(s)?;
    let t = live.t;
    let period = match p.get("period") {
        Some(v) => Period::parse(v).map_err(|e| bad(format!("period: {e}")))?,
        None => {
            let end = PeriodUnit::Month.floor(t);
            Period::new(end.add_months(-12), end)
        }
    };
    let periods = match p.get("every") {
        None => vec![period],
        Some(u) => {
            let unit =
                PeriodUnit::parse(u).ok_or_else(|| bad(format!("every: unknown unit {u:?}")))?;
            // Counted before splitting: a long period by day would allocate first.
            let days = match unit {
                PeriodUnit::Day => 1.0,
                PeriodUnit::Week => 7.0,
                PeriodUnit::Month => 28.0,
                PeriodUnit::Quarter => 90.0,
                _ => 365.0,
            };
            if period.days() / days > 401.0 {
                return Err(bad("more than 400 sub-periods"));
            }
            period.split(unit)
        }
    };
    if periods.len() > 400 {
        return Err(bad("more than 400 sub-periods"));
    }
    let by = p.get("by").map(|b| tenure_kpi::By::parse(b));
    let rows = tenure_kpi::report(&live.ledger, &periods, by.as_ref(), &live.cfg.kpi);
    let max = s.0.limits.max_kpi_rows;
    if rows.len() > max {
        return Err(ApiError::new(
            "result_too_large",
            format!(
                "the answer would hold {} rows, over the limit of {max} ([service] max_kpi_rows): a shorter period, a coarser every, or a cut with fewer values",
                rows.len()
            ),
        ));
    }
    let text = tenure_report::kpis_json(&rows, live.cfg.revenue.fx.base, false);
    let j: Value =
        serde_json::from_str(&text).map_err(|e| ApiError::new("internal", e.to_string()))?;
    Ok(json_response(StatusCode::OK, &j))
}

async fn kpis_explain(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Read)?;
    blocking(move || explain_of(&s, &p)).await
}

/// What an explanation asks for, read from query parameters (the API's and the dashboard's
/// `/explain` page's): the KPI, the period (default: the last whole month before `t`) and
/// the selection.
pub(crate) fn explain_request(
    p: &HashMap<String, String>,
    t: Timestamp,
) -> Result<(tenure_kpi::explain::Kpi, Period, tenure_kpi::explain::Selection), String> {
    use tenure_kpi::explain::{Kpi, Selection};
    let kpi = match p.get("kpi") {
        None => return Err(format!("kpi: name one of {}", Kpi::expected())),
        Some(k) => Kpi::parse(k).ok_or_else(|| {
            format!("kpi: {k:?} cannot be explained (one of {})", Kpi::expected())
        })?,
    };
    let period = match p.get("period") {
        Some(v) => Period::parse(v).map_err(|e| format!("period: {e}"))?,
        None => {
            let end = PeriodUnit::Month.floor(t);
            Period::new(end.add_months(-1), end)
        }
    };
    let (by, segment) = match p.get("by").filter(|b| !b.is_empty()) {
        Some(b) => {
            let (by, segment) = Selection::parse_by(b);
            (Some(by), segment)
        }
        None => (None, None),
    };
    let account = p.get("account").filter(|a| !a.is_empty()).cloned();
    Ok((kpi, period, Selection { by, segment, account }))
}

/// The source events an explanation names, read back from the data directory's log.
pub(crate) fn resolve_sources(
    data: &std::path::Path,
    e: &tenure_kpi::explain::Explanation,
) -> Result<tenure_report::Resolved, ApiError> {
    let found = tenure_engine::source_events(data, &tenure_kpi::explain::sources(e))
        .map_err(|e| ApiError::new("internal", e.to_string()))?;
    Ok(found.into_iter().map(|s| (s.source, (s.position, s.event))).collect())
}

fn explain_of(s: &AppState, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let live = live_read(s)?;
    let (kpi, period, selection) = explain_request(p, live.t).map_err(bad)?;
    if let Some(a) = &selection.account
        && live.ledger.account(a).is_none()
    {
        return Err(bad(format!("account: no account {a:?}")));
    }
    let mut e = tenure_kpi::explain::explain(&live.ledger, kpi, period, &selection, &live.cfg.kpi);
    let (cur, as_of) = (live.cfg.revenue.fx.base, live.t);
    drop(live);
    let number =
        |k: &str, default: usize| p.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(default);
    let (offset, limit) = (number("offset", 0), number("limit", 1000));
    let accounts = e.lines.len();
    // A page of the accounts; the totals stay those of all of them.
    e.lines = e.lines.into_iter().skip(offset).take(limit).collect();
    let events = resolve_sources(&s.0.data, &e)?;
    let mut j = tenure_report::explain_json(&e, cur, as_of, &events);
    j["accounts_total"] = json!(accounts);
    Ok(json_response(StatusCode::OK, &j))
}

async fn cohorts(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Read)?;
    blocking(move || cohorts_of(&s, &p)).await
}

fn cohorts_of(s: &AppState, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let live = live_read(s)?;
    let unit = match p.get("unit") {
        None => PeriodUnit::Month,
        Some(u) => PeriodUnit::parse(u).ok_or_else(|| bad(format!("unit: unknown {u:?}")))?,
    };
    let metric = match p.get("metric").map(String::as_str) {
        None | Some("revenue") => tenure_kpi::CohortMetric::Revenue,
        Some("logo") | Some("logos") => tenure_kpi::CohortMetric::Logo,
        Some(m) => return Err(bad(format!("metric: unknown {m:?} (logo | revenue)"))),
    };
    let table = tenure_kpi::cohorts(&live.ledger, unit, metric);
    let text = tenure_report::cohorts_json(&table, live.cfg.revenue.fx.base);
    let j: Value =
        serde_json::from_str(&text).map_err(|e| ApiError::new("internal", e.to_string()))?;
    Ok(json_response(StatusCode::OK, &j))
}

/// Where a page of a list starts: the sort key of the last item of the page before (a
/// time, then an id), so pages stay right while items come and go. Written as hex: the
/// time as 8 bytes big-endian, then the id's bytes. Every string of that shape is a cursor
/// (it names a place in the order, whether or not an item sits there).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub i64, pub String);

impl Cursor {
    pub fn encode(&self) -> String {
        let mut b = self.0.to_be_bytes().to_vec();
        b.extend_from_slice(self.1.as_bytes());
        crate::notify::hex(&b)
    }

    pub fn parse(s: &str) -> Result<Cursor, String> {
        let bad = || format!("{s:?} is not a cursor this service gave (next_cursor of a page)");
        if s.len() < 16 || !s.len().is_multiple_of(2) || s.len() > 16 + 2 * 1024 {
            return Err(bad());
        }
        let bytes: Option<Vec<u8>> = (0..s.len())
            .step_by(2)
            .map(|i| {
                let d = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                Some(d(s.as_bytes()[i])? << 4 | d(s.as_bytes()[i + 1])?)
            })
            .collect();
        let bytes = bytes.ok_or_else(bad)?;
        let (t, id) = bytes.split_at(8);
        let t = i64::from_be_bytes(t.try_into().map_err(|_| bad())?);
        Ok(Cursor(t, String::from_utf8_lossy(id).into_owned()))
    }
}

/// A list's `limit` [100, at most 1000] and `cursor`.
fn page(p: &HashMap<String, String>) -> Result<(usize, Option<Cursor>), ApiError> {
    let limit = match p.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("limit: not a count: {v:?}")))?
            .min(crate::openapi::MAX_LIMIT as usize),
    };
    let after = p.get("cursor").map(|c| Cursor::parse(c).map_err(|e| bad(format!("cursor: {e}"))));
    Ok((limit, after.transpose()?))
}

async fn alerts(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let (_, who) = authorise_book(&s, &h, Scope::Read)?;
    let live = live_read(&s)?;
    let f = |k: &str| p.get(k).map(String::as_str);
    let (limit, after) = page(&p)?;
    let mut list: Vec<(&AccountLedger, &tenure_ledger::cs::Alert)> = live
        .ledger
        .accounts
        .iter()
        .filter(|a| s.sees(&who, a, live.t))
        .filter(|a| f("account").is_none_or(|x| a.id == x))
        .flat_map(|a| a.cs.alerts.iter().map(move |x| (a, x)))
        .filter(|(_, x)| f("rule").is_none_or(|r| x.rule == r))
        .filter(|(_, x)| f("severity").is_none_or(|v| x.severity.as_str() == v))
        .collect();
    list.sort_by(|a, b| b.1.ts.cmp(&a.1.ts).then(a.1.alert_id.cmp(&b.1.alert_id)));
    // Newest first: the key is the negated time, so "after" is "greater" for both lists.
    let key = |x: &tenure_ledger::cs::Alert| Cursor(x.ts.0.saturating_neg(), x.alert_id.clone());
    let start = after.map_or(0, |c| list.partition_point(|(_, x)| key(x) <= c));
    let shown = &list[start..list.len().min(start + limit)];
    let next = (start + shown.len() < list.len())
        .then(|| shown.last().map(|(_, x)| key(x).encode()))
        .flatten();
    let out: Vec<Value> = shown
        .iter()
        .map(|(a, x)| {
            json!({"alert_id": x.alert_id, "account_id": a.id, "account_name": a.name, "at": x.ts.to_string(),
                   "rule": x.rule, "severity": x.severity.as_str(), "message": x.message,
                   "owner": attr(a, "csm", live.t)})
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"total": list.len(), "alerts": out, "next_cursor": next}),
    ))
}

async fn tasks(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let (_, who) = authorise_book(&s, &h, Scope::Read)?;
    let (limit, after) = page(&p)?;
    let live = live_read(&s)?;
    let f = |k: &str| p.get(k).map(String::as_str);
    if let Some(st) = f("status")
        && st != "active"
        && TaskStatus::parse(st).is_none()
    {
        return Err(bad(format!("status: unknown {st:?} ({} | active)", TaskStatus::expected())));
    }
    let mut list: Vec<(&AccountLedger, &Task)> = live
        .ledger
        .accounts
        .iter()
        .filter(|a| s.sees(&who, a, live.t))
        .filter(|a| f("account").is_none_or(|x| a.id == x))
        .flat_map(|a| a.cs.tasks.iter().map(move |t| (a, t)))
        .filter(|(_, t)| f("owner").is_none_or(|o| t.owner.as_deref() == Some(o)))
        .filter(|(_, t)| f("rule").is_none_or(|r| t.rule.as_deref() == Some(r)))
        .filter(|(_, t)| match f("status") {
            None => true,
            Some("active") => t.is_active(),
            Some(st) => t.status.as_str() == st,
        })
        .collect();
    let key = |t: &Task| Cursor(t.due.unwrap_or(Timestamp::MAX).0, t.task_id.clone());
    list.sort_by_cached_key(|(_, t)| key(t));
    let start = after.map_or(0, |c| list.partition_point(|(_, t)| key(t) <= c));
    let shown = &list[start..list.len().min(start + limit)];
    let next = (start + shown.len() < list.len())
        .then(|| shown.last().map(|(_, t)| key(t).encode()))
        .flatten();
    let out: Vec<Value> = shown.iter().map(|(a, t)| task_json(&a.id, t)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"total": list.len(), "tasks": out, "next_cursor": next}),
    ))
}

fn find_task<'a>(live: &'a crate::live::Live, id: &str) -> Option<(&'a AccountLedger, &'a Task)> {
    live.ledger
        .accounts
        .iter()
        .find_map(|a| a.cs.tasks.iter().find(|t| t.task_id == id).map(|t| (a, t)))
}

async fn task(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (_, who) = authorise_book(&s, &h, Scope::Read)?;
    let live = live_read(&s)?;
    let (a, t) = find_task(&live, &id)
        .filter(|(a, _)| s.sees(&who, a, live.t))
        .ok_or_else(|| ApiError::new("not_found", format!("no task {id:?}")))?;
    Ok(json_response(StatusCode::OK, &task_json(&a.id, t)))
}

/// A task change from a person (`fields`: any of status, owner, due, note, root_cause),
/// made by `author` (the name of the authenticated key, never a field the client sets):
/// validated as a `task` event of the input contract, refused when it resolves without a
/// root cause, and stored (durable when this returns). Returns the account and the task
/// with the change applied, as the ledger will fold it.
pub(crate) async fn change_task(
    s: &AppState,
    id: &str,
    fields: &Map<String, Value>,
    author: &str,
    who: &crate::users::Principal,
) -> Result<(String, Task), ApiError> {
    const FIELDS: &[&str] = &["status", "owner", "due", "note", "root_cause"];
    if fields.contains_key("author") {
        return Err(bad(
            "author: a change is recorded under the name of the API key that makes it; the field cannot be set",
        ));
    }
    if let Some(k) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("{k}: unknown field ({})", FIELDS.join(", "))));
    }
    if fields.values().all(Value::is_null) {
        return Err(bad(format!("nothing to change: give at least one of {}", FIELDS.join(", "))));
    }
    let (account, mut view) = {
        let live = live_read(s)?;
        // A task of an account outside the caller's book is as unknown as a missing one.
        let (a, t) = find_task(&live, id)
            .filter(|(a, _)| s.sees(who, a, live.t))
            .ok_or_else(|| ApiError::new("not_found", format!("no task {id:?}")))?;
        (a.id.clone(), t.clone())
    };
    let now = (s.0.clock)();
    let mut line =
        json!({"type": "task", "timestamp": now.to_string(), "account_id": account, "task_id": id});
    for (k, v) in fields.iter().filter(|(_, v)| !v.is_null()) {
        line[k] = v.clone();
    }
    line["author"] = json!(author);
    let e = tenure_ingest::parse_json_line(&line.to_string(), None, &s.0.ingest)
        .map_err(|e| bad(format!("{}: {}", e.field.unwrap_or_default(), e.reason)))?;
    let tenure_core::event::EventBody::Task(change) = e.body.clone() else {
        unreachable!("a task line parses as a task")
    };
    // In the same change, so that every resolution states its cause (as documented); not
    // for routine tasks (scheduling a touchpoint), whose closing says nothing about churn.
    let asks = live_read(s)?.rules.of_task(view.rule.as_deref()).is_none_or(|r| r.root_cause);
    if change.status == Some(TaskStatus::Done) && change.root_cause.is_none() && asks {
        return Err(ApiError::new(
            "root_cause_required",
            "resolving a task (status done) of a risk rule needs a root_cause",
        ));
    }
    // People choose from the one taxonomy, so that the reports count causes, not spellings
    // (imported history may hold other text; the reports count it as `other`).
    if let Some(c) = change.root_cause.as_deref()
        && RootCause::parse(c).is_none()
    {
        return Err(bad(format!(
            "root_cause: unknown cause {c:?} (expected {})",
            RootCause::expected()
        )));
    }
    store(s, vec![e]).await?;
    view.apply(now, *change);
    Ok((account, view))
}

/// `PATCH /api/v1/tasks/{id}`: assign, comment, change status, resolve.
async fn update_task(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (key, who) = authorise_book(&s, &h, Scope::Write)?;
    let body: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new("invalid_json", format!("malformed JSON: {e}")))?;
    let (account, view) = change_task(&s, &id, &body, key.identity(), &who).await?;
    Ok(json_response(StatusCode::OK, &task_json(&account, &view)))
}

/// `GET /api/v1/forecast`: the saved forecast of a quarter, with the calls known now.
async fn forecast(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let (_, who) = authorise_book(&s, &h, Scope::Read)?;
    let by = match p.get("by").map(String::as_str) {
        None => None,
        Some(b) => Some(
            tenure_health::forecast::GroupBy::parse(b)
                .ok_or_else(|| bad(format!("by {b:?}: expected month, csm or segment")))?,
        ),
    };
    blocking(move || {
        let f = crate::forecast::quarter(&s, p.get("period").map(String::as_str))?;
        let (f, cur) = {
            let live = live_read(&s)?;
            (crate::forecast::in_book(&s, &who, &live, f), live.cfg.revenue.fx.base)
        };
        let groups = by
            .map(|b| tenure_health::forecast::groups(&f.items, b, f.level, &f.spread))
            .unwrap_or_default();
        let j = tenure_report::forecast::forecast_json(
            &f,
            &groups,
            p.get("by").map(String::as_str),
            cur,
        );
        Ok(json_response(StatusCode::OK, &j))
    })
    .await
}

/// `GET /api/v1/audit`: the audit log (admin keys and admins only: it names everyone).
async fn audit(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Admin)?;
    let when = |k: &str, end: bool| -> Result<Option<Timestamp>, ApiError> {
        p.get(k)
            .map(|v| {
                Period::parse(v)
                    .map(|x| if end { x.end } else { x.start })
                    .map_err(|e| bad(format!("{k}: {e}")))
            })
            .transpose()
    };
    let (from, to) = (when("from", false)?, when("to", true)?);
    blocking(move || {
        let entries = tenure_engine::audit::audit(&s.0.data, from, to)
            .map_err(|e| ApiError::new("internal", e.to_string()))?;
        Ok(json_response(StatusCode::OK, &json!({ "entries": entries })))
    })
    .await
}

/// `GET /api/v1/forecast/backtest`: the saved backtest.
async fn forecast_backtest(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Read)?;
    blocking(move || match crate::forecast::saved(&s)? {
        Some(saved) if !saved.backtest.is_null() => {
            Ok(json_response(StatusCode::OK, &saved.backtest))
        }
        _ => Err(ApiError::new(
            "not_found",
            "no backtest saved: run `tenure forecast --save` on a data directory with past quarters",
        )),
    })
    .await
}

/// `POST /api/v1/accounts/{id}/forecast-override`: a CSM's call on a renewal.
async fn forecast_override(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (key, who) = authorise_book(&s, &h, Scope::Write)?;
    let body: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new("invalid_json", format!("malformed JSON: {e}")))?;
    let line = crate::forecast::record_call(&s, &id, &body, key.identity(), &who).await?;
    Ok(json_response(StatusCode::OK, &line))
}

async fn model(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Read)?;
    let live = s.0.core.health_setup.lock().map(|x| x.clone()).unwrap_or_default();
    let model = live.model.as_ref().map(|m| {
        json!({
            "outcome": m.outcome, "horizon_days": m.horizon_days,
            "first_snapshot": m.first_snapshot, "last_snapshot": m.last_snapshot,
            "n_snapshots": m.n_snapshots, "n_churned": m.n_churned,
            "chosen": m.selection.chosen, "verdict": m.selection.verdict, "rule": m.selection.rule,
            "validation": {
                "fit_snapshots": m.selection.fit_snapshots,
                "snapshots": m.selection.validation_snapshots,
                "churned": m.selection.validation_churned,
                "from": (!m.selection.validation_from.is_empty()).then_some(&m.selection.validation_from),
                "to": (!m.selection.validation_to.is_empty()).then_some(&m.selection.validation_to),
            },
            "candidates": m.selection.candidates.iter().map(|c| json!({
                "name": c.name, "log_loss": num(c.log_loss), "auc": c.auc.map_or(Value::Null, num),
                "ece": c.ece.map_or(Value::Null, num), "chosen": c.name == m.selection.chosen,
            })).collect::<Vec<_>>(),
        })
    });
    Ok(json_response(
        StatusCode::OK,
        &json!({"model": model, "since": live.since.map(|t| t.to_string()), "error": live.error}),
    ))
}

async fn scorecards(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    authorise(&s, &h, Scope::Read)?;
    let live = live_read(&s)?;
    let cards: Vec<Value> = live
        .cards
        .all()
        .map(|c| {
            json!({
                "name": c.name, "description": c.description, "segments": c.segments,
                "tenure_months": c.tenure_months.map(|(a, b)| json!([num(a), num(b)])),
                "red": c.red, "yellow": c.yellow, "dimension": c.dimension,
                "rollup": live.cards.rollup.as_ref() == Some(c),
                "measures": c.measures.iter().map(|m| match &m.reads {
                    Reads::Feature(f) => json!({
                        "name": m.name, "feature": tenure_health::features::DEFS[*f].name, "weight": m.weight,
                    }),
                    Reads::Dimension(_) => json!({"name": m.name, "dimension": m.name, "weight": m.weight}),
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut colours: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in live.health.accounts.values() {
        *colours.entry(a.colour).or_default() += 1;
    }
    Ok(json_response(StatusCode::OK, &json!({"scorecards": cards, "accounts_by_colour": colours})))
}
