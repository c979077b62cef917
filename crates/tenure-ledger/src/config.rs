//! The revenue rules a business chooses (peers.md §3.3), with vendor-compatible presets.

use tenure_core::money::FxTable;

/// When a cancellation stops revenue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChurnRecognition {
    /// At the timestamp of the `canceled` event (or of a scheduled `cancel_at` reached).
    AtEvent,
    /// At the end of the paid term: a line canceled before its `term_end` keeps its MRR
    /// until then (ProfitWell; ChartMogul's "end of final service period").
    TermEnd,
    /// As soon as the cancellation is scheduled (`cancel_at` set): committed MRR.
    Scheduled,
}

/// How a paused line counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseMode {
    /// MRR goes to 0 as a contraction and the account stays a customer; resuming is expansion.
    Contraction,
    /// MRR goes to 0 as churn; resuming is a reactivation.
    Churn,
    /// A paused line keeps its MRR (Polar).
    Keep,
}

#[derive(Clone, Debug)]
pub struct RevenueConfig {
    pub churn_recognition: ChurnRecognition,
    /// A line past due for this many days without recovering churns (involuntary).
    pub past_due_churn_days: Option<u32>,
    /// A return within this many days of churning is a reactivation; later it is new
    /// business. `None`: any return is a reactivation.
    pub reactivation_window_days: Option<u32>,
    /// Changes of one account within this many seconds of the first are one movement.
    pub grouping_window_secs: i64,
    /// A paid account that moves to a free plan has churned (else it stays a customer).
    pub free_is_churn: bool,
    pub pause: PauseMode,
    pub fx: FxTable,
}

/// Named bundles of the settings above, matching how peers behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Tenure,
    ChartMogul,
    Stripe,
    ProfitWell,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Preset> {
        Some(match s {
            "tenure" | "default" => Preset::Tenure,
            "chartmogul" => Preset::ChartMogul,
            "stripe" => Preset::Stripe,
            "profitwell" => Preset::ProfitWell,
            _ => return None,
        })
    }
}

impl RevenueConfig {
    pub fn preset(p: Preset, fx: FxTable) -> RevenueConfig {
        let base = RevenueConfig {
            churn_recognition: ChurnRecognition::AtEvent,
            past_due_churn_days: Some(30),
            reactivation_window_days: None,
            grouping_window_secs: 3600,
            free_is_churn: true,
            pause: PauseMode::Contraction,
            fx,
        };
        match p {
            Preset::Tenure => base,
            Preset::ChartMogul => RevenueConfig {
                past_due_churn_days: None,
                free_is_churn: false,
                pause: PauseMode::Keep,
                ..base
            },
            Preset::Stripe => RevenueConfig {
                past_due_churn_days: None,
                grouping_window_secs: 0,
                pause: PauseMode::Churn,
                ..base
            },
            Preset::ProfitWell => RevenueConfig {
                churn_recognition: ChurnRecognition::TermEnd,
                grouping_window_secs: 0,
                pause: PauseMode::Churn,
                ..base
            },
        }
    }
}
