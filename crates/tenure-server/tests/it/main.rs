//! The service's integration tests, one binary (each links the whole engine, DataFusion
//! included: one link instead of one per file).

mod api;
mod forecast;
mod input;
mod notify;
mod oidc;
mod ops;
mod people;
mod recovery;
mod service;
mod stripe;
mod web;
