//! Health scorecards: measures read from features, each scaled to 0-100 by thresholds or a
//! linear ramp, weighted (weights are normalised), with colour bands and an explicit rule
//! for missing values. Scorecards of several dimensions (adoption, relationship, ...) roll
//! up into one score by weights: the roll-up is itself a scorecard whose measures read the
//! dimensions' scores. Configured in TOML; every score comes with each measure's part.

use crate::HealthError;
use crate::features::{self, Row};
use serde::Deserialize;

/// How a measure's value becomes a 0-100 score.
#[derive(Clone, Debug, PartialEq)]
pub enum Scale {
    /// `(min value, score)` steps, ascending by value: the score of the last step at or below
    /// the value (below the first step: the first step's score).
    Points(Vec<(f64, f64)>),
    /// Linear from the value scoring 0 to the value scoring 100, clamped (reversed when the
    /// first is the larger).
    Linear(f64, f64),
}

impl Scale {
    pub fn score(&self, v: f64) -> f64 {
        match self {
            Scale::Points(p) => p.iter().take_while(|(x, _)| *x <= v).last().unwrap_or(&p[0]).1,
            Scale::Linear(a, b) => (100.0 * (v - a) / (b - a)).clamp(0.0, 100.0),
        }
    }
}

/// What a missing value counts as.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Missing {
    /// Left out; the other measures' weights grow to fill its place.
    Redistribute,
    /// Scored as this value (0-100).
    Score(f64),
}

/// What a measure reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Reads {
    /// The numeric feature of this index.
    Feature(usize),
    /// A dimension's score: that of the first of these scorecards that applies (a roll-up's
    /// measures read these).
    Dimension(Vec<Scorecard>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    pub name: String,
    pub reads: Reads,
    pub weight: f64,
    pub scale: Scale,
    /// This measure's own missing rule, else the scorecard's.
    pub missing: Option<Missing>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scorecard {
    pub name: String,
    pub description: String,
    /// Segments (attribute values) it applies to; empty = every account.
    pub segments: Vec<String>,
    /// The lifecycle stage it applies to: months since the first payment in `[from, to)`.
    pub tenure_months: Option<(f64, f64)>,
    pub measures: Vec<Measure>,
    pub missing: Missing,
    /// Scores below `red` are red, below `yellow` yellow, the rest green.
    pub red: f64,
    pub yellow: f64,
    /// The dimension it scores ("health" unless set); a roll-up weighs the dimensions.
    pub dimension: String,
}

/// One measure's part of a score.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub measure: String,
    /// The feature's value (`None` when missing).
    pub value: Option<f64>,
    /// The measure's own 0-100 score (`None` when left out).
    pub score: Option<f64>,
    /// The normalised weight it carried in this score (0 when left out).
    pub weight: f64,
    /// Points it added to the total: weight × score.
    pub points: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// 0-100; `None` when every measure was missing and left out.
    pub value: Option<f64>,
    pub colour: &'static str,
    pub parts: Vec<Part>,
}

impl Scorecard {
    /// Whether it scores an account of this segment and tenure (months since the first
    /// payment; unknown counts as 0).
    pub fn applies_to(&self, segment: Option<&str>, tenure_months: f64) -> bool {
        let t = if tenure_months.is_finite() { tenure_months } else { 0.0 };
        (self.segments.is_empty() || segment.is_some_and(|s| self.segments.iter().any(|x| x == s)))
            && self.tenure_months.is_none_or(|(a, b)| a <= t && t < b)
    }

    pub fn colour(&self, v: Option<f64>) -> &'static str {
        match v {
            None => "grey",
            Some(v) if v < self.red => "red",
            Some(v) if v < self.yellow => "yellow",
            Some(_) => "green",
        }
    }

    /// A measure's value in `row` and its 0-100 score under the missing-value rule
    /// (`None`: missing and left out).
    fn measure(&self, m: &Measure, row: &Row) -> (Option<f64>, Option<f64>) {
        let v = match &m.reads {
            Reads::Feature(i) => row.num[*i],
            Reads::Dimension(cards) => {
                let tenure = row.get(features::F::TENURE);
                cards
                    .iter()
                    .find(|c| c.applies_to(row.segment.as_deref(), tenure))
                    .and_then(|c| c.score(row).value)
                    .unwrap_or(f64::NAN)
            }
        };
        let value = v.is_finite().then_some(v);
        let score = match (value, m.missing.unwrap_or(self.missing)) {
            (Some(v), _) => Some(m.scale.score(v)),
            (None, Missing::Score(s)) => Some(s),
            (None, Missing::Redistribute) => None,
        };
        (value, score)
    }

    pub fn score(&self, row: &Row) -> Score {
        let mut parts: Vec<Part> = Vec::with_capacity(self.measures.len());
        for m in &self.measures {
            let (value, score) = self.measure(m, row);
            parts.push(Part { measure: m.name.clone(), value, score, weight: 0.0, points: 0.0 });
        }
        let total: f64 = self
            .measures
            .iter()
            .zip(&parts)
            .filter(|(_, p)| p.score.is_some())
            .map(|(m, _)| m.weight)
            .sum();
        if total <= 0.0 {
            return Score { value: None, colour: self.colour(None), parts };
        }
        let mut sum = 0.0;
        for (m, p) in self.measures.iter().zip(parts.iter_mut()) {
            if let Some(s) = p.score {
                p.weight = m.weight / total;
                p.points = p.weight * s;
                sum += p.points;
            }
        }
        Score { value: Some(sum), colour: self.colour(Some(sum)), parts }
    }
}

impl Scorecard {
    /// The same scorecard with weights fitted to history: a logistic regression of the
    /// outcome on the measures' scores (a missing score takes the measure's mean), each
    /// weight the part of the coefficient that lowers risk as the score rises (negative
    /// coefficients become weights, positive ones 0), scaled to the card's total weight.
    /// `None` when no measure lowers risk or the fit fails.
    pub fn learn(&self, rows: &[&Row], churned: &[bool]) -> Option<Scorecard> {
        let k = self.measures.len();
        let scores: Vec<Vec<Option<f64>>> = rows
            .iter()
            .map(|r| self.measures.iter().map(|m| self.measure(m, r).1).collect())
            .collect();
        let means: Vec<f64> = (0..k)
            .map(|j| {
                let known: Vec<f64> = scores.iter().filter_map(|s| s[j]).collect();
                if known.is_empty() { 50.0 } else { known.iter().sum::<f64>() / known.len() as f64 }
            })
            .collect();
        let x: Vec<f64> =
            scores.iter().flat_map(|s| (0..k).map(|j| s[j].unwrap_or(means[j]) / 100.0)).collect();
        let fit = tenure_stats::logit::fit(&x, k, churned, 1.0).ok()?;
        let raw: Vec<f64> = fit.coef.iter().map(|c| (-c).max(0.0)).collect();
        let sum: f64 = raw.iter().sum();
        if sum <= 0.0 {
            return None;
        }
        let total: f64 = self.measures.iter().map(|m| m.weight).sum();
        let mut out = self.clone();
        out.name = format!("{} (learned)", self.name);
        for (m, w) in out.measures.iter_mut().zip(&raw) {
            // Three decimals: weights to paste into a configuration file. A measure with
            // no weight left keeps a trace so it stays valid.
            m.weight = ((w / sum * total * 1000.0).round() / 1000.0).max(1e-3);
        }
        Some(out)
    }
}

/// The configured scorecards, in order, and their roll-up: an account is scored by the
/// roll-up when there is one, else by the first scorecard that applies to it; backtests
/// score every account with each.
#[derive(Clone, Debug, PartialEq)]
pub struct Scorecards {
    pub cards: Vec<Scorecard>,
    /// The weighted roll-up of the dimensions (`[rollup]`), when configured.
    pub rollup: Option<Scorecard>,
    /// The TOML text they were read from (a model saves it with a scorecard it learned).
    pub source: String,
}

impl Scorecards {
    /// What scores the account of `row`: the roll-up, else the first scorecard that applies.
    pub fn for_row(&self, row: &Row) -> Option<&Scorecard> {
        if let Some(r) = &self.rollup {
            return Some(r);
        }
        let tenure = row.get(features::F::TENURE);
        self.cards.iter().find(|c| c.applies_to(row.segment.as_deref(), tenure))
    }

    pub fn get(&self, name: &str) -> Option<&Scorecard> {
        self.cards.iter().chain(&self.rollup).find(|c| c.name == name)
    }

    /// Every scorecard a backtest compares: each configured one, then the roll-up.
    pub fn all(&self) -> impl Iterator<Item = &Scorecard> {
        self.cards.iter().chain(&self.rollup)
    }

    /// Parses a TOML document of `[[scorecard]]` tables; errors name the scorecard and the
    /// measure.
    pub fn parse(text: &str) -> Result<Scorecards, HealthError> {
        let file: FileDoc = toml::from_str(text).map_err(|e| HealthError::Config(e.to_string()))?;
        if file.scorecard.is_empty() {
            return Err(HealthError::Config("no [[scorecard]] table".into()));
        }
        let mut names = Vec::new();
        let mut out = Vec::new();
        for c in file.scorecard {
            let at = |m: &str| HealthError::Config(format!("scorecard {:?}: {m}", c.name));
            if names.contains(&c.name) {
                return Err(at("defined twice"));
            }
            names.push(c.name.clone());
            if c.measure.is_empty() {
                return Err(at("no [[scorecard.measure]]"));
            }
            let missing = parse_missing(&c.missing).map_err(|e| at(&e))?;
            let (red, yellow) = (c.red_below.unwrap_or(40.0), c.yellow_below.unwrap_or(70.0));
            if !(0.0..=100.0).contains(&red) || !(red..=100.0).contains(&yellow) {
                return Err(at("bands need 0 <= red_below <= yellow_below <= 100"));
            }
            let mut measures = Vec::new();
            for m in c.measure {
                let name = m.name.clone().unwrap_or_else(|| m.feature.clone());
                let here = |e: &str| at(&format!("measure {name:?}: {e}"));
                let feature =
                    features::index(&m.feature).filter(|i| *i < features::N).ok_or_else(|| {
                        here(&format!(
                            "unknown feature {:?} (numeric features: {})",
                            m.feature,
                            features::DEFS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                let weight = positive_weight(m.weight).map_err(|e| here(&e))?;
                let scale = match (m.points, m.linear) {
                    (Some(p), None) => {
                        if p.is_empty() || p.windows(2).any(|w| w[1][0] <= w[0][0]) {
                            return Err(here(
                                "points must be [value, score] pairs with rising values",
                            ));
                        }
                        if p.iter().any(|x| !(0.0..=100.0).contains(&x[1])) {
                            return Err(here("a score in points is outside 0-100"));
                        }
                        Scale::Points(p.iter().map(|x| (x[0], x[1])).collect())
                    }
                    (None, Some([a, b])) if a != b && a.is_finite() && b.is_finite() => {
                        Scale::Linear(a, b)
                    }
                    (None, Some(_)) => return Err(here("linear needs two different values")),
                    _ => {
                        return Err(here(
                            "give exactly one of points = [[value, score], ...] or linear = [zero, hundred]",
                        ));
                    }
                };
                let missing = m
                    .missing
                    .as_ref()
                    .map(|v| parse_missing(&Some(v.clone())))
                    .transpose()
                    .map_err(|e| here(&e))?;
                measures.push(Measure {
                    name,
                    reads: Reads::Feature(feature),
                    weight,
                    scale,
                    missing,
                });
            }
            if let Some([a, b]) = c.tenure_months
                && !(a >= 0.0 && a < b)
            {
                return Err(at("tenure_months = [from, to) needs 0 <= from < to"));
            }
            out.push(Scorecard {
                name: c.name,
                description: c.description.unwrap_or_default(),
                segments: c.segments,
                tenure_months: c.tenure_months.map(|[a, b]| (a, b)),
                measures,
                missing,
                red,
                yellow,
                dimension: c.dimension.unwrap_or_else(|| "health".into()),
            });
        }
        let rollup = match file.rollup {
            None => {
                if let Some(c) = out.iter().find(|c| c.dimension != out[0].dimension) {
                    return Err(HealthError::Config(format!(
                        "scorecard {:?}: dimension {:?} beside {:?}: scorecards of several dimensions need a [rollup] that weighs them",
                        c.name, c.dimension, out[0].dimension
                    )));
                }
                None
            }
            Some(r) => Some(rollup(r, &out)?),
        };
        Ok(Scorecards { cards: out, rollup, source: text.to_string() })
    }

    /// The shipped scorecards: the catalogue's usage score and one from the signals the
    /// sources name.
    pub fn default_set() -> Scorecards {
        Scorecards::parse(DEFAULT).expect("the default scorecards parse")
    }
}

fn positive_weight(w: Option<f64>) -> Result<f64, String> {
    let weight = w.unwrap_or(1.0);
    if weight.is_finite() && weight > 0.0 {
        Ok(weight)
    } else {
        Err("weight must be a positive number".into())
    }
}

/// The roll-up scorecard: one measure per dimension, reading its scorecards' score (0-100
/// as it is).
fn rollup(r: RollupDoc, cards: &[Scorecard]) -> Result<Scorecard, HealthError> {
    let name = r.name.unwrap_or_else(|| "overall".into());
    let at = |m: &str| HealthError::Config(format!("rollup {name:?}: {m}"));
    if cards.iter().any(|c| c.name == name) {
        return Err(at("has the name of a scorecard"));
    }
    if r.dimension.is_empty() {
        return Err(at("no [[rollup.dimension]]"));
    }
    let missing = parse_missing(&r.missing).map_err(|e| at(&e))?;
    let (red, yellow) = (r.red_below.unwrap_or(40.0), r.yellow_below.unwrap_or(70.0));
    if !(0.0..=100.0).contains(&red) || !(red..=100.0).contains(&yellow) {
        return Err(at("bands need 0 <= red_below <= yellow_below <= 100"));
    }
    let mut measures: Vec<Measure> = Vec::new();
    for d in r.dimension {
        let here = |e: &str| at(&format!("dimension {:?}: {e}", d.name));
        if measures.iter().any(|m| m.name == d.name) {
            return Err(here("listed twice"));
        }
        let of: Vec<Scorecard> = cards.iter().filter(|c| c.dimension == d.name).cloned().collect();
        if of.is_empty() {
            return Err(here("no scorecard has this dimension"));
        }
        let missing = d
            .missing
            .as_ref()
            .map(|v| parse_missing(&Some(v.clone())))
            .transpose()
            .map_err(|e| here(&e))?;
        measures.push(Measure {
            name: d.name.clone(),
            reads: Reads::Dimension(of),
            weight: positive_weight(d.weight).map_err(|e| here(&e))?,
            scale: Scale::Linear(0.0, 100.0),
            missing,
        });
    }
    if let Some(c) = cards.iter().find(|c| !measures.iter().any(|m| m.name == c.dimension)) {
        return Err(at(&format!(
            "scorecard {:?} has dimension {:?}, which the roll-up does not weigh",
            c.name, c.dimension
        )));
    }
    Ok(Scorecard {
        description: r.description.unwrap_or_else(|| {
            format!(
                "Weighted roll-up of {}",
                measures.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        }),
        name,
        segments: Vec::new(),
        tenure_months: None,
        measures,
        missing,
        red,
        yellow,
        dimension: "rollup".into(),
    })
}

fn parse_missing(v: &Option<toml::Value>) -> Result<Missing, String> {
    match v {
        None => Ok(Missing::Redistribute),
        Some(toml::Value::String(s)) if s == "redistribute" => Ok(Missing::Redistribute),
        Some(toml::Value::Integer(i)) if (0..=100).contains(i) => Ok(Missing::Score(*i as f64)),
        Some(toml::Value::Float(f)) if (0.0..=100.0).contains(f) => Ok(Missing::Score(*f)),
        Some(other) => {
            Err(format!("missing = {other:?}: expected \"redistribute\" or a score 0-100"))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    scorecard: Vec<CardDoc>,
    rollup: Option<RollupDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollupDoc {
    name: Option<String>,
    description: Option<String>,
    missing: Option<toml::Value>,
    red_below: Option<f64>,
    yellow_below: Option<f64>,
    #[serde(default)]
    dimension: Vec<DimensionDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DimensionDoc {
    name: String,
    weight: Option<f64>,
    missing: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardDoc {
    name: String,
    description: Option<String>,
    dimension: Option<String>,
    #[serde(default)]
    segments: Vec<String>,
    tenure_months: Option<[f64; 2]>,
    missing: Option<toml::Value>,
    red_below: Option<f64>,
    yellow_below: Option<f64>,
    #[serde(default)]
    measure: Vec<MeasureDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureDoc {
    name: Option<String>,
    feature: String,
    weight: Option<f64>,
    points: Option<Vec<[f64; 2]>>,
    linear: Option<[f64; 2]>,
    missing: Option<toml::Value>,
}

/// The shipped scorecards (also what `tenure health --print-default-config` prints).
pub const DEFAULT: &str = r#"# Health scorecards. An account is scored by the first scorecard whose `segments`
# include its segment (no `segments` = every account) and whose `tenure_months = [from,
# to)` include the months since its first payment (none = every stage). A measure reads one feature and
# scales it to 0-100 with `points` ([value, score] steps: the score of the last value at or
# below the feature's) or `linear` ([value scoring 0, value scoring 100]); weights are
# normalised. `missing` is "redistribute" (leave the measure out) or a score 0-100, per
# scorecard or per measure. Colours: below `red_below` red, below `yellow_below` yellow.
# Several dimensions: give scorecards a `dimension` ("adoption", "relationship", ...) and
# weigh them in a `[rollup]` with one `[[rollup.dimension]]` (name, weight, missing) each;
# an account's score is then the roll-up of its dimensions' scores (health.md).

# The catalogue's usage score: frequency, breadth and depth of usage each scored 1-10,
# summed to 30 and normalised to 100.
[[scorecard]]
name = "usage"
description = "Frequency, breadth and depth of usage, each 1-10, out of 30"
red_below = 40
yellow_below = 70

[[scorecard.measure]]
name = "frequency"
feature = "active_days"
points = [[0, 10], [2, 20], [4, 30], [6, 40], [8, 50], [10, 60], [12, 70], [15, 80], [18, 90], [20, 100]]

[[scorecard.measure]]
name = "breadth"
feature = "licence_utilisation"
points = [[0, 10], [0.1, 20], [0.2, 30], [0.3, 40], [0.4, 50], [0.5, 60], [0.6, 70], [0.7, 80], [0.8, 90], [0.9, 100]]

[[scorecard.measure]]
name = "depth"
feature = "depth_of_usage"
points = [[0, 10], [0.1, 20], [0.2, 30], [0.3, 40], [0.4, 50], [0.5, 60], [0.6, 70], [0.7, 80], [0.8, 90], [0.9, 100]]

# The signals the sources name: adoption and its trend, sentiment, support, relationship,
# fees, renewal.
[[scorecard]]
name = "signals"
description = "Utilisation, usage trend, NPS, tickets, defects, CSM assessment, contacts, champion, fees, payments, renewal"
red_below = 45
yellow_below = 70

[[scorecard.measure]]
feature = "licence_utilisation"
linear = [0.1, 0.8]
weight = 2

[[scorecard.measure]]
feature = "active_users_change_3m"
linear = [-0.5, 0.1]
weight = 1.5

[[scorecard.measure]]
feature = "nps_last"
points = [[0, 0], [5, 20], [7, 60], [9, 100]]
weight = 1.5

[[scorecard.measure]]
feature = "tickets_90d"
linear = [8, 0]

[[scorecard.measure]]
feature = "defect_tickets_90d"
linear = [4, 0]

[[scorecard.measure]]
feature = "csm_relationship"
linear = [1, 5]

[[scorecard.measure]]
feature = "contact_coverage"
linear = [0, 1]

[[scorecard.measure]]
name = "champion_stability"
feature = "days_since_champion_left"
points = [[0, 0], [90, 50], [180, 100]]
missing = 100
weight = 1.5

[[scorecard.measure]]
feature = "mrr_change_90d"
linear = [-0.3, 0]
missing = 100

[[scorecard.measure]]
feature = "failed_payments_90d"
linear = [2, 0]

[[scorecard.measure]]
feature = "cancellation_scheduled"
linear = [1, 0]
weight = 2

[[scorecard.measure]]
name = "renewal_runway"
feature = "days_to_renewal"
points = [[0, 50], [60, 100]]
missing = 100
weight = 0.5
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{F, N};
    use expect_test::expect;

    fn row(set: &[(F, f64)]) -> Row {
        let mut num = [f64::NAN; N];
        for (f, v) in set {
            num[*f as usize] = *v;
        }
        Row { num, plan: None, segment: Some("smb".into()), mrr: 10_000 }
    }

    fn render(s: &Score) -> String {
        let mut o = format!("{:?} {}\n", s.value.map(|v| (v * 1000.0).round() / 1000.0), s.colour);
        for p in &s.parts {
            o.push_str(&format!(
                "  {} value={:?} score={:?} weight={:.4} points={:.3}\n",
                p.measure, p.value, p.score, p.weight, p.points
            ));
        }
        o
    }

    #[test]
    fn the_catalogue_usage_score_is_the_sum_of_three_1_to_10_scores_over_30() {
        let cards = Scorecards::default_set();
        let usage = cards.get("usage").unwrap();
        // Frequency 12 days -> 7, breadth 45% -> 5, depth 0.95 -> 10: 22 / 30 = 73.3.
        let s =
            usage.score(&row(&[(F::ACTIVE_DAYS, 12.0), (F::UTILISATION, 0.45), (F::DEPTH, 0.95)]));
        expect![[r#"
            Some(73.333) green
              frequency value=Some(12.0) score=Some(70.0) weight=0.3333 points=23.333
              breadth value=Some(0.45) score=Some(50.0) weight=0.3333 points=16.667
              depth value=Some(0.95) score=Some(100.0) weight=0.3333 points=33.333
        "#]]
        .assert_eq(&render(&s));
        // Depth unknown (no feature catalogue): its weight goes to the other two.
        let s = usage.score(&row(&[(F::ACTIVE_DAYS, 1.0), (F::UTILISATION, 0.05)]));
        expect![[r#"
            Some(10.0) red
              frequency value=Some(1.0) score=Some(10.0) weight=0.5000 points=5.000
              breadth value=Some(0.05) score=Some(10.0) weight=0.5000 points=5.000
              depth value=None score=None weight=0.0000 points=0.000
        "#]]
        .assert_eq(&render(&s));
    }

    #[test]
    fn linear_scales_weights_missing_values_and_bands() {
        let cards = Scorecards::parse(
            r#"
            [[scorecard]]
            name = "t"
            red_below = 30
            yellow_below = 60
            missing = 20
            [[scorecard.measure]]
            feature = "tickets_90d"
            linear = [10, 0]
            weight = 3
            [[scorecard.measure]]
            feature = "nps_last"
            points = [[0, 0], [7, 50], [9, 100]]
            [[scorecard.measure]]
            feature = "csm_relationship"
            linear = [1, 5]
            missing = "redistribute"
            "#,
        )
        .unwrap();
        let c = &cards.cards[0];
        // tickets 4 -> 60 (weight 3/4), NPS missing -> 20 (1/4), relationship left out.
        let s = c.score(&row(&[(F::TICKETS, 4.0)]));
        expect![[r#"
            Some(50.0) yellow
              tickets_90d value=Some(4.0) score=Some(60.0) weight=0.7500 points=45.000
              nps_last value=None score=Some(20.0) weight=0.2500 points=5.000
              csm_relationship value=None score=None weight=0.0000 points=0.000
        "#]]
        .assert_eq(&render(&s));
        // Clamped at both ends; NPS 8 is in the [7, 9) step; 30 is not below red_below = 30.
        let s = c.score(&row(&[(F::TICKETS, 25.0), (F::NPS, 8.0), (F::RELATIONSHIP, 5.0)]));
        expect![[r#"
            Some(30.0) yellow
              tickets_90d value=Some(25.0) score=Some(0.0) weight=0.6000 points=0.000
              nps_last value=Some(8.0) score=Some(50.0) weight=0.2000 points=10.000
              csm_relationship value=Some(5.0) score=Some(100.0) weight=0.2000 points=20.000
        "#]]
        .assert_eq(&render(&s));
        assert!(c.applies_to(None, 0.0) && c.applies_to(Some("x"), 40.0));
        // A scorecard for the first six months of smb accounts comes first.
        let cards = Scorecards::parse(
            "[[scorecard]]\nname = \"onboarding\"\nsegments = [\"smb\"]\ntenure_months = [0, 6]\n\
             [[scorecard.measure]]\nfeature = \"active_days\"\nlinear = [0, 10]\n\
             [[scorecard]]\nname = \"rest\"\n[[scorecard.measure]]\nfeature = \"seats\"\nlinear = [0, 10]\n",
        )
        .unwrap();
        let at = |months: f64, segment: &str| {
            let mut r = row(&[(F::TENURE, months)]);
            r.segment = Some(segment.into());
            cards.for_row(&r).unwrap().name.clone()
        };
        assert_eq!(
            [at(2.0, "smb"), at(6.0, "smb"), at(2.0, "enterprise")],
            ["onboarding", "rest", "rest"]
        );
    }

    #[test]
    fn configuration_errors_name_the_scorecard_and_the_measure() {
        let err = |t: &str| Scorecards::parse(t).unwrap_err().to_string();
        expect![[r#"scorecard configuration: scorecard "a": measure "usage": unknown feature "usage" (numeric features: mrr, seats, tenure_months, mrr_change_90d, contractions_180d, expansions_180d, failed_payments_90d, cancellation_scheduled, days_to_renewal, active_users, licence_utilisation, active_users_change_3m, events_per_user, usage_change_3m, active_days, depth_of_usage, days_since_last_use, tickets_90d, defect_tickets_90d, urgent_tickets_90d, ticket_change_90d, nps_last, nps_change, detractor_answers_180d, csat_180d, days_since_survey_answer, touchpoints_90d, negative_touchpoints_90d, champion, days_since_champion_left, key_contacts_left_90d, contact_coverage, csm_relationship, strategic_importance, change_requests_180d)"#]]
        .assert_eq(&err("[[scorecard]]\nname = \"a\"\n[[scorecard.measure]]\nfeature = \"usage\"\nlinear = [0, 1]\n"));
        expect![[r#"scorecard configuration: scorecard "a": measure "seats": give exactly one of points = [[value, score], ...] or linear = [zero, hundred]"#]]
        .assert_eq(&err("[[scorecard]]\nname = \"a\"\n[[scorecard.measure]]\nfeature = \"seats\"\n"));
        expect![[r#"scorecard configuration: scorecard "a": measure "seats": points must be [value, score] pairs with rising values"#]]
        .assert_eq(&err("[[scorecard]]\nname = \"a\"\n[[scorecard.measure]]\nfeature = \"seats\"\npoints = [[5, 10], [1, 20]]\n"));
        expect![[r#"scorecard configuration: scorecard "a": measure "seats": weight must be a positive number"#]]
        .assert_eq(&err("[[scorecard]]\nname = \"a\"\n[[scorecard.measure]]\nfeature = \"seats\"\nlinear = [0, 9]\nweight = 0\n"));
        expect![[r#"scorecard configuration: scorecard "a": bands need 0 <= red_below <= yellow_below <= 100"#]]
        .assert_eq(&err("[[scorecard]]\nname = \"a\"\nred_below = 80\nyellow_below = 50\n[[scorecard.measure]]\nfeature = \"seats\"\nlinear = [0, 9]\n"));
        expect![[r#"scorecard configuration: scorecard "a": missing = String("zero"): expected "redistribute" or a score 0-100"#]]
        .assert_eq(&err("[[scorecard]]\nname = \"a\"\nmissing = \"zero\"\n[[scorecard.measure]]\nfeature = \"seats\"\nlinear = [0, 9]\n"));
        assert!(
            err("[[scorecard]]\nname = \"a\"\nweight = 2\n").contains("unknown field `weight`")
        );
        assert!(err("").contains("no [[scorecard]]"));
    }

    const DIMENSIONS: &str = "\
[[scorecard]]
name = \"adoption\"
dimension = \"adoption\"
[[scorecard.measure]]
feature = \"licence_utilisation\"
linear = [0, 1]
[[scorecard.measure]]
feature = \"active_days\"
linear = [0, 20]
[[scorecard]]
name = \"relationship-enterprise\"
dimension = \"relationship\"
segments = [\"enterprise\"]
[[scorecard.measure]]
feature = \"csm_relationship\"
linear = [1, 5]
[[scorecard]]
name = \"relationship\"
dimension = \"relationship\"
[[scorecard.measure]]
feature = \"nps_last\"
linear = [0, 10]
[[scorecard]]
name = \"support\"
dimension = \"support\"
[[scorecard.measure]]
feature = \"tickets_90d\"
linear = [10, 0]
[rollup]
red_below = 50
[[rollup.dimension]]
name = \"adoption\"
weight = 2
[[rollup.dimension]]
name = \"relationship\"
[[rollup.dimension]]
name = \"support\"
missing = 100
";

    #[test]
    fn dimensions_roll_up_by_weight() {
        let cards = Scorecards::parse(DIMENSIONS).unwrap();
        // Adoption: utilisation 0.6 -> 60 and 5 active days -> 25, equal weights: 42.5.
        // Relationship (an smb account: the second relationship card): NPS 8 -> 80.
        // Support: tickets unknown, the dimension scores nothing, so missing = 100 counts.
        // Roll-up: (2 x 42.5 + 80 + 100) / 4 = 66.25, yellow.
        let r = row(&[
            (F::UTILISATION, 0.6),
            (F::ACTIVE_DAYS, 5.0),
            (F::NPS, 8.0),
            (F::RELATIONSHIP, 1.0),
        ]);
        let card = cards.for_row(&r).unwrap();
        assert_eq!((card.name.as_str(), card.dimension.as_str()), ("overall", "rollup"));
        expect![[r#"
            Some(66.25) yellow
              adoption value=Some(42.5) score=Some(42.5) weight=0.5000 points=21.250
              relationship value=Some(80.0) score=Some(80.0) weight=0.2500 points=20.000
              support value=None score=Some(100.0) weight=0.2500 points=25.000
        "#]]
        .assert_eq(&render(&card.score(&r)));
        // An enterprise account's relationship is the CSM's rating (1 -> 0); 8 tickets -> 20;
        // no usage: adoption left out, its weight goes to the other two: (0 + 20) / 2 = 10.
        let mut r = row(&[(F::NPS, 8.0), (F::RELATIONSHIP, 1.0), (F::TICKETS, 8.0)]);
        r.segment = Some("enterprise".into());
        expect![[r#"
            Some(10.0) red
              adoption value=None score=None weight=0.0000 points=0.000
              relationship value=Some(0.0) score=Some(0.0) weight=0.5000 points=0.000
              support value=Some(20.0) score=Some(20.0) weight=0.5000 points=10.000
        "#]]
        .assert_eq(&render(&cards.for_row(&r).unwrap().score(&r)));
        assert_eq!(
            cards.all().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["adoption", "relationship-enterprise", "relationship", "support", "overall"]
        );
        // Without a roll-up the shipped cards all score the one dimension, health.
        assert!(Scorecards::default_set().rollup.is_none());
        assert!(Scorecards::default_set().cards.iter().all(|c| c.dimension == "health"));
    }

    #[test]
    fn roll_up_errors_name_the_dimension() {
        let err = |t: &str| Scorecards::parse(t).unwrap_err().to_string();
        let no_support =
            &DIMENSIONS[..DIMENSIONS.find("[[rollup.dimension]]\nname = \"support\"").unwrap()];
        assert_eq!(
            err(no_support),
            "scorecard configuration: rollup \"overall\": scorecard \"support\" has dimension \"support\", which the roll-up does not weigh"
        );
        let no_rollup = &DIMENSIONS[..DIMENSIONS.find("[rollup]").unwrap()];
        assert_eq!(
            err(no_rollup),
            "scorecard configuration: scorecard \"relationship-enterprise\": dimension \"relationship\" beside \"adoption\": scorecards of several dimensions need a [rollup] that weighs them"
        );
        assert_eq!(
            err(&format!("{DIMENSIONS}[[rollup.dimension]]\nname = \"usage\"\n")),
            "scorecard configuration: rollup \"overall\": dimension \"usage\": no scorecard has this dimension"
        );
        assert_eq!(
            err(&format!("{DIMENSIONS}[[rollup.dimension]]\nname = \"support\"\n")),
            "scorecard configuration: rollup \"overall\": dimension \"support\": listed twice"
        );
        assert_eq!(
            err(&DIMENSIONS.replace("weight = 2", "weight = -1")),
            "scorecard configuration: rollup \"overall\": dimension \"adoption\": weight must be a positive number"
        );
        assert_eq!(
            err(&DIMENSIONS.replace("[rollup]", "[rollup]\nname = \"support\"")),
            "scorecard configuration: rollup \"support\": has the name of a scorecard"
        );
        assert_eq!(
            err(&DIMENSIONS.replace("red_below = 50", "red_below = 80\nyellow_below = 60")),
            "scorecard configuration: rollup \"overall\": bands need 0 <= red_below <= yellow_below <= 100"
        );
    }
}
