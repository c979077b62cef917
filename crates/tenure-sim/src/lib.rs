//! tenure-sim: a synthetic SaaS company with known ground truth.
//!
//! Generates the event files of the input contract (`docs/events.md`) for a
//! population of accounts whose latent health drives both churn and every observable
//! signal (usage, tickets, NPS, contacts, ...), plus the ground truth (`truth.csv`,
//! `truth_accounts.csv`) that later tests of KPIs, health scores and churn models check
//! against. Output is byte-identical for the same configuration and seed.
//!
//! Accounts are generated independently (per-account random streams), in parallel
//! chunks that are written in account order, so memory stays bounded whatever the
//! number of accounts.

mod model;
mod out;
mod rng;
mod time;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use model::{FEATURES, Feature, PLANS, SEGMENTS, monthly_churn_p, nonrenewal_p};

/// Output encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line, one file per event family (`accounts.jsonl`, ...).
    #[default]
    Jsonl,
    /// One CSV per file of the JSONL layout, header = `type,timestamp,` + field names;
    /// account attributes as `attributes.KEY` columns.
    Csv,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of accounts (1 ..= 1,000,000; 100+ for realistic aggregates).
    pub accounts: u64,
    /// History length in months.
    pub months: u32,
    pub seed: u64,
    /// (year, month) of the first month of history.
    pub start: (i32, u32),
    /// Approximate total number of usage events; `None` = natural density
    /// (~4 events per active user-month, more for power users and healthy accounts).
    pub usage_events: Option<u64>,
    pub format: OutputFormat,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            accounts: 1_000,
            months: 36,
            seed: 42,
            start: (2023, 1),
            usage_events: None,
            format: OutputFormat::Jsonl,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub accounts: u64,
    /// Events written per event `type` (every type listed, zero included).
    pub events_by_type: BTreeMap<String, u64>,
    /// Every file written, event files first, then `truth.csv` and `truth_accounts.csv`.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Accounts per parallel work item: small enough that a batch of chunks in flight stays
/// at tens of megabytes even at natural usage density.
const CHUNK: u64 = 64;

fn validate(cfg: &SimConfig) -> Result<(), SimError> {
    let bad = |m: &str| Err(SimError::InvalidConfig(m.to_owned()));
    if cfg.accounts == 0 || cfg.accounts > 1_000_000 {
        return bad("accounts must be between 1 and 1,000,000");
    }
    if cfg.months == 0 || cfg.months > 600 {
        return bad("months must be between 1 and 600");
    }
    if !(1..=12).contains(&cfg.start.1) {
        return bad("start month must be between 1 and 12");
    }
    if !(1971..=9000).contains(&cfg.start.0) {
        return bad("start year must be between 1971 and 9000");
    }
    Ok(())
}

/// Generate the data set into `out_dir` (created if missing; existing files of the same
/// names are overwritten). `progress` is called with the number of accounts written so far.
pub fn generate(
    cfg: &SimConfig,
    out_dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, SimError> {
    validate(cfg)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|source| SimError::Io { path: out_dir.to_owned(), source })?;
    let mut world = model::World::new(cfg);
    let n = cfg.accounts;
    let n_chunks = n.div_ceil(CHUNK);
    let bounds = |c: u64| (c * CHUNK, ((c + 1) * CHUNK).min(n));

    if let Some(target) = cfg.usage_events {
        // Sizing pass: same latent paths, no output; gives the expected event count at
        // the natural rate so the real pass can scale the per-user rate to the target.
        let weights: Vec<f64> = (0..n_chunks)
            .into_par_iter()
            .map(|c| {
                let (lo, hi) = bounds(c);
                model::chunk_usage_weight(&world, lo, hi)
            })
            .collect();
        let total: f64 = weights.iter().sum();
        world.usage_scale = if total > 0.0 { target as f64 / total } else { 1.0 };
    }

    let ext = match cfg.format {
        OutputFormat::Jsonl => "jsonl",
        OutputFormat::Csv => "csv",
    };
    let mut paths: Vec<PathBuf> =
        out::FILES.iter().map(|f| out_dir.join(format!("{}.{ext}", f.stem))).collect();
    paths.push(out_dir.join("truth.csv"));
    paths.push(out_dir.join("truth_accounts.csv"));
    let mut writers = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let f = File::create(p).map_err(|source| SimError::Io { path: p.clone(), source })?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let header = match i {
            out::TRUTH => Some(out::TRUTH_HEADER.to_owned()),
            out::TRUTH_ACCOUNTS => Some(out::TRUTH_ACCOUNTS_HEADER.to_owned()),
            _ if cfg.format == OutputFormat::Csv => Some(out::csv_header(i)),
            _ => None,
        };
        if let Some(h) = header {
            w.write_all(h.as_bytes()).map_err(|source| SimError::Io { path: p.clone(), source })?;
        }
        writers.push(w);
    }

    let mut counts = [0u64; 16];
    let mut agg = model::Agg::new(cfg.months);
    let per_batch = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut done = 0u64;
    let mut c = 0u64;
    while c < n_chunks {
        let end = (c + per_batch).min(n_chunks);
        let results: Vec<model::ChunkOut> = (c..end)
            .into_par_iter()
            .map(|k| {
                let (lo, hi) = bounds(k);
                model::run_chunk(&world, lo, hi)
            })
            .collect();
        for r in results {
            for (i, buf) in r.bufs.iter().enumerate() {
                writers[i]
                    .write_all(buf)
                    .map_err(|source| SimError::Io { path: paths[i].clone(), source })?;
            }
            counts.iter_mut().zip(r.counts).for_each(|(a, b)| *a += b);
            agg.add(&r.agg);
            done += r.accounts;
            progress(done);
        }
        c = end;
    }

    let mut em = out::Emitter::new(true, cfg.format);
    model::emit_costs(&world, &agg, &mut em);
    em.end_account();
    let cost_file = out::Kind::Cost.file();
    writers[cost_file]
        .write_all(&em.bufs[cost_file])
        .map_err(|source| SimError::Io { path: paths[cost_file].clone(), source })?;
    counts.iter_mut().zip(em.counts).for_each(|(a, b)| *a += b);

    for (w, p) in writers.iter_mut().zip(&paths) {
        w.flush().map_err(|source| SimError::Io { path: p.clone(), source })?;
    }
    let events_by_type =
        out::KINDS.iter().map(|k| (k.name().to_owned(), counts[*k as usize])).collect();
    Ok(Summary { accounts: n, events_by_type, files: paths })
}
