//! tenure-alerting: the alerting core of the service. Which events and account states raise
//! an alert (`rules`, with the expression language people write rules in, `expr`), the live per-account state the rules read, kept up to date as
//! committed events arrive (`live`), and the `alert` and `task` events a firing becomes
//! (`raise`).
//!
//! **Invariants:** no IO, no clock, no `async`. Whoever runs it (tenure-server) loads the
//! log's history and the usage figures and passes them in, gives every instant (`now`)
//! explicitly, stores the events it returns and delivers the notifications. So the same
//! history and instants always raise the same alerts and tasks, byte for byte, which the
//! scenarios of `tests/scenarios` check.

pub mod expr;
pub mod live;
pub mod raise;
pub mod rules;

pub use live::{DayRow, History, Live, Settings, Settling, Touched, Usage};
pub use raise::{Pending, Raised, raise};
pub use rules::{Firing, Kind, Playbook, Rule, RuleConfig, RuleError, Rules};
