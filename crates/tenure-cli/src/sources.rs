//! The inputs of `tenure import` beyond Tenure's own JSONL and CSV: Parquet files, vendor
//! exports read through a mapping, and Stripe exports. The conversions live in the library
//! crates; this module opens files, reports rejections and progress.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tenure_core::event::EventKind;
use tenure_engine::{Config, Importer};
use tenure_ingest::RowSource;

/// A mapping named on the command line (`--map`): shipped, or a file.
pub struct Mapping;

pub fn load_mapping(spec: &str) -> Result<Mapping> {
    bail!("--map {spec}: mappings are not built yet")
}

/// Opens a file as rows: Parquet, or any file through a mapping.
pub fn open_rows(
    path: &Path,
    parquet: bool,
    mapping: Option<&Mapping>,
    kind: Option<EventKind>,
) -> Result<Box<dyn RowSource>> {
    let _ = (mapping, kind);
    if parquet {
        if mapping.is_some() {
            bail!("a Parquet file is read by its column names; --map reads CSV and JSON exports")
        }
        return Ok(Box::new(tenure_ingest::parquet::ParquetRows::open(path, kind)?));
    }
    bail!("{}: mappings are not built yet", path.display())
}

/// Converts Stripe exports (files or folders) into events and imports them.
pub fn import_stripe(
    importer: &mut Importer,
    cfg: &Config,
    files: &[PathBuf],
    acks: bool,
) -> Result<ExitCode> {
    let _ = (importer, cfg, files, acks);
    bail!("Stripe import is not built yet")
}
