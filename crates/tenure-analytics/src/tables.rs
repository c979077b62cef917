//! The ledger's state as Arrow tables, for SQL and export: accounts, subscriptions, MRR
//! movements, renewals, contacts, survey responses, tickets, touchpoints, milestones.

use crate::AnalyticsError;
use crate::sql::SqlTable;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;
use tenure_core::event::{Event, EventBody, SurveyScore};
use tenure_core::money::Currency;
use tenure_core::time::Timestamp;
use tenure_ledger::{Ledger, RenewalOutcome};

/// Column kinds of these tables.
enum Col {
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
    Int(Int64Builder),
    Money(Decimal128Builder),
    Bool(BooleanBuilder),
}

/// A table under construction: named columns, appended row by row.
struct Table {
    name: &'static str,
    fields: Vec<Field>,
    cols: Vec<Col>,
}

impl Table {
    fn new(name: &'static str, cur: Currency, spec: &[(&str, char)]) -> Table {
        let scale = cur.exponent() as i8;
        let mut fields = Vec::new();
        let mut cols = Vec::new();
        for (n, kind) in spec {
            let (dt, col) = match kind {
                't' => (
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    Col::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
                ),
                'i' => (DataType::Int64, Col::Int(Int64Builder::new())),
                'm' => (
                    DataType::Decimal128(20, scale),
                    Col::Money(
                        Decimal128Builder::new()
                            .with_precision_and_scale(20, scale)
                            .unwrap_or_default(),
                    ),
                ),
                'b' => (DataType::Boolean, Col::Bool(BooleanBuilder::new())),
                _ => (DataType::Utf8, Col::Text(StringBuilder::new())),
            };
            fields.push(Field::new(*n, dt, true));
            cols.push(col);
        }
        Table { name, fields, cols }
    }

    fn text(&mut self, i: usize, v: Option<&str>) {
        if let Col::Text(b) = &mut self.cols[i] {
            b.append_option(v);
        }
    }
    fn time(&mut self, i: usize, v: Option<Timestamp>) {
        if let Col::Time(b) = &mut self.cols[i] {
            b.append_option(v.map(|t| t.0));
        }
    }
    fn int(&mut self, i: usize, v: Option<i64>) {
        if let Col::Int(b) = &mut self.cols[i] {
            b.append_option(v);
        }
    }
    fn money(&mut self, i: usize, v: Option<i64>) {
        if let Col::Money(b) = &mut self.cols[i] {
            b.append_option(v.map(i128::from));
        }
    }
    fn bool(&mut self, i: usize, v: Option<bool>) {
        if let Col::Bool(b) = &mut self.cols[i] {
            b.append_option(v);
        }
    }

    fn finish(self) -> Result<SqlTable, AnalyticsError> {
        let cols: Vec<ArrayRef> = self
            .cols
            .into_iter()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Text(mut b) => Arc::new(b.finish()),
                    Col::Time(mut b) => Arc::new(b.finish()),
                    Col::Int(mut b) => Arc::new(b.finish()),
                    Col::Money(mut b) => Arc::new(b.finish()),
                    Col::Bool(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(self.fields)), cols)?;
        Ok(SqlTable { name: self.name.to_string(), batch })
    }
}

/// The ledger's tables, in base-currency money (`Decimal128` with the currency's minor
/// unit as scale), as known at the ledger's `as_of`. `subscriptions` are the raw states.
pub fn ledger_tables(
    ledger: &Ledger,
    cur: Currency,
    subscriptions: &[Event],
) -> Result<Vec<SqlTable>, AnalyticsError> {
    let now = Timestamp(ledger.as_of.0.saturating_add(1));
    let mut accounts = Table::new(
        "accounts",
        cur,
        &[
            ("account_id", 's'),
            ("name", 's'),
            ("segment", 's'),
            ("region", 's'),
            ("industry", 's'),
            ("channel", 's'),
            ("csm", 's'),
            ("plan", 's'),
            ("customer", 'b'),
            ("mrr", 'm'),
            ("arr", 'm'),
            ("seats", 'i'),
            ("first_paid", 't'),
        ],
    );
    let mut movements = Table::new(
        "mrr_movements",
        cur,
        &[
            ("account_id", 's'),
            ("ts", 't'),
            ("kind", 's'),
            ("amount", 'm'),
            ("delta", 'm'),
            ("upsell", 'm'),
            ("cross_sell", 'm'),
            ("involuntary", 'b'),
        ],
    );
    let mut renewals = Table::new(
        "renewals",
        cur,
        &[
            ("account_id", 's'),
            ("subscription_id", 's'),
            ("due", 't'),
            ("arr_due", 'm'),
            ("outcome", 's'),
            ("decided_at", 't'),
            ("arr_renewed", 'm'),
        ],
    );
    let mut contacts = Table::new(
        "contacts",
        cur,
        &[
            ("account_id", 's'),
            ("contact_id", 's'),
            ("name", 's'),
            ("email", 's'),
            ("role", 's'),
            ("active", 'b'),
            ("left_at", 't'),
        ],
    );
    let mut responses = Table::new(
        "survey_responses",
        cur,
        &[
            ("account_id", 's'),
            ("ts", 't'),
            ("survey", 's'),
            ("contact_id", 's'),
            ("score", 'i'),
            ("sentiment", 's'),
            ("comment", 's'),
        ],
    );
    let mut tickets = Table::new(
        "tickets",
        cur,
        &[
            ("account_id", 's'),
            ("ticket_id", 's'),
            ("opened", 't'),
            ("closed", 't'),
            ("category", 's'),
            ("severity", 's'),
            ("cost", 'm'),
            ("csat", 'i'),
            ("reopened", 'i'),
        ],
    );
    let mut touchpoints = Table::new(
        "touchpoints",
        cur,
        &[("account_id", 's'), ("ts", 't'), ("kind", 's'), ("sentiment", 's')],
    );
    let mut milestones =
        Table::new("milestones", cur, &[("account_id", 's'), ("ts", 't'), ("name", 's')]);
    for a in &ledger.accounts {
        let s = a.state_before(now);
        let attr = |k: &str| a.attribute_at(k, now).map(|v| v.label());
        accounts.text(0, Some(&a.id));
        accounts.text(1, a.name.as_deref());
        for (i, k) in ["segment", "region", "industry", "channel", "csm"].iter().enumerate() {
            accounts.text(2 + i, attr(k).as_deref());
        }
        accounts.text(7, s.and_then(|s| s.plan.as_deref()));
        accounts.bool(8, Some(s.is_some_and(|s| s.customer)));
        accounts.money(9, Some(s.map_or(0, |s| s.mrr)));
        accounts.money(10, Some(s.map_or(0, |s| s.arr)));
        accounts.int(11, Some(s.map_or(0, |s| s.seats as i64)));
        accounts.time(12, a.first_paid());
        for m in &a.movements {
            movements.text(0, Some(&a.id));
            movements.time(1, Some(m.ts));
            movements.text(2, Some(m.kind.as_str()));
            movements.money(3, Some(m.amount));
            movements.money(4, Some(m.delta()));
            movements.money(5, Some(m.upsell));
            movements.money(6, Some(m.cross_sell));
            movements.bool(7, Some(m.involuntary));
        }
        for r in &a.renewals {
            let (outcome, at, arr) = match r.outcome {
                RenewalOutcome::Won { at, arr } => ("won", Some(at), Some(arr)),
                RenewalOutcome::Lost { at } => ("lost", Some(at), None),
                RenewalOutcome::Open => ("open", None, None),
            };
            renewals.text(0, Some(&a.id));
            renewals.text(1, Some(&r.subscription_id));
            renewals.time(2, Some(r.due));
            renewals.money(3, Some(r.arr_due));
            renewals.text(4, Some(outcome));
            renewals.time(5, at);
            renewals.money(6, arr);
        }
        for c in a.cs.contacts_before(now) {
            contacts.text(0, Some(&a.id));
            contacts.text(1, Some(&c.contact_id));
            contacts.text(2, c.name.as_deref());
            contacts.text(3, c.email.as_deref());
            contacts.text(4, c.role.map(|r| r.as_str()));
            contacts.bool(5, Some(c.active));
            contacts.time(6, c.left_at);
        }
        for r in &a.cs.responses {
            responses.text(0, Some(&a.id));
            responses.time(1, Some(r.ts));
            responses.text(2, Some(r.survey.as_str()));
            responses.text(3, r.contact_id.as_deref());
            let (score, sentiment) = match r.score {
                SurveyScore::Nps(x) | SurveyScore::Csat(x) => (Some(x as i64), None),
                SurveyScore::Success(s) => (None, Some(s.as_str())),
            };
            responses.int(4, score);
            responses.text(5, sentiment);
            responses.text(6, r.comment.as_deref());
        }
        for t in &a.cs.tickets {
            tickets.text(0, Some(&a.id));
            tickets.text(1, Some(&t.ticket_id));
            tickets.time(2, Some(t.opened));
            tickets.time(3, t.closed);
            tickets.text(4, t.category.map(|c| c.as_str()));
            tickets.text(5, t.severity.map(|c| c.as_str()));
            tickets.money(6, t.cost);
            tickets.int(7, t.csat.map(i64::from));
            tickets.int(8, Some(t.reopened as i64));
        }
        for (ts, kind, sentiment) in &a.cs.touchpoints {
            touchpoints.text(0, Some(&a.id));
            touchpoints.time(1, Some(*ts));
            touchpoints.text(2, Some(kind));
            touchpoints.text(3, sentiment.map(|s| s.as_str()));
        }
        for (ts, name) in &a.cs.milestones {
            milestones.text(0, Some(&a.id));
            milestones.time(1, Some(*ts));
            milestones.text(2, Some(name));
        }
    }
    let mut subs = Table::new(
        "subscriptions",
        cur,
        &[
            ("account_id", 's'),
            ("ts", 't'),
            ("subscription_id", 's'),
            ("product", 's'),
            ("plan", 's'),
            ("kind", 's'),
            ("quantity", 'i'),
            ("amount_minor", 'i'),
            ("currency", 's'),
            ("interval_months", 'i'),
            ("status", 's'),
            ("term_start", 't'),
            ("term_end", 't'),
            ("cancel_at", 't'),
        ],
    );
    for e in subscriptions {
        let EventBody::Subscription(s) = &e.body else { continue };
        subs.text(0, e.account.as_deref());
        subs.time(1, Some(e.ts));
        subs.text(2, Some(&s.subscription_id));
        subs.text(3, s.product.as_deref());
        subs.text(4, s.plan.as_deref());
        subs.text(5, Some(s.kind.as_str()));
        subs.int(6, i64::try_from(s.quantity).ok());
        subs.int(7, Some(s.amount.minor));
        subs.text(8, Some(s.amount.currency.as_str()));
        subs.int(9, Some(s.interval_months as i64));
        subs.text(10, Some(s.status.as_str()));
        subs.time(11, s.term_start);
        subs.time(12, s.term_end);
        subs.time(13, s.cancel_at);
    }
    [accounts, subs, movements, renewals, contacts, responses, tickets, touchpoints, milestones]
        .into_iter()
        .map(Table::finish)
        .collect()
}
