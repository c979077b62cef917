//! The untyped shape of one input row: known fields as loosely typed scalars.
//!
//! JSON objects and CSV records both become a [`Raw`]; validation then turns it into an
//! `Event` and can name the offending field in every error, which serde's own typed
//! deserialisation cannot do.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Declares the known field names once: an enum, its spelling and a lookup.
macro_rules! fields {
    ($($v:ident = $s:literal),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum F { $($v),+ }
        pub const N_FIELDS: usize = [$($s),+].len();
        impl F {
            pub fn name(self) -> &'static str { match self { $(F::$v => $s),+ } }
            pub fn lookup(s: &str) -> Option<F> { match s { $($s => Some(F::$v),)+ _ => None } }
        }
    };
}

fields! {
    Type = "type", Timestamp = "timestamp", AccountId = "account_id", MessageId = "message_id",
    Name = "name", ContactId = "contact_id", Email = "email", Role = "role", Status = "status",
    SubscriptionId = "subscription_id", Product = "product", Plan = "plan", Kind = "kind",
    Quantity = "quantity", Amount = "amount", Currency = "currency", Interval = "interval",
    TermStart = "term_start", TermEnd = "term_end", CancelReason = "cancel_reason",
    CancelAt = "cancel_at", InvoiceId = "invoice_id", PeriodStart = "period_start",
    PeriodEnd = "period_end", UserId = "user_id", Event = "event", Feature = "feature",
    TicketId = "ticket_id", Category = "category", Severity = "severity", Cost = "cost",
    Csat = "csat", Survey = "survey", Score = "score", Comment = "comment",
    Campaign = "campaign", Action = "action", Section = "section", Page = "page",
    Sentiment = "sentiment", Note = "note", ObjectiveId = "objective_id", Value = "value",
    Relationship = "relationship", StrategicImportance = "strategic_importance",
    Author = "author", RequestId = "request_id", AlertId = "alert_id", Rule = "rule",
    Message = "message", TaskId = "task_id", Title = "title", Owner = "owner", Due = "due",
    RootCause = "root_cause", Reason = "reason",
}

/// A JSON scalar, or the kind of a non-scalar (for the error message).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A number as exact decimal text (a Parquet decimal column): never through a float.
    Num(Cow<'a, str>),
    /// An instant already typed (a Parquet timestamp or date column).
    Time(tenure_core::time::Timestamp),
    /// An object or array where a scalar was expected.
    Composite(&'static str),
}

impl Scalar<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Int(_) | Scalar::Float(_) | Scalar::Num(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Time(_) => "a timestamp",
            Scalar::Composite(k) => k,
        }
    }
}

/// One input row. `from_text` marks CSV rows, whose every cell is text, so that numbers and
/// booleans written as text are accepted there but not in JSON.
#[derive(Debug)]
pub struct Raw<'a> {
    pub vals: [Option<Scalar<'a>>; N_FIELDS],
    pub attributes: Option<Vec<(Cow<'a, str>, Scalar<'a>)>>,
    pub attributes_invalid: Option<&'static str>,
    pub from_text: bool,
}

impl Default for Raw<'_> {
    fn default() -> Self {
        Raw {
            vals: std::array::from_fn(|_| None),
            attributes: None,
            attributes_invalid: None,
            from_text: false,
        }
    }
}

impl<'a> Raw<'a> {
    pub fn get(&self, f: F) -> Option<&Scalar<'a>> {
        self.vals[f as usize].as_ref()
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<Scalar<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Owned(v))))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(i64::try_from(v).map(Scalar::Int).unwrap_or(Scalar::Float(v as f64))))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Float(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Bool(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(Scalar::Composite("an object")))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(Scalar::Composite("an array")))
    }
}

struct ScalarSeed;
impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = Option<Scalar<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// `attributes`: an object of scalars, or the reason it is not one.
enum AttrsOut<'de> {
    Ok(Vec<(Cow<'de, str>, Scalar<'de>)>),
    Invalid(&'static str),
}

struct AttrsVisitor;
impl<'de> Visitor<'de> for AttrsVisitor {
    type Value = AttrsOut<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut invalid = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match map.next_value_seed(ScalarSeed)? {
                Some(Scalar::Composite(_)) => {
                    invalid = Some("attribute values must be strings, numbers or booleans")
                }
                Some(v) => out.push((k, v)),
                None => {}
            }
        }
        Ok(match invalid {
            Some(r) => AttrsOut::Invalid(r),
            None => AttrsOut::Ok(out),
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AttrsOut::Ok(Vec::new()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(AttrsOut::Invalid("must be an object, not a string"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(AttrsOut::Invalid("must be an object, not a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(AttrsOut::Invalid("must be an object, not a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(AttrsOut::Invalid("must be an object, not a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(AttrsOut::Invalid("must be an object, not a boolean"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AttrsOut::Invalid("must be an object, not an array"))
    }
}

struct AttrsSeed;
impl<'de> de::DeserializeSeed<'de> for AttrsSeed {
    type Value = AttrsOut<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(AttrsVisitor)
    }
}

/// Why a JSON row could not even be read as an object of fields.
#[derive(Debug)]
pub enum RawError {
    NotAnObject,
    Duplicate(String),
    Json(String),
}

/// Fills a caller's [`Raw`] in place: the struct is large (a slot per known field), and
/// returning it by value through serde's layers would copy it several times per row.
struct RawVisitor<'r, 'de>(&'r mut Raw<'de>);
impl<'de> Visitor<'de> for RawVisitor<'_, 'de> {
    type Value = Result<(), RawError>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let raw = self.0;
        let mut dup = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if k == "attributes" {
                if raw.attributes.is_some() || raw.attributes_invalid.is_some() {
                    dup = Some(k.to_string());
                }
                match map.next_value_seed(AttrsSeed)? {
                    AttrsOut::Ok(v) => raw.attributes = Some(v),
                    AttrsOut::Invalid(r) => raw.attributes_invalid = Some(r),
                }
                continue;
            }
            match F::lookup(&k) {
                Some(f) => {
                    let v = map.next_value_seed(ScalarSeed)?;
                    if raw.vals[f as usize].is_some() {
                        dup = Some(k.to_string());
                    }
                    raw.vals[f as usize] = v;
                }
                // Unknown fields are ignored so that producers can send extra context.
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match dup {
            Some(d) => Err(RawError::Duplicate(d)),
            None => Ok(()),
        })
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(RawError::NotAnObject))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(RawError::NotAnObject))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(RawError::NotAnObject))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(RawError::NotAnObject))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(RawError::NotAnObject))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(RawError::NotAnObject))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(RawError::NotAnObject))
    }
}

impl Raw<'_> {
    /// Whether a number in the row read as zero or a subnormal float: only then can a value
    /// have been lost to underflow, and only then is the text looked at again.
    pub fn has_tiny_float(&self) -> bool {
        let tiny = |s: &Scalar<'_>| matches!(s, Scalar::Float(x) if x.abs() < f64::MIN_POSITIVE);
        self.vals.iter().flatten().any(tiny)
            || self.attributes.iter().flatten().any(|(_, v)| tiny(v))
    }
}

/// The key before the first number of a JSON text that underflows (`1e-400`: a non-zero
/// number that a float holds only as 0 or a subnormal), if any. serde_json hands such a
/// number over as 0.0, so the text itself is scanned (strings are skipped whole).
pub fn underflowing_number(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let (mut i, mut key) = (0, (0, 0));
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                key = (start, i.min(b.len()));
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if crate::validate::underflows(&line[start..i]) {
                    return Some(line[key.0..key.1].to_string());
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Reads one JSON object into `raw` (which must be empty), borrowing strings from the
/// input where possible.
pub fn from_json<'a>(line: &'a str, raw: &mut Raw<'a>) -> Result<(), RawError> {
    let mut de = serde_json::Deserializer::from_str(line);
    match de.deserialize_any(RawVisitor(raw)) {
        Ok(r) => r?,
        Err(e) => return Err(RawError::Json(e.to_string())),
    }
    de.end().map_err(|e| RawError::Json(e.to_string()))
}
