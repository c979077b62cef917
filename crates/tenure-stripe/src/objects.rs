//! The Stripe API objects Tenure reads, as Stripe returns them, in both API shapes: before
//! 2025-03-31 (`current_period_*` on the subscription, `invoice.subscription`, `line.price`,
//! `line.proration`) and after (periods on subscription items, `parent` and `pricing` on
//! invoices and lines). Only the fields Tenure uses are read; the rest is ignored.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// An expandable reference: Stripe sends an id (`"cus_123"`) or, when expanded, the object;
/// either way the id is what Tenure keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id or an object with an id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Id, A::Error> {
                let mut id = None;
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == "id" {
                        id = Some(m.next_value::<String>()?);
                    } else {
                        m.next_value::<de::IgnoredAny>()?;
                    }
                }
                id.map(Id).ok_or_else(|| de::Error::missing_field("id"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list as Stripe returns it (`{"object":"list","data":[...],"has_more":...}`).
#[derive(Clone, Debug, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List { data: Vec::new(), has_more: false }
    }
}

pub type Metadata = BTreeMap<String, String>;

#[derive(Clone, Debug, Deserialize)]
pub struct Customer {
    /// `customer`, `subscription`, `invoice`: checked when a file's type is guessed.
    #[serde(default)]
    pub object: Option<String>,
    pub id: String,
    pub created: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    /// A deleted customer comes back as `{"id", "object", "deleted": true}`.
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Recurring {
    pub interval: String,
    #[serde(default = "one")]
    pub interval_count: u32,
    /// `licensed` (seats) or `metered` (billed on usage).
    #[serde(default)]
    pub usage_type: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Price {
    pub id: String,
    #[serde(default)]
    pub product: Option<Id>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub lookup_key: Option<String>,
    #[serde(default)]
    pub unit_amount: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub recurring: Option<Recurring>,
    /// `per_unit` or `tiered`.
    #[serde(default)]
    pub billing_scheme: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    /// The older `plan` object names its interval at the top level.
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub interval_count: Option<u32>,
    #[serde(default)]
    pub usage_type: Option<String>,
    #[serde(default)]
    pub amount: Option<i64>,
}

impl Price {
    /// The recurring terms, from `recurring` (prices) or the top level (plans).
    pub fn recurring(&self) -> Option<Recurring> {
        if let Some(r) = &self.recurring {
            return Some(r.clone());
        }
        self.interval.as_ref().map(|i| Recurring {
            interval: i.clone(),
            interval_count: self.interval_count.unwrap_or(1),
            usage_type: self.usage_type.clone(),
        })
    }

    pub fn unit(&self) -> Option<i64> {
        self.unit_amount.or(self.amount)
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct SubscriptionItem {
    pub id: String,
    #[serde(default)]
    pub price: Option<Price>,
    #[serde(default)]
    pub plan: Option<Price>,
    #[serde(default)]
    pub quantity: Option<u64>,
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

impl SubscriptionItem {
    pub fn price(&self) -> Option<&Price> {
        self.price.as_ref().or(self.plan.as_ref())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CancellationDetails {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub feedback: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PauseCollection {
    #[serde(default)]
    pub behavior: Option<String>,
    #[serde(default)]
    pub resumes_at: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Subscription {
    /// `customer`, `subscription`, `invoice`: checked when a file's type is guessed.
    #[serde(default)]
    pub object: Option<String>,
    pub id: String,
    pub customer: Id,
    pub created: i64,
    #[serde(default)]
    pub start_date: Option<i64>,
    pub status: String,
    #[serde(default)]
    pub items: List<SubscriptionItem>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
    /// A number (the scheduled end) or, since 2025-05-28, also an enum on some requests;
    /// on the object it is always the instant.
    #[serde(default)]
    pub cancel_at: Option<i64>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    #[serde(default)]
    pub canceled_at: Option<i64>,
    #[serde(default)]
    pub ended_at: Option<i64>,
    #[serde(default)]
    pub trial_start: Option<i64>,
    #[serde(default)]
    pub trial_end: Option<i64>,
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
    #[serde(default)]
    pub pause_collection: Option<PauseCollection>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub discounts: Vec<DiscountRef>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DiscountAmount {
    pub amount: i64,
    #[serde(default)]
    pub discount: Option<Id>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SubscriptionItemDetails {
    #[serde(default)]
    pub subscription: Option<Id>,
    #[serde(default)]
    pub subscription_item: Option<Id>,
    #[serde(default)]
    pub proration: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InvoiceItemDetails {
    #[serde(default)]
    pub subscription: Option<Id>,
    #[serde(default)]
    pub proration: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LineParent {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub subscription_item_details: Option<SubscriptionItemDetails>,
    #[serde(default)]
    pub invoice_item_details: Option<InvoiceItemDetails>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PriceDetails {
    #[serde(default)]
    pub price: Option<Id>,
    #[serde(default)]
    pub product: Option<Id>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pricing {
    #[serde(default)]
    pub price_details: Option<PriceDetails>,
    #[serde(default)]
    pub unit_amount_decimal: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Line {
    #[serde(default)]
    pub id: String,
    /// Pre-tax, before discounts.
    pub amount: i64,
    #[serde(default)]
    pub currency: Option<String>,
    pub period: Period,
    #[serde(default)]
    pub quantity: Option<u64>,
    #[serde(default)]
    pub discount_amounts: Vec<DiscountAmount>,
    /// Older shape.
    #[serde(default)]
    pub proration: Option<bool>,
    #[serde(default)]
    pub price: Option<Price>,
    #[serde(default)]
    pub plan: Option<Price>,
    #[serde(default)]
    pub subscription: Option<Id>,
    #[serde(default)]
    pub subscription_item: Option<Id>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Newer shape.
    #[serde(default)]
    pub parent: Option<LineParent>,
    #[serde(default)]
    pub pricing: Option<Pricing>,
    /// Older shape: the amount without inclusive taxes, and the taxes.
    #[serde(default)]
    pub amount_excluding_tax: Option<i64>,
    #[serde(default)]
    pub tax_amounts: Vec<TaxAmount>,
    /// Newer shape.
    #[serde(default)]
    pub taxes: Vec<LineTax>,
    /// Set on a line item listed on its own (`/v1/invoices/{id}/lines`).
    #[serde(default)]
    pub invoice: Option<Id>,
}

impl Line {
    pub fn is_proration(&self) -> bool {
        if let Some(p) = self.proration {
            return p;
        }
        let Some(parent) = &self.parent else { return false };
        parent.subscription_item_details.as_ref().is_some_and(|d| d.proration)
            || parent.invoice_item_details.as_ref().is_some_and(|d| d.proration)
    }

    pub fn subscription_item(&self) -> Option<&str> {
        if let Some(i) = &self.subscription_item {
            return Some(&i.0);
        }
        let d = self.parent.as_ref()?.subscription_item_details.as_ref()?;
        d.subscription_item.as_ref().map(|i| i.0.as_str())
    }

    pub fn subscription(&self) -> Option<&str> {
        if let Some(s) = &self.subscription {
            return Some(&s.0);
        }
        let p = self.parent.as_ref()?;
        if let Some(d) = &p.subscription_item_details
            && let Some(s) = &d.subscription
        {
            return Some(&s.0);
        }
        p.invoice_item_details.as_ref()?.subscription.as_ref().map(|s| s.0.as_str())
    }

    /// The line's price object (older shape) or id (newer shape).
    pub fn price_id(&self) -> Option<&str> {
        if let Some(p) = self.price.as_ref().or(self.plan.as_ref()) {
            return Some(&p.id);
        }
        let d = self.pricing.as_ref()?.price_details.as_ref()?;
        d.price.as_ref().map(|p| p.0.as_str())
    }

    pub fn embedded_price(&self) -> Option<&Price> {
        self.price.as_ref().or(self.plan.as_ref())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaxAmount {
    pub amount: i64,
    #[serde(default)]
    pub inclusive: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LineTax {
    pub amount: i64,
    #[serde(default)]
    pub tax_behavior: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct StatusTransitions {
    #[serde(default)]
    pub finalized_at: Option<i64>,
    #[serde(default)]
    pub paid_at: Option<i64>,
    #[serde(default)]
    pub voided_at: Option<i64>,
    #[serde(default)]
    pub marked_uncollectible_at: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SubscriptionDetails {
    #[serde(default)]
    pub subscription: Option<Id>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InvoiceParent {
    #[serde(default)]
    pub subscription_details: Option<SubscriptionDetails>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Invoice {
    /// `customer`, `subscription`, `invoice`: checked when a file's type is guessed.
    #[serde(default)]
    pub object: Option<String>,
    pub id: String,
    pub customer: Id,
    pub created: i64,
    /// draft | open | paid | uncollectible | void
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub billing_reason: Option<String>,
    #[serde(default)]
    pub attempt_count: u32,
    #[serde(default)]
    pub total: Option<i64>,
    #[serde(default)]
    pub total_excluding_tax: Option<i64>,
    #[serde(default)]
    pub subtotal: Option<i64>,
    #[serde(default)]
    pub amount_paid: Option<i64>,
    #[serde(default)]
    pub period_start: Option<i64>,
    #[serde(default)]
    pub period_end: Option<i64>,
    #[serde(default)]
    pub status_transitions: StatusTransitions,
    #[serde(default)]
    pub subscription: Option<Id>,
    #[serde(default)]
    pub parent: Option<InvoiceParent>,
    #[serde(default)]
    pub lines: List<Line>,
    /// Expanded discounts tell their coupon's duration.
    #[serde(default)]
    pub discounts: Vec<DiscountRef>,
}

impl Invoice {
    pub fn subscription(&self) -> Option<&str> {
        if let Some(s) = &self.subscription {
            return Some(&s.0);
        }
        let d = self.parent.as_ref()?.subscription_details.as_ref()?;
        d.subscription.as_ref().map(|s| s.0.as_str())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct CreditNote {
    pub id: String,
    pub invoice: Id,
    pub created: i64,
    #[serde(default)]
    pub customer: Option<Id>,
    /// Credited amount including tax.
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub total_excluding_tax: Option<i64>,
    #[serde(default)]
    pub subtotal_excluding_tax: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    /// issued | void
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Coupon {
    #[serde(default)]
    pub id: String,
    /// once | repeating | forever
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub percent_off: Option<f64>,
    #[serde(default)]
    pub amount_off: Option<i64>,
}

impl Discount {
    pub fn coupon(&self) -> Option<&Coupon> {
        if let Some(c) = &self.coupon {
            return Some(c);
        }
        match self.source.as_ref()?.coupon.as_ref()? {
            CouponRef::Coupon(c) => Some(c),
            CouponRef::Id(_) => None,
        }
    }

    pub fn coupon_id(&self) -> Option<&str> {
        if let Some(c) = &self.coupon {
            return Some(&c.id);
        }
        match self.source.as_ref()?.coupon.as_ref()? {
            CouponRef::Coupon(c) => Some(&c.id),
            CouponRef::Id(i) => Some(i),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DiscountSource {
    #[serde(default)]
    pub coupon: Option<CouponRef>,
}

/// A coupon as an id or an object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum CouponRef {
    Id(String),
    Coupon(Coupon),
}

/// A discount as an id or, expanded, the object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DiscountRef {
    Id(String),
    Discount(Discount),
}

#[derive(Clone, Debug, Deserialize)]
pub struct Discount {
    pub id: String,
    /// Older shape.
    #[serde(default)]
    pub coupon: Option<Coupon>,
    /// Newer shape.
    #[serde(default)]
    pub source: Option<DiscountSource>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}
