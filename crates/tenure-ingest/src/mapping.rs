//! Mappings: any CRM, helpdesk or survey export read as contract events, through a small
//! TOML file that says where each contract field's value comes from.
//!
//! A mapping names the input format (`[input]`: CSV, JSON lines, or one JSON document with
//! the records in an array), the event type (`type`: a constant, or a column and a value
//! map), and for each contract field (`[fields]`, `attributes.NAME` for account attributes)
//! a source: a column or dotted JSON path (`from`, several = the first non-empty), a
//! `constant` or a `template` of columns, optionally through a value `map` (with a
//! `default`, else unknown values reject the row) and date `format`s with a `utc_offset` for
//! dates that carry none. `[[skip]]` drops rows by a column's value; `[[also]]` makes more
//! events of the same row (a ticket's close beside its opening). Every mapped row becomes a
//! text [`Raw`] and goes through [`validate::build`], so every rule of `docs/events.md`
//! holds. The reference, with the shipped mappings, is `docs/connectors.md`, "Mappings".
//!
//! Errors in a mapping name its file and line (from toml's spans); a rejected row names its
//! line (a JSON document's records: their position, 1 for the first), the contract field
//! and where its value came from (`timestamp (column "Create Date"): cannot parse ...`).

use crate::raw::{F, Raw, Scalar};
use crate::validate::{self, FieldError};
use crate::{IngestConfig, LineCounted, Rejection, RowSource};
use chrono::format::{Item, StrftimeItems};
use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Offset, SecondsFormat, TimeZone, Utc,
};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use tenure_core::event::*;
use toml::Spanned;

/// The mappings shipped with Tenure: name and TOML text (`crates/tenure-ingest/mappings/`).
pub const SHIPPED: &[(&str, &str)] = &[
    ("hubspot-companies", include_str!("../mappings/hubspot-companies.toml")),
    ("hubspot-contacts", include_str!("../mappings/hubspot-contacts.toml")),
    ("salesforce-accounts", include_str!("../mappings/salesforce-accounts.toml")),
    ("salesforce-contacts", include_str!("../mappings/salesforce-contacts.toml")),
    ("zendesk-tickets", include_str!("../mappings/zendesk-tickets.toml")),
    ("delighted-responses", include_str!("../mappings/delighted-responses.toml")),
];

/// A shipped mapping by name, if there is one of that name.
pub fn shipped(name: &str) -> Option<Result<Mapping, MappingError>> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Mapping::parse(text, &format!("{n} (shipped)")))
}

/// A mistake in a mapping file: where (file and line) and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct MappingError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

/// Why an input cannot be read through a mapping at all (its rows never are).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the CSV header has no column {column} (the mapping's {field}; {mapping})")]
    MissingColumn { column: String, field: String, mapping: String },
    #[error("column {0:?} appears more than once in the CSV header")]
    DuplicateColumn(String),
    #[error("cannot read the CSV header: {0}")]
    Header(String),
    #[error("reading the input: {0}")]
    Io(String),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Records(String),
}

/// A parsed, checked mapping; cheap to clone.
#[derive(Clone, Debug)]
pub struct Mapping(Arc<Spec>);

#[derive(Debug)]
struct Spec {
    origin: String,
    description: String,
    format: Format,
    records: Option<String>,
    delimiter: u8,
    /// The type first, then the fields.
    fields: Vec<FieldMap>,
    skip: Vec<Cond>,
    also: Vec<Also>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
    Json,
}

#[derive(Clone, Debug)]
struct FieldMap {
    target: Target,
    src: Src,
    map: Option<ValueMap>,
    dates: Option<Dates>,
    optional: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Field(F),
    Attribute(String),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Field(f) => f.name().to_string(),
            Target::Attribute(a) => format!("attributes.{a}"),
        }
    }
}

#[derive(Clone, Debug)]
enum Src {
    /// Columns (or JSON paths): the first non-empty one.
    From(Vec<String>),
    Constant(String),
    Template(Vec<Piece>),
}

#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Column(String),
}

#[derive(Clone, Debug)]
struct ValueMap {
    /// Source values (lower-cased: matching ignores case), as written, and what they become.
    entries: Vec<(String, String, String)>,
    /// For values not in the map; `None` rejects them.
    default: Option<String>,
}

impl ValueMap {
    fn get(&self, v: &str) -> Option<&str> {
        let v = v.to_lowercase();
        self.entries.iter().find(|(k, ..)| *k == v).map(|(.., t)| t.as_str())
    }
}

#[derive(Clone, Debug)]
struct Dates {
    formats: Vec<DateFormat>,
    offset: FixedOffset,
}

#[derive(Clone, Debug)]
enum DateFormat {
    /// RFC 3339 or `YYYY-MM-DD`, as the contract: passed on unchanged.
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    Pattern(String),
}

impl DateFormat {
    fn label(&self) -> &str {
        match self {
            DateFormat::Rfc3339 => "rfc3339",
            DateFormat::UnixSeconds => "unix",
            DateFormat::UnixMillis => "unix_ms",
            DateFormat::Pattern(p) => p,
        }
    }
}

#[derive(Clone, Debug)]
struct Cond {
    from: String,
    /// Lower-cased values; the condition holds when the row's value is among them
    /// (`in`), or is not (`not_in`, `negate`).
    values: Vec<String>,
    negate: bool,
    optional: bool,
}

#[derive(Clone, Debug)]
struct Also {
    when: Option<Cond>,
    /// The main fields with this event's replaced or added.
    fields: Vec<FieldMap>,
}

// ---- the TOML shape -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<toml::Value>>,
    #[serde(default)]
    input: RawInput,
    fields: Option<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    #[serde(default)]
    skip: Vec<Spanned<RawCond>>,
    #[serde(default)]
    also: Vec<Spanned<RawAlso>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInput {
    format: Option<Spanned<String>>,
    records: Option<Spanned<String>>,
    utc_offset: Option<Spanned<String>>,
    delimiter: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    from: String,
    #[serde(rename = "in")]
    is_in: Option<Vec<String>>,
    not_in: Option<Vec<String>>,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlso {
    when: Option<Spanned<RawCond>>,
    fields: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawField {
    from: Option<OneOrMany>,
    constant: Option<toml::Value>,
    template: Option<String>,
    map: Option<BTreeMap<String, String>>,
    default: Option<String>,
    format: Option<OneOrMany>,
    utc_offset: Option<String>,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a name or a list of names")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

const INSTANTS: &[F] =
    &[F::Timestamp, F::TermStart, F::TermEnd, F::CancelAt, F::PeriodStart, F::PeriodEnd, F::Due];

/// Builds mapping errors at a byte offset of the mapping's text.
struct Errs<'t> {
    text: &'t str,
    origin: &'t str,
}

impl Errs<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> MappingError {
        let end = offset.min(self.text.len());
        let line = self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1;
        MappingError { origin: self.origin.to_string(), line, message: message.into() }
    }
}

impl Mapping {
    /// Parses and checks a mapping; `origin` names it in errors (its file, or a shipped name).
    pub fn parse(text: &str, origin: &str) -> Result<Mapping, MappingError> {
        let errs = Errs { text, origin };
        let raw: RawMapping = toml::from_str(text).map_err(|e| {
            errs.at(e.span().map_or(0, |s| s.start), e.message().trim_end().to_string())
        })?;
        let mut input = raw.input;
        let format = match input.format.take() {
            None => Format::Csv,
            Some(f) => match f.get_ref().as_str() {
                "csv" => Format::Csv,
                "jsonl" => Format::Jsonl,
                "json" => Format::Json,
                other => {
                    return Err(errs.at(
                        f.span().start,
                        format!("unknown input format {other:?} (expected csv | jsonl | json)"),
                    ));
                }
            },
        };
        let records = match input.records.take() {
            Some(r) if format != Format::Json => {
                return Err(errs.at(r.span().start, "records applies to format = \"json\" only"));
            }
            r => r.map(Spanned::into_inner),
        };
        let delimiter = match input.delimiter.take() {
            None => b',',
            Some(d) if format != Format::Csv => {
                return Err(errs.at(d.span().start, "delimiter applies to format = \"csv\" only"));
            }
            Some(d) => match d.get_ref().as_bytes() {
                [b] if b.is_ascii() => *b,
                _ => return Err(errs.at(d.span().start, "delimiter must be one ASCII character")),
            },
        };
        let offset = match input.utc_offset.take() {
            None => Utc.fix(),
            Some(o) => parse_offset(o.get_ref()).map_err(|m| errs.at(o.span().start, m))?,
        };

        let Some(kind_spec) = raw.kind else {
            return Err(errs.at(
                0,
                "no event type: add type = \"account\" (or another type of docs/events.md), \
                 or type = { from = \"COLUMN\", map = { ... } }",
            ));
        };
        let type_line = kind_spec.span().start;
        let type_map = match kind_spec.into_inner() {
            toml::Value::String(s) => match EventKind::parse(&s) {
                Some(_) => FieldMap {
                    target: Target::Field(F::Type),
                    src: Src::Constant(s),
                    map: None,
                    dates: None,
                    optional: false,
                },
                None => {
                    return Err(errs.at(
                        type_line,
                        format!("unknown event type {s:?} (expected {})", EventKind::expected()),
                    ));
                }
            },
            v @ toml::Value::Table(_) => {
                let fm = field_map(Target::Field(F::Type), v, offset)
                    .map_err(|m| errs.at(type_line, m))?;
                if !matches!(fm.src, Src::From(_)) || fm.map.is_none() {
                    return Err(errs.at(
                        type_line,
                        "type from the input needs from = \"COLUMN\" and a map of its values \
                         to event types",
                    ));
                }
                fm
            }
            _ => {
                return Err(errs.at(
                    type_line,
                    "type is an event type (type = \"ticket\") or a table { from, map }",
                ));
            }
        };
        // The type's possible values, for the checks that depend on it.
        let kinds: Vec<EventKind> = match (&type_map.src, &type_map.map) {
            (Src::Constant(s), _) => EventKind::parse(s).into_iter().collect(),
            (_, Some(m)) => {
                let mut out = Vec::new();
                for t in m.entries.iter().map(|(.., t)| t).chain(m.default.iter()) {
                    match EventKind::parse(t) {
                        Some(k) => out.push(k),
                        None => {
                            return Err(errs.at(
                                type_line,
                                format!(
                                    "unknown event type {t:?} in the map (expected {})",
                                    EventKind::expected()
                                ),
                            ));
                        }
                    }
                }
                out
            }
            _ => Vec::new(),
        };

        let Some(fields_raw) = raw.fields else {
            return Err(errs.at(text.len(), "no [fields] table: map at least the account_id"));
        };
        let fields_line = fields_raw.span().start;
        let mut fields = vec![type_map];
        fields.extend(field_maps(fields_raw.into_inner(), offset, &kinds, &errs)?);
        let has_account = fields.iter().any(|f| f.target == Target::Field(F::AccountId));
        if !has_account && kinds.iter().any(|k| *k != EventKind::Cost) {
            return Err(errs.at(
                fields_line,
                "no account_id in [fields]: every event but cost belongs to an account; \
                 name the column that holds it (account_id = \"COLUMN\")",
            ));
        }

        let skip = raw
            .skip
            .into_iter()
            .map(|c| {
                let at = c.span().start;
                cond(c.into_inner()).map_err(|m| errs.at(at, m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut also = Vec::new();
        for a in raw.also {
            let at = a.span().start;
            let a = a.into_inner();
            let when = match a.when {
                None => None,
                Some(c) => {
                    let at = c.span().start;
                    Some(cond(c.into_inner()).map_err(|m| errs.at(at, m))?)
                }
            };
            if a.fields.is_empty() {
                return Err(errs.at(at, "an [[also]] event needs fields that differ"));
            }
            let extra = field_maps(a.fields, offset, &kinds, &errs)?;
            let mut merged: Vec<FieldMap> = fields.clone();
            for fm in extra {
                match merged.iter_mut().find(|m| m.target == fm.target) {
                    Some(m) => *m = fm,
                    None => merged.push(fm),
                }
            }
            also.push(Also { when, fields: merged });
        }
        Ok(Mapping(Arc::new(Spec {
            origin: origin.to_string(),
            description: raw.description.unwrap_or_default(),
            format,
            records,
            delimiter,
            fields,
            skip,
            also,
        })))
    }

    /// The one-line description (`description = "..."`).
    pub fn description(&self) -> &str {
        &self.0.description
    }

    /// Opens an input through this mapping. A CSV header that lacks a mapped column, or a
    /// JSON document without its array of records, refuses the whole input.
    pub fn open<R: Read>(&self, input: R) -> Result<MappedRows<R>, OpenError> {
        let spec = &self.0;
        let input = match spec.format {
            Format::Csv => open_csv(spec, input)?,
            Format::Jsonl => {
                Input::Jsonl { reader: BufReader::new(input), line: 0, bytes: 0, buf: Vec::new() }
            }
            Format::Json => open_json(spec, input)?,
        };
        Ok(MappedRows { spec: self.0.clone(), input, pending: VecDeque::new(), skipped: 0 })
    }
}

fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    if matches!(s, "Z" | "z" | "UTC" | "utc") {
        return Ok(Utc.fix());
    }
    s.parse::<FixedOffset>()
        .map_err(|_| format!("utc_offset {s:?} is not an offset such as \"+02:00\" or \"-05:00\""))
}

fn cond(c: RawCond) -> Result<Cond, String> {
    let (values, negate) = match (c.is_in, c.not_in) {
        (Some(v), None) => (v, false),
        (None, Some(v)) => (v, true),
        _ => return Err("a condition needs exactly one of `in` and `not_in`".into()),
    };
    let values = values.iter().map(|v| v.trim().to_lowercase()).collect();
    Ok(Cond { from: c.from, values, negate, optional: c.optional })
}

/// The entries of a `[fields]` table; `attributes.NAME` may be quoted or a nested table.
fn field_maps(
    table: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    offset: FixedOffset,
    kinds: &[EventKind],
    errs: &Errs<'_>,
) -> Result<Vec<FieldMap>, MappingError> {
    let mut out = Vec::new();
    for (key, value) in table {
        let at = key.span().start;
        let key = key.into_inner();
        let value = value.into_inner();
        let targets: Vec<(Target, toml::Value)> = if key == "attributes" {
            match value {
                // `attributes.industry = "Industry"` unquoted is a nested table.
                toml::Value::Table(t) => {
                    t.into_iter().map(|(k, v)| (Target::Attribute(k), v)).collect()
                }
                _ => return Err(errs.at(at, "attributes are mapped one by one: attributes.NAME")),
            }
        } else if let Some(a) = key.strip_prefix("attributes.") {
            vec![(Target::Attribute(a.to_string()), value)]
        } else {
            match F::lookup(&key) {
                Some(F::Type) => {
                    return Err(errs.at(at, "the event type is the top-level `type`, not a field"));
                }
                Some(f) => vec![(Target::Field(f), value)],
                None => {
                    return Err(errs.at(
                        at,
                        format!(
                            "unknown contract field {key:?} (the fields of docs/events.md, \
                             or attributes.NAME)"
                        ),
                    ));
                }
            }
        };
        for (target, value) in targets {
            if let Target::Attribute(a) = &target
                && (a.is_empty() || a.chars().count() > 256 || a.chars().any(char::is_control))
            {
                return Err(
                    errs.at(at, format!("attribute name {a:?} is not 1-256 plain characters"))
                );
            }
            if out.iter().any(|f: &FieldMap| f.target == target) {
                // Quoted and dotted spellings of one attribute: which was meant is unknown.
                return Err(errs.at(at, format!("{} is mapped twice", target.name())));
            }
            let fm = field_map(target, value, offset).map_err(|m| errs.at(at, m))?;
            check_values(&fm, kinds).map_err(|m| errs.at(at, m))?;
            out.push(fm);
        }
    }
    Ok(out)
}

fn field_map(target: Target, value: toml::Value, offset: FixedOffset) -> Result<FieldMap, String> {
    let name = target.name();
    let raw: RawField = match value {
        toml::Value::String(s) => RawField { from: Some(OneOrMany::One(s)), ..RawField::default() },
        toml::Value::Array(a) => RawField {
            from: Some(OneOrMany::Many(
                a.into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        _ => Err(format!("{name}: a list of columns holds strings only")),
                    })
                    .collect::<Result<_, _>>()?,
            )),
            ..RawField::default()
        },
        v @ toml::Value::Table(_) => v
            .try_into()
            .map_err(|e: toml::de::Error| format!("{name}: {}", e.message().trim_end()))?,
        _ => {
            return Err(format!(
                "{name}: a column name (\"COLUMN\") or a table {{ from | constant | template, ... }}"
            ));
        }
    };
    let src = match (raw.from, raw.constant, raw.template) {
        (Some(f), None, None) => {
            let cols = f.into_vec();
            if cols.is_empty() || cols.iter().any(|c| c.is_empty()) {
                return Err(format!("{name}: from names no column"));
            }
            Src::From(cols)
        }
        (None, Some(c), None) => Src::Constant(match c {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(format!("{name}: a constant is a string, number or boolean")),
        }),
        (None, None, Some(t)) => Src::Template(template(&t).map_err(|m| format!("{name}: {m}"))?),
        _ => return Err(format!("{name}: give exactly one of from, constant and template")),
    };
    if matches!(src, Src::Constant(_))
        && (raw.map.is_some() || raw.default.is_some() || raw.format.is_some() || raw.optional)
    {
        return Err(format!("{name}: a constant takes no map, default, format or optional"));
    }
    let map = match (raw.map, raw.default) {
        (None, Some(_)) => return Err(format!("{name}: default applies to a map")),
        (None, None) => None,
        (Some(m), default) => {
            let mut entries: Vec<(String, String, String)> = Vec::new();
            for (k, v) in m {
                let lower = k.trim().to_lowercase();
                if entries.iter().any(|(e, ..)| *e == lower) {
                    return Err(format!(
                        "{name}: the map has {k:?} twice (its keys are matched ignoring case)"
                    ));
                }
                entries.push((lower, k, v));
            }
            Some(ValueMap { entries, default })
        }
    };
    let is_instant = matches!(target, Target::Field(f) if INSTANTS.contains(&f));
    let dates = match (raw.format, raw.utc_offset) {
        (None, None) => None,
        (Some(_), _) | (_, Some(_)) if !is_instant => {
            return Err(format!(
                "{name}: format and utc_offset apply to dates (timestamp, term_start, term_end, \
                 cancel_at, period_start, period_end, due)"
            ));
        }
        (formats, off) => {
            let formats = match formats {
                None => vec![DateFormat::Rfc3339],
                Some(f) => f
                    .into_vec()
                    .into_iter()
                    .map(|f| date_format(&f).map_err(|m| format!("{name}: {m}")))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            if formats.is_empty() {
                return Err(format!("{name}: format lists no format"));
            }
            let offset = match off {
                None => offset,
                Some(o) => parse_offset(&o).map_err(|m| format!("{name}: {m}"))?,
            };
            Some(Dates { formats, offset })
        }
    };
    // Dates of a default input need no conversion: leave them to the contract's parser.
    let dates = dates.filter(|d| !matches!(d.formats.as_slice(), [DateFormat::Rfc3339]));
    Ok(FieldMap { target, src, map, dates, optional: raw.optional })
}

fn date_format(f: &str) -> Result<DateFormat, String> {
    Ok(match f {
        "rfc3339" => DateFormat::Rfc3339,
        "unix" => DateFormat::UnixSeconds,
        "unix_ms" => DateFormat::UnixMillis,
        p => {
            if !p.contains('%') {
                return Err(format!(
                    "date format {p:?} has no %-directive (strftime-like, e.g. \"%m/%d/%Y %H:%M\"; \
                     or rfc3339, unix, unix_ms)"
                ));
            }
            if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                return Err(format!("date format {p:?} is not a valid strftime-like format"));
            }
            DateFormat::Pattern(p.to_string())
        }
    })
}

fn template(t: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("template {t:?} has a {{ without its }}"));
        };
        let col = &rest[open + 1..open + close];
        if col.is_empty() {
            return Err(format!("template {t:?} has an empty {{}}"));
        }
        out.push(Piece::Column(col.to_string()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    if !out.iter().any(|p| matches!(p, Piece::Column(_))) {
        return Err(format!("template {t:?} names no {{column}}; use constant"));
    }
    Ok(out)
}

/// Whether an enum field of an event type accepts `v`; if not, the accepted spellings.
fn accepts(f: F, kind: EventKind, v: &str) -> Result<(), String> {
    use EventKind as K;
    macro_rules! e {
        ($t:ty) => {
            if <$t>::parse(v).is_some() { Ok(()) } else { Err(<$t>::expected()) }
        };
    }
    match (f, kind) {
        (F::Status, K::Contact) => e!(ContactStatus),
        (F::Status, K::Subscription) => e!(SubStatus),
        (F::Status, K::Invoice) => e!(InvoiceStatus),
        (F::Status, K::Ticket) => e!(TicketStatus),
        (F::Status, K::SuccessObjective) => e!(ObjectiveStatus),
        (F::Status, K::ChangeRequest) => e!(RequestStatus),
        (F::Status, K::Task) => e!(TaskStatus),
        (F::Role, _) => e!(ContactRole),
        (F::Severity, _) => e!(Severity),
        (F::Survey, _) => e!(SurveyKind),
        (F::Category, K::Ticket) => e!(TicketCategory),
        (F::Category, K::Cost) => e!(CostCategory),
        (F::Action, _) => e!(EmailAction),
        (F::Section, _) => e!(Section),
        (F::Sentiment, _) => e!(Sentiment),
        (F::Kind, K::Subscription) => e!(LineKind),
        _ => Ok(()),
    }
}

/// Constants and map values of enum fields must be values the contract accepts, for every
/// event type the mapping makes: a typo fails the mapping, not every row.
fn check_values(fm: &FieldMap, kinds: &[EventKind]) -> Result<(), String> {
    let Target::Field(f) = fm.target else { return Ok(()) };
    let mut values: Vec<&str> = Vec::new();
    if let Src::Constant(c) = &fm.src {
        values.push(c);
    }
    if let Some(m) = &fm.map {
        values.extend(m.entries.iter().map(|(.., t)| t.as_str()));
        values.extend(m.default.as_deref());
    }
    for kind in kinds {
        for v in &values {
            if let Err(expected) = accepts(f, *kind, v) {
                return Err(format!(
                    "{}: {v:?} is not a {} {} (expected {expected})",
                    f.name(),
                    kind.as_str(),
                    f.name()
                ));
            }
        }
    }
    Ok(())
}

// ---- reading --------------------------------------------------------------------------

/// An input read through a mapping, row by row, into events (a [`RowSource`]).
pub struct MappedRows<R: Read> {
    spec: Arc<Spec>,
    input: Input<R>,
    /// Events of a row beyond its first (`[[also]]`), handed out before the next row.
    pending: VecDeque<(u64, Result<Event, Rejection>)>,
    skipped: u64,
}

enum Input<R: Read> {
    Csv {
        reader: csv::Reader<LineCounted<R>>,
        cols: HashMap<String, usize>,
        width: usize,
        record: csv::StringRecord,
    },
    Jsonl {
        reader: BufReader<R>,
        line: u64,
        bytes: u64,
        buf: Vec<u8>,
    },
    Json {
        records: std::vec::IntoIter<Value>,
        n: usize,
        done: usize,
        len: u64,
    },
}

/// Every column a mapping reads, with the field that reads it and whether it may be absent.
fn columns(spec: &Spec) -> Vec<(Vec<&str>, String, bool)> {
    let mut out = Vec::new();
    let all = spec.fields.iter().chain(spec.also.iter().flat_map(|a| &a.fields));
    for fm in all {
        match &fm.src {
            Src::From(cols) => {
                out.push((cols.iter().map(String::as_str).collect(), fm.target.name(), fm.optional))
            }
            Src::Template(pieces) => {
                for p in pieces {
                    if let Piece::Column(c) = p {
                        out.push((vec![c.as_str()], fm.target.name(), fm.optional));
                    }
                }
            }
            Src::Constant(_) => {}
        }
    }
    let conds = spec
        .skip
        .iter()
        .map(|c| (c, "[[skip]]"))
        .chain(spec.also.iter().filter_map(|a| a.when.as_ref()).map(|c| (c, "[[also]] when")));
    for (c, what) in conds {
        out.push((vec![c.from.as_str()], what.to_string(), c.optional));
    }
    out
}

fn open_csv<R: Read>(spec: &Spec, input: R) -> Result<Input<R>, OpenError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .delimiter(spec.delimiter)
        .from_reader(LineCounted::new(input));
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| OpenError::Header(e.to_string()))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let mut cols = HashMap::new();
    for (names, field, optional) in columns(spec) {
        let mut found = false;
        for name in &names {
            // The exact name, else the one column that matches ignoring case (Salesforce's
            // Data Loader writes `ID`, `ACCOUNTID`... where the API says `Id`, `AccountId`).
            let exact: Vec<usize> = (0..headers.len()).filter(|&i| headers[i] == *name).collect();
            let at = if exact.is_empty() {
                let lower = name.to_lowercase();
                let ci: Vec<usize> =
                    (0..headers.len()).filter(|&i| headers[i].to_lowercase() == lower).collect();
                if ci.len() > 1 {
                    return Err(OpenError::DuplicateColumn(name.to_string()));
                }
                ci.first().copied()
            } else if exact.len() > 1 {
                return Err(OpenError::DuplicateColumn(name.to_string()));
            } else {
                Some(exact[0])
            };
            if let Some(i) = at {
                found = true;
                cols.insert(name.to_string(), i);
            }
        }
        if !found && !optional {
            let column = names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" or ");
            return Err(OpenError::MissingColumn { column, field, mapping: spec.origin.clone() });
        }
    }
    Ok(Input::Csv { reader, cols, width: headers.len(), record: csv::StringRecord::new() })
}

fn open_json<R: Read>(spec: &Spec, mut input: R) -> Result<Input<R>, OpenError> {
    let mut text = Vec::new();
    input.read_to_end(&mut text).map_err(|e| OpenError::Io(e.to_string()))?;
    let text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&text);
    let len = text.len() as u64;
    let doc: Value = serde_json::from_slice(text).map_err(|e| OpenError::Json(e.to_string()))?;
    let records = match (&spec.records, doc) {
        (None, Value::Array(a)) => a,
        (None, Value::Object(o)) => {
            let keys: Vec<&str> = o.keys().map(String::as_str).take(8).collect();
            return Err(OpenError::Records(format!(
                "the JSON document is an object, not an array of records: name the array with \
                 [input] records = \"KEY\" in the mapping (its keys: {})",
                keys.join(", ")
            )));
        }
        (None, _) => {
            return Err(OpenError::Records("the JSON document is not an array of records".into()));
        }
        (Some(path), doc) => match lookup(&doc, path) {
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(OpenError::Records(format!(
                    "records {path:?} of the JSON document is not an array"
                )));
            }
            None => {
                return Err(OpenError::Records(format!(
                    "the JSON document has no {path:?} (the mapping's records)"
                )));
            }
        },
    };
    Ok(Input::Json { n: records.len(), records: records.into_iter(), done: 0, len })
}

/// A value at a dotted path: `organization.id`, `custom_fields.0.value`. A key that itself
/// holds dots (`person_properties.Company ID` has none, `a.b` might) is found too.
fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(path) {
                return Some(x);
            }
            path.match_indices('.').find_map(|(i, _)| lookup(m.get(&path[..i])?, &path[i + 1..]))
        }
        Value::Array(a) => {
            let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
            let x = a.get(head.parse::<usize>().ok()?)?;
            match rest {
                None => Some(x),
                Some(r) => lookup(x, r),
            }
        }
        _ => None,
    }
}

/// One input row, whatever its format.
enum Row<'a> {
    Csv(&'a csv::StringRecord, &'a HashMap<String, usize>),
    Json(&'a Value),
}

impl<'a> Row<'a> {
    /// The trimmed text at a column or path ("" when absent or null); an object or an
    /// array where a value is expected is an error.
    fn get(&self, name: &str) -> Result<Cow<'a, str>, String> {
        match self {
            Row::Csv(rec, cols) => {
                Ok(Cow::Borrowed(cols.get(name).and_then(|&i| rec.get(i)).unwrap_or("").trim()))
            }
            Row::Json(v) => match lookup(v, name) {
                None | Some(Value::Null) => Ok(Cow::Borrowed("")),
                Some(Value::String(s)) => Ok(Cow::Borrowed(s.trim())),
                Some(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
                Some(Value::Bool(b)) => Ok(Cow::Borrowed(if *b { "true" } else { "false" })),
                Some(Value::Object(_)) => Err("is an object, not a value".into()),
                Some(Value::Array(_)) => Err("is an array, not a value".into()),
            },
        }
    }
}

/// What a row becomes.
enum Outcome {
    Skip,
    Events(Vec<Event>),
    Reject(FieldError),
}

impl Spec {
    fn source_word(&self) -> &'static str {
        if self.format == Format::Csv { "column" } else { "path" }
    }

    /// `timestamp (column "Create Date")`: the field and where its value was read.
    fn label(&self, fm: &FieldMap, row: &Row<'_>) -> String {
        let name = fm.target.name();
        match &fm.src {
            Src::From(cols) => {
                let used = cols
                    .iter()
                    .find(|c| row.get(c).is_ok_and(|v| !v.is_empty()))
                    .unwrap_or(&cols[0]);
                format!("{name} ({} {used:?})", self.source_word())
            }
            Src::Template(_) => format!("{name} (template)"),
            Src::Constant(_) => name,
        }
    }

    fn holds(&self, c: &Cond, row: &Row<'_>) -> Result<bool, FieldError> {
        let v = row.get(&c.from).map_err(|r| FieldError {
            field: Some(format!("({} {:?})", self.source_word(), c.from)),
            reason: r,
        })?;
        let v = v.to_lowercase();
        Ok(c.values.contains(&v) != c.negate)
    }

    fn value(&self, fm: &FieldMap, row: &Row<'_>) -> Result<Option<String>, FieldError> {
        let fail = |reason: String| FieldError { field: Some(self.label(fm, row)), reason };
        let text: Option<String> = match &fm.src {
            Src::Constant(c) => return Ok(Some(c.clone())),
            Src::From(cols) => {
                let mut found = None;
                for c in cols {
                    let v = row.get(c).map_err(fail)?;
                    if !v.is_empty() {
                        found = Some(v.into_owned());
                        break;
                    }
                }
                found
            }
            Src::Template(pieces) => {
                let mut out = String::new();
                let mut any = false;
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Column(c) => {
                            let v = row.get(c).map_err(fail)?;
                            any |= !v.is_empty();
                            out.push_str(&v);
                        }
                    }
                }
                any.then(|| out.trim().to_string())
            }
        };
        let text = match &fm.map {
            None => text,
            Some(m) => {
                let v = text.as_deref().unwrap_or("");
                match (m.get(v), &m.default) {
                    (Some(t), _) => Some(t.to_string()),
                    // An empty value stays absent unless the map names "" itself.
                    (None, _) if v.is_empty() => None,
                    (None, Some(d)) => Some(d.clone()),
                    (None, None) => {
                        let known: Vec<&str> =
                            m.entries.iter().map(|(_, k, _)| k.as_str()).collect();
                        return Err(fail(format!(
                            "{v:?} is not in the mapping's value map (known: {})",
                            known.join(", ")
                        )));
                    }
                }
            }
        };
        match (&fm.dates, text) {
            (Some(d), Some(t)) => convert_date(&t, d).map(Some).map_err(fail),
            (_, t) => Ok(t),
        }
    }

    fn event(
        &self,
        fields: &[FieldMap],
        row: &Row<'_>,
        cfg: &IngestConfig,
    ) -> Result<Event, FieldError> {
        let mut raw = Raw { from_text: true, ..Raw::default() };
        let mut attrs = Vec::new();
        for fm in fields {
            let Some(v) = self.value(fm, row)? else { continue };
            match &fm.target {
                Target::Field(f) => raw.vals[*f as usize] = Some(Scalar::Str(Cow::Owned(v))),
                Target::Attribute(a) => {
                    attrs.push((Cow::Owned(a.clone()), Scalar::Str(Cow::Owned(v))))
                }
            }
        }
        if !attrs.is_empty() {
            raw.attributes = Some(attrs);
        }
        validate::build(&raw, None, cfg).map_err(|e| {
            let fm = e.field.as_ref().and_then(|n| fields.iter().find(|f| f.target.name() == *n));
            match fm {
                Some(fm) => FieldError { field: Some(self.label(fm, row)), reason: e.reason },
                None => e,
            }
        })
    }

    /// A row's events, all or none: one bad value rejects the row once.
    fn row(&self, row: &Row<'_>, cfg: &IngestConfig) -> Outcome {
        let go = || -> Result<Outcome, FieldError> {
            for c in &self.skip {
                if self.holds(c, row)? {
                    return Ok(Outcome::Skip);
                }
            }
            let mut events = vec![self.event(&self.fields, row, cfg)?];
            for a in &self.also {
                if match &a.when {
                    None => true,
                    Some(c) => self.holds(c, row)?,
                } {
                    events.push(self.event(&a.fields, row, cfg)?);
                }
            }
            Ok(Outcome::Events(events))
        };
        go().unwrap_or_else(Outcome::Reject)
    }
}

fn convert_date(text: &str, d: &Dates) -> Result<String, String> {
    for f in &d.formats {
        let dt: Option<DateTime<FixedOffset>> = match f {
            DateFormat::Rfc3339 => {
                if tenure_core::time::Timestamp::parse(text).is_ok() {
                    return Ok(text.to_string());
                }
                None
            }
            DateFormat::UnixSeconds | DateFormat::UnixMillis => {
                let scale = if matches!(f, DateFormat::UnixMillis) { 1_000 } else { 1_000_000 };
                unix_micros(text, scale)
                    .and_then(DateTime::from_timestamp_micros)
                    .map(|t| t.fixed_offset())
            }
            DateFormat::Pattern(p) => DateTime::parse_from_str(text, p).ok().or_else(|| {
                let naive = NaiveDateTime::parse_from_str(text, p).ok().or_else(|| {
                    NaiveDate::parse_from_str(text, p).ok().and_then(|d| d.and_hms_opt(0, 0, 0))
                })?;
                d.offset.from_local_datetime(&naive).single()
            }),
        };
        if let Some(dt) = dt {
            let utc = dt.to_utc();
            if !(0..=9999).contains(&utc.year()) {
                return Err(format!("{text:?} is outside the supported range (1900 to 2199)"));
            }
            return Ok(utc.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    let labels: Vec<&str> = d.formats.iter().map(DateFormat::label).collect();
    let what = if labels.len() == 1 { "format" } else { "formats" };
    Err(format!("cannot parse {text:?} with {what} {}", labels.join(" or ")))
}

/// Unix time text (`1713418460`, `1713418460.5`) as microseconds; `per_unit` is the number of
/// microseconds in its unit.
fn unix_micros(text: &str, per_unit: i64) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return n.checked_mul(per_unit);
    }
    let x: f64 = text.parse().ok().filter(|x: &f64| x.is_finite())?;
    let micros = (x * per_unit as f64).round();
    (micros.abs() < 9.0e18).then_some(micros as i64)
}

impl<R: Read> MappedRows<R> {
    /// Rows dropped by the mapping's `[[skip]]` rules so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl<R: Read> RowSource for MappedRows<R> {
    fn next_row(&mut self, cfg: &IngestConfig) -> Option<(u64, Result<Event, Rejection>)> {
        let MappedRows { spec, input, pending, skipped } = self;
        loop {
            if let Some(next) = pending.pop_front() {
                return Some(next);
            }
            let reject = |line: u64, field: Option<String>, reason: String| {
                Some((line, Err(Rejection { line, field, reason })))
            };
            let (line, outcome) = match input {
                Input::Csv { reader, cols, width, record } => {
                    match reader.read_record(record) {
                        Ok(false) => return None,
                        Err(e) => {
                            let line =
                                e.position().map_or(0, |p| reader.get_mut().line_at(p.byte()));
                            let what = match e.kind() {
                                csv::ErrorKind::Io(_) => "read error",
                                _ => "malformed CSV",
                            };
                            return reject(line, None, format!("{what}: {e}"));
                        }
                        Ok(true) => {}
                    }
                    let line = record.position().map_or(0, |p| reader.get_mut().line_at(p.byte()));
                    if record.iter().all(|c| c.trim().is_empty()) {
                        continue;
                    }
                    let bytes = record.as_slice().len();
                    if bytes > cfg.max_line_bytes {
                        let why = format!(
                            "row is {bytes} bytes, over the limit of {}",
                            cfg.max_line_bytes
                        );
                        return reject(line, None, why);
                    }
                    if record.len() > *width {
                        let why =
                            format!("row has {} cells but the header has {width}", record.len());
                        return reject(line, None, why);
                    }
                    (line, spec.row(&Row::Csv(record, cols), cfg))
                }
                Input::Jsonl { reader, line, bytes, buf } => {
                    buf.clear();
                    let n = match reader.read_until(b'\n', buf) {
                        Ok(0) => return None,
                        Ok(n) => n,
                        Err(e) => {
                            *line += 1;
                            return reject(*line, None, format!("read error: {e}"));
                        }
                    };
                    *line += 1;
                    *bytes += n as u64;
                    let mut text: &[u8] = buf;
                    text = text.strip_suffix(b"\n").unwrap_or(text);
                    text = text.strip_suffix(b"\r").unwrap_or(text);
                    if *line == 1 {
                        text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text);
                    }
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if text.len() > cfg.max_line_bytes {
                        let why = format!(
                            "line is {} bytes, over the limit of {}",
                            text.len(),
                            cfg.max_line_bytes
                        );
                        return reject(*line, None, why);
                    }
                    let value = match std::str::from_utf8(text)
                        .map_err(|_| "the line is not UTF-8 text".to_string())
                        .and_then(|t| {
                            serde_json::from_str::<Value>(t)
                                .map_err(|e| format!("malformed JSON: {e}"))
                        }) {
                        Ok(v) => v,
                        Err(why) => return reject(*line, None, why),
                    };
                    (*line, json_row(spec, &value, cfg))
                }
                Input::Json { records, done, .. } => {
                    let value = records.next()?;
                    *done += 1;
                    (*done as u64, json_row(spec, &value, cfg))
                }
            };
            match outcome {
                Outcome::Skip => *skipped += 1,
                Outcome::Reject(e) => return reject(line, e.field, e.reason),
                Outcome::Events(events) => {
                    pending.extend(events.into_iter().map(|e| (line, Ok(e))));
                }
            }
        }
    }

    fn position(&self) -> u64 {
        match &self.input {
            Input::Csv { reader, .. } => reader.position().byte(),
            Input::Jsonl { bytes, .. } => *bytes,
            Input::Json { n, done, len, .. } => {
                if *n == 0 {
                    *len
                } else {
                    *len * *done as u64 / *n as u64
                }
            }
        }
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }
}

fn json_row(spec: &Spec, value: &Value, cfg: &IngestConfig) -> Outcome {
    if !value.is_object() {
        return Outcome::Reject(FieldError::row("expected a JSON object"));
    }
    spec.row(&Row::Json(value), cfg)
}

#[cfg(test)]
mod tests;
