//! Validation: a [`Raw`] row becomes an `Event` or a [`FieldError`] naming field and reason.

use crate::IngestConfig;
use crate::raw::{F, Raw, Scalar};
use std::borrow::Cow;
use tenure_core::event::*;
use tenure_core::money::{self, Currency, Money};
use tenure_core::time::{DAY, Timestamp};

/// Why a row was rejected: the field (when one is to blame) and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: Option<String>,
    pub reason: String,
}

impl FieldError {
    pub fn row(reason: impl Into<String>) -> FieldError {
        FieldError { field: None, reason: reason.into() }
    }
    fn at(f: F, reason: impl Into<String>) -> FieldError {
        FieldError { field: Some(f.name().to_string()), reason: reason.into() }
    }
}

type R<T> = Result<T, FieldError>;

/// The longest id or name we store; longer values are a sign of a mapping mistake.
const MAX_ID_CHARS: usize = 256;
const MAX_TEXT_CHARS: usize = 10_000;
/// Bounds that keep every sum of amounts and seats far from overflowing.
const MAX_AMOUNT_MINOR: i64 = 10_000_000_000_000;
const MAX_QUANTITY: i64 = 1_000_000_000;
/// The largest usage quantity of one event: a billion events of it still sum to a finite,
/// exact-enough float (1e24), and no metered unit comes near it in one event.
const MAX_USAGE_QUANTITY: f64 = 1e15;

/// Why an id cannot be stored as one, if it cannot: blank ids and control characters (NUL
/// above all: C strings, CSV exports and terminals all break on them) are refused.
fn id_problem(s: &str) -> Option<&'static str> {
    if s.trim().is_empty() {
        Some("must not be blank (only whitespace)")
    } else if s.contains('\0') {
        Some("must not contain a NUL character")
    } else if control(s) {
        Some("must not contain control characters (line breaks, tabs...)")
    } else {
        None
    }
}

/// Whether a string holds a control character; ASCII text (almost every id) is checked
/// byte by byte, which is several times faster than decoding characters.
fn control(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b.is_ascii_control())
    } else {
        s.chars().any(char::is_control)
    }
}

/// Free text may hold line breaks and tabs, but never NUL.
fn text_problem(s: &str) -> Option<&'static str> {
    s.contains('\0').then_some("must not contain a NUL character")
}

/// A number written with a non-zero digit that reads as zero or a subnormal float: the
/// value was lost to underflow (`1e-400` is not 0), so it is refused rather than stored.
pub(crate) fn underflows(text: &str) -> bool {
    let t = text.trim();
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    let nonzero = mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c));
    nonzero && t.parse::<f64>().is_ok_and(|x| x.abs() < f64::MIN_POSITIVE)
}

struct V<'r, 'a> {
    raw: &'r Raw<'a>,
    cfg: &'r IngestConfig,
}

impl<'a> V<'_, 'a> {
    fn opt_str(&self, f: F) -> R<Option<&str>> {
        match self.raw.get(f) {
            None => Ok(None),
            Some(Scalar::Str(s)) if s.is_empty() && self.raw.from_text => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s.as_ref())),
            Some(other) => {
                Err(FieldError::at(f, format!("expected a string, got {}", other.type_name())))
            }
        }
    }
    fn opt_id(&self, f: F) -> R<Option<String>> {
        match self.opt_str(f)? {
            None => Ok(None),
            Some(s) => {
                if s.is_empty() {
                    return Err(FieldError::at(f, "must not be empty"));
                }
                if let Some(p) = id_problem(s) {
                    return Err(FieldError::at(f, p));
                }
                // No more characters than bytes: only a long id needs counting.
                let n = if s.len() > MAX_ID_CHARS { s.chars().count() } else { s.len() };
                if n > MAX_ID_CHARS {
                    return Err(FieldError::at(
                        f,
                        format!("is {n} characters long, over the limit of {MAX_ID_CHARS}"),
                    ));
                }
                Ok(Some(s.to_string()))
            }
        }
    }
    fn id(&self, f: F) -> R<String> {
        self.opt_id(f)?.ok_or_else(|| FieldError::at(f, "missing required field"))
    }
    fn opt_text(&self, f: F) -> R<Option<String>> {
        match self.opt_str(f)? {
            Some(s) if s.chars().count() > MAX_TEXT_CHARS => {
                Err(FieldError::at(f, format!("longer than {MAX_TEXT_CHARS} characters")))
            }
            Some(s) if text_problem(s).is_some() => {
                Err(FieldError::at(f, text_problem(s).unwrap_or_default()))
            }
            s => Ok(s.map(str::to_string)),
        }
    }
    fn opt_enum<T>(
        &self,
        f: F,
        parse: fn(&str) -> Option<T>,
        expected: fn() -> String,
    ) -> R<Option<T>> {
        match self.opt_str(f)? {
            None => Ok(None),
            Some(s) => parse(s).map(Some).ok_or_else(|| {
                FieldError::at(f, format!("unknown value {s:?} (expected {})", expected()))
            }),
        }
    }
    fn enum_req<T>(&self, f: F, parse: fn(&str) -> Option<T>, expected: fn() -> String) -> R<T> {
        self.opt_enum(f, parse, expected)?
            .ok_or_else(|| FieldError::at(f, "missing required field"))
    }
    fn opt_ts(&self, f: F) -> R<Option<Timestamp>> {
        if let Some(Scalar::Time(t)) = self.raw.get(f) {
            return t.check_range().map(Some).map_err(|e| FieldError::at(f, e.to_string()));
        }
        match self.opt_str(f)? {
            None => Ok(None),
            Some(s) => Timestamp::parse(s)
                .and_then(Timestamp::check_range)
                .map(Some)
                .map_err(|e| FieldError::at(f, e.to_string())),
        }
    }
    /// A number, accepting numeric text in CSV rows and (for leniency) in JSON strings.
    fn opt_number(&self, f: F) -> R<Option<f64>> {
        let bad = |got: &str| FieldError::at(f, format!("expected a number, got {got}"));
        match self.raw.get(f) {
            None => Ok(None),
            Some(Scalar::Int(i)) => Ok(Some(*i as f64)),
            // JSON has no NaN or infinity, but a Parquet float column may.
            Some(Scalar::Float(x)) if !x.is_finite() => {
                Err(FieldError::at(f, format!("must be a finite number, got {x}")))
            }
            Some(Scalar::Float(x)) => Ok(Some(*x)),
            Some(Scalar::Str(s)) if s.is_empty() && self.raw.from_text => Ok(None),
            Some(Scalar::Str(s) | Scalar::Num(s)) if underflows(s) => Err(FieldError::at(
                f,
                format!("{s:?} is too small to be represented (it would be stored as 0)"),
            )),
            Some(Scalar::Str(s) | Scalar::Num(s)) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(bad(&format!("{s:?}"))),
            },
            Some(other) => Err(bad(other.type_name())),
        }
    }
    fn opt_int(&self, f: F, lo: i64, hi: i64) -> R<Option<i64>> {
        match self.opt_number(f)? {
            None => Ok(None),
            Some(x) if x.fract() != 0.0 => {
                Err(FieldError::at(f, format!("must be a whole number, got {x}")))
            }
            Some(x) if x < 0.0 && lo >= 0 => {
                Err(FieldError::at(f, format!("must not be negative, got {x}")))
            }
            Some(x) if x < lo as f64 || x > hi as f64 => {
                Err(FieldError::at(f, format!("{x} is out of range {lo}..={hi}")))
            }
            Some(x) => Ok(Some(x as i64)),
        }
    }
    fn currency(&self) -> R<Currency> {
        match self.opt_str(F::Currency)? {
            None => Ok(self.cfg.default_currency),
            Some(s) => Currency::parse(s).ok_or_else(|| {
                FieldError::at(F::Currency, format!("{s:?} is not an ISO 4217 currency code"))
            }),
        }
    }
    /// Money in major units, exact; negative amounts are refused.
    fn opt_money(&self, f: F) -> R<Option<Money>> {
        let currency = self.currency()?;
        let text: Cow<'_, str> = match self.raw.get(f) {
            None => return Ok(None),
            Some(Scalar::Str(s)) if s.is_empty() && self.raw.from_text => return Ok(None),
            Some(Scalar::Str(s) | Scalar::Num(s)) => Cow::Borrowed(s.as_ref()),
            Some(Scalar::Int(i)) => Cow::Owned(i.to_string()),
            Some(Scalar::Float(x)) if !x.is_finite() => {
                return Err(FieldError::at(f, format!("must be a finite number, got {x}")));
            }
            // Rust prints the shortest decimal that reads back as the same float, which is
            // the text the producer wrote for any amount with a sane number of digits.
            Some(Scalar::Float(x)) => {
                // Past 2^53 minor units a JSON number cannot carry every digit exactly.
                if x.abs() * 10f64.powi(currency.exponent() as i32) >= 9_007_199_254_740_992.0 {
                    return Err(FieldError::at(
                        f,
                        format!(
                            "{x} is too large to be exact as a JSON number; send it as a string"
                        ),
                    ));
                }
                Cow::Owned(format!("{x}"))
            }
            Some(other) => {
                return Err(FieldError::at(
                    f,
                    format!("expected a decimal amount, got {}", other.type_name()),
                ));
            }
        };
        let minor =
            money::parse_minor(&text, currency).map_err(|e| FieldError::at(f, e.to_string()))?;
        if minor < 0 {
            return Err(FieldError::at(f, format!("must not be negative, got {text}")));
        }
        if minor > MAX_AMOUNT_MINOR {
            let max = money::format_minor(MAX_AMOUNT_MINOR, currency);
            return Err(FieldError::at(f, format!("{text} is over the limit of {max} {currency}")));
        }
        Ok(Some(Money { minor, currency }))
    }
    fn money(&self, f: F) -> R<Money> {
        self.opt_money(f)?.ok_or_else(|| FieldError::at(f, "missing required field"))
    }
    fn interval(&self) -> R<u32> {
        let f = F::Interval;
        let Some(s) = self.opt_str(f)? else { return Ok(1) };
        let months = match s {
            "month" | "monthly" => Some(1),
            "quarter" | "quarterly" => Some(3),
            "year" | "yearly" | "annual" => Some(12),
            _ => s
                .strip_suffix('m')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=120).contains(n)),
        };
        months.ok_or_else(|| {
            FieldError::at(
                f,
                format!(
                    "unknown interval {s:?} (expected month | quarter | year | N months as \"6m\")"
                ),
            )
        })
    }
}

/// The type named by a row, falling back to the file's type when the row has none.
pub fn kind_of(raw: &Raw<'_>, default: Option<EventKind>) -> R<EventKind> {
    match raw.get(F::Type) {
        None => default.ok_or_else(|| FieldError::at(F::Type, "missing required field")),
        Some(Scalar::Str(s)) if s.is_empty() && raw.from_text => {
            default.ok_or_else(|| FieldError::at(F::Type, "missing required field"))
        }
        Some(Scalar::Str(s)) => EventKind::parse(s).ok_or_else(|| {
            FieldError::at(
                F::Type,
                format!("unknown type {s:?} (expected {})", EventKind::expected()),
            )
        }),
        Some(other) => {
            Err(FieldError::at(F::Type, format!("expected a string, got {}", other.type_name())))
        }
    }
}

pub fn build(raw: &Raw<'_>, default_kind: Option<EventKind>, cfg: &IngestConfig) -> R<Event> {
    let kind = kind_of(raw, default_kind)?;
    let v = V { raw, cfg };
    let ts = v
        .opt_ts(F::Timestamp)?
        .ok_or_else(|| FieldError::at(F::Timestamp, "missing required field"))?;
    if let Some(now) = cfg.now {
        let limit = Timestamp(now.0.saturating_add(cfg.max_future_skew_micros));
        if ts > limit {
            let days = (ts.0 - now.0) as f64 / DAY as f64;
            return Err(FieldError::at(
                F::Timestamp,
                format!(
                    "{ts} is {days:.1} days in the future (beyond the allowed skew of {})",
                    human_skew(cfg.max_future_skew_micros)
                ),
            ));
        }
    }
    let account =
        if kind == EventKind::Cost { v.opt_id(F::AccountId)? } else { Some(v.id(F::AccountId)?) };
    let message_id = v.opt_id(F::MessageId)?;
    let body = body(&v, kind)?;
    Ok(Event { ts, account, message_id, body })
}

fn human_skew(micros: i64) -> String {
    let secs = micros / 1_000_000;
    if secs % 86_400 == 0 {
        let d = secs / 86_400;
        format!("{d} day{}", if d == 1 { "" } else { "s" })
    } else {
        format!("{secs} s")
    }
}

fn body(v: &V<'_, '_>, kind: EventKind) -> R<EventBody> {
    Ok(match kind {
        EventKind::Account => {
            if let Some(r) = v.raw.attributes_invalid {
                return Err(FieldError { field: Some("attributes".into()), reason: r.into() });
            }
            let mut attributes = Vec::new();
            for (k, val) in v.raw.attributes.iter().flatten() {
                let field = || Some(format!("attributes.{k}"));
                if k.is_empty() || k.chars().count() > MAX_ID_CHARS {
                    return Err(FieldError {
                        field: field(),
                        reason: "attribute names must be 1-256 characters".into(),
                    });
                }
                if let Some(p) = id_problem(k) {
                    return Err(FieldError { field: field(), reason: format!("the name {p}") });
                }
                let val = match val {
                    Scalar::Str(s) if text_problem(s).is_some() => {
                        let reason = text_problem(s).unwrap_or_default().to_string();
                        return Err(FieldError { field: field(), reason });
                    }
                    Scalar::Str(s) if s.chars().count() > MAX_TEXT_CHARS => {
                        return Err(FieldError {
                            field: field(),
                            reason: format!("longer than {MAX_TEXT_CHARS} characters"),
                        });
                    }
                    Scalar::Str(s) if s.is_empty() && v.raw.from_text => continue,
                    Scalar::Str(s) => AttrValue::Str(s.to_string()),
                    Scalar::Int(i) => AttrValue::Num(i.to_string()),
                    Scalar::Float(x) if !x.is_finite() => {
                        return Err(FieldError {
                            field: field(),
                            reason: format!("must be a finite number, got {x}"),
                        });
                    }
                    Scalar::Float(x) => AttrValue::Num(format!("{x}")),
                    Scalar::Num(s) => AttrValue::Num(s.to_string()),
                    Scalar::Time(t) => AttrValue::Str(t.to_string()),
                    Scalar::Bool(b) => AttrValue::Bool(*b),
                    Scalar::Composite(_) => {
                        return Err(FieldError {
                            field: field(),
                            reason: "must be a string, number or boolean".into(),
                        });
                    }
                };
                attributes.push((k.to_string(), val));
            }
            // A name given twice is refused, as a top-level field given twice is: which of
            // the two values was meant cannot be known.
            attributes.sort();
            if let Some(w) = attributes.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(FieldError {
                    field: Some(format!("attributes.{}", w[0].0)),
                    reason: "attribute appears twice".into(),
                });
            }
            EventBody::Account { name: v.opt_text(F::Name)?, attributes }
        }
        EventKind::Contact => EventBody::Contact {
            contact_id: v.id(F::ContactId)?,
            email: v.opt_id(F::Email)?,
            name: v.opt_text(F::Name)?,
            role: v.opt_enum(F::Role, ContactRole::parse, ContactRole::expected)?,
            status: v.opt_enum(F::Status, ContactStatus::parse, ContactStatus::expected)?,
        },
        EventKind::Subscription => {
            let status = v.enum_req(F::Status, SubStatus::parse, SubStatus::expected)?;
            // A cancellation may omit the price: the line no longer produces revenue.
            let amount = match (v.opt_money(F::Amount)?, status) {
                (Some(m), _) => m,
                (None, SubStatus::Canceled) => Money { minor: 0, currency: v.currency()? },
                (None, _) => return Err(FieldError::at(F::Amount, "missing required field")),
            };
            let term_start = v.opt_ts(F::TermStart)?;
            let term_end = v.opt_ts(F::TermEnd)?;
            if let (Some(s), Some(e)) = (term_start, term_end)
                && e <= s
            {
                return Err(FieldError::at(F::TermEnd, format!("{e} is not after term_start {s}")));
            }
            EventBody::Subscription(Box::new(Subscription {
                subscription_id: v.id(F::SubscriptionId)?,
                product: v.opt_id(F::Product)?,
                plan: v.opt_id(F::Plan)?,
                kind: v
                    .opt_enum(F::Kind, LineKind::parse, LineKind::expected)?
                    .unwrap_or(LineKind::Product),
                quantity: v.opt_int(F::Quantity, 0, MAX_QUANTITY)?.unwrap_or(1) as u64,
                amount,
                interval_months: v.interval()?,
                status,
                term_start,
                term_end,
                cancel_reason: v.opt_text(F::CancelReason)?,
                cancel_at: v.opt_ts(F::CancelAt)?,
            }))
        }
        EventKind::Invoice => EventBody::Invoice {
            invoice_id: v.id(F::InvoiceId)?,
            amount: v.money(F::Amount)?,
            status: v.enum_req(F::Status, InvoiceStatus::parse, InvoiceStatus::expected)?,
            period_start: v.opt_ts(F::PeriodStart)?,
            period_end: v.opt_ts(F::PeriodEnd)?,
        },
        EventKind::Usage => {
            let quantity = match v.opt_number(F::Quantity)? {
                None => 1.0,
                Some(q) if q < 0.0 => {
                    return Err(FieldError::at(
                        F::Quantity,
                        format!("must not be negative, got {q}"),
                    ));
                }
                Some(q) if q > MAX_USAGE_QUANTITY => {
                    return Err(FieldError::at(
                        F::Quantity,
                        format!("{q:e} is over the limit of {MAX_USAGE_QUANTITY:e} for one event"),
                    ));
                }
                Some(q) => q,
            };
            let event = v.id(F::Event)?;
            let feature = v.opt_id(F::Feature)?.filter(|f| *f != event);
            EventBody::Usage { user_id: v.id(F::UserId)?, event, feature, quantity }
        }
        EventKind::Ticket => EventBody::Ticket {
            ticket_id: v.id(F::TicketId)?,
            status: v.enum_req(F::Status, TicketStatus::parse, TicketStatus::expected)?,
            category: v.opt_enum(F::Category, TicketCategory::parse, TicketCategory::expected)?,
            severity: v.opt_enum(F::Severity, Severity::parse, Severity::expected)?,
            cost: v.opt_money(F::Cost)?,
            csat: v
                .opt_int(F::Csat, v.cfg.csat_scale.0 as i64, v.cfg.csat_scale.1 as i64)?
                .map(|x| x as u8),
        },
        EventKind::SurveySent => EventBody::SurveySent {
            survey: v.enum_req(F::Survey, SurveyKind::parse, SurveyKind::expected)?,
            contact_id: v.opt_id(F::ContactId)?,
        },
        EventKind::SurveyResponse => {
            let survey = v.enum_req(F::Survey, SurveyKind::parse, SurveyKind::expected)?;
            let missing = || FieldError::at(F::Score, "missing required field");
            let score = match survey {
                SurveyKind::Nps => {
                    SurveyScore::Nps(v.opt_int(F::Score, 0, 10)?.ok_or_else(missing)? as u8)
                }
                SurveyKind::Csat => {
                    let (lo, hi) = v.cfg.csat_scale;
                    SurveyScore::Csat(
                        v.opt_int(F::Score, lo as i64, hi as i64)?.ok_or_else(missing)? as u8,
                    )
                }
                SurveyKind::Success => SurveyScore::Success(
                    v.opt_enum(F::Score, Sentiment::parse, Sentiment::expected)?
                        .ok_or_else(missing)?,
                ),
            };
            EventBody::SurveyResponse {
                survey,
                contact_id: v.opt_id(F::ContactId)?,
                score,
                comment: v.opt_text(F::Comment)?,
            }
        }
        EventKind::Email => EventBody::Email {
            contact_id: v.opt_id(F::ContactId)?,
            campaign: v.opt_id(F::Campaign)?,
            action: v.enum_req(F::Action, EmailAction::parse, EmailAction::expected)?,
        },
        EventKind::WebVisit => EventBody::WebVisit {
            contact_id: v.opt_id(F::ContactId)?,
            section: v
                .opt_enum(F::Section, Section::parse, Section::expected)?
                .unwrap_or(Section::Other),
            page: v.opt_text(F::Page)?,
        },
        EventKind::Touchpoint => EventBody::Touchpoint {
            kind: v.id(F::Kind)?,
            sentiment: v.opt_enum(F::Sentiment, Sentiment::parse, Sentiment::expected)?,
            note: v.opt_text(F::Note)?,
        },
        EventKind::Milestone => EventBody::Milestone { name: v.id(F::Name)? },
        EventKind::SuccessObjective => EventBody::SuccessObjective {
            objective_id: v.id(F::ObjectiveId)?,
            status: v.enum_req(F::Status, ObjectiveStatus::parse, ObjectiveStatus::expected)?,
            value: v.opt_money(F::Value)?,
        },
        EventKind::Assessment => {
            let relationship = v.opt_int(F::Relationship, 1, 5)?.map(|x| x as u8);
            let strategic_importance = v.opt_int(F::StrategicImportance, 1, 5)?.map(|x| x as u8);
            if relationship.is_none() && strategic_importance.is_none() {
                return Err(FieldError::at(
                    F::Relationship,
                    "an assessment needs relationship or strategic_importance",
                ));
            }
            EventBody::Assessment {
                relationship,
                strategic_importance,
                author: v.opt_id(F::Author)?,
            }
        }
        EventKind::ChangeRequest => EventBody::ChangeRequest {
            request_id: v.id(F::RequestId)?,
            status: v.enum_req(F::Status, RequestStatus::parse, RequestStatus::expected)?,
        },
        EventKind::Cost => {
            let start = v
                .opt_ts(F::PeriodStart)?
                .ok_or_else(|| FieldError::at(F::PeriodStart, "missing required field"))?;
            let end = v
                .opt_ts(F::PeriodEnd)?
                .ok_or_else(|| FieldError::at(F::PeriodEnd, "missing required field"))?;
            if end <= start {
                return Err(FieldError::at(
                    F::PeriodEnd,
                    format!("{end} is not after period_start {start}"),
                ));
            }
            EventBody::Cost {
                category: v.enum_req(F::Category, CostCategory::parse, CostCategory::expected)?,
                amount: v.money(F::Amount)?,
                period_start: start,
                period_end: end,
            }
        }
        EventKind::Alert => EventBody::Alert {
            alert_id: v.id(F::AlertId)?,
            rule: v.id(F::Rule)?,
            severity: v
                .opt_enum(F::Severity, Severity::parse, Severity::expected)?
                .unwrap_or(Severity::Normal),
            message: v.opt_text(F::Message)?,
        },
        EventKind::Task => EventBody::Task(Box::new(TaskChange {
            task_id: v.id(F::TaskId)?,
            status: v.opt_enum(F::Status, TaskStatus::parse, TaskStatus::expected)?,
            rule: v.opt_id(F::Rule)?,
            alert_id: v.opt_id(F::AlertId)?,
            title: v.opt_text(F::Title)?,
            owner: v.opt_id(F::Owner)?,
            due: v.opt_ts(F::Due)?,
            note: v.opt_text(F::Note)?,
            root_cause: v.opt_id(F::RootCause)?,
            author: v.opt_id(F::Author)?,
        })),
        EventKind::ForecastOverride => {
            let amount = v.opt_money(F::Amount)?;
            if let Some(m) = amount
                && m.minor < 0
            {
                return Err(FieldError::at(
                    F::Amount,
                    "must not be negative (the ARR expected back)",
                ));
            }
            EventBody::ForecastOverride {
                subscription_id: v.opt_id(F::SubscriptionId)?,
                category: v.enum_req(
                    F::Category,
                    ForecastCategory::parse,
                    ForecastCategory::expected,
                )?,
                amount,
                reason: v.opt_text(F::Reason)?,
                author: v.opt_id(F::Author)?,
            }
        }
    })
}
