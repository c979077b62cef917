//! The configuration file (`tenure.toml` in the data directory, or `--config`): versioned
//! serde types, validated and turned into each crate's plain settings.

use serde::Deserialize;
use std::collections::BTreeMap;
use tenure_core::money::{Currency, FxTable};
use tenure_core::time::{MICROS, Timestamp};
use tenure_ingest::IngestConfig;
use tenure_kpi::KpiConfig;
use tenure_ledger::{ChurnRecognition, PauseMode, Preset, RevenueConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.to_string(), reason: reason.into() }
}

/// The file format (version 1). Every field is optional; defaults are the `tenure` preset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub version: Option<u32>,
    #[serde(default)]
    pub currency: CurrencySection,
    #[serde(default)]
    pub revenue: RevenueSection,
    #[serde(default)]
    pub kpi: KpiSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub forecast: ForecastSection,
    #[serde(default)]
    pub risk: RiskSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    /// Rates into the base currency: `[fx.EUR]` with `"2024-01-01" = "1.0825"` entries.
    #[serde(default)]
    pub fx: BTreeMap<String, BTreeMap<String, String>>,
    /// The feature catalogue: `[features.reports]` with `tier`, `released`, `plans`.
    #[serde(default)]
    pub features: BTreeMap<String, FeatureSection>,
    /// The service's sections (`tenure serve`: `[service]`, `[[rule]]`, `[[playbook]]`,
    /// `[[notifier]]`, `[oidc]`), read and checked by tenure-server.
    pub service: Option<toml::Value>,
    pub rule: Option<toml::Value>,
    pub playbook: Option<toml::Value>,
    pub notifier: Option<toml::Value>,
    pub oidc: Option<toml::Value>,
}

/// `[forecast]`: the renewal forecast's categories and interval.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSection {
    /// A renewal is `commit` from this probability on (default 0.9).
    pub commit: Option<f64>,
    /// ... `probable` from this one on (default 0.6), else `at_risk`.
    pub probable: Option<f64>,
    /// The probability a total's interval holds (default 0.8).
    pub interval: Option<f64>,
    /// The account attribute naming its CSM (default `csm`).
    pub csm_attribute: Option<String>,
}

/// `[risk]`: what "at risk" means, the same for `tenure risk`, the API and every page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSection {
    /// An account is at risk from this churn probability on (default 0.2).
    pub at_risk: Option<f64>,
}

/// `[cluster]`: where the columnar side (usage rollups, usage figures, `tenure sql`) runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// An Apache DataFusion Ballista scheduler, `df://HOST:PORT` (port 50050 if left out);
    /// absent, the plans run in this process.
    pub scheduler: Option<String>,
    /// Partitions a plan's data is split into on the cluster (default 16, Ballista's):
    /// about the cluster's cores, so every executor has a share.
    pub partitions: Option<u32>,
}

/// The cluster's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub scheduler: Scheduler,
    pub partitions: usize,
}

/// A Ballista scheduler's address, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler {
    pub host: String,
    pub port: u16,
}

impl Scheduler {
    /// Ballista's default scheduler port.
    pub const DEFAULT_PORT: u16 = 50050;

    /// Reads `df://HOST[:PORT]` (an IPv6 host in brackets).
    pub fn parse(s: &str) -> Result<Scheduler, String> {
        let rest = s
            .strip_prefix("df://")
            .ok_or_else(|| format!("{s:?} is not a df://HOST:PORT address"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))?;
                (h, port)
            }
            _ => (rest, Scheduler::DEFAULT_PORT),
        };
        let ok = match host.strip_prefix('[') {
            // An IPv6 address, in brackets as in a URL.
            Some(v6) => {
                v6.strip_suffix(']').is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
            }
            None => {
                !host.is_empty()
                    && host.len() <= 253
                    && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
            }
        };
        if !ok {
            return Err(format!("{host:?} is not a host name or address"));
        }
        Ok(Scheduler { host: host.to_string(), port })
    }
}

/// The forecast's settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastConfig {
    pub commit: f64,
    pub probable: f64,
    pub interval: f64,
    pub csm_attribute: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSection {
    /// basic (default) | advanced: advanced features make advanced users.
    pub tier: Option<String>,
    /// Release date: usage before it does not count towards adoption.
    pub released: Option<String>,
    /// Plans that include the feature (default: every plan); use on other plans is use
    /// outside the subscription.
    #[serde(default)]
    pub plans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencySection {
    /// Reporting currency (default USD).
    pub base: Option<String>,
    /// Currency of amounts that name none (default: the base currency).
    pub default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevenueSection {
    /// tenure | chartmogul | stripe | profitwell: a bundle of the settings below.
    pub preset: Option<String>,
    /// at_event | term_end | scheduled
    pub churn_recognition: Option<String>,
    /// Days past due before involuntary churn; 0 = never.
    pub past_due_churn_days: Option<u32>,
    /// Days after churn within which a return is a reactivation; absent = always.
    pub reactivation_window_days: Option<u32>,
    pub grouping_window_minutes: Option<u32>,
    pub free_is_churn: Option<bool>,
    /// contraction | churn | keep
    pub pause: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiSection {
    /// Gross margin for CLTV, 0 < m <= 1 (default 1).
    pub gross_margin: Option<f64>,
    /// Lowest CSAT score counted as satisfied (default: the top two points of the scale).
    pub csat_satisfied_min: Option<u8>,
    /// Fee change year over year at or below which an account's fees are declining
    /// (default -0.2, i.e. -20%).
    pub fee_decline: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub max_line_bytes: Option<usize>,
    /// How far in the future an event may be stamped (hours, default 24).
    pub max_future_skew_hours: Option<u32>,
    /// Inclusive CSAT scale, default [1, 10].
    pub csat_scale: Option<[u8; 2]>,
}

/// The churn probability from which an account is at risk, unless `[risk] at_risk` says
/// otherwise.
pub const DEFAULT_AT_RISK: f64 = 0.2;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub revenue: RevenueConfig,
    pub kpi: KpiConfig,
    pub default_currency: Currency,
    pub max_line_bytes: usize,
    pub max_future_skew_micros: i64,
    pub csat_scale: (u8, u8),
    pub forecast: ForecastConfig,
    /// An account is at risk from this churn probability on (`[risk] at_risk`).
    pub at_risk: f64,
    /// The Ballista cluster the columnar plans run on (`[cluster]`), if any.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    pub fn defaults() -> Config {
        Config::from_file(ConfigFile::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        Config::from_file(file)
    }

    pub fn from_file(f: ConfigFile) -> Result<Config, ConfigError> {
        if let Some(v) = f.version
            && v != 1
        {
            return Err(invalid(
                "version",
                format!("unsupported version {v} (this build reads 1)"),
            ));
        }
        let cur = |field: &str, s: &Option<String>, default: Currency| match s {
            None => Ok(default),
            Some(s) => Currency::parse(s)
                .ok_or_else(|| invalid(field, format!("{s:?} is not an ISO 4217 code"))),
        };
        let base = cur("currency.base", &f.currency.base, Currency::USD)?;
        let default_currency = cur("currency.default", &f.currency.default, base)?;
        let mut fx = FxTable::new(base);
        for (code, rates) in &f.fx {
            let c = Currency::parse(code)
                .ok_or_else(|| invalid(&format!("fx.{code}"), "not an ISO 4217 code"))?;
            for (date, rate) in rates {
                let field = format!("fx.{code}.{date}");
                let from = Timestamp::parse(date).map_err(|e| invalid(&field, e.to_string()))?;
                fx.add(c, from, rate).map_err(|e| invalid(&field, e.to_string()))?;
            }
        }
        let r = &f.revenue;
        let preset = match &r.preset {
            None => Preset::Tenure,
            Some(p) => Preset::parse(p).ok_or_else(|| {
                invalid(
                    "revenue.preset",
                    format!(
                        "unknown preset {p:?} (expected tenure | chartmogul | stripe | profitwell)"
                    ),
                )
            })?,
        };
        let mut revenue = RevenueConfig::preset(preset, fx);
        if let Some(s) = &r.churn_recognition {
            revenue.churn_recognition = match s.as_str() {
                "at_event" => ChurnRecognition::AtEvent,
                "term_end" => ChurnRecognition::TermEnd,
                "scheduled" => ChurnRecognition::Scheduled,
                _ => {
                    return Err(invalid(
                        "revenue.churn_recognition",
                        format!("unknown value {s:?} (expected at_event | term_end | scheduled)"),
                    ));
                }
            };
        }
        if let Some(d) = r.past_due_churn_days {
            revenue.past_due_churn_days = if d == 0 { None } else { Some(d) };
        }
        if r.reactivation_window_days.is_some() {
            revenue.reactivation_window_days = r.reactivation_window_days;
        }
        if let Some(m) = r.grouping_window_minutes {
            revenue.grouping_window_secs = m as i64 * 60;
        }
        if let Some(b) = r.free_is_churn {
            revenue.free_is_churn = b;
        }
        if let Some(s) = &r.pause {
            revenue.pause = match s.as_str() {
                "contraction" => PauseMode::Contraction,
                "churn" => PauseMode::Churn,
                "keep" => PauseMode::Keep,
                _ => {
                    return Err(invalid(
                        "revenue.pause",
                        format!("unknown value {s:?} (expected contraction | churn | keep)"),
                    ));
                }
            };
        }
        let gross_margin = f.kpi.gross_margin.unwrap_or(1.0);
        if !(gross_margin > 0.0 && gross_margin <= 1.0) {
            return Err(invalid("kpi.gross_margin", format!("{gross_margin} is not in (0, 1]")));
        }
        let csat = f.ingest.csat_scale.unwrap_or([1, 10]);
        if csat[0] >= csat[1] {
            return Err(invalid("ingest.csat_scale", "the low end must be below the high end"));
        }
        if let Some(m) = f.kpi.csat_satisfied_min
            && !(csat[0]..=csat[1]).contains(&m)
        {
            return Err(invalid(
                "kpi.csat_satisfied_min",
                format!("{m} is outside the CSAT scale {}..={}", csat[0], csat[1]),
            ));
        }
        let fee_decline = f.kpi.fee_decline.unwrap_or(-0.2);
        if !(-1.0..=0.0).contains(&fee_decline) {
            return Err(invalid("kpi.fee_decline", format!("{fee_decline} is not in [-1, 0]")));
        }
        let mut features = Vec::new();
        for (name, f) in &f.features {
            let field = |k: &str| format!("features.{name}.{k}");
            let advanced = match f.tier.as_deref() {
                None | Some("basic") => false,
                Some("advanced") => true,
                Some(t) => {
                    return Err(invalid(
                        &field("tier"),
                        format!("unknown tier {t:?} (expected basic | advanced)"),
                    ));
                }
            };
            let released = match &f.released {
                None => None,
                Some(d) => Some(
                    Timestamp::parse(d).map_err(|e| invalid(&field("released"), e.to_string()))?,
                ),
            };
            features.push(tenure_kpi::usage::Feature {
                name: name.clone(),
                advanced,
                released,
                plans: f.plans.clone(),
            });
        }
        let fc = &f.forecast;
        let forecast = ForecastConfig {
            commit: fc.commit.unwrap_or(0.9),
            probable: fc.probable.unwrap_or(0.6),
            interval: fc.interval.unwrap_or(0.8),
            csm_attribute: fc.csm_attribute.clone().unwrap_or_else(|| "csm".into()),
        };
        if !(forecast.probable > 0.0
            && forecast.probable < forecast.commit
            && forecast.commit <= 1.0)
        {
            return Err(invalid(
                "forecast.commit",
                format!(
                    "expected 0 < probable ({}) < commit ({}) <= 1",
                    forecast.probable, forecast.commit
                ),
            ));
        }
        if !(forecast.interval > 0.0 && forecast.interval < 1.0) {
            return Err(invalid(
                "forecast.interval",
                format!("{} is not in (0, 1)", forecast.interval),
            ));
        }
        if forecast.csm_attribute.trim().is_empty() {
            return Err(invalid("forecast.csm_attribute", "must not be empty"));
        }
        let at_risk = f.risk.at_risk.unwrap_or(DEFAULT_AT_RISK);
        if !(at_risk > 0.0 && at_risk < 1.0) {
            return Err(invalid("risk.at_risk", format!("{at_risk} is not in (0, 1)")));
        }
        let partitions = f.cluster.partitions.unwrap_or(16);
        if !(1..=4096).contains(&partitions) {
            return Err(invalid("cluster.partitions", format!("{partitions} is not in 1..=4096")));
        }
        let cluster = match &f.cluster.scheduler {
            None if f.cluster.partitions.is_some() => {
                return Err(invalid("cluster.partitions", "needs cluster.scheduler"));
            }
            None => None,
            Some(s) => Some(ClusterConfig {
                scheduler: Scheduler::parse(s).map_err(|e| invalid("cluster.scheduler", e))?,
                partitions: partitions as usize,
            }),
        };
        Ok(Config {
            at_risk,
            cluster,
            forecast,
            revenue,
            kpi: KpiConfig {
                gross_margin,
                csat_satisfied_min: f
                    .kpi
                    .csat_satisfied_min
                    .unwrap_or(csat[1].saturating_sub(1).max(csat[0])),
                fee_decline,
                features,
            },
            default_currency,
            max_line_bytes: f.ingest.max_line_bytes.unwrap_or(64 * 1024),
            max_future_skew_micros: f.ingest.max_future_skew_hours.unwrap_or(24) as i64
                * 3600
                * MICROS,
            csat_scale: (csat[0], csat[1]),
        })
    }

    /// Validation settings for input received at `now`.
    pub fn ingest(&self, now: Option<Timestamp>) -> IngestConfig {
        IngestConfig {
            default_currency: self.default_currency,
            max_line_bytes: self.max_line_bytes,
            now,
            max_future_skew_micros: self.max_future_skew_micros,
            csat_scale: self.csat_scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid_and_means_the_defaults() {
        let text = include_str!("../../../config/tenure.example.toml");
        let c = Config::parse(text).unwrap();
        let d = Config::defaults();
        assert_eq!(
            format!("{:?}", c.revenue.churn_recognition),
            format!("{:?}", d.revenue.churn_recognition)
        );
        assert_eq!(c.revenue.past_due_churn_days, d.revenue.past_due_churn_days);
        assert_eq!(c.revenue.grouping_window_secs, d.revenue.grouping_window_secs);
        assert_eq!(c.revenue.free_is_churn, d.revenue.free_is_churn);
        assert_eq!(c.revenue.pause, d.revenue.pause);
        assert_eq!(
            (c.max_line_bytes, c.max_future_skew_micros, c.csat_scale),
            (d.max_line_bytes, d.max_future_skew_micros, d.csat_scale)
        );
        assert_eq!((c.at_risk, d.at_risk), (DEFAULT_AT_RISK, DEFAULT_AT_RISK));
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(
            c.revenue.fx.convert(100, eur, Timestamp::parse("2024-01-01").unwrap()),
            Some(110)
        );
    }

    #[test]
    fn reads_and_validates() {
        let c = Config::parse(
            r#"
            version = 1
            [currency]
            base = "eur"
            [revenue]
            preset = "chartmogul"
            past_due_churn_days = 45
            [fx.USD]
            "2024-01-01" = "0.92"
            [kpi]
            gross_margin = 0.8
            "#,
        )
        .unwrap();
        assert_eq!(c.revenue.fx.base.as_str(), "EUR");
        assert_eq!(c.default_currency.as_str(), "EUR");
        assert_eq!(c.revenue.past_due_churn_days, Some(45));
        assert_eq!(c.cluster, None);
        assert!(!c.revenue.free_is_churn);
        assert_eq!(
            c.revenue.fx.convert(10_000, Currency::USD, Timestamp::parse("2024-06-01").unwrap()),
            Some(9_200)
        );
        for (bad, msg) in [
            ("[revenue]\npreset = \"baremetrics\"", "revenue.preset: unknown preset"),
            ("[revenue]\npause = \"sleep\"", "revenue.pause: unknown value"),
            ("[kpi]\ngross_margin = 1.5", "kpi.gross_margin: 1.5 is not in (0, 1]"),
            ("[fx.EUR]\n\"2024-13-01\" = \"1\"", "fx.EUR.2024-13-01"),
            ("[revenue]\nchurn_recognition = \"later\"", "revenue.churn_recognition"),
            ("colour = 1", "unknown field"),
            ("version = 2", "unsupported version 2"),
            ("[risk]\nat_risk = 1.0", "risk.at_risk: 1 is not in (0, 1)"),
            ("[risk]\nat_risk = 0", "risk.at_risk: 0 is not in (0, 1)"),
            (
                "[cluster]\nscheduler = \"http://h:1\"",
                "cluster.scheduler: \"http://h:1\" is not a df://",
            ),
            ("[cluster]\nscheduler = \"df://h:0\"", "cluster.scheduler: \"0\" is not a port"),
            ("[cluster]\nscheduler = \"df://h:70000\"", "is not a port"),
            ("[cluster]\nscheduler = \"df://:50050\"", "is not a host"),
            ("[cluster]\nscheduler = \"df://a b:1\"", "is not a host"),
            ("[cluster]\nscheduler = \"df://::1\"", "is not a host"),
            ("[cluster]\nscheduler = \"df://[::1\"", "is not a host"),
            ("[cluster]\nscheduler = \"df://[abc]:1\"", "is not a host"),
            ("[cluster]\nscheduler = \"df://h]:1\"", "is not a host"),
            ("[cluster]\nnodes = 3", "unknown field"),
            ("[cluster]\npartitions = 0", "cluster.partitions: 0 is not in 1..=4096"),
            ("[cluster]\npartitions = 4", "cluster.partitions: needs cluster.scheduler"),
        ] {
            let e = Config::parse(bad).unwrap_err().to_string();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn reads_a_scheduler_address() {
        let at = |s: &str| {
            let c = Config::parse(&format!("[cluster]\nscheduler = {s:?}")).unwrap();
            c.cluster.map(|c| (c.scheduler.host, c.scheduler.port, c.partitions)).unwrap()
        };
        assert_eq!(at("df://localhost:50051"), ("localhost".into(), 50051, 16));
        assert_eq!(at("df://10.0.0.5"), ("10.0.0.5".into(), 50050, 16));
        assert_eq!(at("df://sched.internal:7/"), ("sched.internal".into(), 7, 16));
        assert_eq!(at("df://[::1]:9000"), ("[::1]".into(), 9000, 16));
        assert_eq!(at("df://[::1]"), ("[::1]".into(), 50050, 16));
        let c = Config::parse("[cluster]\nscheduler = \"df://h\"\npartitions = 64").unwrap();
        assert_eq!(c.cluster.map(|c| c.partitions), Some(64));
    }
}
