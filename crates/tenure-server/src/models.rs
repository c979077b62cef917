//! The health setup the service scores with: DATA/scorecards.toml (else the shipped
//! scorecards) and the churn model DATA/models/churn.json, as `tenure health` and
//! `tenure risk` read them. Read at start, and again by the applier when either file
//! changes (it looks every few seconds), so that a model just trained or a scorecard just
//! edited is in use at once, without a restart. A file that does not parse is logged and
//! shown on the model page, and the setup in force stays.

use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tenure_core::time::Timestamp;
use tenure_health::Model;
use tenure_health::scorecard::Scorecards;

/// The scorecards and the model of a data directory.
pub fn load(data: &Path) -> Result<(Scorecards, Option<Model>), String> {
    let p = data.join("scorecards.toml");
    let cards = if p.is_file() {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Scorecards::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?
    } else {
        Scorecards::default_set()
    };
    let m = model_path(data);
    let model = if m.is_file() {
        let text = std::fs::read_to_string(&m).map_err(|e| format!("{}: {e}", m.display()))?;
        Some(Model::from_json(&text).map_err(|e| format!("{}: {e}", m.display()))?)
    } else {
        None
    };
    Ok((cards, model))
}

fn model_path(data: &Path) -> PathBuf {
    data.join("models").join("churn.json")
}

/// What identifies a version of the two files: modification time and length of each.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(data: &Path) -> Stamp {
    let of =
        |p: PathBuf| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [of(data.join("scorecards.toml")), of(model_path(data))]
}

/// Watches the two files for changes.
pub struct Watch {
    data: PathBuf,
    seen: Stamp,
}

impl Watch {
    /// Watching from the files as they are now (the setup loaded at start).
    pub fn new(data: &Path) -> Watch {
        Watch { data: data.to_path_buf(), seen: stamp(data) }
    }

    /// The setup read again when a file changed since the last look; `None` when neither
    /// did. A file caught half-written fails to parse, and is read again when it changes.
    pub fn changed(&mut self) -> Option<Result<(Scorecards, Option<Model>), String>> {
        let now = stamp(&self.data);
        if now == self.seen {
            return None;
        }
        self.seen = now;
        Some(load(&self.data))
    }
}

/// The model in use, for the model page.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// When the service began to score with the setup in force.
    pub since: Option<Timestamp>,
    /// The model's training window and outcome (`None`: no model).
    pub model: Option<ModelInfo>,
    /// Why the files' latest version could not be used, when it could not.
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub outcome: String,
    pub horizon_days: i64,
    pub first_snapshot: String,
    pub last_snapshot: String,
    pub n_snapshots: usize,
    pub n_churned: usize,
    /// Which learner won, against which, and why.
    pub selection: tenure_health::model::Selection,
}

impl ModelInfo {
    pub fn of(m: &Model) -> ModelInfo {
        ModelInfo {
            outcome: m.outcome.as_str().to_string(),
            horizon_days: m.horizon_days,
            first_snapshot: m.first_snapshot.clone(),
            last_snapshot: m.last_snapshot.clone(),
            n_snapshots: m.n_snapshots,
            n_churned: m.n_churned,
            selection: m.selection.clone(),
        }
    }
}
