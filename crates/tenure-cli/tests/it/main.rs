//! The `tenure` binary's integration tests, one test binary (each links the whole engine:
//! one link instead of one per file). They run the real binary on real files.

mod cli;
mod cluster;
mod clv;
mod e2e;
mod health;
mod log;
mod serve;
mod stats;
mod stripe;
