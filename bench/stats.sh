#!/usr/bin/env bash
# Statistics benchmark (issue 4): tenure stats against lifelines (Kaplan-Meier and Cox on
# 1 M rows) and lifetimes (BG/NBD on 1 M customers), same data, same run; time and agreement.
# Both sides are timed reading the CSV and fitting (pandas.read_csv for the peers); the peers'
# fit alone is shown too. RECORD=0 leaves BENCHMARKS.md alone.
set -euo pipefail
RECORD=${RECORD:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/stats
mkdir -p "$W"
[ -x bench-data/venv/bin/python ] || python3 -m venv bench-data/venv
PY=bench-data/venv/bin/python
"$PY" -c 'import lifelines, lifetimes, lightgbm, sklearn' 2>/dev/null || bench-data/venv/bin/pip install --quiet lifelines lifetimes lightgbm scikit-learn
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"
say() { echo "[bench] $*" >&2; }

say "generating the data"
"$PY" bench/peers/stats_bench.py gen "$W"
say "peers (lifelines, lifetimes)"
"$PY" bench/peers/stats_bench.py peers "$W" >/dev/null

timed() { # OUT CMD...: the median wall seconds of three runs in S
    local out=$1 t0 runs=()
    shift
    for _ in 1 2 3; do
        t0=$(date +%s.%N)
        "$@" >"$out"
        runs+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')")
    done
    S=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
}
say "tenure stats"
timed "$W/km.json" "$T" stats km --input "$W/survival.csv" --duration duration --event event --at 10,50,100
KM_S=$S
timed "$W/cox.json" "$T" stats cox --input "$W/survival.csv" --duration duration --event event --covariates x1,x2,x3,x4,x5
COX_S=$S
timed "$W/bgnbd.json" "$T" stats bgnbd --input "$W/cdnow_x424.csv" --frequency frequency --recency recency --t T
BG_S=$S
FEATS=$(head -1 "$W/gbm.csv" | tr ',' '\n' | grep -v -e '^target$' -e '^fold$' | paste -sd,)
timed1() { # OUT CMD...: wall seconds of one run in S (long runs)
    local out=$1 t0
    shift
    t0=$(date +%s.%N)
    "$@" >"$out"
    S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
}
# LightGBM's defaults given explicitly: the comparison is of one training at the same
# settings (without them tenure chooses its own by cross-validation; bench/gbm.sh).
timed1 "$W/gbm.json" "$T" stats gbm --input "$W/gbm.csv" --target target --features "$FEATS" --fold-column fold \
    --rounds 100 --learning-rate 0.1 --num-leaves 31 --min-data-in-leaf 20 --lambda-l2 0
GBM_S=$S

SECTION=$("$PY" - "$W" "$KM_S" "$COX_S" "$BG_S" "$GBM_S" "$(git rev-parse --short HEAD)" "$(nproc)" <<'EOF'
import json, sys
w, km_s, cox_s, bg_s, gbm_s, commit, cores = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6], sys.argv[7]
p = json.load(open(f"{w}/peers.json"))
km = json.load(open(f"{w}/km.json"))["groups"][0]
cox = json.load(open(f"{w}/cox.json"))
bg = json.load(open(f"{w}/bgnbd.json"))
rel = lambda a, b: abs(a - b) / max(abs(b), 1e-300)
km_diff = max(rel(r["survival"], s) for r, s in zip(km["at"], p["km_at"]))
cox_diff = max(rel(cox["coefficients"][k]["coef"], v) for k, v in p["cox_coef"].items())
bg_diff = max(rel(bg[k], v) for k, v in p["bgnbd"].items())
import datetime
rs, rc = p["read_survival_s"], p["read_cdnow_s"]
rows = [
    ("Kaplan-Meier, 1,000,000 rows (integer durations)", km_s, rs, p["km_s"], f"S(10, 50, 100) max rel. diff {km_diff:.1e}; median {km['median']} vs {p['km_median']}"),
    ("Cox PH (Efron), 1,000,000 rows x 5 covariates", cox_s, rs, p["cox_s"], f"coefficients max rel. diff {cox_diff:.1e}; log-lik {cox['log_likelihood']:.3f} vs {p['cox_ll']:.3f}"),
    ("BG/NBD, 999,368 customers (CDNOW x 424)", bg_s, rc, p["bgnbd_s"], f"r, alpha, a, b max rel. diff {bg_diff:.1e}"),
]
print(f"\n## Statistics benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n")
print(f"Command: `bash bench/stats.sh`. {cores} cores; tenure at commit {commit}. Tenure's time is the whole")
print("`tenure stats` process: reading the CSV, fitting, printing. The peers' (lifelines for Kaplan-Meier")
print("and Cox, lifetimes for BG/NBD) is `pandas.read_csv` plus the fit; the fit alone is shown too.")
print("Kaplan-Meier, Cox and BG/NBD times (both sides) and the CSV reads are medians of three runs.")
print("Target: >= 10x.\n")
print("| model | tenure | peer (read + fit) | peer fit alone | speed-up | agreement |")
print("|---|---|---|---|---|---|")
for name, t, read, fit, agree in rows:
    q = read + fit
    print(f"| {name} | {t:.2f} s | {q:.2f} s | {fit:.2f} s | {q / t:.1f}x ({'met' if q / t >= 10 else 'MISSED'}) | {agree} |")
gb = json.load(open(f"{w}/gbm.json"))
t_tr, l_tr = gb["seconds_training"], p["gbm_train_s"]
print("")
print("Gradient boosting, 1,000,000 rows x 50 features (5 text columns, missing values), two folds,")
print("100 rounds each with LightGBM's defaults (LightGBM 4 through its Python API, all cores). Target:")
print("training time <= LightGBM's.\n")
print("| | tenure | LightGBM |")
print("|---|---|---|")
print(f"| training, both folds | {t_tr:.2f} s ({'met' if t_tr <= l_tr else 'MISSED'}) | {l_tr:.2f} s |")
print(f"| whole run (tenure: the process, CSV included; LightGBM: read_csv + training) | {gbm_s:.2f} s | {p['read_gbm_s'] + l_tr:.2f} s |")
print(f"| out-of-fold ROC AUC | {gb['auc']:.4f} | {p['gbm_auc']:.4f} |")
EOF
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then echo "$SECTION" >>BENCHMARKS.md; fi
