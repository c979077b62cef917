//! A Stripe export's history as contract events. A subscription object says only how things
//! are now, so each subscription item's revenue history is read from its invoice lines, as
//! ChartMogul does: a cycle line gives the item's price, quantity and period; a proration
//! line dates a mid-period change; a void cycle invoice or a gap in billing is a pause; the
//! subscription object adds what invoices do not show (trial, scheduled cancellation, end,
//! cancel reason). Every rule is in docs/connectors.md, "Stripe".

use crate::load::{Export, Origin, Problem};
use crate::objects::{Customer, Invoice, Line, Price, Subscription};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use tenure_core::money::{Currency, format_minor};
use tenure_core::time::MICROS;
use tenure_core::time::Timestamp;
use tenure_ingest::raw::{F, Raw, Scalar};

/// How an export is read.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Customers whose `metadata` has this key are grouped into the account it names
    /// (several Stripe customers of one company); others are their own account.
    pub account_key: Option<String>,
    /// Count metered (usage-based) prices in MRR; by default they are not recurring revenue.
    pub metered_in_mrr: bool,
}

/// One contract event and the object it came from.
#[derive(Clone, Debug)]
pub struct Row {
    pub origin: Origin,
    pub id: String,
    pub event: RowEvent,
}

/// An event as the fields a JSON line would hold, or (events of the export mapped as
/// webhook deliveries are) as a JSON line.
#[derive(Clone, Debug)]
pub enum RowEvent {
    Fields(Fields),
    Json(String),
}

impl Row {
    /// The event as a contract JSON line.
    pub fn json(&self) -> String {
        match &self.event {
            RowEvent::Fields(f) => f.json().to_string(),
            RowEvent::Json(j) => j.clone(),
        }
    }
}

/// A contract event's fields, as a JSON line would give them to validation (strings,
/// integers, instants): rows are validated without being written as text and read back,
/// which was most of the time of a large import. [`Fields::raw`] is what validation reads.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    vals: Vec<(F, Scalar<'static>)>,
    attributes: Option<Vec<(Cow<'static, str>, Scalar<'static>)>>,
}

impl Fields {
    /// An event of `kind` at `at` for `account`.
    pub(crate) fn new(kind: &'static str, at: i64, account: &str) -> Fields {
        let mut o = Fields { vals: Vec::with_capacity(12), attributes: None };
        o.vals.push((F::Type, Scalar::Str(Cow::Borrowed(kind))));
        o.time(F::Timestamp, at);
        o.str(F::AccountId, account);
        o
    }

    pub(crate) fn str(&mut self, f: F, value: &str) {
        self.vals.push((f, Scalar::Str(Cow::Owned(value.to_string()))));
    }

    pub(crate) fn static_str(&mut self, f: F, value: &'static str) {
        self.vals.push((f, Scalar::Str(Cow::Borrowed(value))));
    }

    /// A whole number; beyond an `i64` as its digits, as a JSON number that large would be.
    pub(crate) fn uint(&mut self, f: F, value: u64) {
        let v = i64::try_from(value)
            .map_or_else(|_| Scalar::Num(value.to_string().into()), Scalar::Int);
        self.vals.push((f, v));
    }

    /// An instant in Unix seconds. Seconds beyond what an instant holds saturate, and
    /// validation refuses them as out of range (never wrapped into a wrong date).
    pub(crate) fn time(&mut self, f: F, secs: i64) {
        self.vals.push((f, Scalar::Time(Timestamp(secs.saturating_mul(MICROS)))));
    }

    /// An attribute (`attributes.KEY`), a string.
    pub(crate) fn attr(&mut self, key: &str, value: &str) {
        let a = self.attributes.get_or_insert_with(Vec::new);
        a.push((Cow::Owned(key.to_string()), Scalar::Str(Cow::Owned(value.to_string()))));
    }

    /// The event these fields make, or why not: what `tenure_ingest::parse_json_line`
    /// gives for their JSON line, without the text. The line's length limit holds as well:
    /// a bound on it first (keys, punctuation, and values as if every character needed a
    /// six-character escape), the exact text only when the bound is over.
    pub fn validate(
        &self,
        cfg: &tenure_ingest::IngestConfig,
    ) -> Result<tenure_core::event::Event, tenure_ingest::FieldError> {
        let text_len = |v: &Scalar<'_>| match v {
            Scalar::Str(s) | Scalar::Num(s) => 6 * s.len() + 2,
            _ => 40,
        };
        let bound: usize =
            self.vals.iter().map(|(f, v)| f.name().len() + 4 + text_len(v)).sum::<usize>()
                + self
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(k, v)| k.len() + 4 + text_len(v))
                    .sum::<usize>()
                + 32;
        if bound > cfg.max_line_bytes {
            let len = self.json().to_string().len();
            if len > cfg.max_line_bytes {
                return Err(tenure_ingest::FieldError::row(format!(
                    "line is {len} bytes, over the limit of {}",
                    cfg.max_line_bytes
                )));
            }
        }
        tenure_ingest::validate::build(&self.raw(), None, cfg)
    }

    /// The fields as validation reads them (a JSON line's: `from_text` false).
    pub fn raw(&self) -> Raw<'_> {
        let mut raw = Raw::default();
        for (f, v) in &self.vals {
            raw.vals[*f as usize] = Some(borrowed(v));
        }
        raw.attributes = self
            .attributes
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (Cow::Borrowed(&**k), borrowed(v))).collect());
        raw
    }

    /// The JSON line these fields are.
    pub fn json(&self) -> Value {
        let value = |v: &Scalar<'_>| match v {
            Scalar::Str(s) => Value::from(&**s),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Num(n) => serde_json::from_str(n).unwrap_or(Value::Null),
            Scalar::Time(t) => Value::from(t.to_string()),
            Scalar::Float(x) => Value::from(*x),
            Scalar::Bool(b) => Value::from(*b),
            Scalar::Composite(_) => Value::Null,
        };
        let mut o = serde_json::Map::new();
        for (f, v) in &self.vals {
            o.insert(f.name().to_string(), value(v));
        }
        if let Some(a) = &self.attributes {
            let attrs = a.iter().map(|(k, v)| (k.to_string(), value(v))).collect();
            o.insert("attributes".into(), Value::Object(attrs));
        }
        Value::Object(o)
    }
}

fn borrowed<'a>(v: &'a Scalar<'static>) -> Scalar<'a> {
    match v {
        Scalar::Str(s) => Scalar::Str(Cow::Borrowed(s)),
        Scalar::Num(s) => Scalar::Num(Cow::Borrowed(s)),
        other => other.clone(),
    }
}

/// The events of an export, the objects that could not be used, and counts of what was
/// left out on purpose (incomplete subscriptions, one-off lines, metered prices).
#[derive(Debug, Default)]
pub struct Converted {
    pub rows: Vec<Row>,
    pub problems: Vec<Problem>,
    pub skipped: BTreeMap<&'static str, u64>,
}

/// The account a customer belongs to: the configured metadata key, else the customer id.
pub fn account_of(c: &Customer<'_>, opts: &Options) -> String {
    opts.account_key
        .as_ref()
        .and_then(|k| c.metadata.get(k.as_str()))
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.to_string())
        .unwrap_or_else(|| c.id.to_string())
}

pub(crate) fn ts(secs: i64) -> String {
    // Saturating: seconds beyond what an instant holds are refused as out of range by
    // validation, never wrapped into another date.
    Timestamp(secs.saturating_mul(MICROS)).to_string()
}

/// Stripe amounts are in the currency's smallest unit, as Tenure's are (ISO 4217), except
/// ISK: Stripe keeps it two-decimal (100 = 1 króna) where ISO has no decimals.
pub(crate) fn money(minor: i64, currency: &str) -> Option<(String, String)> {
    let c = Currency::parse(currency)?;
    let minor = if c.as_str() == "ISK" { div_round(minor, 1, 100) } else { minor };
    Some((format_minor(minor, c), c.as_str().to_string()))
}

/// A price's interval in months, and the factor (numerator, denominator) that turns its
/// amount into that interval's: week and day prices are normalised to a month.
pub(crate) fn interval_of(interval: &str, count: u32) -> Option<(u32, i64, i64)> {
    let count = count.max(1);
    match interval {
        "month" => Some((count, 1, 1)),
        "year" => Some((12 * count, 1, 1)),
        // 52 weeks and 365 days a year, as Stripe's own MRR does.
        "week" => Some((1, 52, 12 * count as i64)),
        "day" => Some((1, 365, 12 * count as i64)),
        _ => None,
    }
}

/// The interval of a line without price terms, from its period's length.
fn interval_from_period(start: i64, end: i64) -> Option<u32> {
    let days = (end - start) / 86_400;
    match days {
        28..=31 => Some(1),
        89..=92 => Some(3),
        181..=184 => Some(6),
        365..=366 => Some(12),
        _ => None,
    }
}

fn div_round(a: i64, num: i64, den: i64) -> i64 {
    let v = a as i128 * num as i128;
    let d = den as i128;
    ((v + d / 2).div_euclid(d)) as i64
}

/// What a subscription line is at one moment.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct State {
    pub status: &'static str,
    pub product: Option<String>,
    pub plan: Option<String>,
    pub service: bool,
    pub quantity: u64,
    /// Per interval, minor units, after recurring discounts.
    pub amount: i64,
    pub currency: String,
    pub months: u32,
    pub term: Option<(i64, i64)>,
    pub cancel_at: Option<i64>,
    pub cancel_reason: Option<String>,
}

impl State {
    /// The subscription event of this state.
    pub(crate) fn fields(&self, at: i64, account: &str, item: &str) -> Option<Fields> {
        let (amount, currency) = money(self.amount, &self.currency)?;
        let mut o = Fields::new("subscription", at, account);
        o.str(F::MessageId, &format!("stripe:{item}:{at}"));
        o.str(F::SubscriptionId, item);
        if let Some(p) = &self.product {
            o.str(F::Product, p);
        }
        if let Some(p) = &self.plan {
            o.str(F::Plan, p);
        }
        o.static_str(F::Kind, if self.service { "service" } else { "product" });
        o.uint(F::Quantity, self.quantity);
        o.str(F::Amount, &amount);
        o.str(F::Currency, &currency);
        match self.months {
            1 => o.static_str(F::Interval, "month"),
            3 => o.static_str(F::Interval, "quarter"),
            12 => o.static_str(F::Interval, "year"),
            n => o.str(F::Interval, &format!("{n}m")),
        }
        o.static_str(F::Status, self.status);
        if let Some((s, e)) = self.term {
            o.time(F::TermStart, s);
            o.time(F::TermEnd, e);
        }
        if let Some(c) = self.cancel_at {
            o.time(F::CancelAt, c);
        }
        if let Some(r) = &self.cancel_reason {
            o.str(F::CancelReason, r);
        }
        Some(o)
    }

    /// [`fields`](Self::fields) as a JSON value (for webhooks, which adjust it).
    pub(crate) fn to_json(&self, at: i64, account: &str, item: &str) -> Option<Value> {
        self.fields(at, account, item).map(|f| f.json())
    }
}

/// The cancel reason of a subscription: the customer's feedback when they gave one, else
/// the comment, else Stripe's reason (`cancellation_requested`, `payment_failed`, ...).
pub(crate) fn cancel_reason(s: &Subscription<'_>) -> Option<String> {
    let d = s.cancellation_details.as_ref()?;
    let feedback = d.feedback.as_deref();
    feedback
        .filter(|f| *f != "other")
        .or_else(|| d.comment.as_deref().filter(|c| !c.trim().is_empty()))
        .or(d.reason.as_deref())
        .or(feedback)
        .map(str::to_string)
}

/// A change to one line, in time order.
#[derive(Clone, Debug)]
enum Change {
    /// A billed state (cycle line, proration, trial, the subscription's current items).
    Set(State),
    /// Only the status changes (past due, recovered, paused).
    Status(&'static str),
    /// Notice given: the line ends at this instant.
    Schedule(i64),
    /// The line stops producing revenue.
    End(Option<String>),
}

/// Order of changes at the same instant: the billed state first, then what modifies it.
fn rank(c: &Change) -> u8 {
    match c {
        Change::Set(_) => 0,
        Change::Status(_) => 1,
        Change::Schedule(_) => 2,
        Change::End(_) => 3,
    }
}

struct Ctx<'a> {
    opts: &'a Options,
    prices: FxHashMap<&'a str, &'a Price<'a>>,
    item_price: FxHashMap<&'a str, &'a Price<'a>>,
    item_sub: FxHashMap<&'a str, &'a str>,
    subs: FxHashMap<&'a str, &'a Subscription<'a>>,
    /// Discount or coupon id -> duration (once | repeating | forever).
    durations: FxHashMap<String, String>,
    accounts: FxHashMap<&'a str, String>,
}

impl<'a> Ctx<'a> {
    /// Remembers a discount's duration, from its coupon (expanded, or known by id).
    fn note_discount(&mut self, d: &crate::objects::Discount<'_>) {
        if let Some(c) = d.coupon()
            && let Some(dur) = &c.duration
        {
            self.durations.insert(d.id.to_string(), dur.to_string());
        } else if let Some(cid) = d.coupon_id()
            && let Some(dur) = self.durations.get(cid).cloned()
        {
            self.durations.insert(d.id.to_string(), dur);
        }
    }

    fn account(&self, customer: &str) -> String {
        self.accounts.get(customer).cloned().unwrap_or_else(|| customer.to_string())
    }

    fn price_of<'b>(&'b self, line: &'b Line<'b>, item: Option<&str>) -> Option<&'b Price<'b>>
    where
        'a: 'b,
    {
        if let Some(p) = line.embedded_price() {
            return Some(p);
        }
        if let Some(id) = line.price_id()
            && let Some(p) = self.prices.get(id)
        {
            return Some(p);
        }
        item.and_then(|i| self.item_price.get(i).copied())
    }

    /// Whether a discount keeps applying after this invoice (`repeating`, `forever`, or
    /// unknown): those lower MRR; a `once` discount does not.
    fn recurring_discount(&self, id: Option<&str>) -> bool {
        match id.and_then(|i| self.durations.get(i)) {
            Some(d) => d != "once",
            None => true,
        }
    }
}

/// A price's product, and whether it is a service line (price metadata `tenure_kind` =
/// `service`).
fn product_of(p: &Price<'_>) -> (Option<String>, bool) {
    let service = p.metadata.get("tenure_kind").is_some_and(|k| k == "service");
    (p.product.as_ref().map(|i| i.as_str().to_string()), service)
}

fn plan_of(p: &Price<'_>) -> Option<String> {
    let name = p.nickname.as_deref().or(p.lookup_key.as_deref()).unwrap_or(&p.id);
    Some(name.to_string())
}

/// What one invoice line says about its subscription item, borrowed from the invoice.
struct LineFact<'a> {
    item: &'a str,
    sub: Option<&'a str>,
    fact: Fact,
}

/// The facts one invoice line gives about its subscription item. Owned: the invoices of a
/// large export are read a block at a time and dropped once their facts are taken; kept
/// with their item, whose every fact is held until the end.
struct Fact {
    at: i64,
    end: i64,
    kind: FactKind,
    /// Shared with the item's fact before when equal (an item billed for months at the
    /// same terms): the states were most of the memory a large export's conversion held.
    state: Option<Arc<State>>,
    /// Payment failed at, recovered at (paid).
    failed: Option<(i64, Option<i64>)>,
    /// The line's discounts, when it has any: whether each lowers MRR depends on its
    /// duration, which an invoice read later may be the one to tell (an expanded discount),
    /// so the state's amount is settled once every invoice is read.
    discounted: Option<Box<Discounted>>,
}

/// A discounted line's amount, before the durations of its discounts are known.
struct Discounted {
    /// Discount id (when given) and amount off this line.
    discounts: Vec<(Option<String>, i64)>,
    /// Pre-tax amount of the line.
    gross: i64,
    /// For a proration: the full-period amount of the new terms, before discounts.
    full: Option<i64>,
    /// The factor to the interval's amount (week and day prices to a month).
    num: i64,
    den: i64,
}

impl Discounted {
    /// The interval's amount after the discounts that keep applying.
    fn amount(&self, ctx: &Ctx<'_>) -> i64 {
        let recurring: i64 = self
            .discounts
            .iter()
            .filter(|(id, _)| ctx.recurring_discount(id.as_deref()))
            .map(|(_, a)| *a)
            .sum();
        let full_amount = match self.full {
            // Discounts apply in the same proportion as on the prorated line.
            Some(full) if self.gross > 0 => full - div_round(full, recurring, self.gross),
            Some(full) => full,
            None => self.gross - recurring,
        };
        div_round(full_amount, self.num, self.den).max(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FactKind {
    Cycle,
    Void,
    ProrationUp,
    ProrationDown,
}

/// Converts a whole export. Deterministic: the same export gives the same rows, whose
/// `message_id`s make a second import change nothing.
pub fn convert(ex: &Export<'_>, opts: &Options) -> Converted {
    let mut c = Converter::new(ex, opts);
    c.add_invoices(&ex.invoices);
    c.finish()
}

/// An item's facts, the account of the first invoice that billed it, and the first
/// subscription its lines name.
struct ItemFacts {
    account: String,
    sub: Option<Box<str>>,
    facts: Vec<Fact>,
}

/// What a credit note needs of its invoice: the customer, currency and billed period.
struct Refunded {
    customer: String,
    currency: Option<String>,
    period: Option<(i64, i64)>,
}

/// A conversion fed its invoices a block at a time: everything else of the export (in the
/// [`Export`] it starts from) is read first, then the invoices, which are the bulk of any
/// export, are converted as they are read and dropped (memory then holds one block of
/// invoices, not the export). [`convert`] is this with the export's own invoices.
pub struct Converter<'a> {
    ex: &'a Export<'a>,
    ctx: Ctx<'a>,
    /// Lines listed on their own, by invoice.
    extra: FxHashMap<&'a str, Vec<&'a Line<'a>>>,
    out: Converted,
    seen_invoices: FxHashSet<Box<str>>,
    /// Each item's facts, and the account of the first invoice that billed it.
    items: FxHashMap<Box<str>, ItemFacts>,
    metered_items: FxHashSet<String>,
    /// The invoices credit notes name, once read (the first invoice of an id).
    refunded: FxHashMap<&'a str, Option<Refunded>>,
    /// Events read along with the invoices.
    events: Vec<(Origin, crate::objects::Event)>,
}

impl<'a> Converter<'a> {
    /// Everything but the invoices: prices, coupons and discounts, customers (whose rows
    /// come first), subscriptions and their items.
    pub fn new(ex: &'a Export<'a>, opts: &'a Options) -> Converter<'a> {
        let mut out = Converted { problems: ex.problems.clone(), ..Converted::default() };
        let mut ctx = Ctx {
            opts,
            prices: FxHashMap::default(),
            item_price: FxHashMap::default(),
            item_sub: FxHashMap::default(),
            subs: FxHashMap::default(),
            durations: FxHashMap::default(),
            accounts: FxHashMap::default(),
        };
        for p in &ex.prices {
            ctx.prices.insert(&p.id, p);
        }
        for c in &ex.coupons {
            if let Some(d) = &c.duration {
                ctx.durations.insert(c.id.to_string(), d.to_string());
            }
        }
        for d in &ex.discounts {
            ctx.note_discount(d);
        }
        for (_, s) in &ex.subscriptions {
            for d in &s.discounts {
                if let crate::objects::DiscountRef::Discount(d) = d {
                    ctx.note_discount(d);
                }
            }
        }
        // Customers: accounts and their attributes.
        let mut seen_customers = FxHashSet::default();
        for (origin, c) in &ex.customers {
            if !seen_customers.insert(c.id.as_str()) {
                continue;
            }
            let account = account_of(c, opts);
            ctx.accounts.insert(&c.id, account.clone());
            if c.deleted {
                *out.skipped.entry("deleted customers").or_default() += 1;
                continue;
            }
            let mut o = Fields::new("account", c.created, &account);
            o.str(F::MessageId, &format!("stripe:{}", c.id));
            if let Some(n) = c.name.as_ref().or(c.description.as_ref()).filter(|n| !n.is_empty()) {
                o.str(F::Name, n);
            }
            o.attr("stripe_customer_id", &c.id);
            for (k, v) in &c.metadata {
                // The customer id is the export's own; a metadata key of that name is not.
                if k != "stripe_customer_id" {
                    o.attr(k, v);
                }
            }
            let event = RowEvent::Fields(o);
            out.rows.push(Row { origin: origin.clone(), id: c.id.to_string(), event });
        }
        // Subscriptions and their current items.
        for (_, s) in &ex.subscriptions {
            ctx.subs.insert(&s.id, s);
            for it in &s.items.data {
                ctx.item_sub.insert(&it.id, &s.id);
                if let Some(p) = it.price() {
                    ctx.item_price.insert(&it.id, p);
                    ctx.prices.entry(&p.id).or_insert(p);
                }
            }
        }
        // Lines listed on their own join their invoice.
        let mut extra: FxHashMap<&str, Vec<&Line<'_>>> = FxHashMap::default();
        for (_, l) in &ex.lines {
            if let Some(i) = &l.invoice {
                extra.entry(i.0.as_str()).or_default().push(l);
            }
        }
        let refunded =
            ex.credit_notes.iter().map(|(_, cn)| (cn.invoice.0.as_str(), None)).collect();
        Converter {
            ex,
            ctx,
            extra,
            out,
            seen_invoices: FxHashSet::default(),
            items: FxHashMap::default(),
            metered_items: FxHashSet::default(),
            refunded,
            events: Vec::new(),
        }
    }

    /// About how many events [`finish`](Self::finish) will make (at least one per item
    /// billed or listed, per credit note and per Stripe event): what a caller sizes its key
    /// sets with before the conversion is done.
    pub fn rows_to_come(&self) -> usize {
        let listed: usize = self.ex.subscriptions.iter().map(|(_, s)| s.items.data.len()).sum();
        self.items.len().max(listed)
            + self.ex.credit_notes.len()
            + self.ex.events.len()
            + self.events.len()
    }

    /// The events made so far (customers' at first, then each block's invoices'), taken
    /// out: a caller that stores them as they come holds no more than a block's.
    pub fn take_rows(&mut self) -> Vec<Row> {
        std::mem::take(&mut self.out.rows)
    }

    /// Objects that could not be used, found while reading the invoices.
    pub fn add_problems(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.out.problems.extend(problems);
    }

    /// Stripe events read along with the invoices (converted at the end, as the export's).
    pub fn add_events(
        &mut self,
        events: impl IntoIterator<Item = (Origin, crate::objects::Event)>,
    ) {
        self.events.extend(events);
    }

    /// Converts a block of invoices, in parallel, in their order; an id seen before (in
    /// this block or an earlier one) is left out.
    pub fn add_invoices(&mut self, invoices: &[(Origin, Invoice<'_>)]) {
        for (_, i) in invoices {
            for d in &i.discounts {
                if let crate::objects::DiscountRef::Discount(d) = d {
                    self.ctx.note_discount(d);
                }
            }
        }
        let seen = &mut self.seen_invoices;
        let unique: Vec<&(Origin, Invoice<'_>)> =
            invoices.iter().filter(|(_, i)| seen.insert(i.id.as_str().into())).collect();
        for (_, inv) in &unique {
            if let Some(slot @ None) = self.refunded.get_mut(inv.id.as_str()) {
                *slot = Some(Refunded {
                    customer: inv.customer.0.to_string(),
                    currency: inv.currency.as_deref().map(str::to_string),
                    period: invoice_period(inv),
                });
            }
        }
        let (ctx, extra) = (&self.ctx, &self.extra);
        let per_invoice: Vec<InvoiceOut<'_>> =
            unique.par_iter().map(|(origin, inv)| invoice_out(ctx, extra, origin, inv)).collect();
        self.out.rows.reserve(per_invoice.iter().map(|o| o.rows.len()).sum::<usize>());
        for o in per_invoice {
            // Facts go straight to their item: one vector of every fact of a large export,
            // grown by doubling, was most of the time (copies and fresh pages).
            for LineFact { item, sub, mut fact } in o.facts {
                if !self.items.contains_key(item) {
                    let new =
                        ItemFacts { account: o.account.clone(), sub: None, facts: Vec::new() };
                    self.items.insert(item.into(), new);
                }
                let Some(entry) = self.items.get_mut(item) else { continue };
                if entry.sub.is_none() {
                    entry.sub = sub.map(Into::into);
                }
                if let (Some(s), Some(last)) =
                    (&fact.state, entry.facts.last().and_then(|f| f.state.as_ref()))
                    && s == last
                {
                    fact.state = Some(last.clone());
                }
                entry.facts.push(fact);
            }
            self.out.rows.extend(o.rows);
            self.out.problems.extend(o.problems);
            self.metered_items.extend(o.metered);
            for what in o.skipped {
                *self.out.skipped.entry(what).or_default() += 1;
            }
        }
    }

    /// Credit notes, each item's timeline, events, and the subscriptions no invoice told.
    pub fn finish(self) -> Converted {
        let Converter { ex, ctx, mut out, items, metered_items, refunded, events, .. } = self;
        let opts = ctx.opts;
        // Credit notes: refunds.
        for (origin, cn) in &ex.credit_notes {
            if cn.status.as_deref() == Some("void") {
                continue;
            }
            let inv = refunded.get(cn.invoice.0.as_str()).and_then(Option::as_ref);
            let customer =
                cn.customer.as_ref().map(|c| c.0.as_str()).or(inv.map(|i| i.customer.as_str()));
            let Some(customer) = customer else {
                out.problems.push(Problem {
                    origin: origin.clone(),
                    id: Some(cn.id.to_string()),
                    field: Some("customer".into()),
                    reason: "no customer, and its invoice is not in the export".into(),
                });
                continue;
            };
            let currency =
                cn.currency.as_deref().or(inv.and_then(|i| i.currency.as_deref())).unwrap_or("usd");
            let amount = cn.total_excluding_tax.or(cn.subtotal_excluding_tax).unwrap_or(cn.amount);
            let Some((amount, currency)) = money(amount, currency) else {
                out.problems.push(Problem {
                    origin: origin.clone(),
                    id: Some(cn.id.to_string()),
                    field: Some("currency".into()),
                    reason: format!("unknown currency {currency:?}"),
                });
                continue;
            };
            let mut o = Fields::new("invoice", cn.created, &ctx.account(customer));
            o.str(F::MessageId, &format!("stripe:{}", cn.id));
            o.str(F::InvoiceId, &cn.invoice.0);
            o.str(F::Amount, &amount);
            o.str(F::Currency, &currency);
            o.static_str(F::Status, "refunded");
            if let Some((s, e)) = inv.and_then(|i| i.period) {
                o.time(F::PeriodStart, s);
                o.time(F::PeriodEnd, e);
            }
            let event = RowEvent::Fields(o);
            out.rows.push(Row { origin: origin.clone(), id: cn.id.to_string(), event });
        }
        // Each item's timeline, in parallel.
        let mut by_item: Vec<(Box<str>, ItemFacts)> = items.into_iter().collect();
        by_item.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut sub_origin: FxHashMap<&str, &Origin> = FxHashMap::default();
        for (origin, s) in &ex.subscriptions {
            sub_origin.insert(&s.id, origin);
        }
        let mut done_items: FxHashSet<Box<str>> =
            metered_items.into_iter().map(String::into_boxed_str).collect();
        done_items.extend(by_item.iter().map(|(k, _)| k.clone()));
        let timelines: Vec<Converted> = by_item
            .into_par_iter()
            .map(|(item, ItemFacts { account: first_account, sub: first_sub, facts: mut fs })| {
                let mut o = Converted::default();
                for f in &mut fs {
                    if let (Some(d), Some(s)) = (&f.discounted, &mut f.state) {
                        Arc::make_mut(s).amount = d.amount(&ctx);
                    }
                }
                let sub_id = first_sub.as_deref().or(ctx.item_sub.get(&*item).copied());
                let sub = sub_id.and_then(|s| ctx.subs.get(s)).copied();
                let account = match sub.map(|s| ctx.account(&s.customer.0)) {
                    Some(a) => a,
                    None => first_account,
                };
                fs.sort_by_key(|f| (f.at, f.kind as u8));
                let changes = item_changes(&item, sub, &fs);
                let origin = sub_id.and_then(|s| sub_origin.get(s)).map(|o| (*o).clone());
                emit(&changes, &account, &item, origin, &mut o);
                o
            })
            .collect();
        for t in timelines {
            out.rows.extend(t.rows);
            out.problems.extend(t.problems);
        }
        // Events (the last 30 days Stripe keeps): each as its webhook delivery would be.
        for (origin, ev) in ex.events.iter().chain(&events) {
            match crate::webhook::map_event(ev, opts) {
                Ok(m) if m.ignored => {
                    *out.skipped.entry("events of types Tenure does not use").or_default() += 1
                }
                Ok(m) => {
                    for v in m.events {
                        out.rows.push(Row {
                            origin: origin.clone(),
                            id: ev.id.to_string(),
                            event: RowEvent::Json(v.to_string()),
                        });
                    }
                }
                Err(reason) => out.problems.push(Problem {
                    origin: origin.clone(),
                    id: Some(ev.id.to_string()),
                    field: Some("data.object".into()),
                    reason,
                }),
            }
        }
        // Subscriptions with items no invoice mentions: their current state since they started.
        for (origin, s) in &ex.subscriptions {
            if s.status.starts_with("incomplete") {
                *out.skipped.entry("incomplete subscriptions (never revenue)").or_default() += 1;
                continue;
            }
            let account = ctx.account(&s.customer.0);
            for it in &s.items.data {
                if done_items.contains(it.id.as_str()) {
                    continue;
                }
                let Some(p) = it.price() else {
                    out.problems.push(Problem {
                        origin: origin.clone(),
                        id: Some(format!("{} item {}", s.id, it.id)),
                        field: Some("items.price".into()),
                        reason: "no price".into(),
                    });
                    continue;
                };
                match item_state(opts, p, it.quantity.unwrap_or(1), s) {
                    Ok(Some(state)) => {
                        let mut changes = Vec::new();
                        let start = s.start_date.unwrap_or(s.created);
                        if let (Some(t0), Some(t1)) = (s.trial_start, s.trial_end) {
                            changes.push((
                                t0,
                                Change::Set(State { status: "trialing", ..state.clone() }),
                            ));
                            changes.push((t1.max(start), Change::Set(state)));
                        } else {
                            changes.push((start, Change::Set(state)));
                        }
                        subscription_end(s, &mut changes);
                        changes.sort_by_key(|(t, c)| (*t, rank(c)));
                        emit(&changes, &account, &it.id, Some(origin.clone()), &mut out);
                    }
                    Ok(None) => {
                        *out.skipped
                            .entry("metered lines (usage-based, not MRR; see --metered-in-mrr)")
                            .or_default() += 1
                    }
                    Err(reason) => out.problems.push(Problem {
                        origin: origin.clone(),
                        id: Some(format!("{} item {}", s.id, it.id)),
                        field: Some("items.price".into()),
                        reason,
                    }),
                }
            }
        }
        out
    }
}

/// What one invoice gives.
#[derive(Default)]
struct InvoiceOut<'a> {
    account: String,
    facts: Vec<LineFact<'a>>,
    rows: Vec<Row>,
    problems: Vec<Problem>,
    metered: Vec<String>,
    skipped: Vec<&'static str>,
}

fn invoice_out<'a>(
    ctx: &Ctx<'a>,
    extra: &FxHashMap<&str, Vec<&'a Line<'_>>>,
    origin: &Origin,
    inv: &'a Invoice<'_>,
) -> InvoiceOut<'a> {
    let mut out = InvoiceOut::default();
    let status = inv.status.as_deref().unwrap_or("draft");
    if status == "draft" {
        out.skipped.push("draft invoices");
        return out;
    }
    if inv
        .subscription()
        .and_then(|s| ctx.subs.get(s))
        .is_some_and(|s| s.status.starts_with("incomplete"))
    {
        out.skipped.push("invoices of incomplete subscriptions");
        return out;
    }
    out.account = ctx.account(&inv.customer.0);
    let mut lines: Vec<&Line<'_>> = inv.lines.data.iter().collect();
    let listed: FxHashSet<&str> = lines.iter().map(|l| l.id.as_str()).collect();
    if let Some(more) = extra.get(inv.id.as_str()) {
        lines.extend(more.iter().filter(|l| !listed.contains(l.id.as_str())));
    }
    if inv.lines.has_more && !extra.contains_key(inv.id.as_str()) {
        out.problems.push(Problem {
            origin: origin.clone(),
            id: Some(inv.id.to_string()),
            field: Some("lines".into()),
            reason: "only the first page of lines is in the export (has_more); export the \
                     invoice's line items too, or its other lines are missing"
                .into(),
        });
    }
    let failed = failure(inv);
    for line in lines {
        match line_fact(ctx, inv, line, status, failed) {
            Ok(Some(f)) => out.facts.push(f),
            Ok(None) => out.skipped.push("one-off invoice lines (not recurring)"),
            Err((_, reason)) if reason == "metered" => {
                if let Some(i) = line.subscription_item() {
                    out.metered.push(i.to_string());
                }
                out.skipped.push("metered lines (usage-based, not MRR; see --metered-in-mrr)");
            }
            Err((field, reason)) => out.problems.push(Problem {
                origin: origin.clone(),
                id: Some(if line.id.is_empty() {
                    inv.id.to_string()
                } else {
                    format!("{} line {}", inv.id, line.id)
                }),
                field: Some(field.into()),
                reason,
            }),
        }
    }
    invoice_rows(inv, origin, &out.account, failed, &mut out.rows);
    out
}

/// When an invoice's payment failed, and when it was paid after all.
fn failure(inv: &Invoice<'_>) -> Option<(i64, Option<i64>)> {
    let status = inv.status.as_deref().unwrap_or("");
    let at = inv.status_transitions.finalized_at.unwrap_or(inv.created);
    let paid = inv.status_transitions.paid_at;
    match status {
        "paid" if inv.attempt_count > 1 => Some((at, paid.or(Some(at)))),
        "open" | "uncollectible" | "void" if inv.attempt_count > 0 => Some((at, None)),
        _ => None,
    }
}

fn invoice_period(inv: &Invoice<'_>) -> Option<(i64, i64)> {
    let s = inv.lines.data.iter().map(|l| l.period.start).min();
    let e = inv.lines.data.iter().map(|l| l.period.end).max();
    match (s, e) {
        (Some(s), Some(e)) if e > s => Some((s, e)),
        _ => match (inv.period_start, inv.period_end) {
            (Some(s), Some(e)) if e > s => Some((s, e)),
            _ => None,
        },
    }
}

/// An invoice's own events: paid, and failed when a payment attempt failed. $0 invoices
/// (trials) are none.
fn invoice_rows(
    inv: &Invoice<'_>,
    origin: &Origin,
    account: &str,
    failed: Option<(i64, Option<i64>)>,
    rows: &mut Vec<Row>,
) {
    let amount = inv.total_excluding_tax.or(inv.subtotal).or(inv.total).unwrap_or(0);
    if amount <= 0 {
        return;
    }
    let Some((amount, currency)) = money(amount, inv.currency.as_deref().unwrap_or("usd")) else {
        return;
    };
    let period = invoice_period(inv);
    let mut push = |status: &'static str, at: i64| {
        let mut o = Fields::new("invoice", at, account);
        o.str(F::MessageId, &format!("stripe:{}:{status}", inv.id));
        o.str(F::InvoiceId, &inv.id);
        o.str(F::Amount, &amount);
        o.str(F::Currency, &currency);
        o.static_str(F::Status, status);
        if let Some((s, e)) = period {
            o.time(F::PeriodStart, s);
            o.time(F::PeriodEnd, e);
        }
        let event = RowEvent::Fields(o);
        rows.push(Row { origin: origin.clone(), id: inv.id.to_string(), event });
    };
    if let Some((at, _)) = failed {
        push("failed", at);
    }
    if inv.status.as_deref() == Some("paid") {
        let at = inv.status_transitions.paid_at.unwrap_or(inv.created);
        push("paid", at);
    }
}

/// The line's amount before tax: Stripe's `amount` includes inclusive taxes (never the
/// exclusive ones, which are added on top).
fn pre_tax(line: &Line<'_>) -> i64 {
    if let Some(a) = line.amount_excluding_tax {
        return a;
    }
    let inclusive: i64 = line
        .taxes
        .iter()
        .filter(|t| t.tax_behavior.as_deref() == Some("inclusive"))
        .map(|t| t.amount)
        .chain(line.tax_amounts.iter().filter(|t| t.inclusive).map(|t| t.amount))
        .sum();
    line.amount - inclusive
}

/// The state a price and quantity give, or `None` for a metered price left out of MRR.
pub(crate) fn item_state(
    opts: &Options,
    p: &Price<'_>,
    qty: u64,
    s: &Subscription<'_>,
) -> Result<Option<State>, String> {
    let Some(r) = p.recurring() else {
        return Err(format!("price {} is not recurring", p.id));
    };
    if r.usage_type.as_deref() == Some("metered") && !opts.metered_in_mrr {
        return Ok(None);
    }
    let (months, num, den) = interval_of(&r.interval, r.interval_count)
        .ok_or_else(|| format!("price {}: unknown interval {:?}", p.id, r.interval))?;
    let Some(unit) = p.unit() else {
        return Err(format!(
            "price {} has no unit amount (tiered): without invoices its amount is unknown",
            p.id
        ));
    };
    let currency = p.currency.as_deref().or(s.currency.as_deref()).unwrap_or("usd").to_string();
    let (product, service) = product_of(p);
    Ok(Some(State {
        status: "active",
        product,
        plan: plan_of(p),
        service,
        quantity: qty,
        amount: div_round(unit.saturating_mul(qty as i64), num, den),
        currency,
        months,
        term: None,
        cancel_at: None,
        cancel_reason: None,
    }))
}

type LineError = (&'static str, String);

/// What one invoice line says about its subscription item; `None` for a one-off line.
fn line_fact<'a>(
    ctx: &Ctx<'a>,
    inv: &'a Invoice<'_>,
    line: &'a Line<'_>,
    status: &str,
    failed: Option<(i64, Option<i64>)>,
) -> Result<Option<LineFact<'a>>, LineError> {
    let Some(item) = line.subscription_item() else { return Ok(None) };
    let sub = line.subscription().or(inv.subscription()).or(ctx.item_sub.get(item).copied());
    let price = ctx.price_of(line, Some(item));
    let proration = line.is_proration();
    if line.period.end <= line.period.start && !proration {
        return Err(("period", format!("empty period {}..{}", line.period.start, line.period.end)));
    }
    let recurring = price.and_then(|p| p.recurring());
    if recurring.as_ref().is_some_and(|r| r.usage_type.as_deref() == Some("metered"))
        && !ctx.opts.metered_in_mrr
    {
        return Err(("price", "metered".into()));
    }
    let (months, num, den) = match &recurring {
        Some(r) => interval_of(&r.interval, r.interval_count).ok_or_else(|| {
            ("price.recurring.interval", format!("unknown interval {:?}", r.interval))
        })?,
        None => match interval_from_period(line.period.start, line.period.end) {
            Some(m) if !proration => (m, 1, 1),
            _ => {
                return Err((
                    "price",
                    "the line's price is not in the export and its period does not tell the \
                     billing interval: export the prices (or expand `lines.data.price`)"
                        .into(),
                ));
            }
        },
    };
    let currency = line
        .currency
        .as_deref()
        .or(inv.currency.as_deref())
        .or(price.and_then(|p| p.currency.as_deref()))
        .unwrap_or("usd")
        .to_string();
    if Currency::parse(&currency).is_none() {
        return Err(("currency", format!("unknown currency {currency:?}")));
    }
    let qty = line.quantity.unwrap_or(1);
    let gross = pre_tax(line);
    let (product, service) = match price {
        Some(p) => product_of(p),
        None => (
            line.pricing
                .as_ref()
                .and_then(|p| p.price_details.as_ref())
                .and_then(|d| d.product.as_ref())
                .map(|p| p.as_str().to_string()),
            false,
        ),
    };
    let plan = price.and_then(plan_of).or_else(|| line.price_id().map(str::to_string));
    let full = if proration {
        if gross < 0 {
            let fact = Fact {
                at: line.period.start,
                end: line.period.end,
                kind: FactKind::ProrationDown,
                state: None,
                failed: None,
                discounted: None,
            };
            return Ok(Some(LineFact { item, sub, fact }));
        }
        // The full-period price of the new terms: unit x quantity for a per-unit price,
        // else the prorated amount scaled up to a whole interval.
        let unit =
            price.filter(|p| p.billing_scheme.as_deref() != Some("tiered")).and_then(|p| p.unit());
        Some(match unit {
            Some(u) => u.saturating_mul(qty as i64),
            None => {
                let t0 = Timestamp(line.period.start.saturating_mul(MICROS));
                let whole = t0.add_months(months as i64).secs() - line.period.start;
                let part = (line.period.end - line.period.start).max(1);
                div_round(gross, whole, part)
            }
        })
    } else {
        None
    };
    let discounted = Discounted {
        discounts: line
            .discount_amounts
            .iter()
            .map(|d| (d.discount.as_ref().map(|i| i.as_str().to_string()), d.amount))
            .collect(),
        gross,
        full,
        num,
        den,
    };
    // Without discounts the amount is known now; with them, once every invoice is read.
    let amount = if discounted.discounts.is_empty() { discounted.amount(ctx) } else { 0 };
    let discounted = (!discounted.discounts.is_empty()).then(|| Box::new(discounted));
    let trial = sub.and_then(|s| ctx.subs.get(s)).is_some_and(|s| {
        gross == 0
            && matches!((s.trial_start, s.trial_end), (Some(a), Some(b)) if line.period.start >= a && line.period.start < b)
    });
    let ended_within = sub
        .and_then(|s| ctx.subs.get(s))
        .and_then(|s| s.ended_at)
        .is_some_and(|e| e > line.period.start && e <= line.period.end);
    let kind = if proration {
        FactKind::ProrationUp
    } else if status == "void" && !ended_within {
        FactKind::Void
    } else {
        FactKind::Cycle
    };
    let term = (months >= 12).then_some((line.period.start, line.period.end));
    let state = State {
        status: if trial { "trialing" } else { "active" },
        product,
        plan,
        service,
        quantity: qty,
        amount,
        currency,
        months,
        term,
        cancel_at: None,
        cancel_reason: None,
    };
    let fact = Fact {
        at: line.period.start,
        end: line.period.end,
        kind,
        state: Some(Arc::new(state)),
        failed: if kind == FactKind::Cycle { failed } else { None },
        discounted,
    };
    Ok(Some(LineFact { item, sub, fact }))
}

/// The end of a subscription and the notice before it.
fn subscription_end(s: &Subscription<'_>, changes: &mut Vec<(i64, Change)>) {
    let reason = cancel_reason(s);
    match s.ended_at {
        Some(end) => {
            if let Some(asked) = s.canceled_at
                && asked < end
            {
                changes.push((asked, Change::Schedule(end)));
            }
            changes.push((end, Change::End(reason)));
        }
        None => {
            let at = s.cancel_at.or(if s.cancel_at_period_end {
                s.current_period_end
                    .or_else(|| s.items.data.iter().filter_map(|i| i.current_period_end).max())
            } else {
                None
            });
            if let Some(at) = at {
                let asked = s.canceled_at.unwrap_or(s.created).min(at);
                changes.push((asked, Change::Schedule(at)));
            }
        }
    }
}

/// The changes of one item, from its facts and its subscription.
fn item_changes(item: &str, sub: Option<&Subscription<'_>>, fs: &[Fact]) -> Vec<(i64, Change)> {
    let mut changes: Vec<(i64, Change)> = Vec::new();
    if let Some(s) = sub
        && let (Some(t0), Some(t1)) = (s.trial_start, s.trial_end)
        && let Some(first) = fs.iter().find_map(|f| f.state.as_deref())
        && fs.first().is_some_and(|f| f.at >= t0)
    {
        // A trial whose $0 invoice is missing still starts the line.
        let _ = t1;
        changes.push((t0, Change::Set(State { status: "trialing", ..first.clone() })));
    }
    let mut covered_to: Option<i64> = None;
    let n = fs.len();
    for (i, f) in fs.iter().enumerate() {
        if let Some(end) = covered_to
            && f.at > end
            && matches!(f.kind, FactKind::Cycle)
        {
            // Nothing billed between two periods: collection was paused (drafts kept).
            changes.push((end, Change::Status("paused")));
        }
        match f.kind {
            FactKind::Cycle => {
                if let Some(s) = &f.state {
                    changes.push((f.at, Change::Set(State::clone(s))));
                }
                if let Some((at, recovered)) = f.failed {
                    changes.push((at.max(f.at), Change::Status("past_due")));
                    if let Some(r) = recovered {
                        changes.push((r.max(f.at), Change::Status("active")));
                    }
                }
                covered_to = Some(covered_to.map_or(f.end, |c| c.max(f.end)));
            }
            FactKind::Void => {
                changes.push((f.at, Change::Status("paused")));
                covered_to = Some(covered_to.map_or(f.end, |c| c.max(f.end)));
            }
            FactKind::ProrationUp => {
                if let Some(s) = &f.state {
                    changes.push((f.at, Change::Set(State::clone(s))));
                }
            }
            FactKind::ProrationDown => {
                // Credit for unused time with no new terms at that instant, and nothing
                // billed later: the item was removed.
                let replaced =
                    fs.iter().any(|g| g.at >= f.at && !matches!(g.kind, FactKind::ProrationDown));
                if !replaced && i + 1 == n {
                    changes.push((f.at, Change::End(None)));
                }
            }
        }
    }
    if let Some(s) = sub {
        let current = s.items.data.iter().any(|it| it.id == item);
        if s.ended_at.is_some() || current {
            subscription_end(s, &mut changes);
        } else if let Some(end) = covered_to {
            // No longer on the subscription: it ended with its last billed period.
            if !changes.iter().any(|(_, c)| matches!(c, Change::End(_))) {
                changes.push((end, Change::End(None)));
            }
        }
        if s.ended_at.is_none() && s.status == "paused" {
            // A trial that ended without a payment method.
            let at = s.trial_end.or(covered_to).unwrap_or(s.created);
            changes.push((at, Change::Status("paused")));
        }
        if s.ended_at.is_none()
            && let Some(pc) = &s.pause_collection
            && pc.behavior.is_some()
            && let Some(end) = covered_to
            && !matches!(fs.last().map(|f| f.kind), Some(FactKind::Void))
        {
            changes.push((end, Change::Status("paused")));
        }
    }
    changes.sort_by_key(|(t, c)| (*t, rank(c)));
    changes
}

/// Folds changes into states and writes one subscription event per instant at which the
/// state differs from the one before.
fn emit(
    changes: &[(i64, Change)],
    account: &str,
    item: &str,
    origin: Option<Origin>,
    out: &mut Converted,
) {
    let origin = origin.unwrap_or(Origin { file: "invoices".into(), line: 0, index: None });
    let mut cur: Option<State> = None;
    let mut last: Option<State> = None;
    let mut ended = false;
    let mut i = 0;
    while i < changes.len() {
        let at = changes[i].0;
        while i < changes.len() && changes[i].0 == at {
            match &changes[i].1 {
                Change::Set(s) => {
                    // Notice given stays until the line ends; an annual line's term stays
                    // through a mid-term change.
                    let keep_notice = cur.as_ref().and_then(|c| c.cancel_at).filter(|&c| c > at);
                    let inherited = cur.as_ref().and_then(|c| c.term).filter(|&(_, e)| e > at);
                    let term = match (inherited, s.term) {
                        // A mid-term change (proration) keeps the term it falls in.
                        (Some(c), Some(n)) if c.1 == n.1 => Some(c),
                        (Some(c), None) if s.months >= 12 => Some(c),
                        (_, n) => n,
                    };
                    cur = Some(State { cancel_at: keep_notice, term, ..s.clone() });
                    ended = false;
                }
                Change::Status(st) => {
                    if let Some(c) = cur.as_mut()
                        && !ended
                    {
                        c.status = st;
                    }
                }
                Change::Schedule(t) => {
                    if let Some(c) = cur.as_mut()
                        && !ended
                    {
                        c.cancel_at = Some(*t);
                    }
                }
                Change::End(reason) => {
                    if let Some(c) = cur.as_mut()
                        && !ended
                    {
                        c.status = "canceled";
                        c.cancel_at = None;
                        c.cancel_reason = reason.clone();
                        ended = true;
                    }
                }
            }
            i += 1;
        }
        if let Some(c) = &cur
            && last.as_ref() != Some(c)
        {
            match c.fields(at, account, item) {
                Some(f) => out.rows.push(Row {
                    origin: origin.clone(),
                    id: item.to_string(),
                    event: RowEvent::Fields(f),
                }),
                None => out.problems.push(Problem {
                    origin: origin.clone(),
                    id: Some(item.to_string()),
                    field: Some("currency".into()),
                    reason: format!("unknown currency {:?}", c.currency),
                }),
            }
            last = Some(c.clone());
        }
    }
}
