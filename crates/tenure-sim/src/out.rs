//! Event encoding (JSONL or CSV) and per-account buffering.
//!
//! Every event type has one static field list shared by both formats, so the CSV header
//! and the JSON keys can never drift apart. Encoding is hand-rolled into byte buffers
//! because the usage stream reaches tens of millions of lines and must stay cheap.

use crate::OutputFormat;
use crate::time::write_ts;

/// Event types, in the order of their output files (surveys share one file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Account,
    Contact,
    Subscription,
    Invoice,
    Usage,
    Ticket,
    SurveySent,
    SurveyResponse,
    Email,
    WebVisit,
    Touchpoint,
    Milestone,
    SuccessObjective,
    Assessment,
    ChangeRequest,
    Cost,
}

pub const KINDS: [Kind; 16] = [
    Kind::Account,
    Kind::Contact,
    Kind::Subscription,
    Kind::Invoice,
    Kind::Usage,
    Kind::Ticket,
    Kind::SurveySent,
    Kind::SurveyResponse,
    Kind::Email,
    Kind::WebVisit,
    Kind::Touchpoint,
    Kind::Milestone,
    Kind::SuccessObjective,
    Kind::Assessment,
    Kind::ChangeRequest,
    Kind::Cost,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Contact => "contact",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Usage => "usage",
            Kind::Ticket => "ticket",
            Kind::SurveySent => "survey_sent",
            Kind::SurveyResponse => "survey_response",
            Kind::Email => "email",
            Kind::WebVisit => "web_visit",
            Kind::Touchpoint => "touchpoint",
            Kind::Milestone => "milestone",
            Kind::SuccessObjective => "success_objective",
            Kind::Assessment => "assessment",
            Kind::ChangeRequest => "change_request",
            Kind::Cost => "cost",
        }
    }

    /// Index into [`FILES`].
    pub fn file(self) -> usize {
        match self {
            Kind::Account => 0,
            Kind::Contact => 1,
            Kind::Subscription => 2,
            Kind::Invoice => 3,
            Kind::Usage => 4,
            Kind::Ticket => 5,
            Kind::SurveySent | Kind::SurveyResponse => 6,
            Kind::Email => 7,
            Kind::WebVisit => 8,
            Kind::Touchpoint => 9,
            Kind::Milestone => 10,
            Kind::SuccessObjective => 11,
            Kind::Assessment => 12,
            Kind::ChangeRequest => 13,
            Kind::Cost => 14,
        }
    }
}

pub struct FileSpec {
    pub stem: &'static str,
    /// Fields after `type` and `timestamp`, in CSV column order. `attributes.X` fields are
    /// nested into an `attributes` object in JSON.
    pub fields: &'static [&'static str],
}

pub const FILES: [FileSpec; 15] = [
    FileSpec {
        stem: "accounts",
        fields: &[
            "account_id",
            "name",
            "attributes.segment",
            "attributes.region",
            "attributes.industry",
            "attributes.channel",
            "attributes.csm",
            "attributes.plan",
            "attributes.product_family",
            "attributes.employees",
        ],
    },
    FileSpec {
        stem: "contacts",
        fields: &["account_id", "contact_id", "email", "name", "role", "status"],
    },
    FileSpec {
        stem: "subscriptions",
        fields: &[
            "account_id",
            "subscription_id",
            "product",
            "plan",
            "kind",
            "quantity",
            "amount",
            "currency",
            "interval",
            "status",
            "term_start",
            "term_end",
            "cancel_reason",
            "cancel_at",
        ],
    },
    FileSpec {
        stem: "invoices",
        fields: &[
            "account_id",
            "invoice_id",
            "amount",
            "currency",
            "status",
            "period_start",
            "period_end",
        ],
    },
    FileSpec { stem: "usage", fields: &["account_id", "user_id", "event", "feature", "quantity"] },
    FileSpec {
        stem: "tickets",
        fields: &["account_id", "ticket_id", "status", "category", "severity", "cost", "csat"],
    },
    FileSpec {
        stem: "surveys",
        fields: &["account_id", "survey", "contact_id", "score", "comment"],
    },
    FileSpec { stem: "emails", fields: &["account_id", "contact_id", "campaign", "action"] },
    FileSpec { stem: "web_visits", fields: &["account_id", "contact_id", "section", "page"] },
    FileSpec { stem: "touchpoints", fields: &["account_id", "kind", "sentiment", "note"] },
    FileSpec { stem: "milestones", fields: &["account_id", "name"] },
    FileSpec {
        stem: "success_objectives",
        fields: &["account_id", "objective_id", "status", "value"],
    },
    FileSpec {
        stem: "assessments",
        fields: &["account_id", "relationship", "strategic_importance", "author"],
    },
    FileSpec { stem: "change_requests", fields: &["account_id", "request_id", "status"] },
    FileSpec {
        stem: "costs",
        fields: &["category", "amount", "currency", "period_start", "period_end"],
    },
];

/// Buffer indices of the two ground-truth CSV files, after the event files.
pub const TRUTH: usize = 15;
pub const TRUTH_ACCOUNTS: usize = 16;
pub const NBUF: usize = 17;
pub const TRUTH_HEADER: &str = "account_id,month,health,churn_probability,churned,cause\n";
pub const TRUTH_ACCOUNTS_HEADER: &str =
    "account_id,segment,plan,start,churned_at,cause,reactivated_at\n";

/// A field value. `N` = absent (omitted in JSON, empty in CSV).
#[derive(Clone, Copy, Debug)]
pub enum V<'a> {
    N,
    S(&'a str),
    I(i64),
    /// Money in minor units, written as a decimal string with two decimals.
    M(i64),
    /// RFC 3339 timestamp.
    T(i64),
}

fn push_int(buf: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_money(buf: &mut Vec<u8>, cents: i64) {
    if cents < 0 {
        buf.push(b'-');
    }
    let c = cents.unsigned_abs();
    push_int(buf, (c / 100) as i64);
    buf.push(b'.');
    buf.push(b'0' + (c % 100 / 10) as u8);
    buf.push(b'0' + (c % 10) as u8);
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            0..=0x1f => {
                buf.extend_from_slice(b"\\u00");
                buf.push(b"0123456789abcdef"[usize::from(b >> 4)]);
                buf.push(b"0123456789abcdef"[usize::from(b & 15)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

fn push_csv_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        buf.push(b'"');
        for &b in s.as_bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
}

fn push_json_value(buf: &mut Vec<u8>, v: V<'_>) {
    match v {
        V::N => buf.extend_from_slice(b"null"),
        V::S(s) => push_json_str(buf, s),
        V::I(i) => push_int(buf, i),
        V::M(c) => {
            buf.push(b'"');
            push_money(buf, c);
            buf.push(b'"');
        }
        V::T(t) => {
            buf.push(b'"');
            write_ts(buf, t);
            buf.push(b'"');
        }
    }
}

/// CSV header line for one output file.
pub fn csv_header(file: usize) -> String {
    let mut s = String::from("type,timestamp");
    for f in FILES[file].fields {
        s.push(',');
        s.push_str(f);
    }
    s.push('\n');
    s
}

/// Append one encoded event line to `buf`.
pub fn encode(buf: &mut Vec<u8>, fmt: OutputFormat, kind: Kind, ts: i64, vals: &[V<'_>]) {
    let fields = FILES[kind.file()].fields;
    debug_assert_eq!(fields.len(), vals.len(), "field count for {}", kind.name());
    match fmt {
        OutputFormat::Jsonl => {
            buf.extend_from_slice(b"{\"type\":\"");
            buf.extend_from_slice(kind.name().as_bytes());
            buf.extend_from_slice(b"\",\"timestamp\":\"");
            write_ts(buf, ts);
            buf.push(b'"');
            let mut in_attrs = false;
            let mut first_attr = true;
            for (name, v) in fields.iter().zip(vals) {
                let attr = name.strip_prefix("attributes.");
                if attr.is_none() && in_attrs {
                    buf.push(b'}');
                    in_attrs = false;
                }
                if matches!(v, V::N) {
                    continue;
                }
                match attr {
                    Some(key) => {
                        if !in_attrs {
                            buf.extend_from_slice(b",\"attributes\":{");
                            in_attrs = true;
                        }
                        if !first_attr {
                            buf.push(b',');
                        }
                        first_attr = false;
                        push_json_str(buf, key);
                    }
                    None => {
                        buf.push(b',');
                        push_json_str(buf, name);
                    }
                }
                buf.push(b':');
                push_json_value(buf, *v);
            }
            if in_attrs {
                buf.push(b'}');
            }
            buf.extend_from_slice(b"}\n");
        }
        OutputFormat::Csv => {
            buf.extend_from_slice(kind.name().as_bytes());
            buf.push(b',');
            write_ts(buf, ts);
            for v in vals {
                buf.push(b',');
                match *v {
                    V::N => {}
                    V::S(s) => push_csv_str(buf, s),
                    V::I(i) => push_int(buf, i),
                    V::M(c) => push_money(buf, c),
                    V::T(t) => write_ts(buf, t),
                }
            }
            buf.push(b'\n');
        }
    }
}

/// Collects one chunk of accounts' output. Non-usage events of the current account are
/// staged and sorted by time when the account ends, so each account's lines appear in
/// chronological order per file even though the simulation emits some of them out of
/// order (e.g. a ticket's close is emitted when it is opened). Usage is already produced
/// in time order and goes straight to its buffer.
pub struct Emitter {
    /// false during the sizing pass: nothing is encoded.
    pub on: bool,
    pub fmt: OutputFormat,
    arena: Vec<u8>,
    recs: Vec<(u8, i64, u32, u32, u32)>,
    pub bufs: Vec<Vec<u8>>,
    pub counts: [u64; KINDS.len()],
}

impl Emitter {
    pub fn new(on: bool, fmt: OutputFormat) -> Self {
        Self {
            on,
            fmt,
            arena: Vec::new(),
            recs: Vec::new(),
            bufs: (0..NBUF).map(|_| Vec::new()).collect(),
            counts: [0; KINDS.len()],
        }
    }

    pub fn emit(&mut self, kind: Kind, ts: i64, vals: &[V<'_>]) {
        if !self.on {
            return;
        }
        self.counts[kind as usize] += 1;
        if kind == Kind::Usage {
            encode(&mut self.bufs[kind.file()], self.fmt, kind, ts, vals);
        } else {
            let start = self.arena.len() as u32;
            encode(&mut self.arena, self.fmt, kind, ts, vals);
            let seq = self.recs.len() as u32;
            self.recs.push((kind.file() as u8, ts, seq, start, self.arena.len() as u32));
        }
    }

    /// Move the staged events of the finished account into the chunk buffers.
    pub fn end_account(&mut self) {
        self.recs.sort_unstable_by_key(|r| (r.0, r.1, r.2));
        for &(file, _, _, s, e) in &self.recs {
            self.bufs[usize::from(file)].extend_from_slice(&self.arena[s as usize..e as usize]);
        }
        self.recs.clear();
        self.arena.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nests_attributes_and_skips_absent() {
        let mut b = Vec::new();
        encode(
            &mut b,
            OutputFormat::Jsonl,
            Kind::Account,
            0,
            &[
                V::S("acc-1"),
                V::S("A \"q\""),
                V::S("smb"),
                V::N,
                V::S("retail"),
                V::S("sales"),
                V::N,
                V::S("starter"),
                V::S("platform"),
                V::I(12),
            ],
        );
        assert_eq!(
            String::from_utf8(b).unwrap_or_default(),
            "{\"type\":\"account\",\"timestamp\":\"1970-01-01T00:00:00Z\",\"account_id\":\"acc-1\",\"name\":\"A \\\"q\\\"\",\"attributes\":{\"segment\":\"smb\",\"industry\":\"retail\",\"channel\":\"sales\",\"plan\":\"starter\",\"product_family\":\"platform\",\"employees\":12}}\n"
        );
    }

    #[test]
    fn csv_and_money() {
        let mut b = Vec::new();
        encode(
            &mut b,
            OutputFormat::Csv,
            Kind::Cost,
            0,
            &[V::S("retention"), V::M(120_005), V::S("USD"), V::T(0), V::N],
        );
        assert_eq!(
            String::from_utf8(b).unwrap_or_default(),
            "cost,1970-01-01T00:00:00Z,retention,1200.05,USD,1970-01-01T00:00:00Z,\n"
        );
        assert_eq!(
            csv_header(14),
            "type,timestamp,category,amount,currency,period_start,period_end\n"
        );
    }
}
