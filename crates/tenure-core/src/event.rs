//! The event model: every type and field of the input contract (`docs/events.md`).
//!
//! Events here are already validated: ids are non-empty, money is exact, enums are closed.
//! Fields that an upsert may leave out are `Option`s meaning "unchanged".

use crate::money::Money;
use crate::time::Timestamp;

/// Declares a closed string enum with its wire spelling, in one place.
macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
            /// The accepted spellings, for error messages.
            pub fn expected() -> String {
                [$($s),+].join(" | ")
            }
            pub fn index(self) -> u8 { self as u8 }
            pub fn from_index(i: u8) -> Option<$name> { Self::ALL.get(i as usize).copied() }
        }
    };
}

str_enum!(
    /// The `type` of an event.
    EventKind {
        Account = "account",
        Contact = "contact",
        Subscription = "subscription",
        Invoice = "invoice",
        Usage = "usage",
        Ticket = "ticket",
        SurveySent = "survey_sent",
        SurveyResponse = "survey_response",
        Email = "email",
        WebVisit = "web_visit",
        Touchpoint = "touchpoint",
        Milestone = "milestone",
        SuccessObjective = "success_objective",
        Assessment = "assessment",
        ChangeRequest = "change_request",
        Cost = "cost",
        Alert = "alert",
        Task = "task",
        ForecastOverride = "forecast_override",
    }
);

str_enum!(ContactRole {
    Champion = "champion",
    ExecutiveSponsor = "executive_sponsor",
    Admin = "admin",
    DecisionMaker = "decision_maker",
    Influencer = "influencer",
    EndUser = "end_user",
    Other = "other",
});
str_enum!(ContactStatus { Active = "active", Left = "left" });
str_enum!(LineKind { Product = "product", Service = "service" });
str_enum!(SubStatus {
    Trialing = "trialing",
    Active = "active",
    PastDue = "past_due",
    Paused = "paused",
    Canceled = "canceled",
});
str_enum!(InvoiceStatus { Paid = "paid", Failed = "failed", Refunded = "refunded" });
str_enum!(TicketStatus { Opened = "opened", Closed = "closed", Reopened = "reopened" });
str_enum!(TicketCategory { HowTo = "how_to", Defect = "defect", Other = "other" });
str_enum!(Severity { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" });
str_enum!(SurveyKind { Nps = "nps", Csat = "csat", Success = "success" });
str_enum!(Sentiment { Positive = "positive", Neutral = "neutral", Negative = "negative" });
str_enum!(EmailAction { Sent = "sent", Opened = "opened", Clicked = "clicked" });
str_enum!(Section { Docs = "docs", Website = "website", Other = "other" });
str_enum!(ObjectiveStatus { Planned = "planned", Achieved = "achieved", Missed = "missed" });
str_enum!(RequestStatus { Opened = "opened", Done = "done", Rejected = "rejected" });
str_enum!(TaskStatus {
    Open = "open",
    InProgress = "in_progress",
    Done = "done",
    Dismissed = "dismissed",
});
str_enum!(
    /// How sure a renewal is: a forecast's category, and a CSM's call on it.
    ForecastCategory { Commit = "commit", Probable = "probable", AtRisk = "at_risk" }
);
str_enum!(
    /// Why an account was at risk: the one taxonomy of task root causes. The API refuses a
    /// resolution outside it, the dashboard offers exactly these, and the reports count by
    /// them (an imported free-text cause outside the list counts as `other`).
    RootCause {
        ProductGap = "product_gap",
        Performance = "performance",
        Support = "support",
        Price = "price",
        LowAdoption = "low_adoption",
        ChampionLeft = "champion_left",
        Budget = "budget",
        Competitor = "competitor",
        Payment = "payment",
        Other = "other",
    }
);

impl RootCause {
    /// The cause a recorded root cause counts under: the taxonomy's own spelling, or the same
    /// words in another case or with spaces or hyphens (`"Product gap"`), else `Other`
    /// (free text imported from another tool).
    pub fn classify(text: &str) -> RootCause {
        let key: String = text
            .trim()
            .chars()
            .map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() })
            .collect();
        RootCause::parse(&key).unwrap_or(RootCause::Other)
    }

    /// The label a person reads (`product gap`).
    pub fn label(self) -> String {
        self.as_str().replace('_', " ")
    }
}

str_enum!(CostCategory { Retention = "retention", Acquisition = "acquisition", Service = "service" });

/// A user-defined account attribute value. Numbers keep their source text so that a
/// segment key never depends on float formatting.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrValue {
    Str(String),
    Num(String),
    Bool(bool),
}

impl AttrValue {
    /// The value as a segment label.
    pub fn label(&self) -> String {
        match self {
            AttrValue::Str(s) | AttrValue::Num(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
        }
    }
}

/// One validated event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub ts: Timestamp,
    /// Every event names an account except `cost`.
    pub account: Option<String>,
    pub message_id: Option<String>,
    pub body: EventBody,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}

/// The full state of a subscription line after a change.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub subscription_id: String,
    pub product: Option<String>,
    pub plan: Option<String>,
    pub kind: LineKind,
    /// Seats or licences.
    pub quantity: u64,
    /// Price per interval for the whole line, after recurring discounts.
    pub amount: Money,
    pub interval_months: u32,
    pub status: SubStatus,
    pub term_start: Option<Timestamp>,
    pub term_end: Option<Timestamp>,
    pub cancel_reason: Option<String>,
    /// A scheduled cancellation (notice given): the line ends at this instant unless a later
    /// event changes it. An extension of the contract, as Stripe's `cancel_at`.
    pub cancel_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SurveyScore {
    Nps(u8),
    Csat(u8),
    Success(Sentiment),
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    Account {
        name: Option<String>,
        attributes: Vec<(String, AttrValue)>,
    },
    Contact {
        contact_id: String,
        email: Option<String>,
        name: Option<String>,
        role: Option<ContactRole>,
        status: Option<ContactStatus>,
    },
    Subscription(Box<Subscription>),
    Invoice {
        invoice_id: String,
        amount: Money,
        status: InvoiceStatus,
        period_start: Option<Timestamp>,
        period_end: Option<Timestamp>,
    },
    Usage {
        user_id: String,
        event: String,
        /// `None` means the feature is the event name.
        feature: Option<String>,
        /// Non-negative; fractional quantities (gigabytes, minutes) are allowed.
        quantity: f64,
    },
    Ticket {
        ticket_id: String,
        status: TicketStatus,
        category: Option<TicketCategory>,
        severity: Option<Severity>,
        cost: Option<Money>,
        csat: Option<u8>,
    },
    SurveySent {
        survey: SurveyKind,
        contact_id: Option<String>,
    },
    SurveyResponse {
        survey: SurveyKind,
        contact_id: Option<String>,
        score: SurveyScore,
        comment: Option<String>,
    },
    Email {
        contact_id: Option<String>,
        campaign: Option<String>,
        action: EmailAction,
    },
    WebVisit {
        contact_id: Option<String>,
        section: Section,
        page: Option<String>,
    },
    Touchpoint {
        kind: String,
        sentiment: Option<Sentiment>,
        note: Option<String>,
    },
    Milestone {
        name: String,
    },
    SuccessObjective {
        objective_id: String,
        status: ObjectiveStatus,
        value: Option<Money>,
    },
    Assessment {
        relationship: Option<u8>,
        strategic_importance: Option<u8>,
        author: Option<String>,
    },
    ChangeRequest {
        request_id: String,
        status: RequestStatus,
    },
    Cost {
        category: CostCategory,
        amount: Money,
        period_start: Timestamp,
        period_end: Timestamp,
    },
    /// A rule fired for the account (the service's alerting records every alert).
    Alert {
        alert_id: String,
        rule: String,
        severity: Severity,
        message: Option<String>,
    },
    Task(Box<TaskChange>),
    /// A CSM's call on a renewal: it replaces the forecast's category and, with an amount,
    /// the ARR expected back (0: it will not renew). Sent through the API, which sets the
    /// author from the key.
    ForecastOverride {
        /// The contract (subscription line); none: every contract of the account.
        subscription_id: Option<String>,
        category: ForecastCategory,
        /// The ARR expected back.
        amount: Option<Money>,
        reason: Option<String>,
        author: Option<String>,
    },
}

/// A change to a CSM task: the fields given replace the task's, a note is appended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskChange {
    pub task_id: String,
    pub status: Option<TaskStatus>,
    /// The alert rule (or playbook) the task came from, and the alert that opened it.
    pub rule: Option<String>,
    pub alert_id: Option<String>,
    pub title: Option<String>,
    pub owner: Option<String>,
    pub due: Option<Timestamp>,
    pub note: Option<String>,
    /// Why the account was at risk, tagged when the task is resolved: a [`RootCause`] when
    /// the service records it; imported history may hold any text.
    pub root_cause: Option<String>,
    pub author: Option<String>,
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Account { .. } => EventKind::Account,
            EventBody::Contact { .. } => EventKind::Contact,
            EventBody::Subscription(_) => EventKind::Subscription,
            EventBody::Invoice { .. } => EventKind::Invoice,
            EventBody::Usage { .. } => EventKind::Usage,
            EventBody::Ticket { .. } => EventKind::Ticket,
            EventBody::SurveySent { .. } => EventKind::SurveySent,
            EventBody::SurveyResponse { .. } => EventKind::SurveyResponse,
            EventBody::Email { .. } => EventKind::Email,
            EventBody::WebVisit { .. } => EventKind::WebVisit,
            EventBody::Touchpoint { .. } => EventKind::Touchpoint,
            EventBody::Milestone { .. } => EventKind::Milestone,
            EventBody::SuccessObjective { .. } => EventKind::SuccessObjective,
            EventBody::Assessment { .. } => EventKind::Assessment,
            EventBody::ChangeRequest { .. } => EventKind::ChangeRequest,
            EventBody::Cost { .. } => EventKind::Cost,
            EventBody::Alert { .. } => EventKind::Alert,
            EventBody::Task(_) => EventKind::Task,
            EventBody::ForecastOverride { .. } => EventKind::ForecastOverride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_causes_classify_spellings_and_free_text() {
        assert_eq!(RootCause::classify("product_gap"), RootCause::ProductGap);
        assert_eq!(RootCause::classify(" Product gap "), RootCause::ProductGap);
        assert_eq!(RootCause::classify("champion-left"), RootCause::ChampionLeft);
        assert_eq!(RootCause::classify("the CFO hates us"), RootCause::Other);
        assert_eq!(RootCause::classify(""), RootCause::Other);
        assert_eq!(RootCause::ProductGap.label(), "product gap");
        // Every cause survives its own label.
        for c in RootCause::ALL {
            assert_eq!(RootCause::classify(&c.label()), *c);
        }
    }
}
