//! The inputs of `tenure import` beyond Tenure's own JSONL and CSV: Parquet files, vendor
//! exports read through a mapping, and Stripe exports. The conversions live in the library
//! crates; this module opens files, reports rejections and progress.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tenure_core::event::EventKind;
use tenure_engine::{Config, Importer};
use tenure_ingest::RowSource;

/// A mapping named on the command line (`--map`): shipped, or a file.
pub struct Mapping(tenure_ingest::mapping::Mapping);

/// `--map NAME|FILE`: a shipped mapping by name, else a mapping file. A missing file or a
/// mistake in the mapping is a usage error (exit 2), found before anything is imported.
pub fn load_mapping(spec: &str) -> Result<Mapping> {
    if let Some(m) = tenure_ingest::mapping::shipped(spec) {
        return Ok(Mapping(m?));
    }
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(crate::usage(format!(
                "--map {spec}: no shipped mapping of that name and no such file \
                 (tenure import --map list shows the shipped ones)"
            )))
        }
        Err(e) => bail!(crate::usage(format!("--map {spec}: cannot read it: {e}"))),
    };
    tenure_ingest::mapping::Mapping::parse(&text, spec)
        .map(Mapping)
        .map_err(|e| crate::usage(format!("mapping {e}")))
}

/// `tenure import --map list`: the shipped mappings, one a line with what they read.
pub fn print_mappings() -> Result<()> {
    let mut out = String::new();
    let width = tenure_ingest::mapping::SHIPPED.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, _) in tenure_ingest::mapping::SHIPPED {
        let m = tenure_ingest::mapping::shipped(name).expect("a shipped name")?;
        out += &format!("{name:width$}  {}\n", m.description());
    }
    out +=
        "\nA mapping file of your own: --map ./my-crm.toml (docs/connectors.md, \"Mappings\").\n";
    crate::out(&out)
}

/// Opens a file as rows: Parquet, or any file through a mapping.
pub fn open_rows(
    path: &Path,
    parquet: bool,
    mapping: Option<&Mapping>,
    kind: Option<EventKind>,
) -> Result<Box<dyn RowSource>> {
    let _ = kind;
    if let Some(m) = mapping {
        return open_mapped(path, m);
    }
    if parquet {
        bail!("{}: Parquet import is not built yet", path.display())
    }
    bail!("{}: read as rows, but neither Parquet nor through a mapping", path.display())
}

/// A file (or `-`, standard input) read through a mapping; the mapping names the event
/// types, so `--type` and the file's name play no part.
fn open_mapped(path: &Path, mapping: &Mapping) -> Result<Box<dyn RowSource>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(mapping.0.open(std::io::stdin())?));
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(mapping.0.open(f)?))
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
