//! Statistics for retention: survival (Kaplan-Meier, log-rank, Cox), lifetime value (sBG,
//! BG/NBD, Gamma-Gamma), logistic regression, gradient-boosted trees and the evaluation of
//! classifiers.
//!
//! Domain-free and pure: slices of numbers in, fitted models out; no IO, no clock, no
//! randomness except from a seed given by the caller. Every estimator is checked against a
//! peer (lifelines, lifetimes, statsmodels, scikit-learn) or a published table, with the
//! figures in the tests.

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
