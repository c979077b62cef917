//! Tenure's domain vocabulary: instants, periods, exact money and the event model.
//!
//! This crate is pure: no IO, no clock, no serde. Every other crate speaks these types;
//! the wire formats (import files, log records, JSON) convert to and from them at the rim.

pub mod codec;
pub mod event;
pub mod money;
pub mod time;

pub use event::{Event, EventBody, EventKind};
pub use money::{Currency, FxTable, Money};
pub use time::{Period, PeriodUnit, Timestamp};
