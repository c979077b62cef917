#!/usr/bin/env bash
# Gradient boosting on public churn tables (issue 17): `tenure stats gbm` with its chosen
# settings against scikit-learn's gradient boosting, LightGBM and a logistic regression at
# their defaults, on the folds stored in each table; out-of-fold AUC, log-loss and seconds.
# BIG=1 adds bench/stats.sh's 1,000,000-row table (two folds; without scikit-learn's exact
# boosting, hours on one core). RECORD=0 leaves BENCHMARKS.md alone.
set -euo pipefail
RECORD=${RECORD:-1}
BIG=${BIG:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/gbm
D=crates/tenure-stats/tests/data
mkdir -p "$W"
[ -x bench-data/venv/bin/python ] || python3 -m venv bench-data/venv
PY=bench-data/venv/bin/python
"$PY" -c 'import lightgbm, sklearn, pandas' 2>/dev/null || bench-data/venv/bin/pip install --quiet lightgbm scikit-learn pandas
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"
say() { echo "[bench] $*" >&2; }

BIGCSV=""
if [ "$BIG" = 1 ]; then
    [ -f bench-data/stats/gbm.csv ] || "$PY" bench/peers/stats_bench.py gen bench-data/stats
    BIGCSV=bench-data/stats/gbm.csv
fi
say "peers (one thread each)"
OMP_NUM_THREADS=1 "$PY" bench/peers/gbm_tables.py peers "$D" $BIGCSV >"$W/peers.json"

run() { # NAME FILE TARGET: tenure stats gbm, tuned, on the stored folds
    local feats
    feats=$(head -1 "$2" | tr -d '\r' | tr ',' '\n' | grep -v -e "^$3\$" -e '^fold$' | paste -sd,)
    say "tenure on $1"
    "$T" stats gbm --input "$2" --target "$3" --features "$feats" --fold-column fold >"$W/tenure_$1.json"
}
run telco500.csv "$D/telco500.csv" Churn
run churn.csv "$D/churn.csv" churned
run attrition.csv "$D/attrition.csv" left
run telco.csv "$D/telco.csv" Churn
[ "$BIG" = 1 ] && run 1M "$BIGCSV" target

SECTION=$("$PY" - "$W" "$(git rev-parse --short HEAD)" "$(nproc)" <<'EOF'
import datetime, json, os, sys
w, commit, cores = sys.argv[1:4]
p = json.load(open(f"{w}/peers.json"))
print(f"\n## Gradient boosting on public churn tables, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n")
print(f"Command: `bash bench/gbm.sh`. {cores} cores; tenure at commit {commit}, its settings chosen inside")
print("each training fold (docs/stats.md); the peers at their defaults, one thread each (scikit-learn")
print("GradientBoostingClassifier, LightGBM, LogisticRegression). Out-of-fold ROC AUC / log-loss on")
print("the folds stored in each table, seconds for all folds. Target: tenure's AUC within 0.003 of")
print("the best peer's.\n")
print("| table | rows | scikit-learn GB | LightGBM | logistic | tenure, tuned | gap to best | tenure s |")
print("|---|---|---|---|---|---|---|---|")
for t, v in p.items():
    f = f"{w}/tenure_{t}.json"
    if not os.path.exists(f):
        continue
    j = json.load(open(f))
    cell = lambda k: f"{v[k]['auc']:.4f} / {v[k]['log_loss']:.4f} ({v[k]['seconds']:.1f} s)" if k in v else "not run"
    gap = v["best_auc"] - j["auc"]
    print(f"| {t} | {v['rows']:,} | {cell('sklearn_gbc')} | {cell('lightgbm')} | {cell('logistic')} | "
          f"{j['auc']:.4f} / {j['log_loss']:.4f} | {gap:+.4f} ({'met' if gap <= 0.003 else 'MISSED'}) | {j['seconds_total']:.1f} |")
EOF
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then echo "$SECTION" >>BENCHMARKS.md; fi
