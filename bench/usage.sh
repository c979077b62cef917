#!/usr/bin/env bash
# Usage benchmark (issue 3): 100 M usage events for 100 k accounts. Import throughput, the
# columnar rollup, a full `tenure kpi` (time, peak memory) next to DuckDB computing the same
# usage KPIs (MAU, licence utilisation, feature adoption) on the same Parquet files, cold and
# after 1% new events arrive (tenure refreshes incrementally, DuckDB recomputes).
#
#   bash bench/usage.sh [ACCOUNTS] [USAGE_EVENTS]      (defaults: 100000 100000000)
#
# Environment: REPEAT (default 3) timed runs, median reported; RECORD=0 leaves BENCHMARKS.md
# alone. Works in bench-data/usage (gitignored); needs about 40 GB of disk at the default size.
set -euo pipefail

ACCOUNTS=${1:-100000}
USAGE_EVENTS=${2:-100000000}
REPEAT=${REPEAT:-3}
RECORD=${RECORD:-1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/usage
mkdir -p "$W"
say() { echo "[bench] $*" >&2; }

if [ ! -x bench-data/venv/bin/python ]; then
    say "creating bench-data/venv"
    python3 -m venv bench-data/venv
fi
PY=bench-data/venv/bin/python
"$PY" -c 'import duckdb' 2>/dev/null || bench-data/venv/bin/pip install --quiet duckdb pyarrow
if ! command -v /usr/bin/time >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq time
fi

say "cargo build --release --workspace --bin tenure"
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"

# measure NAME OUT CMD...: wall seconds in M_S, peak RSS (KiB) in M_RSS; stderr to W/NAME.err
measure() {
    local name=$1 out=$2
    shift 2
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$W/time.$name" "$@" >"$out" 2>"$W/$name.err" || {
        cat "$W/$name.err" >&2
        say "$name failed"
        exit 1
    }
    t1=$(date +%s.%N)
    M_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    M_RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$W/time.$name")
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# --- Dates: 36 months of history ending last month; the report is last month --------------
THIS_MONTH=$(date -u +%Y-%m)
END="${THIS_MONTH}-01T00:00:00Z"
JUST_BEFORE="$(date -u -d "${THIS_MONTH}-01 -1 day" +%Y-%m-%d)T23:59:59.999999Z"
START=$(date -u -d "${THIS_MONTH}-01 -36 months" +%Y-%m)
PERIOD=$(date -u -d "${THIS_MONTH}-01 -1 month" +%Y-%m)
# The newest events (the last days of history, about 1% of them) arrive later.
CUTOFF=$(date -u -d "${THIS_MONTH}-01 -10 days" +%Y-%m-%d)
REL1=$(date -u -d "${START}-01 +12 months" +%Y-%m-%d)
REL2=$(date -u -d "${START}-01 +30 months" +%Y-%m-%d)

# --- Company ----------------------------------------------------------------------------------
CO="$W/company"
rm -rf "$CO" "$W/data"
say "tenure gen --accounts $ACCOUNTS --usage-events $USAGE_EVENTS --months 36"
measure gen /dev/null "$T" gen --accounts "$ACCOUNTS" --months 36 --seed 7 --start "$START" \
    --usage-events "$USAGE_EVENTS" --out "$CO"
GEN_S=$M_S
say "holding back usage events from $CUTOFF on"
LC_ALL=C awk -v c="$CUTOFF" -v new="$CO/new-usage.jsonl" -v base="$CO/base-usage.jsonl" \
    '{ if (substr($0, 30, 10) >= c) print > new; else print > base }' "$CO/usage.jsonl"
rm "$CO/usage.jsonl"
BASE_N=$(wc -l <"$CO/base-usage.jsonl")
NEW_N=$(wc -l <"$CO/new-usage.jsonl")
mkdir -p "$CO/later"
mv "$CO/new-usage.jsonl" "$CO/later/"

# --- Import -----------------------------------------------------------------------------------
D="$W/data"
say "tenure import (everything but the held-back usage)"
measure import /dev/null "$T" import --no-refresh --data "$D" "$CO"/*.jsonl
IMPORT_S=$M_S IMPORT_RSS=$M_RSS
EVENTS=$(sed -n 's/^total: \([0-9]*\) events.*/\1/p' "$W/import.err")
USAGE_RATE=$(sed -n 's/^.*base-usage\.jsonl: \([0-9]*\) stored.*(\([0-9.]*\) events\/s).*/\2/p' "$W/import.err")
cat >"$D/tenure.toml" <<EOF
[features.dashboards]
tier = "basic"
[features.reports]
tier = "basic"
[features.search]
tier = "basic"
[features.export]
tier = "basic"
[features.alerts]
tier = "basic"
[features.comments]
tier = "basic"
[features.automations]
tier = "advanced"
released = "$REL1"
[features.integrations]
tier = "advanced"
[features.custom_fields]
tier = "advanced"
[features.api]
tier = "advanced"
[features.workflows]
tier = "advanced"
released = "$REL2"
[features.forecasting]
tier = "advanced"
released = "$REL2"
EOF
FEATURES="{\"dashboards\":\"2000-01-01\",\"reports\":\"2000-01-01\",\"search\":\"2000-01-01\",\"export\":\"2000-01-01\",\"alerts\":\"2000-01-01\",\"comments\":\"2000-01-01\",\"automations\":\"$REL1\",\"integrations\":\"2000-01-01\",\"custom_fields\":\"2000-01-01\",\"api\":\"2000-01-01\",\"workflows\":\"$REL2\",\"forecasting\":\"$REL2\"}"

# --- Columnar store, cold -------------------------------------------------------------------
say "columnar store: materialise, roll up and compact everything (cold)"
measure rollup /dev/null "$T" sql --data "$D" "SELECT count(*) FROM usage_features"
ROLLUP_S=$M_S ROLLUP_RSS=$M_RSS
PARQUET_MB=$(du -sm "$D/columnar/usage" | cut -f1)
DAILY_MB=$(du -sm "$D/columnar/usage_daily" | cut -f1)
FILES=$(find "$D/columnar/usage" -name '*.parquet' | wc -l)

kpi() { # NAME SET: REPEAT runs of the report; K_S median, K_RSS max
    local name=$1 set=$2 ts=() rss=0
    for _ in $(seq "$REPEAT"); do
        measure "$name" "$W/$name.json" "$T" kpi --data "$D" --period "$PERIOD" --as-of "$END" --format json --kpis "$set"
        ts+=("$M_S")
        [ "$M_RSS" -gt "$rss" ] && rss=$M_RSS
    done
    K_S=$(median "${ts[@]}") K_RSS=$rss
    say "$name: ${ts[*]} s (median $K_S), peak RSS $K_RSS MiB"
}
kpi kpi_cold all
KPI_S=$K_S KPI_RSS=$K_RSS
kpi kpi_usage usage
USAGE_S=$K_S USAGE_RSS=$K_RSS
measure kpi_rev "$W/kpi_rev.json" "$T" kpi --data "$D" --period "$PERIOD" --as-of "$END" --format json --kpis revenue
REV_S=$M_S

"$T" sql --data "$D" --as-of "$JUST_BEFORE" --format csv \
    "SELECT account_id, customer, seats FROM accounts" >"$W/accounts.csv"
duck() { # OUT
    measure "duck_$1" /dev/null "$PY" bench/duckdb_usage.py query --usage-glob "$D/columnar/usage/*.parquet" \
        --accounts "$W/accounts.csv" --end "$END" --features "$FEATURES" --repeat "$REPEAT" --out "$W/$1.json"
    D_S=$("$PY" -c "import json; print('%.3f' % json.load(open('$W/$1.json'))['median'])")
    D_RSS=$M_RSS
}
say "DuckDB, cold"
duck duck_cold
DUCK_S=$D_S DUCK_RSS=$D_RSS
read -r N_CMP DIFF_COLD < <("$PY" bench/duckdb_usage.py compare --duckdb "$W/duck_cold.json" --tenure "$W/kpi_cold.json")
read -r _ DIFF_USAGE < <("$PY" bench/duckdb_usage.py compare --duckdb "$W/duck_cold.json" --tenure "$W/kpi_usage.json")

# --- 1% new events --------------------------------------------------------------------------
say "import of the $NEW_N held-back events"
measure import_new /dev/null "$T" import --no-refresh --data "$D" "$CO/later/new-usage.jsonl"
INEW_S=$M_S INEW_RSS=$M_RSS
measure kpi_inc "$W/kpi_inc.json" "$T" kpi --data "$D" --period "$PERIOD" --as-of "$END" --format json --kpis usage
INC_S=$M_S INC_RSS=$M_RSS
kpi kpi_after usage
AFTER_S=$K_S
kpi kpi_after_all all
AFTER_ALL_S=$K_S
say "DuckDB, after"
duck duck_after
DUCK2_S=$D_S
read -r _ DIFF_INC < <("$PY" bench/duckdb_usage.py compare --duckdb "$W/duck_after.json" --tenure "$W/kpi_inc.json")

r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
COLD_RATIO=$(r "$USAGE_S" "$DUCK_S")
FULL_RATIO=$(r "$KPI_S" "$DUCK_S")
INC_RATIO=$(r "$DUCK2_S" "$INC_S")
verdict() { if awk -v x="$1" -v t="$2" -v dir="$3" 'BEGIN { exit !((dir == "le") ? x <= t : x >= t) }'; then echo met; else echo MISSED; fi; }

SECTION=$(cat <<EOF

## Usage benchmark, $(date -u '+%Y-%m-%d %H:%M') UTC

Command: \`bash bench/usage.sh $ACCOUNTS $USAGE_EVENTS\`

Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); $(rustc --version); DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)') (Python, default threads); tenure at commit $(git rev-parse --short HEAD)$( [ -z "$(git status --porcelain -- crates)" ] || echo ' (with uncommitted changes)').

Reports: \`tenure kpi --period $PERIOD --as-of $END --format json\` with \`--kpis usage\` (the usage
and adoption KPIs: the like-for-like comparison) and \`--kpis all\` (the whole catalogue,
which also folds the $(awk -v n="$EVENTS" -v u="$BASE_N" 'BEGIN { printf "%.1f", (n - u) / 1e6 }') M other events of the log).
DuckDB reads \`columnar/usage/*.parquet\` and computes MAU, licence utilisation and the
adoption of 12 features (3 released during the history), with customers and seats from
tenure's \`accounts\` table. Times are medians of $REPEAT runs, fresh processes, warm OS cache.

| measure | result |
|---|---|
| company | $ACCOUNTS accounts, 36 months ($START..$PERIOD); generation $GEN_S s |
| import (all files but the held-back usage) | $EVENTS events in $IMPORT_S s = $(awk -v n="$EVENTS" -v s="$IMPORT_S" 'BEGIN { printf "%.2f", n / s / 1e6 }') M events/s; usage file alone ${USAGE_RATE} events/s; peak RSS $IMPORT_RSS MiB |
| usage events in the columnar store | $BASE_N, then $NEW_N more ($(awk -v a="$NEW_N" -v b="$BASE_N" 'BEGIN { printf "%.2f", 100 * a / b }')%) |
| columnar rollup, cold (materialise, usage_daily, usage_features, compaction) | $ROLLUP_S s, peak RSS $ROLLUP_RSS MiB; usage Parquet $PARQUET_MB MiB in $FILES files, usage_daily $DAILY_MB MiB |
| tenure kpi --kpis usage, cold | $USAGE_S s, peak RSS $USAGE_RSS MiB |
| tenure kpi --kpis all (full catalogue), cold | $KPI_S s, peak RSS $KPI_RSS MiB (revenue KPIs alone: $REV_S s) |
| DuckDB, the usage KPIs, cold | $DUCK_S s, peak RSS $DUCK_RSS MiB |
| tenure (usage KPIs) / DuckDB, cold | $COLD_RATIO (target <= 1.5: $(verdict "$COLD_RATIO" 1.5 le)); full catalogue / DuckDB: $FULL_RATIO |
| import of the 1% | $INEW_S s, peak RSS $INEW_RSS MiB |
| tenure kpi --kpis usage after the 1% (incremental refresh + report) | $INC_S s, peak RSS $INC_RSS MiB; later runs $AFTER_S s (full catalogue $AFTER_ALL_S s) |
| DuckDB after the 1% (recomputes) | $DUCK2_S s |
| DuckDB / tenure, incremental | $INC_RATIO (target >= 20: $(verdict "$INC_RATIO" 20 ge)) |
| agreement ($N_CMP KPIs) | max rel. diff $DIFF_COLD cold (usage set: $DIFF_USAGE), $DIFF_INC after |
EOF
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then echo "$SECTION" >>BENCHMARKS.md; fi
