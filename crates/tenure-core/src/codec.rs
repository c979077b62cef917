//! The log record format of an event (version 1): compact, versioned, explicit.
//!
//! Layout: `kind u8 | flags u8 | ts zigzag-varint | [account str] | [message_id str] | body`.
//! Strings are a varint length then UTF-8 bytes; optional fields carry a presence byte or a
//! length shifted by one. The body's field order is the order of the struct fields. Changing
//! anything here means a new version and a decoder for the old one.

use crate::event::*;
use crate::money::{Currency, Money};
use crate::time::Timestamp;

pub const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record ends early")]
    Truncated,
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

type R<T> = Result<T, CodecError>;

pub fn encode(e: &Event, out: &mut Vec<u8>) {
    out.push(e.kind().index());
    out.push(e.account.is_some() as u8 | (e.message_id.is_some() as u8) << 1);
    put_i64(out, e.ts.0);
    if let Some(a) = &e.account {
        put_str(out, a);
    }
    if let Some(m) = &e.message_id {
        put_str(out, m);
    }
    encode_body(&e.body, out);
}

/// The body alone: with the kind, account and timestamp it is the event's content, which is
/// what identifies an event that carries no `message_id`.
pub fn encode_body(b: &EventBody, out: &mut Vec<u8>) {
    match b {
        EventBody::Account { name, attributes } => {
            put_opt_str(out, name.as_deref());
            put_u64(out, attributes.len() as u64);
            for (k, v) in attributes {
                put_str(out, k);
                match v {
                    AttrValue::Str(s) => {
                        out.push(0);
                        put_str(out, s)
                    }
                    AttrValue::Num(s) => {
                        out.push(1);
                        put_str(out, s)
                    }
                    AttrValue::Bool(x) => out.push(2 + *x as u8),
                }
            }
        }
        EventBody::Contact { contact_id, email, name, role, status } => {
            put_str(out, contact_id);
            put_opt_str(out, email.as_deref());
            put_opt_str(out, name.as_deref());
            put_opt_enum(out, role.map(|r| r.index()));
            put_opt_enum(out, status.map(|r| r.index()));
        }
        EventBody::Subscription(s) => {
            put_str(out, &s.subscription_id);
            put_opt_str(out, s.product.as_deref());
            put_opt_str(out, s.plan.as_deref());
            out.push(s.kind.index());
            put_u64(out, s.quantity);
            put_money(out, s.amount);
            put_u64(out, s.interval_months as u64);
            out.push(s.status.index());
            put_opt_ts(out, s.term_start);
            put_opt_ts(out, s.term_end);
            put_opt_str(out, s.cancel_reason.as_deref());
            put_opt_ts(out, s.cancel_at);
        }
        EventBody::Invoice { invoice_id, amount, status, period_start, period_end } => {
            put_str(out, invoice_id);
            put_money(out, *amount);
            out.push(status.index());
            put_opt_ts(out, *period_start);
            put_opt_ts(out, *period_end);
        }
        EventBody::Usage { user_id, event, feature, quantity } => {
            put_str(out, user_id);
            put_str(out, event);
            put_opt_str(out, feature.as_deref());
            out.extend_from_slice(&quantity.to_le_bytes());
        }
        EventBody::Ticket { ticket_id, status, category, severity, cost, csat } => {
            put_str(out, ticket_id);
            out.push(status.index());
            put_opt_enum(out, category.map(|c| c.index()));
            put_opt_enum(out, severity.map(|c| c.index()));
            match cost {
                Some(m) => {
                    out.push(1);
                    put_money(out, *m)
                }
                None => out.push(0),
            }
            put_opt_enum(out, *csat);
        }
        EventBody::SurveySent { survey, contact_id } => {
            out.push(survey.index());
            put_opt_str(out, contact_id.as_deref());
        }
        EventBody::SurveyResponse { survey, contact_id, score, comment } => {
            out.push(survey.index());
            put_opt_str(out, contact_id.as_deref());
            match score {
                SurveyScore::Nps(s) => out.extend_from_slice(&[0, *s]),
                SurveyScore::Csat(s) => out.extend_from_slice(&[1, *s]),
                SurveyScore::Success(s) => out.extend_from_slice(&[2, s.index()]),
            }
            put_opt_str(out, comment.as_deref());
        }
        EventBody::Email { contact_id, campaign, action } => {
            put_opt_str(out, contact_id.as_deref());
            put_opt_str(out, campaign.as_deref());
            out.push(action.index());
        }
        EventBody::WebVisit { contact_id, section, page } => {
            put_opt_str(out, contact_id.as_deref());
            out.push(section.index());
            put_opt_str(out, page.as_deref());
        }
        EventBody::Touchpoint { kind, sentiment, note } => {
            put_str(out, kind);
            put_opt_enum(out, sentiment.map(|s| s.index()));
            put_opt_str(out, note.as_deref());
        }
        EventBody::Milestone { name } => put_str(out, name),
        EventBody::SuccessObjective { objective_id, status, value } => {
            put_str(out, objective_id);
            out.push(status.index());
            match value {
                Some(m) => {
                    out.push(1);
                    put_money(out, *m)
                }
                None => out.push(0),
            }
        }
        EventBody::Assessment { relationship, strategic_importance, author } => {
            put_opt_enum(out, *relationship);
            put_opt_enum(out, *strategic_importance);
            put_opt_str(out, author.as_deref());
        }
        EventBody::ChangeRequest { request_id, status } => {
            put_str(out, request_id);
            out.push(status.index());
        }
        EventBody::Cost { category, amount, period_start, period_end } => {
            out.push(category.index());
            put_money(out, *amount);
            put_i64(out, period_start.0);
            put_i64(out, period_end.0);
        }
        EventBody::Alert { alert_id, rule, severity, message } => {
            put_str(out, alert_id);
            put_str(out, rule);
            out.push(severity.index());
            put_opt_str(out, message.as_deref());
        }
        EventBody::Task(t) => {
            put_str(out, &t.task_id);
            put_opt_enum(out, t.status.map(|s| s.index()));
            for s in [&t.rule, &t.alert_id, &t.title, &t.owner] {
                put_opt_str(out, s.as_deref());
            }
            put_opt_ts(out, t.due);
            for s in [&t.note, &t.root_cause, &t.author] {
                put_opt_str(out, s.as_deref());
            }
        }
        EventBody::ForecastOverride { subscription_id, category, amount, reason, author } => {
            put_opt_str(out, subscription_id.as_deref());
            out.push(category.index());
            match amount {
                Some(m) => {
                    out.push(1);
                    put_money(out, *m)
                }
                None => out.push(0),
            }
            put_opt_str(out, reason.as_deref());
            put_opt_str(out, author.as_deref());
        }
    }
}

/// Reads only the kind, timestamp and account of a record: enough to route or filter it.
pub fn peek(buf: &[u8]) -> R<(EventKind, Timestamp, Option<&str>)> {
    let mut r = Reader { buf, pos: 0 };
    let kind = EventKind::from_index(r.u8()?).ok_or(CodecError::Invalid("event kind"))?;
    let flags = r.u8()?;
    let ts = Timestamp(r.i64()?);
    let account = if flags & 1 != 0 { Some(r.str()?) } else { None };
    Ok((kind, ts, account))
}

/// The `contact_id` of a contact record (`None` for other kinds), without decoding the rest.
pub fn peek_contact(buf: &[u8]) -> R<Option<&str>> {
    let mut r = Reader { buf, pos: 0 };
    let kind = EventKind::from_index(r.u8()?).ok_or(CodecError::Invalid("event kind"))?;
    if kind != EventKind::Contact {
        return Ok(None);
    }
    let flags = r.u8()?;
    r.i64()?;
    if flags & 1 != 0 {
        r.str()?;
    }
    if flags & 2 != 0 {
        r.str()?;
    }
    r.str().map(Some)
}

/// A usage record's fields, borrowed from the record: what a scan of the usage lane reads
/// without allocating per event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UsageRef<'a> {
    pub ts: Timestamp,
    pub account: Option<&'a str>,
    pub user_id: &'a str,
    pub event: &'a str,
    pub feature: Option<&'a str>,
    pub quantity: f64,
}

/// Decodes a usage record as [`decode`] does (an error for any other kind, or whatever
/// [`decode`] refuses), borrowing its strings.
pub fn decode_usage(buf: &[u8]) -> R<UsageRef<'_>> {
    let mut r = Reader { buf, pos: 0 };
    let kind = EventKind::from_index(r.u8()?).ok_or(CodecError::Invalid("event kind"))?;
    if kind != EventKind::Usage {
        return Err(CodecError::Invalid("not a usage record"));
    }
    let flags = r.u8()?;
    let ts = Timestamp(r.i64()?);
    let account = if flags & 1 != 0 { Some(r.str()?) } else { None };
    if flags & 2 != 0 {
        r.str()?;
    }
    let user_id = r.str()?;
    let event = r.str()?;
    let feature = r.opt_str()?;
    let quantity = f64::from_le_bytes(r.take(8)?.try_into().map_err(|_| CodecError::Truncated)?);
    if r.pos != buf.len() {
        return Err(CodecError::Invalid("trailing bytes"));
    }
    Ok(UsageRef { ts, account, user_id, event, feature, quantity })
}

pub fn decode(buf: &[u8]) -> R<Event> {
    let mut r = Reader { buf, pos: 0 };
    let kind = EventKind::from_index(r.u8()?).ok_or(CodecError::Invalid("event kind"))?;
    let flags = r.u8()?;
    let ts = Timestamp(r.i64()?);
    let account = if flags & 1 != 0 { Some(r.str()?.to_string()) } else { None };
    let message_id = if flags & 2 != 0 { Some(r.str()?.to_string()) } else { None };
    let body = decode_body(kind, &mut r)?;
    if r.pos != buf.len() {
        return Err(CodecError::Invalid("trailing bytes"));
    }
    Ok(Event { ts, account, message_id, body })
}

/// A body written by [`encode_body`], given its kind.
pub fn decode_body_of(kind: EventKind, buf: &[u8]) -> R<EventBody> {
    let mut r = Reader { buf, pos: 0 };
    let body = decode_body(kind, &mut r)?;
    if r.pos != buf.len() {
        return Err(CodecError::Invalid("trailing bytes"));
    }
    Ok(body)
}

fn decode_body(kind: EventKind, r: &mut Reader<'_>) -> R<EventBody> {
    fn en<T>(v: Option<T>) -> R<T> {
        v.ok_or(CodecError::Invalid("enum value"))
    }
    Ok(match kind {
        EventKind::Account => {
            let name = r.opt_string()?;
            let n = r.u64()? as usize;
            let mut attributes = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let k = r.string()?;
                let v = match r.u8()? {
                    0 => AttrValue::Str(r.string()?),
                    1 => AttrValue::Num(r.string()?),
                    2 => AttrValue::Bool(false),
                    3 => AttrValue::Bool(true),
                    _ => return Err(CodecError::Invalid("attribute tag")),
                };
                attributes.push((k, v));
            }
            EventBody::Account { name, attributes }
        }
        EventKind::Contact => EventBody::Contact {
            contact_id: r.string()?,
            email: r.opt_string()?,
            name: r.opt_string()?,
            role: r.opt_enum()?.map(|i| en(ContactRole::from_index(i))).transpose()?,
            status: r.opt_enum()?.map(|i| en(ContactStatus::from_index(i))).transpose()?,
        },
        EventKind::Subscription => EventBody::Subscription(Box::new(Subscription {
            subscription_id: r.string()?,
            product: r.opt_string()?,
            plan: r.opt_string()?,
            kind: en(LineKind::from_index(r.u8()?))?,
            quantity: r.u64()?,
            amount: r.money()?,
            interval_months: u32::try_from(r.u64()?)
                .map_err(|_| CodecError::Invalid("interval"))?,
            status: en(SubStatus::from_index(r.u8()?))?,
            term_start: r.opt_ts()?,
            term_end: r.opt_ts()?,
            cancel_reason: r.opt_string()?,
            cancel_at: r.opt_ts()?,
        })),
        EventKind::Invoice => EventBody::Invoice {
            invoice_id: r.string()?,
            amount: r.money()?,
            status: en(InvoiceStatus::from_index(r.u8()?))?,
            period_start: r.opt_ts()?,
            period_end: r.opt_ts()?,
        },
        EventKind::Usage => EventBody::Usage {
            user_id: r.string()?,
            event: r.string()?,
            feature: r.opt_string()?,
            quantity: f64::from_le_bytes(r.take(8)?.try_into().map_err(|_| CodecError::Truncated)?),
        },
        EventKind::Ticket => EventBody::Ticket {
            ticket_id: r.string()?,
            status: en(TicketStatus::from_index(r.u8()?))?,
            category: r.opt_enum()?.map(|i| en(TicketCategory::from_index(i))).transpose()?,
            severity: r.opt_enum()?.map(|i| en(Severity::from_index(i))).transpose()?,
            cost: if r.u8()? == 1 { Some(r.money()?) } else { None },
            csat: r.opt_enum()?,
        },
        EventKind::SurveySent => EventBody::SurveySent {
            survey: en(SurveyKind::from_index(r.u8()?))?,
            contact_id: r.opt_string()?,
        },
        EventKind::SurveyResponse => {
            let survey = en(SurveyKind::from_index(r.u8()?))?;
            let contact_id = r.opt_string()?;
            let (tag, v) = (r.u8()?, r.u8()?);
            let score = match tag {
                0 => SurveyScore::Nps(v),
                1 => SurveyScore::Csat(v),
                2 => SurveyScore::Success(en(Sentiment::from_index(v))?),
                _ => return Err(CodecError::Invalid("score tag")),
            };
            EventBody::SurveyResponse { survey, contact_id, score, comment: r.opt_string()? }
        }
        EventKind::Email => EventBody::Email {
            contact_id: r.opt_string()?,
            campaign: r.opt_string()?,
            action: en(EmailAction::from_index(r.u8()?))?,
        },
        EventKind::WebVisit => EventBody::WebVisit {
            contact_id: r.opt_string()?,
            section: en(Section::from_index(r.u8()?))?,
            page: r.opt_string()?,
        },
        EventKind::Touchpoint => EventBody::Touchpoint {
            kind: r.string()?,
            sentiment: r.opt_enum()?.map(|i| en(Sentiment::from_index(i))).transpose()?,
            note: r.opt_string()?,
        },
        EventKind::Milestone => EventBody::Milestone { name: r.string()? },
        EventKind::SuccessObjective => EventBody::SuccessObjective {
            objective_id: r.string()?,
            status: en(ObjectiveStatus::from_index(r.u8()?))?,
            value: if r.u8()? == 1 { Some(r.money()?) } else { None },
        },
        EventKind::Assessment => EventBody::Assessment {
            relationship: r.opt_enum()?,
            strategic_importance: r.opt_enum()?,
            author: r.opt_string()?,
        },
        EventKind::ChangeRequest => EventBody::ChangeRequest {
            request_id: r.string()?,
            status: en(RequestStatus::from_index(r.u8()?))?,
        },
        EventKind::Cost => EventBody::Cost {
            category: en(CostCategory::from_index(r.u8()?))?,
            amount: r.money()?,
            period_start: Timestamp(r.i64()?),
            period_end: Timestamp(r.i64()?),
        },
        EventKind::Alert => EventBody::Alert {
            alert_id: r.string()?,
            rule: r.string()?,
            severity: en(Severity::from_index(r.u8()?))?,
            message: r.opt_string()?,
        },
        EventKind::Task => EventBody::Task(Box::new(TaskChange {
            task_id: r.string()?,
            status: r.opt_enum()?.map(|i| en(TaskStatus::from_index(i))).transpose()?,
            rule: r.opt_string()?,
            alert_id: r.opt_string()?,
            title: r.opt_string()?,
            owner: r.opt_string()?,
            due: r.opt_ts()?,
            note: r.opt_string()?,
            root_cause: r.opt_string()?,
            author: r.opt_string()?,
        })),
        EventKind::ForecastOverride => EventBody::ForecastOverride {
            subscription_id: r.opt_string()?,
            category: en(ForecastCategory::from_index(r.u8()?))?,
            amount: if r.u8()? == 1 { Some(r.money()?) } else { None },
            reason: r.opt_string()?,
            author: r.opt_string()?,
        },
    })
}

/// Appends `v` as a LEB128 varint (also the encoding of other compact formats, such as the
/// health state checkpoint).
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint: small magnitudes of either sign take few bytes.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends a varint length, then the UTF-8 bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            put_u64(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn put_opt_enum(out: &mut Vec<u8>, v: Option<u8>) {
    match v {
        None => out.push(0),
        Some(v) => out.extend_from_slice(&[1, v]),
    }
}

fn put_opt_ts(out: &mut Vec<u8>, t: Option<Timestamp>) {
    match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_i64(out, t.0)
        }
    }
}

fn put_money(out: &mut Vec<u8>, m: Money) {
    put_i64(out, m.minor);
    out.extend_from_slice(&m.currency.bytes());
}

/// Reads what [`put_u64`] and [`put_str`] write, for other compact formats built on them
/// (the account index, say).
pub struct Cursor<'a>(Reader<'a>);

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor(Reader { buf, pos: 0 })
    }
    pub fn u64(&mut self) -> R<u64> {
        self.0.u64()
    }
    pub fn str(&mut self) -> R<&'a str> {
        self.0.str()
    }
    pub fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        self.0.take(n)
    }
    /// Whether every byte has been read.
    pub fn is_done(&self) -> bool {
        self.0.pos == self.0.buf.len()
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.0.buf.len() - self.0.pos
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError::Invalid("varint"))
    }
    fn i64(&mut self) -> R<i64> {
        let u = self.u64()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }
    fn str(&mut self) -> R<&'a str> {
        let n = self.u64()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| CodecError::Invalid("utf-8"))
    }
    fn string(&mut self) -> R<String> {
        self.str().map(str::to_string)
    }
    fn opt_string(&mut self) -> R<Option<String>> {
        Ok(self.opt_str()?.map(str::to_string))
    }
    fn opt_str(&mut self) -> R<Option<&'a str>> {
        let n = self.u64()? as usize;
        if n == 0 {
            return Ok(None);
        }
        let s = std::str::from_utf8(self.take(n - 1)?).map_err(|_| CodecError::Invalid("utf-8"))?;
        Ok(Some(s))
    }
    fn opt_enum(&mut self) -> R<Option<u8>> {
        Ok(if self.u8()? == 0 { None } else { Some(self.u8()?) })
    }
    fn opt_ts(&mut self) -> R<Option<Timestamp>> {
        Ok(if self.u8()? == 0 { None } else { Some(Timestamp(self.i64()?)) })
    }
    fn money(&mut self) -> R<Money> {
        let minor = self.i64()?;
        let c = self.take(3)?;
        let currency =
            Currency::from_bytes([c[0], c[1], c[2]]).ok_or(CodecError::Invalid("currency"))?;
        Ok(Money { minor, currency })
    }
}

#[cfg(test)]
mod tests;
