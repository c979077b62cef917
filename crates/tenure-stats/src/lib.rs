//! Statistics for retention: survival (Kaplan-Meier, log-rank, Cox), lifetime value (sBG,
//! BG/NBD, Gamma-Gamma), logistic regression, gradient-boosted trees (with settings chosen by
//! cross-validation) and the evaluation of classifiers.
//!
//! Domain-free and pure: slices of numbers in, fitted models out; no IO, no clock, no
//! randomness except from a seed given by the caller. Every estimator is checked against a
//! peer (lifelines, lifetimes, statsmodels, scikit-learn) or a published table, with the
//! figures in the tests.

pub mod bernsum;
pub mod bgnbd;
pub mod cox;
pub mod eval;
pub mod gbm;
pub mod km;
mod linalg;
pub mod logit;
pub mod logrank;
mod optim;
pub mod sbg;
pub mod special;
pub mod tune;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    /// Inputs of different lengths: a caller's bug.
    #[error("{0}")]
    Shape(String),
    /// Nothing to estimate from (no rows, no events).
    #[error("{0}")]
    Empty(String),
    /// A value out of its domain, named with its row.
    #[error("{0}")]
    Invalid(String),
    /// A design the model cannot be fitted on (constant or collinear columns, separation).
    #[error("{0}")]
    Singular(String),
}

/// SplitMix64 (Steele, Lea & Flood 2014): the next number of the stream whose state is
/// `state`. Seeded shuffles, samples and test data; nothing that must be unpredictable.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix64(*state)
}

/// SplitMix64's finaliser: a 64-bit mix of `z` (spreads consecutive integers apart).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Lists of floats in serialised models: JSON has no infinity or NaN, so those travel as the
/// strings `"inf"`, `"-inf"` and `"nan"` (`#[serde(with = "tenure_stats::floats")]`).
pub mod floats {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            match *x {
                x if x.is_finite() => seq.serialize_element(&x)?,
                x if x.is_nan() => seq.serialize_element("nan")?,
                x if x > 0.0 => seq.serialize_element("inf")?,
                _ => seq.serialize_element("-inf")?,
            }
        }
        seq.end()
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Float {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Float>::deserialize(d)?
            .into_iter()
            .map(|f| match f {
                Float::Number(x) => Ok(x),
                Float::Text(s) => match s.as_str() {
                    "inf" => Ok(f64::INFINITY),
                    "-inf" => Ok(f64::NEG_INFINITY),
                    "nan" => Ok(f64::NAN),
                    _ => Err(serde::de::Error::custom(format!("{s:?} is not a number"))),
                },
            })
            .collect()
    }
}
