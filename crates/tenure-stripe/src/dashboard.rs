//! The Stripe Dashboard's CSV exports (subscriptions, customers, invoices) read into the
//! same API objects as a JSON export. Columns are matched by name (the Dashboard lets users
//! pick them and has renamed some: `Start (UTC)` / `Start Date (UTC)`); times are UTC
//! `YYYY-MM-DD HH:MM[:SS]`, amounts major units, `KEY (metadata)` columns metadata.

use crate::load::{Export, Origin, Problem};
use crate::objects::{
    CancellationDetails, Customer, Id, Invoice, List, Metadata, Price, Recurring,
    StatusTransitions, Str, Subscription, SubscriptionItem,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tenure_core::money::{Currency, parse_minor};
use tenure_core::time::Timestamp;

/// Which export a header is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Subscriptions,
    Customers,
    Invoices,
}

fn kind_of(cols: &[&str]) -> Option<Kind> {
    let has = |c: &str| cols.contains(&c);
    if has("Amount Due") || has("Paid At (UTC)") || has("Amount Paid") {
        Some(Kind::Invoices)
    } else if has("Current Period Start (UTC)") || (has("Plan") && has("Interval") && has("Status"))
    {
        Some(Kind::Subscriptions)
    } else if has("id")
        && (has("Email") || has("Name") || has("Description"))
        && has("Created (UTC)")
    {
        Some(Kind::Customers)
    } else {
        None
    }
}

/// A Dashboard time: `2024-03-01 12:34`, with or without seconds, UTC; RFC 3339 too.
fn time(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let iso = if s.len() == 16 {
        format!("{}:00Z", s.replacen(' ', "T", 1))
    } else if s.len() == 19 {
        format!("{}Z", s.replacen(' ', "T", 1))
    } else {
        s.to_string()
    };
    Timestamp::parse(&iso).map(|t| Some(t.secs())).map_err(|e| format!("{s:?} is not a time: {e}"))
}

struct Row<'a> {
    cols: &'a [&'a str],
    rec: &'a csv::StringRecord,
}

impl Row<'_> {
    fn get(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| {
            let i = self.cols.iter().position(|c| c == n)?;
            self.rec.get(i).map(str::trim).filter(|v| !v.is_empty())
        })
    }

    fn time(&self, names: &[&str]) -> Result<Option<i64>, (String, String)> {
        match self.get(names) {
            None => Ok(None),
            Some(v) => time(v).map_err(|e| (names[0].to_string(), e)),
        }
    }

    fn metadata(&self) -> Metadata<'static> {
        let mut m = BTreeMap::new();
        for (i, c) in self.cols.iter().enumerate() {
            if let Some(k) = c.strip_suffix(" (metadata)")
                && let Some(v) = self.rec.get(i).filter(|v| !v.trim().is_empty())
            {
                m.insert(owned(k), owned(v));
            }
        }
        m
    }

    fn money(&self, names: &[&str], currency: &str) -> Result<Option<i64>, (String, String)> {
        let Some(v) = self.get(names) else { return Ok(None) };
        let c = Currency::parse(currency)
            .ok_or_else(|| ("Currency".to_string(), format!("unknown currency {currency:?}")))?;
        parse_minor(&v.replace(',', ""), c)
            .map(Some)
            .map_err(|e| (names[0].to_string(), format!("{v:?}: {e}")))
    }
}

type RowResult<T> = Result<T, (String, String)>;

/// A cell's text, owned (the CSV record is reused for the next row).
fn owned(s: &str) -> Str<'static> {
    Str::from(s.to_string())
}

fn required<'a>(r: &'a Row<'_>, names: &[&str]) -> RowResult<&'a str> {
    r.get(names).ok_or_else(|| (names[0].to_string(), "missing".to_string()))
}

fn subscription(r: &Row<'_>) -> RowResult<Subscription<'static>> {
    let id = required(r, &["id"])?.to_string();
    let currency = r.get(&["Currency"]).unwrap_or("usd").to_ascii_lowercase();
    let created = r
        .time(&["Created (UTC)", "Start (UTC)", "Start Date (UTC)"])?
        .ok_or(("Created (UTC)".to_string(), "missing".to_string()))?;
    let interval = r.get(&["Interval"]).unwrap_or("month").to_ascii_lowercase();
    let price_id = r.get(&["Plan price ID", "Plan", "Price ID"]).unwrap_or("price").to_string();
    let price = Price {
        id: owned(&price_id),
        product: r.get(&["Product ID", "Product"]).map(|p| Id(owned(p))),
        nickname: r.get(&["Plan Nickname", "Plan"]).map(owned),
        unit_amount: r.money(&["Amount", "Plan Amount"], &currency)?,
        currency: Some(owned(&currency)),
        recurring: Some(Recurring {
            interval: interval.into(),
            interval_count: r.get(&["Interval Count"]).and_then(|c| c.parse().ok()).unwrap_or(1),
            usage_type: r.get(&["Usage Type"]).map(owned),
        }),
        ..Price::default()
    };
    let quantity = match r.get(&["Quantity"]) {
        None => Some(1),
        Some(q) => Some(
            q.parse()
                .map_err(|_| ("Quantity".to_string(), format!("{q:?} is not a whole number")))?,
        ),
    };
    let item = SubscriptionItem {
        id: format!("{id}:{price_id}").into(),
        price: Some(price),
        plan: None,
        quantity,
        created: Some(created),
        current_period_start: None,
        current_period_end: None,
    };
    Ok(Subscription {
        object: None,
        id: id.into(),
        customer: Id(owned(required(r, &["Customer ID", "Customer"])?)),
        created,
        start_date: r.time(&["Start Date (UTC)", "Start (UTC)"])?,
        status: r.get(&["Status"]).unwrap_or("active").to_ascii_lowercase().into(),
        items: List { data: vec![item], has_more: false },
        currency: Some(currency.into()),
        current_period_start: r.time(&["Current Period Start (UTC)"])?,
        current_period_end: r.time(&["Current Period End (UTC)"])?,
        cancel_at: r.time(&["Cancel At (UTC)"])?,
        cancel_at_period_end: r
            .get(&["Cancel At Period End"])
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        canceled_at: r.time(&["Canceled At (UTC)"])?,
        ended_at: r.time(&["Ended At (UTC)"])?,
        trial_start: r.time(&["Trial Start (UTC)"])?,
        trial_end: r.time(&["Trial End (UTC)"])?,
        cancellation_details: r.get(&["Cancellation Reason"]).map(|c| CancellationDetails {
            reason: Some(owned(c)),
            feedback: r.get(&["Cancellation Feedback"]).map(owned),
            comment: r.get(&["Cancellation Comment"]).map(owned),
        }),
        pause_collection: None,
        metadata: r.metadata(),
        discounts: Vec::new(),
    })
}

fn customer(r: &Row<'_>) -> RowResult<Customer<'static>> {
    Ok(Customer {
        object: None,
        id: owned(required(r, &["id"])?),
        created: r
            .time(&["Created (UTC)"])?
            .ok_or(("Created (UTC)".to_string(), "missing".to_string()))?,
        name: r.get(&["Name"]).map(owned),
        description: r.get(&["Description"]).map(owned),
        email: r.get(&["Email"]).map(owned),
        metadata: r.metadata(),
        deleted: false,
    })
}

fn invoice(r: &Row<'_>) -> RowResult<Invoice<'static>> {
    let currency = r.get(&["Currency"]).unwrap_or("usd").to_ascii_lowercase();
    let created = r
        .time(&["Date (UTC)", "Created (UTC)"])?
        .ok_or(("Date (UTC)".to_string(), "missing".to_string()))?;
    let tax = r.money(&["Tax"], &currency)?;
    let total = r.money(&["Total"], &currency)?;
    Ok(Invoice {
        object: None,
        id: owned(required(r, &["id"])?),
        customer: Id(owned(required(r, &["Customer", "Customer ID"])?)),
        created,
        status: r.get(&["Status"]).map(|s| s.to_ascii_lowercase().into()),
        currency: Some(owned(&currency)),
        billing_reason: None,
        attempt_count: r.get(&["Attempt Count"]).and_then(|a| a.parse().ok()).unwrap_or(0),
        total,
        total_excluding_tax: match (total, tax) {
            (Some(t), Some(x)) => Some(t - x),
            _ => None,
        },
        subtotal: r.money(&["Subtotal"], &currency)?,
        amount_paid: r.money(&["Amount Paid"], &currency)?,
        period_start: r.time(&["Minimum Line Item Period Start (UTC)", "Period Start (UTC)"])?,
        period_end: r.time(&["Maximum Line Item Period End (UTC)", "Period End (UTC)"])?,
        status_transitions: StatusTransitions {
            finalized_at: r.time(&["Finalized At (UTC)"])?,
            paid_at: r.time(&["Paid At (UTC)"])?,
            voided_at: r.time(&["Voided At (UTC)"])?,
            marked_uncollectible_at: r.time(&["Marked Uncollectible At (UTC)"])?,
        },
        subscription: r.get(&["Subscription"]).map(|s| Id(owned(s))),
        parent: None,
        lines: List::default(),
        discounts: Vec::new(),
    })
}

impl Export<'_> {
    /// Adds one Dashboard CSV export; which one it is comes from its header.
    pub fn add_csv(&mut self, file: &str, text: &str) {
        let file: Arc<str> = Arc::from(file);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rd = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let problem = |line: u64, id: Option<String>, field: Option<String>, reason: String| {
            Problem { origin: Origin { file: file.clone(), line, index: None }, id, field, reason }
        };
        let header = match rd.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                self.problems.push(problem(
                    1,
                    None,
                    None,
                    format!("cannot read the CSV header: {e}"),
                ));
                return;
            }
        };
        let cols: Vec<&str> = header.iter().map(str::trim).collect();
        let Some(kind) = kind_of(&cols) else {
            let reason = "not a Stripe Dashboard export of subscriptions, customers or invoices \
                          (no column such as `Current Period Start (UTC)`, `Amount Due` or `Email`)";
            self.problems.push(problem(1, None, None, reason.into()));
            return;
        };
        for rec in rd.records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    self.problems.push(problem(line, None, None, format!("malformed CSV: {e}")));
                    continue;
                }
            };
            let line = rec.position().map_or(0, |p| p.line());
            let row = Row { cols: &cols, rec: &rec };
            let origin = Origin { file: file.clone(), line, index: None };
            let id = row.get(&["id"]).map(str::to_string);
            let res = match kind {
                Kind::Subscriptions => {
                    subscription(&row).map(|s| self.subscriptions.push((origin, s)))
                }
                Kind::Customers => customer(&row).map(|c| self.customers.push((origin, c))),
                Kind::Invoices => invoice(&row).map(|i| self.invoices.push((origin, i))),
            };
            if let Err((field, reason)) = res {
                self.problems.push(problem(line, id, Some(field), reason));
            }
        }
    }
}
