//! The service's settings: limits on requests, the `[service]`, `[[rule]]`, `[[playbook]]`
//! and `[[notifier]]` sections of the configuration file, and how to start it.

use crate::{notify, rules};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tenure_core::time::Timestamp;
use tenure_ingest::IngestConfig;

/// Limits on what a client may hold or send (each also a `[service]` setting).
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request body, bytes (a Segment batch is at most 500 KB).
    pub request_bytes: usize,
    /// Requests waiting for the writer before new ones wait to be queued.
    pub queue: usize,
    /// How long a connection may take to send a request's headers, idle keep-alive time
    /// included (a connection that sends nothing is closed after it).
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive whole (408 after it).
    pub body_timeout: Duration,
    /// Open connections at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Requests in flight at once; more are answered 503 `overloaded`.
    pub max_requests: usize,
    /// Rows an answer of `/api/v1/kpis` may hold (sub-periods times cuts).
    pub max_kpi_rows: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_bytes: 8 << 20,
            queue: 256,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_requests: 512,
            max_kpi_rows: 20_000,
        }
    }
}

impl Limits {
    /// These limits with the `[service]` section's settings over them.
    pub fn with_service(mut self, s: &ServiceSection) -> Limits {
        let secs = |v: u64| Duration::from_secs(v.max(1));
        if let Some(v) = s.header_timeout_secs {
            self.header_timeout = secs(v);
        }
        if let Some(v) = s.body_timeout_secs {
            self.body_timeout = secs(v);
        }
        if let Some(v) = s.max_connections {
            self.max_connections = v.max(1);
        }
        if let Some(v) = s.max_requests {
            self.max_requests = v.max(1);
        }
        if let Some(v) = s.max_kpi_rows {
            self.max_kpi_rows = v.max(1);
        }
        self
    }
}

/// The clock the service reads (injected, so tests are deterministic).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// `[service]` of the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Minutes between full re-evaluations of every account (health moves with time even
    /// without events) [60].
    #[serde(default = "default_refresh")]
    pub refresh_minutes: u64,
    /// The dashboard's address, for links in notifications.
    pub public_url: Option<String>,
    /// The trait or property naming the account of Segment calls without a groupId.
    pub segment_account_trait: Option<String>,
    /// Immediate rules skip events older than this many days [7].
    pub immediate_horizon_days: Option<i64>,
    /// Seconds a connection may take to send a request's headers, idle keep-alive time
    /// included [30].
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request's body may take to arrive whole [60].
    pub body_timeout_secs: Option<u64>,
    /// Open connections at once; more wait until one closes [1024].
    pub max_connections: Option<usize>,
    /// Requests in flight at once; more are answered 503 `overloaded` [512].
    pub max_requests: Option<usize>,
    /// Rows an answer of `/api/v1/kpis` may hold (sub-periods times cuts) [20000].
    pub max_kpi_rows: Option<usize>,
    /// The signing secret of the Stripe webhook endpoint (`whsec_...`); without it
    /// `POST /webhooks/stripe` answers 404.
    pub stripe_webhook_secret: Option<String>,
    /// Seconds a Stripe signature's timestamp may be from now [300, Stripe's default].
    pub stripe_tolerance_secs: Option<i64>,
    /// Group Stripe customers into the account named by this metadata key, as
    /// `tenure import --from stripe --account-key` does.
    pub stripe_account_key: Option<String>,
    /// Hours between remakes of the renewal forecast the service shows
    /// (DATA/models/forecast.json, as `tenure forecast --save` writes it); 0 = never [24].
    pub forecast_refresh_hours: Option<u64>,
    /// Minutes after start before the first remake, when the saved forecast is older than
    /// `forecast_refresh_hours` or missing (a start is busy enough) [10].
    pub forecast_delay_minutes: Option<u64>,
    /// When the evaluation at start, or after a bulk batch of events, would open more than
    /// this many new tasks for one rule, it opens none: those alerts go into a digest the
    /// inbox shows [20].
    pub digest_above: Option<usize>,
    /// The hour (UTC, 0-23) at which each person's daily digest of new and overdue tasks
    /// goes to the notifiers that take digests [8].
    pub daily_digest_hour: Option<u8>,
    /// Whether the live state is saved when the service stops (DATA/state/live.state), so
    /// that the next start reads it instead of replaying the log [true].
    pub save_state: Option<bool>,
    /// How often the live state is also saved while the service runs, in minutes, so that
    /// a start after a crash reads a recent one [60; 0: only at the stop]. The applier
    /// takes no events while it saves (seconds at a million accounts).
    pub save_state_minutes: Option<u64>,
}

fn default_refresh() -> u64 {
    60
}

impl Default for ServiceSection {
    fn default() -> ServiceSection {
        ServiceSection {
            refresh_minutes: 60,
            public_url: None,
            segment_account_trait: None,
            immediate_horizon_days: None,
            header_timeout_secs: None,
            body_timeout_secs: None,
            max_connections: None,
            max_requests: None,
            max_kpi_rows: None,
            stripe_webhook_secret: None,
            stripe_tolerance_secs: None,
            stripe_account_key: None,
            forecast_refresh_hours: None,
            forecast_delay_minutes: None,
            digest_above: None,
            daily_digest_hour: None,
            save_state: None,
            save_state_minutes: None,
        }
    }
}

/// The service's sections of the configuration file (`tenure serve --config FILE`, by
/// default DATA/tenure.toml): rules, playbooks, notifiers. The file's other sections are
/// the engine's (tenure-engine checks them).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceConfig {
    #[serde(default)]
    pub service: ServiceSection,
    #[serde(default, rename = "rule")]
    pub rules: Vec<rules::RuleConfig>,
    #[serde(default, rename = "playbook")]
    pub playbooks: Vec<rules::Playbook>,
    #[serde(default, rename = "notifier")]
    pub notifiers: Vec<notify::NotifierConfig>,
    /// Single sign-on (`[oidc]`).
    #[serde(default)]
    pub oidc: Option<crate::oidc::OidcConfig>,
}

impl ServiceConfig {
    pub fn parse(text: &str) -> Result<ServiceConfig, String> {
        let c: ServiceConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(h) = c.service.daily_digest_hour
            && h > 23
        {
            return Err(format!("[service] daily_digest_hour = {h}: an hour of the day, 0-23"));
        }
        rules::Rules::from_config(&c.rules, c.playbooks.clone()).map_err(|e| e.to_string())?;
        for n in &c.notifiers {
            n.validate().map_err(|e| e.to_string())?;
        }
        Ok(c)
    }
}

/// How to start the service.
pub struct Options {
    pub engine: tenure_engine::Config,
    pub ingest: IngestConfig,
    pub limits: Limits,
    pub clock: Clock,
    pub config: ServiceConfig,
    /// Tests only: called with each batch before the applier applies it.
    #[doc(hidden)]
    pub fault: Option<crate::Fault>,
    /// Between the daily digest's checks of the clock (a minute; tests shorten it).
    #[doc(hidden)]
    pub digest_poll: std::time::Duration,
    /// Tests only: called on the thread that replays a saved state's history, before it
    /// does (a test holds it there to send events while the state is warming).
    #[doc(hidden)]
    pub history_gate: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
    /// Tests only: how often the live state is saved while running, in place of
    /// `[service] save_state_minutes`.
    pub save_every: Option<std::time::Duration>,
}

impl Options {
    /// Defaults, with `clock`.
    pub fn new(clock: Clock) -> Options {
        Options {
            engine: tenure_engine::Config::defaults(),
            ingest: IngestConfig::defaults(None),
            limits: Limits::default(),
            clock,
            config: ServiceConfig::default(),
            fault: None,
            digest_poll: std::time::Duration::from_secs(60),
            history_gate: None,
            save_every: None,
        }
    }
}
