//! Stripe in: a Stripe export (API objects as Stripe returns them, or the Dashboard's CSV
//! exports) becomes contract events with its whole revenue history (`history`), webhooks
//! are verified and mapped as they arrive (`webhook`), and `synth` writes a company's
//! events out as the Stripe objects Stripe would hold for it (`tenure gen --format stripe`).
//! Pure: text in, rows out; no files, network or clock.

pub mod dashboard;
pub mod history;
pub mod load;
pub mod objects;
pub mod synth;
pub mod webhook;

pub use history::{Converted, Converter, Fields, Options, Row, RowEvent, convert};
pub use load::{Export, Origin, Problem};
