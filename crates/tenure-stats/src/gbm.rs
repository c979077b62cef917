//! Gradient-boosted trees for binary classification, histogram-based (as LightGBM):
//! features binned once (at most 255 bins; categorical features one bin per category),
//! leaf-wise growth with histogram subtraction, missing values sent to whichever side gains
//! more, categories split by sorting them on their gradient ratio, early stopping on a
//! validation set, gain importance.

use crate::StatsError;

/// A feature column: numbers (NaN = missing) or category codes (`None` = missing).
#[derive(Clone, Debug)]
pub enum Column {
    Numeric(Vec<f64>),
    Categorical(Vec<Option<u32>>),
}

impl Column {
    /// The rows `rows` of the column, in that order.
    pub fn take(&self, rows: &[usize]) -> Column {
        match self {
            Column::Numeric(v) => Column::Numeric(rows.iter().map(|i| v[*i]).collect()),
            Column::Categorical(v) => Column::Categorical(rows.iter().map(|i| v[*i]).collect()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub rounds: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    pub min_data_in_leaf: usize,
    pub min_sum_hessian: f64,
    pub lambda_l2: f64,
    pub max_bins: usize,
    /// Stop when the validation log-loss has not improved for this many rounds.
    pub early_stopping: usize,
    /// Categorical features whose categories, with the missing bin, number at most this
    /// (three categories by default) split one category against the rest; larger ones by
    /// sorting categories on their smoothed gradient ratio.
    pub max_cat_to_onehot: usize,
    /// Added to each category's hessian in that ratio; categories with fewer rows are left
    /// out of the sorted split (they go right).
    pub cat_smooth: f64,
    /// Extra L2 penalty in the gains of sorted categorical splits.
    pub cat_l2: f64,
    /// The fewest rows a group of categories added to the left side must hold before the
    /// split is considered.
    pub min_data_per_group: usize,
    /// The most categories on the left side of a sorted split.
    pub max_cat_threshold: usize,
}

impl Default for Params {
    /// LightGBM's defaults for binary classification.
    fn default() -> Params {
        Params {
            rounds: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            min_data_in_leaf: 20,
            min_sum_hessian: 1e-3,
            lambda_l2: 0.0,
            max_bins: 255,
            early_stopping: 0,
            max_cat_to_onehot: 4,
            cat_smooth: 10.0,
            cat_l2: 10.0,
            min_data_per_group: 100,
            max_cat_threshold: 32,
        }
    }
}

/// How a feature's values map to bins.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Binner {
    /// Upper edges of the value bins (a value goes to the first bin whose edge is >= it);
    /// bin `edges.len()` holds the missing values.
    Numeric {
        #[serde(with = "crate::floats")]
        edges: Vec<f64>,
    },
    /// Category code to bin; unseen and missing categories go to the last bin.
    Categorical { bins: std::collections::HashMap<u32, u16>, n: usize },
}

impl Binner {
    fn fit(col: &Column, max_bins: usize) -> Binner {
        match col {
            Column::Numeric(v) => {
                // Bin edges from at most 200,000 values, evenly spaced in the column (as
                // LightGBM's bin_construct_sample_cnt): quantiles need no more.
                let step = v.len().div_ceil(200_000).max(1);
                let mut vals: Vec<f64> =
                    v.iter().step_by(step).copied().filter(|x| !x.is_nan()).collect();
                vals.sort_by(f64::total_cmp);
                let mut distinct: Vec<(f64, usize)> = Vec::new();
                for x in vals.iter() {
                    match distinct.last_mut() {
                        Some((y, c)) if *y == *x => *c += 1,
                        _ => distinct.push((*x, 1)),
                    }
                }
                let bins = max_bins.saturating_sub(1).max(1);
                let edges = if distinct.len() <= bins {
                    // One bin per value; the edge halfway to the next value.
                    distinct
                        .windows(2)
                        .map(|w| (w[0].0 + w[1].0) / 2.0)
                        .chain(std::iter::once(f64::INFINITY))
                        .collect()
                } else {
                    // Equal-frequency bins over the distinct values.
                    let total = vals.len();
                    let per = total as f64 / bins as f64;
                    let mut edges = Vec::new();
                    let mut seen = 0usize;
                    for (i, (x, c)) in distinct.iter().enumerate() {
                        seen += c;
                        if seen as f64 >= per * (edges.len() + 1) as f64 && i + 1 < distinct.len() {
                            edges.push((x + distinct[i + 1].0) / 2.0);
                        }
                    }
                    edges.push(f64::INFINITY);
                    edges
                };
                Binner::Numeric { edges }
            }
            Column::Categorical(v) => {
                let mut counts: std::collections::HashMap<u32, usize> = Default::default();
                for c in v.iter().flatten() {
                    *counts.entry(*c).or_default() += 1;
                }
                let mut by_count: Vec<(u32, usize)> = counts.into_iter().collect();
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                by_count.truncate(max_bins.saturating_sub(1).max(1));
                let n = by_count.len();
                Binner::Categorical {
                    bins: by_count
                        .into_iter()
                        .enumerate()
                        .map(|(i, (c, _))| (c, i as u16))
                        .collect(),
                    n,
                }
            }
        }
    }

    /// Bins including the missing bin.
    fn len(&self) -> usize {
        match self {
            Binner::Numeric { edges } => edges.len() + 1,
            Binner::Categorical { n, .. } => n + 1,
        }
    }

    fn missing(&self) -> u16 {
        (self.len() - 1) as u16
    }

    fn bin(&self, col: &Column, i: usize) -> u16 {
        match (self, col) {
            (Binner::Numeric { edges }, Column::Numeric(v)) => {
                let x = v[i];
                if x.is_nan() { self.missing() } else { edges.partition_point(|e| *e < x) as u16 }
            }
            (Binner::Categorical { bins, .. }, Column::Categorical(v)) => {
                v[i].and_then(|c| bins.get(&c).copied()).unwrap_or(self.missing())
            }
            _ => self.missing(),
        }
    }
}

/// A split: rows whose bin is in the left set go left.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Rule {
    /// Bins `<= threshold` go left; the missing bin goes left if `missing_left`.
    Numeric { threshold: u16, missing_left: bool },
    /// The listed bins go left (sorted).
    Categorical { left: Vec<u16> },
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Node {
    Split { feature: usize, rule: Rule, left: usize, right: usize },
    Leaf { value: f64 },
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    nodes: Vec<Node>,
    /// Training rows that reached each node (TreeSHAP weighs the paths by it).
    cover: Vec<f64>,
}

/// A tree's numeric splits in 16 bytes a node, for prediction: the same path as
/// [`Tree::predict_bins`] (categorical splits are taken there), with fewer loads a step.
struct Flat {
    nodes: Vec<FlatNode>,
    /// Each leaf's value (0 at splits).
    values: Vec<f64>,
    /// The longest path from the root to a leaf, in splits.
    depth: usize,
    /// Whether a split is categorical (then rows walk one by one through [`Tree`]).
    categorical: bool,
}

#[derive(Clone, Copy)]
struct FlatNode {
    feature: u16,
    threshold: u16,
    missing: u16,
    /// Bit 0: the missing bin goes left; bit 1: a categorical split; bit 2: a leaf.
    flags: u8,
    left: u32,
    right: u32,
}

impl Flat {
    fn new(t: &Tree, missing: &[u16]) -> Flat {
        let nodes: Vec<FlatNode> = t
            .nodes
            .iter()
            .enumerate()
            .map(|(k, n)| match n {
                // A leaf leads to itself either way: a walk of fixed length stays there.
                Node::Leaf { .. } => FlatNode {
                    feature: 0,
                    threshold: 0,
                    missing: 0,
                    flags: 4,
                    left: k as u32,
                    right: k as u32,
                },
                Node::Split { feature, rule, left, right } => {
                    let (threshold, flags) = match rule {
                        Rule::Numeric { threshold, missing_left } => {
                            (*threshold, u8::from(*missing_left))
                        }
                        Rule::Categorical { .. } => (0, 2),
                    };
                    FlatNode {
                        feature: u16::try_from(*feature).expect("under 65,536 features"),
                        threshold,
                        missing: missing[*feature],
                        flags,
                        left: *left as u32,
                        right: *right as u32,
                    }
                }
            })
            .collect();
        let values = t
            .nodes
            .iter()
            .map(|n| match n {
                Node::Leaf { value } => *value,
                Node::Split { .. } => 0.0,
            })
            .collect();
        let (mut depth, mut stack) = (0, vec![(0usize, 0usize)]);
        while let Some((k, d)) = stack.pop() {
            // A path longer than the tree has nodes is a cycle (a damaged model): walked no
            // further here, as the row walk would never end either.
            if d > nodes.len() {
                break;
            }
            depth = depth.max(d);
            let n = nodes[k];
            if n.flags & 4 == 0 {
                stack.extend([(n.left as usize, d + 1), (n.right as usize, d + 1)]);
            }
        }
        Flat { categorical: nodes.iter().any(|n| n.flags & 2 != 0), depth, nodes, values }
    }

    /// Adds the tree's output to each of `out`'s rows (`rows`: row by row, `width` bins
    /// each). A tree of numeric splits walks eight rows at once for `depth` steps without a
    /// branch (comparisons and selects only): the eight paths overlap in the processor,
    /// where one row's path waits on each mispredicted comparison. A branch in the step (a
    /// categorical split's set looked up) makes the compiler branch on the data again and
    /// measured slower than walking such trees row by row, as they are. The result is the
    /// same as [`Flat::predict`]'s, row by row.
    fn add_block(&self, t: &Tree, rows: &[u16], width: usize, out: &mut [f64], missing: &[u16]) {
        const LANES: usize = 8;
        let whole = if self.categorical { 0 } else { out.len() / LANES * LANES };
        for (i, group) in out[..whole].chunks_exact_mut(LANES).enumerate() {
            let base = i * LANES * width;
            let mut k = [0u32; LANES];
            for _ in 0..self.depth {
                for (j, kj) in k.iter_mut().enumerate() {
                    let n = self.nodes[*kj as usize];
                    let b = rows[base + j * width + n.feature as usize];
                    let left = (b == n.missing) & (n.flags & 1 != 0)
                        | (b != n.missing) & (b <= n.threshold);
                    *kj = if left { n.left } else { n.right };
                }
            }
            for (o, kj) in group.iter_mut().zip(k) {
                *o += self.values[kj as usize];
            }
        }
        for (j, o) in out.iter_mut().enumerate().skip(whole) {
            *o += self.predict(t, &rows[j * width..(j + 1) * width], missing);
        }
    }

    fn predict(&self, t: &Tree, row: &[u16], missing: &[u16]) -> f64 {
        let mut k = 0;
        loop {
            let n = self.nodes[k];
            if n.flags & 4 != 0 {
                let Node::Leaf { value } = t.nodes[k] else { unreachable!("a leaf") };
                return value;
            }
            let go_left = if n.flags & 2 != 0 {
                t.goes_left(k, row[n.feature as usize], missing).is_some_and(|g| g.3)
            } else {
                let b = row[n.feature as usize];
                if b == n.missing { n.flags & 1 != 0 } else { b <= n.threshold }
            };
            k = if go_left { n.left } else { n.right } as usize;
        }
    }
}

impl Tree {
    fn goes_left(&self, k: usize, b: u16, missing: &[u16]) -> Option<(usize, usize, usize, bool)> {
        match &self.nodes[k] {
            Node::Leaf { .. } => None,
            Node::Split { feature, rule, left, right } => {
                let go_left = match rule {
                    Rule::Numeric { threshold, missing_left } => {
                        if b == missing[*feature] {
                            *missing_left
                        } else {
                            b <= *threshold
                        }
                    }
                    Rule::Categorical { left } => left.binary_search(&b).is_ok(),
                };
                Some((*feature, *left, *right, go_left))
            }
        }
    }

    /// The tree's mean output over the training rows.
    fn expected(&self) -> f64 {
        self.nodes
            .iter()
            .zip(&self.cover)
            .filter_map(|(n, c)| match n {
                Node::Leaf { value } => Some(value * c),
                _ => None,
            })
            .sum::<f64>()
            / self.cover[0]
    }

    /// Adds the exact Shapley values of this tree's output for one row (TreeSHAP, Lundberg,
    /// Erion & Lee 2018, Algorithm 2) to `phi`.
    fn shap(&self, row: &dyn Fn(usize) -> u16, missing: &[u16], phi: &mut [f64]) {
        #[derive(Clone, Copy)]
        struct El {
            d: usize,
            z: f64,
            o: f64,
            w: f64,
        }
        fn extend(m: &mut Vec<El>, pz: f64, po: f64, pi: usize) {
            let l = m.len();
            m.push(El { d: pi, z: pz, o: po, w: if l == 0 { 1.0 } else { 0.0 } });
            for i in (0..l).rev() {
                m[i + 1].w += po * m[i].w * (i + 1) as f64 / (l + 1) as f64;
                m[i].w = pz * m[i].w * (l - i) as f64 / (l + 1) as f64;
            }
        }
        fn unwind(m: &mut Vec<El>, i: usize) {
            let l = m.len() - 1;
            let mut n = m[l].w;
            let (z, o) = (m[i].z, m[i].o);
            for j in (0..l).rev() {
                if o != 0.0 {
                    let t = m[j].w;
                    m[j].w = n * (l + 1) as f64 / ((j + 1) as f64 * o);
                    n = t - m[j].w * z * (l - j) as f64 / (l + 1) as f64;
                } else {
                    m[j].w = m[j].w * (l + 1) as f64 / (z * (l - j) as f64);
                }
            }
            for j in i..l {
                m[j].d = m[j + 1].d;
                m[j].z = m[j + 1].z;
                m[j].o = m[j + 1].o;
            }
            m.pop();
        }
        fn unwound_sum(m: &[El], i: usize) -> f64 {
            let l = m.len() - 1;
            let (z, o) = (m[i].z, m[i].o);
            let mut total = 0.0;
            if o != 0.0 {
                let mut n = m[l].w;
                for j in (0..l).rev() {
                    let t = n * (l + 1) as f64 / ((j + 1) as f64 * o);
                    total += t;
                    n = m[j].w - t * z * (l - j) as f64 / (l + 1) as f64;
                }
            } else {
                for j in (0..l).rev() {
                    total += m[j].w * (l + 1) as f64 / (z * (l - j) as f64);
                }
            }
            total
        }
        #[allow(clippy::too_many_arguments)]
        fn recurse(
            t: &Tree,
            k: usize,
            mut m: Vec<El>,
            pz: f64,
            po: f64,
            pi: usize,
            row: &dyn Fn(usize) -> u16,
            missing: &[u16],
            phi: &mut [f64],
        ) {
            extend(&mut m, pz, po, pi);
            match &t.nodes[k] {
                Node::Leaf { value } => {
                    for i in 1..m.len() {
                        let w = unwound_sum(&m, i);
                        phi[m[i].d] += w * (m[i].o - m[i].z) * value;
                    }
                }
                Node::Split { feature, .. } => {
                    let f = *feature;
                    let Some((_, left, right, go_left)) = t.goes_left(k, row(f), missing) else {
                        return;
                    };
                    let (hot, cold) = if go_left { (left, right) } else { (right, left) };
                    let (mut iz, mut io) = (1.0, 1.0);
                    if let Some(p) = (1..m.len()).find(|p| m[*p].d == f) {
                        iz = m[p].z;
                        io = m[p].o;
                        unwind(&mut m, p);
                    }
                    let c = t.cover[k];
                    recurse(t, hot, m.clone(), iz * t.cover[hot] / c, io, f, row, missing, phi);
                    recurse(t, cold, m, iz * t.cover[cold] / c, 0.0, f, row, missing, phi);
                }
            }
        }
        recurse(self, 0, Vec::new(), 1.0, 1.0, usize::MAX, row, missing, phi);
    }

    fn predict_bins(&self, row: impl Fn(usize) -> u16, missing: &[u16]) -> f64 {
        let mut k = 0;
        loop {
            match &self.nodes[k] {
                Node::Leaf { value } => return *value,
                Node::Split { feature, rule, left, right } => {
                    let b = row(*feature);
                    let go_left = match rule {
                        Rule::Numeric { threshold, missing_left } => {
                            if b == missing[*feature] {
                                *missing_left
                            } else {
                                b <= *threshold
                            }
                        }
                        Rule::Categorical { left } => left.binary_search(&b).is_ok(),
                    };
                    k = if go_left { *left } else { *right };
                }
            }
        }
    }
}

/// A fitted model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Gbm {
    binners: Vec<Binner>,
    init: f64,
    pub trees: Vec<Tree>,
    /// Total split gain per feature.
    pub importance: Vec<f64>,
    /// The validation log-loss after each round (when a validation set was given).
    pub validation_loss: Vec<f64>,
}

/// A histogram bin: sums of gradients and hessians. No row count: as LightGBM, counts are
/// estimated from the hessians (`h * rows / sum of h` in the leaf), which saves a third of
/// the work of building histograms; the children's true counts come from the partition.
#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
}

struct Best {
    gain: f64,
    feature: usize,
    rule: Rule,
    /// Penalty added to the children's own in their values (`cat_l2` after a sorted
    /// categorical split, as LightGBM computes their outputs).
    extra_l2: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Bins of every row, column-major. A bin fits a byte: at most 255 value bins and the
/// missing bin (`max_bins` is clamped to 255).
fn bin_matrix(binners: &[Binner], cols: &[Column], n: usize) -> Vec<Vec<u8>> {
    use rayon::prelude::*;
    binners.par_iter().zip(cols).map(|(b, c)| (0..n).map(|i| b.bin(c, i) as u8).collect()).collect()
}

pub(crate) fn check(cols: &[Column], y: &[bool]) -> Result<usize, StatsError> {
    let n = y.len();
    if n == 0 {
        return Err(StatsError::Empty("no rows".into()));
    }
    for (j, c) in cols.iter().enumerate() {
        let len = c.len();
        if len != n {
            return Err(StatsError::Shape(format!(
                "feature {} has {len} rows, the target {n}",
                j + 1
            )));
        }
    }
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 || pos == n {
        return Err(StatsError::Invalid("the target has one class only".into()));
    }
    Ok(n)
}

/// Trains on `(cols, y)`; `valid` (columns, labels) drives early stopping.
pub fn train(
    cols: &[Column],
    y: &[bool],
    valid: Option<(&[Column], &[bool])>,
    params: &Params,
) -> Result<Gbm, StatsError> {
    use rayon::prelude::*;
    let n = check(cols, y)?;
    let params = &Params { max_bins: params.max_bins.clamp(2, 255), ..params.clone() };
    let binners: Vec<Binner> = cols.par_iter().map(|c| Binner::fit(c, params.max_bins)).collect();
    let missing: Vec<u16> = binners.iter().map(|b| b.missing()).collect();
    let bins = bin_matrix(&binners, cols, n);
    // Row-major copy for histograms: a bin fits a byte (at most 255 value bins + missing).
    let nf = binners.len();
    let mut row_bins = vec![0u8; n * nf];
    row_bins.par_chunks_mut(nf.max(1) * 4096).enumerate().for_each(|(c, out)| {
        for (k, row) in out.chunks_mut(nf.max(1)).enumerate() {
            let i = c * 4096 + k;
            for (f, v) in row.iter_mut().enumerate() {
                *v = bins[f][i];
            }
        }
    });
    let pos = y.iter().filter(|v| **v).count() as f64;
    let p0 = pos / n as f64;
    let init = (p0 / (1.0 - p0)).ln();
    let mut score = vec![init; n];
    let vbins = valid.map(|(c, vy)| (bin_matrix(&binners, c, vy.len()), vy));
    let mut vscore = vbins.as_ref().map(|(_, vy)| vec![init; vy.len()]);
    let mut model = Gbm {
        binners,
        init,
        trees: Vec::new(),
        importance: vec![0.0; cols.len()],
        validation_loss: Vec::new(),
    };
    let (mut best_loss, mut best_round) = (f64::INFINITY, 0);
    let mut gh = vec![[0.0; 2]; n];
    let mut work = Work { order: Vec::new(), right: Vec::new(), pool: Vec::new() };
    // Split gains per tree: the importance counts only the trees kept.
    let mut per_tree_gain: Vec<Vec<f64>> = Vec::new();
    for round in 0..params.rounds {
        gh.par_iter_mut().zip(score.par_iter()).zip(y.par_iter()).for_each(|((e, s), yi)| {
            let p = sigmoid(*s);
            *e = [p - *yi as u8 as f64, (p * (1.0 - p)).max(1e-16)];
        });
        let mut gains = vec![0.0; nf];
        let (tree, leaves) =
            grow(&bins, &row_bins, &missing, &model.binners, &gh, params, &mut gains, &mut work);
        per_tree_gain.push(gains);
        // Each leaf knows its rows: the training scores need no walk down the tree.
        for (start, end, value) in leaves {
            for &r in &work.order[start..end] {
                score[r as usize] += value;
            }
        }
        if let (Some((vb, vy)), Some(vs)) = (&vbins, &mut vscore) {
            // Summed in fixed chunks, in order: a parallel sum's order varies from run to
            // run, and the best round (which ends the model) must not.
            const CHUNK: usize = 4096;
            let sums: Vec<f64> = vs
                .par_chunks_mut(CHUNK)
                .zip(vy.par_chunks(CHUNK))
                .enumerate()
                .map(|(c, (ss, ys))| {
                    let mut acc = 0.0;
                    for (k, (s, yi)) in ss.iter_mut().zip(ys).enumerate() {
                        let i = c * CHUNK + k;
                        *s += tree.predict_bins(|f| vb[f][i] as u16, &missing);
                        let p = sigmoid(*s).clamp(1e-15, 1.0 - 1e-15);
                        acc += if *yi { -p.ln() } else { -(1.0 - p).ln() };
                    }
                    acc
                })
                .collect();
            let loss = sums.iter().sum::<f64>() / vy.len() as f64;
            model.validation_loss.push(loss);
            if loss < best_loss - 1e-12 {
                best_loss = loss;
                best_round = round + 1;
            }
        }
        model.trees.push(tree);
        if params.early_stopping > 0
            && vbins.is_some()
            && round + 1 >= best_round + params.early_stopping
        {
            model.trees.truncate(best_round);
            break;
        }
    }
    for gains in &per_tree_gain[..model.trees.len()] {
        for (a, b) in model.importance.iter_mut().zip(gains) {
            *a += b;
        }
    }
    Ok(model)
}

/// One feature's histogram: a byte-sized bin indexes it without a bounds check.
type FeatureHist = [Bin; 256];

/// Buffers kept from tree to tree: no allocation (and no page zeroing by the OS) per split.
struct Work {
    /// Every row once; a leaf is a range of it, split in place.
    order: Vec<u32>,
    /// Right-hand rows while a range is partitioned.
    right: Vec<u32>,
    /// Histograms not in use.
    pool: Vec<Vec<FeatureHist>>,
}

/// A zeroed histogram, from the pool when it has one.
fn take(pool: &mut Vec<Vec<FeatureHist>>, nf: usize) -> Vec<FeatureHist> {
    {
        match pool.pop() {
            Some(mut h) => {
                h.iter_mut().for_each(|f| f.fill(Bin::default()));
                h
            }
            None => vec![[Bin::default(); 256]; nf],
        }
    }
}

/// The histogram of `rows`: row by row over the row-major bins (each row's bins are
/// contiguous), in at most 8 chunks of rows summed in order. The chunking depends on the
/// number of rows only, so the sums (and the trees) are the same on any number of threads.
fn histogram(
    rows: &[u32],
    row_bins: &[u8],
    nf: usize,
    gh: &[[f64; 2]],
    pool: &mut Vec<Vec<FeatureHist>>,
) -> Vec<FeatureHist> {
    use rayon::prelude::*;
    let chunk = rows.len().div_ceil(8).max(1 << 12);
    let k = rows.len().div_ceil(chunk).max(1);
    let mut parts: Vec<Vec<FeatureHist>> = (0..k).map(|_| take(pool, nf)).collect();
    parts.par_iter_mut().zip(rows.par_chunks(chunk)).for_each(|(flat, rs)| {
        for &r in rs {
            let r = r as usize;
            let [gi, hi] = gh[r];
            for (fh, &b) in flat.iter_mut().zip(&row_bins[r * nf..(r + 1) * nf]) {
                let e = &mut fh[b as usize];
                e.g += gi;
                e.h += hi;
            }
        }
    });
    let mut parts = parts.into_iter();
    let mut flat = parts.next().expect("at least one part");
    for p in parts {
        for (a, b) in flat.iter_mut().zip(&p) {
            for (a, b) in a.iter_mut().zip(b) {
                a.g += b.g;
                a.h += b.h;
            }
        }
        pool.push(p);
    }
    flat
}

/// Grows one tree leaf-wise (always split the leaf with the largest gain). Returns the tree
/// and each leaf's rows (a range of `work.order`) with its value.
#[allow(clippy::too_many_arguments)]
fn grow(
    bins: &[Vec<u8>],
    row_bins: &[u8],
    missing: &[u16],
    binners: &[Binner],
    gh: &[[f64; 2]],
    params: &Params,
    importance: &mut [f64],
    work: &mut Work,
) -> (Tree, Vec<(usize, usize, f64)>) {
    let n = gh.len();
    let lambda = params.lambda_l2;
    let nf = binners.len();
    struct Leaf {
        node: usize,
        /// The leaf's rows: `order[start..end]`.
        start: usize,
        end: usize,
        /// Every feature's histogram.
        hist: Vec<FeatureHist>,
        best: Option<Best>,
        g: f64,
        h: f64,
        /// The penalty in the leaf's value.
        l2: f64,
    }
    let find = |hist: &[FeatureHist], gs: f64, hs: f64, count: usize| -> Option<Best> {
        let parent = gs * gs / (hs + lambda);
        let mut best: Option<Best> = None;
        let per_h = count as f64 / hs;
        let est = |h: f64| (h * per_h).round().max(0.0) as u32;
        let ok =
            |n: u32, h: f64| n as usize >= params.min_data_in_leaf && h >= params.min_sum_hessian;
        for f in 0..nf {
            let hb = &hist[f][..binners[f].len()];
            let miss = hb[missing[f] as usize];
            let mut consider = |gain: f64, rule: Rule, extra_l2: f64| {
                if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Best { gain, feature: f, rule, extra_l2 });
                }
            };
            match &binners[f] {
                Binner::Numeric { .. } => {
                    let (mut gl, mut hl) = (0.0, 0.0);
                    let has_missing = est(miss.h) > 0;
                    for (t, e) in hb.iter().enumerate().take(missing[f] as usize) {
                        gl += e.g;
                        hl += e.h;
                        for missing_left in [false, true] {
                            if missing_left && !has_missing {
                                continue;
                            }
                            let (g1, h1) =
                                if missing_left { (gl + miss.g, hl + miss.h) } else { (gl, hl) };
                            let n1 = est(h1).min(count as u32);
                            let (g2, h2, n2) = (gs - g1, hs - h1, count as u32 - n1);
                            if !ok(n1, h1) || !ok(n2, h2) {
                                continue;
                            }
                            let gain = g1 * g1 / (h1 + lambda) + g2 * g2 / (h2 + lambda) - parent;
                            consider(
                                gain,
                                Rule::Numeric { threshold: t as u16, missing_left },
                                0.0,
                            );
                        }
                    }
                }
                Binner::Categorical { .. } => {
                    // As LightGBM: the missing (and unseen) bin never goes left; up to
                    // `max_cat_to_onehot` categories, one category against the rest;
                    // beyond, categories of at least `cat_smooth` rows sorted by their
                    // smoothed gradient ratio, and the best prefix from either end (at most
                    // `max_cat_threshold` categories, each new group of at least
                    // `min_data_per_group` rows) goes left, its gain with `cat_l2` added.
                    let m = missing[f] as usize;
                    // The missing bin counts, as LightGBM's NaN bin: three categories or fewer.
                    if m < params.max_cat_to_onehot {
                        for (t, e) in hb.iter().enumerate().take(m) {
                            let n1 = est(e.h).min(count as u32);
                            let (g2, h2, n2) = (gs - e.g, hs - e.h, count as u32 - n1);
                            if !ok(n1, e.h) || !ok(n2, h2) {
                                continue;
                            }
                            let gain =
                                e.g * e.g / (e.h + lambda) + g2 * g2 / (h2 + lambda) - parent;
                            consider(gain, Rule::Categorical { left: vec![t as u16] }, 0.0);
                        }
                    } else {
                        // The parent's term keeps the plain penalty (as LightGBM): the
                        // extra one makes these splits pay for their freedom; the children's
                        // values carry it too.
                        let l2 = lambda + params.cat_l2;
                        let smooth = params.cat_smooth;
                        let mut cats: Vec<u16> = (0..m as u16)
                            .filter(|b| est(hb[*b as usize].h) as f64 >= smooth.max(1.0))
                            .collect();
                        cats.sort_by(|a, b| {
                            let ra = hb[*a as usize].g / (hb[*a as usize].h + smooth);
                            let rb = hb[*b as usize].g / (hb[*b as usize].h + smooth);
                            ra.total_cmp(&rb)
                        });
                        let most = params.max_cat_threshold.min(cats.len().div_ceil(2)).max(1);
                        for reverse in [false, true] {
                            let (mut gl, mut hl, mut group) = (0.0, 0.0, 0u32);
                            for i in 0..cats.len().min(most) {
                                let c = if reverse { cats[cats.len() - 1 - i] } else { cats[i] };
                                let e = hb[c as usize];
                                gl += e.g;
                                hl += e.h;
                                group += est(e.h);
                                let nl = est(hl).min(count as u32);
                                if !ok(nl, hl) {
                                    continue;
                                }
                                let (g2, h2, n2) = (gs - gl, hs - hl, count as u32 - nl);
                                if !ok(n2, h2) || (n2 as usize) < params.min_data_per_group {
                                    break;
                                }
                                if (group as usize) < params.min_data_per_group {
                                    continue;
                                }
                                group = 0;
                                let gain = gl * gl / (hl + l2) + g2 * g2 / (h2 + l2) - parent;
                                let mut left: Vec<u16> = if reverse {
                                    cats[cats.len() - 1 - i..].to_vec()
                                } else {
                                    cats[..=i].to_vec()
                                };
                                left.sort_unstable();
                                consider(gain, Rule::Categorical { left }, params.cat_l2);
                            }
                        }
                    }
                }
            }
        }
        best
    };
    // The sums of a histogram (any feature's bins hold every row once).
    let totals = |hist: &[FeatureHist]| -> (f64, f64) {
        hist.first()
            .map_or((0.0, 0.0), |f| f.iter().fold((0.0, 0.0), |(a, b), e| (a + e.g, b + e.h)))
    };
    work.order.clear();
    work.order.extend(0..n as u32);
    let h_all = histogram(&work.order, row_bins, nf, gh, &mut work.pool);
    let (g0, h0) = if nf == 0 {
        gh.iter().fold((0.0, 0.0), |(a, b), e| (a + e[0], b + e[1]))
    } else {
        totals(&h_all)
    };
    let best0 = find(&h_all, g0, h0, n);
    let mut nodes = vec![Node::Leaf { value: 0.0 }];
    let mut cover = vec![n as f64];
    let mut leaves = vec![Leaf {
        node: 0,
        start: 0,
        end: n,
        hist: h_all,
        best: best0,
        g: g0,
        h: h0,
        l2: lambda,
    }];
    while leaves.len() < params.num_leaves {
        let Some(k) = (0..leaves.len()).filter(|k| leaves[*k].best.is_some()).max_by(|a, b| {
            let (ga, gb) = (
                leaves[*a].best.as_ref().map_or(0.0, |x| x.gain),
                leaves[*b].best.as_ref().map_or(0.0, |x| x.gain),
            );
            ga.total_cmp(&gb)
        }) else {
            break;
        };
        let leaf = leaves.swap_remove(k);
        let Some(best) = leaf.best else { break };
        importance[best.feature] += best.gain;
        let col = &bins[best.feature];
        // Which bins go left, looked up per row instead of evaluating the rule.
        let mut left_bin = [false; 256];
        for (b, l) in left_bin.iter_mut().enumerate() {
            let b = b as u16;
            *l = match &best.rule {
                Rule::Numeric { threshold, missing_left } => {
                    if b == missing[best.feature] {
                        *missing_left
                    } else {
                        b <= *threshold
                    }
                }
                Rule::Categorical { left } => left.binary_search(&b).is_ok(),
            };
        }
        // Stable in-place partition of the leaf's range: left rows first, in order (so a
        // leaf's rows stay ascending and the histograms read memory forwards). Branch-free:
        // each row is written to both sides and only one side's cursor moves.
        let range = &mut work.order[leaf.start..leaf.end];
        work.right.clear();
        work.right.resize(range.len(), 0);
        let (mut w, mut k) = (0, 0);
        for i in 0..range.len() {
            let r = range[i];
            let l = left_bin[col[r as usize] as usize];
            range[w] = r;
            work.right[k] = r;
            w += l as usize;
            k += !l as usize;
        }
        range[w..].copy_from_slice(&work.right[..k]);
        let mid = leaf.start + w;
        let (nl, nr) = (w, leaf.end - mid);
        // Histogram subtraction: build the smaller child, derive the other.
        let small_is_left = nl <= nr;
        let small = if small_is_left { leaf.start..mid } else { mid..leaf.end };
        let hs = histogram(&work.order[small], row_bins, nf, gh, &mut work.pool);
        // The parent's buffer becomes the larger child's: no new allocation.
        let mut hl = leaf.hist;
        for (a, b) in hl.iter_mut().zip(&hs) {
            for (a, b) in a.iter_mut().zip(b) {
                a.g -= b.g;
                a.h -= b.h;
            }
        }
        let (left_hist, right_hist) = if small_is_left { (hs, hl) } else { (hl, hs) };
        let (gl, hl_) = totals(&left_hist);
        let (gr, hr) = (leaf.g - gl, leaf.h - hl_);
        let (li, ri) = (nodes.len(), nodes.len() + 1);
        nodes.push(Node::Leaf { value: 0.0 });
        nodes.push(Node::Leaf { value: 0.0 });
        cover.push(nl as f64);
        cover.push(nr as f64);
        let extra_l2 = best.extra_l2;
        nodes[leaf.node] =
            Node::Split { feature: best.feature, rule: best.rule, left: li, right: ri };
        let bl = find(&left_hist, gl, hl_, nl);
        let br = find(&right_hist, gr, hr, nr);
        leaves.push(Leaf {
            node: li,
            start: leaf.start,
            end: mid,
            hist: left_hist,
            best: bl,
            g: gl,
            h: hl_,
            l2: lambda + extra_l2,
        });
        leaves.push(Leaf {
            node: ri,
            start: mid,
            end: leaf.end,
            hist: right_hist,
            best: br,
            g: gr,
            h: hr,
            l2: lambda + extra_l2,
        });
    }
    let mut out = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let value = -leaf.g / (leaf.h + leaf.l2) * params.learning_rate;
        nodes[leaf.node] = Node::Leaf { value };
        out.push((leaf.start, leaf.end, value));
        work.pool.push(leaf.hist);
    }
    (Tree { nodes, cover }, out)
}

impl Gbm {
    /// Per-row contributions to the log-odds: the exact Shapley values of each feature
    /// (TreeSHAP, path-dependent), then the expected log-odds; a row's values sum to its
    /// predicted log-odds.
    pub fn contributions(&self, cols: &[Column]) -> Vec<Vec<f64>> {
        let n = cols.first().map_or(0, Column::len);
        let missing: Vec<u16> = self.binners.iter().map(|b| b.missing()).collect();
        let bins = bin_matrix(&self.binners, cols, n);
        let base = self.init + self.trees.iter().map(|t| t.expected()).sum::<f64>();
        use rayon::prelude::*;
        (0..n)
            .into_par_iter()
            .map(|i| {
                let mut phi = vec![0.0; cols.len() + 1];
                for t in &self.trees {
                    t.shap(&|f| bins[f][i] as u16, &missing, &mut phi);
                }
                phi[cols.len()] = base;
                phi
            })
            .collect()
    }

    /// Predicted probabilities for new rows (columns shaped as in training).
    pub fn predict(&self, cols: &[Column]) -> Vec<f64> {
        self.predict_raw(cols).into_iter().map(sigmoid).collect()
    }

    /// Raw scores (log-odds) of new rows.
    pub fn predict_raw(&self, cols: &[Column]) -> Vec<f64> {
        let n = cols.first().map_or(0, Column::len);
        let missing: Vec<u16> = self.binners.iter().map(|b| b.missing()).collect();
        let bins = bin_matrix(&self.binners, cols, n);
        use rayon::prelude::*;
        // Blocks of rows, each laid out row by row, and every tree over a block before the
        // next tree: a block's bins stay in cache while the trees walk them. The sums are
        // the same as row by row (each row's trees added in order from 0, then `init`).
        const BLOCK: usize = 2048;
        let width = bins.len();
        let flat: Vec<Flat> = self.trees.iter().map(|t| Flat::new(t, &missing)).collect();
        let mut out = vec![0.0; n];
        out.par_chunks_mut(BLOCK).enumerate().for_each(|(c, block)| {
            let lo = c * BLOCK;
            let mut rows = vec![0u16; block.len() * width];
            for (f, col) in bins.iter().enumerate() {
                for (j, b) in col[lo..lo + block.len()].iter().enumerate() {
                    rows[j * width + f] = u16::from(*b);
                }
            }
            for (t, f) in self.trees.iter().zip(&flat) {
                f.add_block(t, &rows, width, block, &missing);
            }
            for o in block.iter_mut() {
                *o += self.init;
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path-dependent conditional expectation TreeSHAP explains: features in `known`
    /// follow the row, the others average the children by cover.
    fn value(t: &Tree, k: usize, row: &dyn Fn(usize) -> u16, missing: &[u16], known: u32) -> f64 {
        match &t.nodes[k] {
            Node::Leaf { value } => *value,
            Node::Split { feature, left, right, .. } => {
                if known & (1 << feature) != 0 {
                    let (_, l, r, go_left) = t.goes_left(k, row(*feature), missing).unwrap();
                    value(t, if go_left { l } else { r }, row, missing, known)
                } else {
                    (t.cover[*left] * value(t, *left, row, missing, known)
                        + t.cover[*right] * value(t, *right, row, missing, known))
                        / t.cover[k]
                }
            }
        }
    }

    /// The root split of one round of 2-leaf trees on a single categorical column.
    fn root_split(codes: &[Option<u32>], y: &[bool]) -> (Vec<u16>, Gbm) {
        let cols = vec![Column::Categorical(codes.to_vec())];
        let params = Params { rounds: 1, num_leaves: 2, ..Params::default() };
        let m = train(&cols, y, None, &params).unwrap();
        match &m.trees[0].nodes[0] {
            Node::Split { rule: Rule::Categorical { left }, .. } => (left.clone(), m.clone()),
            other => panic!("{other:?}"),
        }
    }

    /// Three categories and missing values: one category against the rest, the missing
    /// bin never on the left (LightGBM's one-hot splits, `max_cat_to_onehot` 4).
    #[test]
    fn few_categories_split_one_against_the_rest() {
        // Category 1 and the missing rows churn, categories 0 and 2 do not.
        let codes: Vec<Option<u32>> =
            (0..800).map(|i| if i % 4 == 3 { None } else { Some((i % 4) as u32) }).collect();
        let y: Vec<bool> = codes.iter().map(|c| matches!(c, None | Some(1))).collect();
        let (left, m) = root_split(&codes, &y);
        let Binner::Categorical { bins, .. } = &m.binners[0] else { unreachable!() };
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left == vec![bins[&1]] || left == vec![bins[&0]] || left == vec![bins[&2]]);
        assert!(!left.contains(&m.binners[0].missing()));
    }

    /// Six categories: the rare one (under `cat_smooth` rows) and the missing bin stay on
    /// the right, the left holds at most half the used categories, and the children's values
    /// carry `cat_l2` on top of the L2 penalty (as LightGBM's outputs).
    #[test]
    fn many_categories_split_by_their_smoothed_order() {
        // Categories 0-2 churn 80% of the time, 3-4 10%, the rare 5 always; 200 rows each
        // but 5 rows for category 5, and 40 missing that never churn.
        let mut codes = Vec::new();
        let mut y = Vec::new();
        for c in 0..5u32 {
            for i in 0..200 {
                codes.push(Some(c));
                y.push(if c < 3 { i % 5 != 0 } else { i % 10 == 0 });
            }
        }
        codes.extend(std::iter::repeat_n(Some(5), 5));
        y.extend(std::iter::repeat_n(true, 5));
        codes.extend(std::iter::repeat_n(None, 40));
        y.extend(std::iter::repeat_n(false, 40));
        let (left, m) = root_split(&codes, &y);
        let Binner::Categorical { bins, .. } = &m.binners[0] else { unreachable!() };
        let of = |cs: &[u32]| {
            let mut v: Vec<u16> = cs.iter().map(|c| bins[c]).collect();
            v.sort_unstable();
            v
        };
        assert!(left == of(&[0, 1, 2]) || left == of(&[3, 4]), "{left:?}");
        // The leaf of the left rows: -G / (H + lambda_l2 + cat_l2) x the learning rate,
        // from the first round's gradients p0 - y and hessians p0 (1 - p0).
        let p0 = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
        let (mut g, mut h) = (0.0, 0.0);
        for (c, yi) in codes.iter().zip(&y) {
            if c.is_some_and(|c| left.contains(&bins[&c])) {
                g += p0 - f64::from(u8::from(*yi));
                h += p0 * (1.0 - p0);
            }
        }
        let want = -g / (h + 0.0 + 10.0) * 0.1;
        let Node::Split { left: l, .. } = &m.trees[0].nodes[0] else { unreachable!() };
        let Node::Leaf { value } = &m.trees[0].nodes[*l] else { unreachable!() };
        assert!((value - want).abs() < 1e-12, "{value} vs {want}");
    }

    /// The block walk (eight rows at once, a fixed number of steps) adds up exactly what
    /// each row's own walk gives, tree by tree, for numeric trees with missing values and
    /// for trees with a categorical split (walked row by row), over several blocks and a
    /// remainder of rows.
    #[test]
    fn block_prediction_equals_each_row_walked_alone() {
        for categorical in [false, true] {
            let n = 5003;
            let x0: Vec<f64> = (0..n)
                .map(|i| if i % 7 == 0 { f64::NAN } else { ((i * 31) % 97) as f64 })
                .collect();
            let x1: Vec<f64> = (0..n).map(|i| ((i * 13) % 41) as f64).collect();
            let y: Vec<bool> = (0..n)
                .map(|i| (x0[i].is_nan() || x0[i] > 60.0) != (x1[i] < 9.0 || i % 5 == 0))
                .collect();
            let mut cols = vec![Column::Numeric(x0), Column::Numeric(x1)];
            if categorical {
                cols.push(Column::Categorical((0..n).map(|i| Some((i % 5) as u32)).collect()));
            }
            let params =
                Params { rounds: 30, num_leaves: 12, min_data_in_leaf: 5, ..Params::default() };
            let m = train(&cols, &y, None, &params).unwrap();
            let raw = m.predict_raw(&cols);
            let missing: Vec<u16> = m.binners.iter().map(|b| b.missing()).collect();
            let bins = bin_matrix(&m.binners, &cols, n);
            let deep = m.trees.iter().map(|t| Flat::new(t, &missing).depth).max().unwrap();
            assert!(deep >= 3, "trees of depth {deep}");
            for (i, got) in raw.iter().enumerate() {
                let want = m
                    .trees
                    .iter()
                    .map(|t| t.predict_bins(|f| bins[f][i] as u16, &missing))
                    .fold(0.0, |a, b| a + b)
                    + m.init;
                assert_eq!(got.to_bits(), want.to_bits(), "row {i}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_model_read_back_from_json_predicts_the_same() {
        let n = 300;
        let x0: Vec<f64> =
            (0..n).map(|i| if i % 7 == 0 { f64::NAN } else { (i % 17) as f64 }).collect();
        let x1: Vec<Option<u32>> = (0..n).map(|i| Some((i % 3) as u32)).collect();
        let y: Vec<bool> = (0..n).map(|i| (i % 17 > 8) != (i % 3 == 1)).collect();
        let cols = vec![Column::Numeric(x0), Column::Categorical(x1)];
        let params = Params { rounds: 10, num_leaves: 4, min_data_in_leaf: 5, ..Params::default() };
        let m = train(&cols, &y, None, &params).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        // The last bin edge is infinite: JSON has no such number, so it travels as text.
        assert!(text.contains("\"inf\""), "{text}");
        let back: Gbm = serde_json::from_str(&text).unwrap();
        assert_eq!(m.predict_raw(&cols), back.predict_raw(&cols));
    }

    #[test]
    fn tree_shap_equals_brute_force_shapley_values_and_sums_to_the_prediction() {
        // Three features with interactions, a missing value and a category.
        let n = 400;
        let x0: Vec<f64> =
            (0..n).map(|i| if i % 11 == 0 { f64::NAN } else { (i % 13) as f64 }).collect();
        let x1: Vec<Option<u32>> = (0..n).map(|i| Some((i % 4) as u32)).collect();
        let x2: Vec<f64> = (0..n).map(|i| ((i * 37) % 19) as f64).collect();
        let y: Vec<bool> = (0..n)
            .map(|i| (x0[i].is_nan() || x0[i] > 6.0) != (x1[i] == Some(2)) || x2[i] > 15.0)
            .collect();
        let cols = vec![Column::Numeric(x0), Column::Categorical(x1), Column::Numeric(x2)];
        let params = Params { rounds: 5, num_leaves: 6, min_data_in_leaf: 5, ..Params::default() };
        let m = train(&cols, &y, None, &params).unwrap();
        let raw = m.predict_raw(&cols);
        let phi = m.contributions(&cols);
        let missing: Vec<u16> = m.binners.iter().map(|b| b.missing()).collect();
        let bins = bin_matrix(&m.binners, &cols, n);
        let fact = |k: u32| (1..=k).map(f64::from).product::<f64>();
        for i in (0..n).step_by(7) {
            let total: f64 = phi[i].iter().sum();
            assert!((total - raw[i]).abs() < 1e-9, "row {i}: {total} vs {}", raw[i]);
            let row = |f: usize| bins[f][i] as u16;
            for f in 0..3u32 {
                let mut want = 0.0;
                for s in 0..8u32 {
                    if s & (1 << f) != 0 {
                        continue;
                    }
                    let size = s.count_ones();
                    let w = fact(size) * fact(3 - size - 1) / fact(3);
                    let gain: f64 = m
                        .trees
                        .iter()
                        .map(|t| {
                            value(t, 0, &row, &missing, s | (1 << f))
                                - value(t, 0, &row, &missing, s)
                        })
                        .sum();
                    want += w * gain;
                }
                let got = phi[i][f as usize];
                assert!((got - want).abs() < 1e-9, "row {i} feature {f}: {got} vs {want}");
            }
        }
    }
}
