//! The Stripe API objects Tenure reads, as Stripe returns them, in both API shapes: before
//! 2025-03-31 (`current_period_*` on the subscription, `invoice.subscription`, `line.price`,
//! `line.proration`) and after (periods on subscription items, `parent` and `pricing` on
//! invoices and lines). Only the fields Tenure uses are read; the rest is ignored.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A string of an object, borrowed from the text it was parsed from when it holds no
/// escapes (a file of one object a line, a webhook's event: a large export's strings are
/// then never copied) and owned otherwise (escapes, items of list documents, CSV exports).
/// Compares, hashes and orders as the `str` it is.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl From<String> for Str<'_> {
    fn from(s: String) -> Self {
        Str(Cow::Owned(s))
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

impl serde::Serialize for Str<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

/// An expandable reference: Stripe sends an id (`"cus_123"`) or, when expanded, the object;
/// either way the id is what Tenure keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id<'a>(pub Str<'a>);

impl Id<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id<'a>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id or an object with an id")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Id<'de>, E> {
                StrVisitor.visit_borrowed_str(v).map(Id)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id<'de>, E> {
                StrVisitor.visit_str(v).map(Id)
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id<'de>, E> {
                StrVisitor.visit_string(v).map(Id)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Id<'de>, A::Error> {
                let mut id = None;
                while let Some(k) = m.next_key::<Str<'de>>()? {
                    if k == "id" {
                        id = Some(m.next_value::<Str<'de>>()?);
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

pub type Metadata<'a> = BTreeMap<Str<'a>, Str<'a>>;

#[derive(Clone, Debug, Deserialize)]
pub struct Customer<'a> {
    /// `customer`, `subscription`, `invoice`: checked when a file's type is guessed.
    #[serde(default)]
    #[serde(borrow)]
    pub object: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Str<'a>,
    pub created: i64,
    #[serde(default)]
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub description: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub email: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
    /// A deleted customer comes back as `{"id", "object", "deleted": true}`.
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Recurring<'a> {
    #[serde(borrow)]
    pub interval: Str<'a>,
    #[serde(default = "one")]
    pub interval_count: u32,
    /// `licensed` (seats) or `metered` (billed on usage).
    #[serde(default)]
    #[serde(borrow)]
    pub usage_type: Option<Str<'a>>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Price<'a> {
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(default)]
    #[serde(borrow)]
    pub product: Option<Id<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub nickname: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub lookup_key: Option<Str<'a>>,
    #[serde(default)]
    pub unit_amount: Option<i64>,
    #[serde(default)]
    #[serde(borrow)]
    pub currency: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub recurring: Option<Recurring<'a>>,
    /// `per_unit` or `tiered`.
    #[serde(default)]
    #[serde(borrow)]
    pub billing_scheme: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
    /// The older `plan` object names its interval at the top level.
    #[serde(default)]
    #[serde(borrow)]
    pub interval: Option<Str<'a>>,
    #[serde(default)]
    pub interval_count: Option<u32>,
    #[serde(default)]
    #[serde(borrow)]
    pub usage_type: Option<Str<'a>>,
    #[serde(default)]
    pub amount: Option<i64>,
}

impl<'a> Price<'a> {
    /// The recurring terms, from `recurring` (prices) or the top level (plans).
    pub fn recurring(&self) -> Option<Recurring<'_>> {
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
pub struct SubscriptionItem<'a> {
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(default)]
    #[serde(borrow)]
    pub price: Option<Price<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub plan: Option<Price<'a>>,
    #[serde(default)]
    pub quantity: Option<u64>,
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

impl<'a> SubscriptionItem<'a> {
    pub fn price(&self) -> Option<&Price<'_>> {
        self.price.as_ref().or(self.plan.as_ref())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CancellationDetails<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub reason: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub feedback: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub comment: Option<Str<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PauseCollection<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub behavior: Option<Str<'a>>,
    #[serde(default)]
    pub resumes_at: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Subscription<'a> {
    /// `customer`, `subscription`, `invoice`: checked when a file's type is guessed.
    #[serde(default)]
    #[serde(borrow)]
    pub object: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub customer: Id<'a>,
    pub created: i64,
    #[serde(default)]
    pub start_date: Option<i64>,
    #[serde(borrow)]
    pub status: Str<'a>,
    #[serde(default)]
    #[serde(borrow)]
    pub items: List<SubscriptionItem<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub currency: Option<Str<'a>>,
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
    #[serde(borrow)]
    pub cancellation_details: Option<CancellationDetails<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub pause_collection: Option<PauseCollection<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
    #[serde(default)]
    #[serde(borrow)]
    pub discounts: Vec<DiscountRef<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DiscountAmount<'a> {
    pub amount: i64,
    #[serde(default)]
    #[serde(borrow)]
    pub discount: Option<Id<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SubscriptionItemDetails<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub subscription: Option<Id<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub subscription_item: Option<Id<'a>>,
    #[serde(default)]
    pub proration: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InvoiceItemDetails<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub subscription: Option<Id<'a>>,
    #[serde(default)]
    pub proration: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LineParent<'a> {
    #[serde(default, rename = "type")]
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub subscription_item_details: Option<SubscriptionItemDetails<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub invoice_item_details: Option<InvoiceItemDetails<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PriceDetails<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub price: Option<Id<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub product: Option<Id<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pricing<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub price_details: Option<PriceDetails<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub unit_amount_decimal: Option<Str<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Line<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub id: Str<'a>,
    /// Pre-tax, before discounts.
    pub amount: i64,
    #[serde(default)]
    #[serde(borrow)]
    pub currency: Option<Str<'a>>,
    pub period: Period,
    #[serde(default)]
    pub quantity: Option<u64>,
    #[serde(default)]
    #[serde(borrow)]
    pub discount_amounts: Vec<DiscountAmount<'a>>,
    /// Older shape.
    #[serde(default)]
    pub proration: Option<bool>,
    #[serde(default)]
    #[serde(borrow)]
    pub price: Option<Price<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub plan: Option<Price<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub subscription: Option<Id<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub subscription_item: Option<Id<'a>>,
    #[serde(default, rename = "type")]
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    /// Newer shape.
    #[serde(default)]
    #[serde(borrow)]
    pub parent: Option<LineParent<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub pricing: Option<Pricing<'a>>,
    /// Older shape: the amount without inclusive taxes, and the taxes.
    #[serde(default)]
    pub amount_excluding_tax: Option<i64>,
    #[serde(default)]
    pub tax_amounts: Vec<TaxAmount>,
    /// Newer shape.
    #[serde(default)]
    #[serde(borrow)]
    pub taxes: Vec<LineTax<'a>>,
    /// Set on a line item listed on its own (`/v1/invoices/{id}/lines`).
    #[serde(default)]
    #[serde(borrow)]
    pub invoice: Option<Id<'a>>,
}

impl<'a> Line<'a> {
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

    pub fn embedded_price(&self) -> Option<&Price<'_>> {
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
pub struct LineTax<'a> {
    pub amount: i64,
    #[serde(default)]
    #[serde(borrow)]
    pub tax_behavior: Option<Str<'a>>,
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
pub struct SubscriptionDetails<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub subscription: Option<Id<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InvoiceParent<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub subscription_details: Option<SubscriptionDetails<'a>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Invoice<'a> {
    /// `customer`, `subscription`, `invoice`: checked when a file's type is guessed.
    #[serde(default)]
    #[serde(borrow)]
    pub object: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub customer: Id<'a>,
    pub created: i64,
    /// draft | open | paid | uncollectible | void
    #[serde(default)]
    #[serde(borrow)]
    pub status: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub currency: Option<Str<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub billing_reason: Option<Str<'a>>,
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
    #[serde(borrow)]
    pub subscription: Option<Id<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub parent: Option<InvoiceParent<'a>>,
    #[serde(default)]
    #[serde(borrow)]
    pub lines: List<Line<'a>>,
    /// Expanded discounts tell their coupon's duration.
    #[serde(default)]
    #[serde(borrow)]
    pub discounts: Vec<DiscountRef<'a>>,
}

impl<'a> Invoice<'a> {
    pub fn subscription(&self) -> Option<&str> {
        if let Some(s) = &self.subscription {
            return Some(&s.0);
        }
        let d = self.parent.as_ref()?.subscription_details.as_ref()?;
        d.subscription.as_ref().map(|s| s.0.as_str())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct CreditNote<'a> {
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub invoice: Id<'a>,
    pub created: i64,
    #[serde(default)]
    #[serde(borrow)]
    pub customer: Option<Id<'a>>,
    /// Credited amount including tax.
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub total_excluding_tax: Option<i64>,
    #[serde(default)]
    pub subtotal_excluding_tax: Option<i64>,
    #[serde(default)]
    #[serde(borrow)]
    pub currency: Option<Str<'a>>,
    /// issued | void
    #[serde(default)]
    #[serde(borrow)]
    pub status: Option<Str<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Coupon<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub id: Str<'a>,
    /// once | repeating | forever
    #[serde(default)]
    #[serde(borrow)]
    pub duration: Option<Str<'a>>,
    #[serde(default)]
    pub percent_off: Option<f64>,
    #[serde(default)]
    pub amount_off: Option<i64>,
}

impl<'a> Discount<'a> {
    pub fn coupon(&self) -> Option<&Coupon<'_>> {
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
pub struct DiscountSource<'a> {
    #[serde(default)]
    #[serde(borrow)]
    pub coupon: Option<CouponRef<'a>>,
}

/// A coupon as an id or an object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum CouponRef<'a> {
    Id(#[serde(borrow)] Str<'a>),
    Coupon(#[serde(borrow)] Coupon<'a>),
}

/// A discount as an id or, expanded, the object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DiscountRef<'a> {
    Id(#[serde(borrow)] Str<'a>),
    Discount(#[serde(borrow)] Discount<'a>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct Discount<'a> {
    #[serde(borrow)]
    pub id: Str<'a>,
    /// Older shape.
    #[serde(default)]
    #[serde(borrow)]
    pub coupon: Option<Coupon<'a>>,
    /// Newer shape.
    #[serde(default)]
    #[serde(borrow)]
    pub source: Option<DiscountSource<'a>>,
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
