//! Reading a Stripe export: files of API objects (list responses, arrays, one object per
//! line, or single objects) sorted by their `object` type, each remembered with where it
//! came from so that every rejection can name its file, line and object id.

use crate::objects::{
    Coupon, CreditNote, Customer, Discount, Event, Invoice, Line, Price, Subscription,
};
use rayon::prelude::*;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// Where an object came from: a file and a line (one object per line) or an index in the
/// file's list (`data[3]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u64,
    pub index: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.index) {
            (0, Some(i)) => write!(f, "{}: data[{i}]", self.file),
            (l, Some(i)) => write!(f, "{}:{l}: data[{i}]", self.file),
            (l, None) => write!(f, "{}:{l}", self.file),
        }
    }
}

/// An object or row that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// The Stripe object id, when known.
    pub id: Option<String>,
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(id) = &self.id {
            write!(f, ": {id}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every object of an export, by type.
/// Its objects' strings are borrowed from the text they were read from (`'a`) where they
/// can be.
#[derive(Debug, Default)]
pub struct Export<'a> {
    pub customers: Vec<(Origin, Customer<'a>)>,
    pub subscriptions: Vec<(Origin, Subscription<'a>)>,
    pub invoices: Vec<(Origin, Invoice<'a>)>,
    /// Invoice lines listed on their own (an invoice's `lines` has more than one page).
    pub lines: Vec<(Origin, Line<'a>)>,
    pub credit_notes: Vec<(Origin, CreditNote<'a>)>,
    pub prices: Vec<Price<'a>>,
    pub discounts: Vec<Discount<'a>>,
    pub coupons: Vec<Coupon<'a>>,
    pub events: Vec<(Origin, Event)>,
    pub problems: Vec<Problem>,
    /// Objects of types Tenure does not use (`charge`, `payment_intent`, ...), by type.
    pub ignored: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(borrow, default)]
    object: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
}

#[allow(clippy::large_enum_variant)] // each value moves straight into its vector
enum Parsed<'a> {
    Customer(Customer<'a>),
    Subscription(Subscription<'a>),
    Invoice(Invoice<'a>),
    Line(Line<'a>),
    CreditNote(CreditNote<'a>),
    Price(Price<'a>),
    Discount(Discount<'a>),
    Coupon(Coupon<'a>),
    Event(Event),
    Ignored(String),
}

/// The object of `kind` that `$text` is, parsed by `$parse`.
macro_rules! by_kind {
    ($kind:expr, $parse:ident, $text:expr) => {
        match $kind {
            "customer" => $parse($text).map(Parsed::Customer),
            "subscription" => $parse($text).map(Parsed::Subscription),
            "invoice" => $parse($text).map(Parsed::Invoice),
            "line_item" => $parse($text).map(Parsed::Line),
            "credit_note" => $parse($text).map(Parsed::CreditNote),
            "price" | "plan" => $parse($text).map(Parsed::Price),
            "discount" => $parse($text).map(Parsed::Discount),
            "coupon" => $parse($text).map(Parsed::Coupon),
            "event" => $parse($text).map(Parsed::Event),
            other => Ok(Parsed::Ignored(other.to_string())),
        }
    };
}

/// An object borrowing its strings from `text`.
fn parse_typed<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// An object owning its strings, from an item of a list document (its strings move out of
/// the value, uncopied).
fn from_value<T: Deserialize<'static>>(value: serde_json::Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| e.to_string())
}

/// One item of a list document, typed by its `object` field.
fn parse_value(value: serde_json::Value) -> ParseResult<'static> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let (id, kind) = (field("id"), field("object"));
    let Some(kind) = kind else {
        return Err((id, "no `object` field: not a Stripe API object".into()));
    };
    by_kind!(kind.as_str(), from_value, value)
        .map_err(|e| (id, format!("not a usable {kind}: {e}")))
}

/// The bulk types, parsed straight away when a file's first object says what the file
/// holds (one pass instead of two); the `object` field confirms it.
fn parse_hinted<'a>(text: &'a str, hint: &str) -> Option<Parsed<'a>> {
    match hint {
        "invoice" => serde_json::from_str::<Invoice<'a>>(text)
            .ok()
            .filter(|o| o.object.as_deref() == Some("invoice"))
            .map(Parsed::Invoice),
        "customer" => serde_json::from_str::<Customer<'a>>(text)
            .ok()
            .filter(|o| o.object.as_deref() == Some("customer"))
            .map(Parsed::Customer),
        "subscription" => serde_json::from_str::<Subscription<'a>>(text)
            .ok()
            .filter(|o| o.object.as_deref() == Some("subscription"))
            .map(Parsed::Subscription),
        _ => None,
    }
}

fn parse_tagged<'a>(text: &'a str, tag: Tag<'_>) -> ParseResult<'a> {
    tagged(tag, |kind| by_kind!(kind, parse_typed, text))
}

/// The object its tag names, or why not (naming the object's id when it has one).
fn tagged<'a>(
    tag: Tag<'_>,
    parse: impl FnOnce(&str) -> Result<Parsed<'a>, String>,
) -> ParseResult<'a> {
    let id = tag.id.as_deref().map(str::to_string);
    let Some(kind) = tag.object else {
        return Err((id, "no `object` field: not a Stripe API object".into()));
    };
    parse(&kind).map_err(|e| (id, format!("not a usable {kind}: {e}")))
}

impl<'a> Export<'a> {
    /// Adds one file's objects. JSON only; CSV exports go through [`crate::dashboard`].
    pub fn add_json(&mut self, file: &str, text: &'a str) {
        let file: Arc<str> = Arc::from(file);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let body = text.trim_start();
        let first_line = body.split('\n').next().unwrap_or("");
        // One object (or one list page) per line, or one document.
        let one_per_line = body.starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(first_line.trim_end()).is_ok();
        if one_per_line {
            let hint = object_of(first_line);
            self.add_lines(&file, 1, text, hint.as_deref());
            return;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let origin = Origin { file, line: e.line() as u64, index: None };
                self.problems.push(Problem {
                    origin,
                    id: None,
                    field: None,
                    reason: format!("malformed JSON: {e}"),
                });
                return;
            }
        };
        let items: Vec<serde_json::Value> = match value {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o)
                if o.get("object").and_then(|v| v.as_str()) == Some("list") =>
            {
                match o.remove("data") {
                    Some(serde_json::Value::Array(a)) => a,
                    _ => Vec::new(),
                }
            }
            v @ serde_json::Value::Object(_) => vec![v],
            _ => {
                let origin = Origin { file, line: 1, index: None };
                let reason =
                    "expected Stripe objects: a list response, an array, or one object per line";
                self.problems.push(Problem {
                    origin,
                    id: None,
                    field: None,
                    reason: reason.into(),
                });
                return;
            }
        };
        let parsed: Vec<_> = items.into_par_iter().map(parse_value).collect();
        for (i, p) in parsed.into_iter().enumerate() {
            let origin = Origin { file: file.clone(), line: 0, index: Some(i) };
            self.push(origin, p);
        }
    }

    /// Adds the objects of a block of whole lines (one object or list page a line), the
    /// first being line `first_line` of `file`. `hint`: the type the file's first object
    /// has, which most lines of an export file share (each is then parsed once).
    pub fn add_lines(
        &mut self,
        file: &Arc<str>,
        first_line: u64,
        text: &'a str,
        hint: Option<&str>,
    ) {
        // Lines in parallel: the big exports (invoices) are where the time goes.
        let lines: Vec<(usize, &str)> =
            text.split('\n').enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
        let parsed: Vec<_> = lines
            .par_iter()
            .map(|&(i, l)| (i, parse_line(l.trim_end_matches('\r'), hint)))
            .collect();
        let n: usize = parsed.iter().map(|(_, p)| p.len()).sum();
        match hint {
            Some("invoice") => self.invoices.reserve(n),
            Some("customer") => self.customers.reserve(n),
            Some("subscription") => self.subscriptions.reserve(n),
            _ => {}
        }
        for (i, objects) in parsed {
            let line = first_line + i as u64;
            match objects {
                LineObjects::One(p) => {
                    self.push(Origin { file: file.clone(), line, index: None }, p)
                }
                LineObjects::Page(ps) => {
                    for (index, p) in ps {
                        self.push(Origin { file: file.clone(), line, index: Some(index) }, p);
                    }
                }
            }
        }
    }

    /// Whether anything but invoices, events and objects Tenure ignores was read: what
    /// the conversion's context is made of (customers, subscriptions, prices, ...).
    pub fn has_context(&self) -> bool {
        !(self.customers.is_empty()
            && self.subscriptions.is_empty()
            && self.lines.is_empty()
            && self.credit_notes.is_empty()
            && self.prices.is_empty()
            && self.discounts.is_empty()
            && self.coupons.is_empty())
    }

    fn push(&mut self, origin: Origin, p: ParseResult<'a>) {
        match p {
            Ok(Parsed::Customer(c)) => self.customers.push((origin, c)),
            Ok(Parsed::Subscription(s)) => self.subscriptions.push((origin, s)),
            Ok(Parsed::Invoice(i)) => self.invoices.push((origin, i)),
            Ok(Parsed::Line(l)) => self.lines.push((origin, l)),
            Ok(Parsed::CreditNote(c)) => self.credit_notes.push((origin, c)),
            Ok(Parsed::Price(p)) => self.prices.push(p),
            Ok(Parsed::Discount(d)) => self.discounts.push(d),
            Ok(Parsed::Coupon(c)) => self.coupons.push(c),
            Ok(Parsed::Event(e)) => self.events.push((origin, e)),
            Ok(Parsed::Ignored(kind)) => *self.ignored.entry(kind).or_default() += 1,
            Err((id, reason)) => self.problems.push(Problem { origin, id, field: None, reason }),
        }
    }

    /// How many objects were read, for the summary line.
    pub fn count(&self) -> usize {
        self.customers.len()
            + self.subscriptions.len()
            + self.invoices.len()
            + self.lines.len()
            + self.credit_notes.len()
            + self.prices.len()
            + self.discounts.len()
            + self.coupons.len()
            + self.events.len()
    }
}

/// The `object` of a text's first line when that line is one whole JSON object (a file of
/// one object per line): `invoice` for a file of invoices, say.
pub fn object_of(first_line: &str) -> Option<String> {
    let line = first_line.trim_start_matches('\u{feff}').trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Tag<'_>>(line).ok().and_then(|t| t.object.map(|o| o.into_owned()))
}

type ParseResult<'a> = Result<Parsed<'a>, (Option<String>, String)>;

/// The objects of one line: one (nearly every line of an export), or a list page's.
#[allow(clippy::large_enum_variant)] // the one object moves straight into its vector
enum LineObjects<'a> {
    One(ParseResult<'a>),
    Page(Vec<(usize, ParseResult<'a>)>),
}

impl LineObjects<'_> {
    fn len(&self) -> usize {
        match self {
            LineObjects::One(_) => 1,
            LineObjects::Page(ps) => ps.len(),
        }
    }
}

/// One line: an object, or a list page (`{"object":"list","data":[...]}`) of objects.
fn parse_line<'a>(line: &'a str, hint: Option<&str>) -> LineObjects<'a> {
    if let Some(p) = hint.and_then(|h| parse_hinted(line, h)) {
        return LineObjects::One(Ok(p));
    }
    let tag = match serde_json::from_str::<Tag<'_>>(line) {
        Ok(t) => t,
        Err(e) => return LineObjects::One(Err((None, format!("malformed JSON: {e}")))),
    };
    if tag.object.as_deref() != Some("list") {
        return LineObjects::One(parse_tagged(line, tag));
    }
    match serde_json::from_str::<crate::objects::List<serde_json::Value>>(line) {
        Ok(l) => LineObjects::Page(
            l.data.into_iter().enumerate().map(|(i, v)| (i, parse_value(v))).collect(),
        ),
        Err(e) => LineObjects::One(Err((None, format!("malformed list: {e}")))),
    }
}
