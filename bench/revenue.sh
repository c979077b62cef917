#!/usr/bin/env bash
# Revenue benchmark: generate a company, import it, time `tenure kpi`, and time DuckDB computing
# the same revenue KPIs from the same data exported to Parquet, in the same run.
#
#   bash bench/revenue.sh [ACCOUNTS] [USAGE_EVENTS]      (defaults: 100000 10000000)
#
# Environment: REPEAT (default 3) runs of each KPI query, the median is reported;
# RECORD=0 skips appending the results to BENCHMARKS.md.
# Works in bench-data/ (gitignored). See bench/README.md.
set -euo pipefail

ACCOUNTS=${1:-100000}
USAGE_EVENTS=${2:-10000000}
REPEAT=${REPEAT:-3}
RECORD=${RECORD:-1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data
mkdir -p "$W"
M="$W/measurements.txt"
: >"$M"
say() { echo "[bench] $*" >&2; }
put() { echo "$1=$2" >>"$M"; }

# --- 1. Python venv with DuckDB -------------------------------------------------------------
if [ ! -x "$W/venv/bin/python" ]; then
    say "creating $W/venv"
    python3 -m venv "$W/venv"
fi
PY="$W/venv/bin/python"
if ! "$PY" -c 'import duckdb, pyarrow' 2>/dev/null; then
    say "installing duckdb and pyarrow"
    "$W/venv/bin/pip" install --quiet duckdb pyarrow
fi
PEER=(bench/duckdb_revenue.py)

# GNU time for peak RSS
if ! command -v /usr/bin/time >/dev/null 2>&1; then
    say "installing GNU time"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq time
fi

# --- 2. Build --------------------------------------------------------------------------------
say "cargo build --release --workspace --bin tenure"
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"

# measure NAME STDOUT STDERR CMD... : wall seconds in M_S, peak RSS (KiB) in M_RSS, exit code in M_RC
measure() {
    local name=$1 out=$2 err=$3
    shift 3
    local t0 t1
    t0=$(date +%s.%N)
    set +e
    if [ "$out" = - ]; then # keep stdout on our stderr (never reopen /dev/stderr: it truncates)
        /usr/bin/time -v -o "$W/time.$name" "$@" 2>"$err" >&2
    else
        /usr/bin/time -v -o "$W/time.$name" "$@" >"$out" 2>"$err"
    fi
    M_RC=$?
    set -e
    t1=$(date +%s.%N)
    M_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    M_RSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$W/time.$name")
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -1; }

# --- Dates: the history is the 36 months ending with last month ----------------------------
THIS_MONTH=$(date -u +%Y-%m)
AS_OF="${THIS_MONTH}-01T00:00:00Z"
START=$(date -u -d "${THIS_MONTH}-01 -36 months" +%Y-%m)
LAST_MONTH=$(date -u -d "${THIS_MONTH}-01 -1 month" +%Y-%m)
SERIES_FIRST=$(date -u -d "${THIS_MONTH}-01 -12 months" +%Y-%m)
SERIES_PERIOD="${SERIES_FIRST}..${THIS_MONTH}"
# the last complete quarter
m=$((10#${THIS_MONTH#*-}))
QSTART=$(date -u -d "${THIS_MONTH%-*}-$(printf %02d $(((m - 1) / 3 * 3 + 1)))-01 -3 months" +%Y-%m)
qm=$((10#${QSTART#*-}))
QUARTER_PERIOD="${QSTART%-*}-Q$(((qm - 1) / 3 + 1))"
QEND=$(date -u -d "${QSTART}-01 +3 months" +%Y-%m)
QBOUNDS="${QSTART}-01T00:00:00Z,${QEND}-01T00:00:00Z"
say "history ${START}..${LAST_MONTH}, as of ${AS_OF}; series ${SERIES_PERIOD}, quarter ${QUARTER_PERIOD}"

# --- 3. Generate -----------------------------------------------------------------------------
COMPANY="$W/company"
rm -rf "$COMPANY"
say "tenure gen --accounts $ACCOUNTS --usage-events $USAGE_EVENTS --months 36 --seed 7"
measure gen /dev/null "$W/gen.log" \
    "$T" gen --accounts "$ACCOUNTS" --months 36 --seed 7 --start "$START" \
    --usage-events "$USAGE_EVENTS" --out "$COMPANY"
cat "$W/gen.log" >&2
[ "$M_RC" -eq 0 ] || { say "gen failed ($M_RC)"; exit 1; }
GEN_S=$M_S GEN_RSS=$M_RSS
JSONL_BYTES=$(cat "$COMPANY"/*.jsonl | wc -c)

# --- 4. Import -------------------------------------------------------------------------------
DATA="$W/data"
rm -rf "$DATA"
say "tenure import (all JSONL files)"
measure import /dev/null "$W/import.log" "$T" import --data "$DATA" "$COMPANY"/*.jsonl
cat "$W/import.log" >&2
if [ "$M_RC" -ne 0 ] && [ "$M_RC" -ne 3 ]; then say "import failed ($M_RC)"; exit 1; fi
[ "$M_RC" -eq 0 ] || say "WARNING: import rejected some generated rows (exit 3)"
IMPORT_S=$M_S IMPORT_RSS=$M_RSS
IMPORT_CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } /Percent of CPU/ { p = $2 }
    END { printf "user %.1f s, sys %.1f s, CPU %s", u, s, p }' "$W/time.import")
read -r EVENTS_TOTAL IMPORT_REPORTED_S < <(sed -n 's/^total: \([0-9]*\) events in \([0-9.]*\) s.*/\1 \2/p' "$W/import.log")
read -r USAGE_STORED USAGE_RATE < <(sed -n 's/^.*usage\.jsonl: \([0-9]*\) stored.*(\([0-9.]*\) events\/s).*/\1 \2/p' "$W/import.log")
IMPORT_RATE=$(awk -v n="$EVENTS_TOTAL" -v s="$IMPORT_S" 'BEGIN { printf "%.0f", n / s }')
LOG_BYTES=$(du -sb "$DATA" | cut -f1)

# --- 5. tenure kpi ---------------------------------------------------------------------------
# Rules DuckDB reproduces exactly (see bench/duckdb_revenue.py); the default rules run once too.
cat >"$DATA/tenure.toml" <<'EOF'
[revenue]
past_due_churn_days = 0
grouping_window_minutes = 0
pause = "churn"
EOF
: >"$W/default.toml"
kpi_runs() { # NAME PERIOD [extra args...]: REPEAT timed runs; K_S median wall, K_RSS max RSS
    local name=$1 period=$2
    shift 2
    local ts=() rss=()
    for i in $(seq "$REPEAT"); do
        measure "$name" "$W/$name.json" "$W/$name.err" \
            "$T" kpi --data "$DATA" --period "$period" --format json --kpis revenue --as-of "$AS_OF" "$@"
        [ "$M_RC" -eq 0 ] || { cat "$W/$name.err" >&2; say "kpi failed ($M_RC)"; exit 1; }
        ts+=("$M_S") rss+=("$M_RSS")
    done
    K_S=$(median "${ts[@]}") K_RSS=$(maxof "${rss[@]}")
    say "kpi $name: ${ts[*]} s (median $K_S), peak RSS ${K_RSS} KiB"
}
# The first report folds the log into the ledger checkpoint (DATA/state/ledger.state);
# the runs after it read the checkpoint, as every report does until new events arrive.
measure kpi_first "$W/kpi_first.json" "$W/kpi_first.err" \
    "$T" kpi --data "$DATA" --period "$QUARTER_PERIOD" --format json --kpis revenue --as-of "$AS_OF"
[ "$M_RC" -eq 0 ] || { cat "$W/kpi_first.err" >&2; say "kpi failed ($M_RC)"; exit 1; }
KPI_FIRST_S=$M_S KPI_FIRST_RSS=$M_RSS
STATE_BYTES=$(stat -c %s "$DATA/state/ledger.state")
kpi_runs kpi_series "$SERIES_PERIOD" --every month
KPI_SERIES_S=$K_S KPI_SERIES_RSS=$K_RSS
sort -u "$W/kpi_series.err" >&2
kpi_runs kpi_quarter "$QUARTER_PERIOD"
KPI_QUARTER_S=$K_S KPI_QUARTER_RSS=$K_RSS
# Other settings: the first run folds the log again for them.
"$T" kpi --data "$DATA" --period "$QUARTER_PERIOD" --kpis revenue --as-of "$AS_OF" \
    --config "$W/default.toml" >/dev/null 2>&1
kpi_runs kpi_default "$SERIES_PERIOD" --every month --config "$W/default.toml"
KPI_DEFAULT_S=$K_S KPI_DEFAULT_RSS=$K_RSS

# Where the KPI time goes: opening the log alone (`tenure status`), and the same report on a
# log holding only the lanes the revenue ledger reads (accounts, subscriptions, costs).
measure status /dev/null /dev/null "$T" status --data "$DATA"
STATUS_S=$M_S STATUS_RSS=$M_RSS
REV="$W/data-revenue"
rm -rf "$REV"
"$T" import --data "$REV" "$COMPANY"/accounts.jsonl "$COMPANY"/subscriptions.jsonl \
    "$COMPANY"/costs.jsonl 2>/dev/null
cp "$DATA/tenure.toml" "$REV/"
DATA_FULL=$DATA DATA=$REV
"$T" kpi --data "$DATA" --period "$QUARTER_PERIOD" --kpis revenue --as-of "$AS_OF" >/dev/null 2>&1
kpi_runs kpi_revenue_lanes "$SERIES_PERIOD" --every month
KPI_REV_S=$K_S KPI_REV_RSS=$K_RSS
DATA=$DATA_FULL
rm -rf "$REV"

# --- 6. DuckDB -------------------------------------------------------------------------------
say "DuckDB: export subscriptions + accounts to Parquet (not timed in the comparison)"
t0=$(date +%s.%N)
"$PY" "${PEER[@]}" export --company "$COMPANY" --out "$W/parquet"
EXPORT_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
say "DuckDB: the same 12-month series from Parquet ($REPEAT runs)"
measure duckdb_series - "$W/duckdb_series.err" \
    "$PY" "${PEER[@]}" query --parquet "$W/parquet" --as-of "$AS_OF" \
    --first-month "$SERIES_FIRST" --months 12 --repeat "$REPEAT" --out "$W/duckdb_series.json"
cat "$W/duckdb_series.err" >&2
[ "$M_RC" -eq 0 ] || { say "duckdb query failed"; exit 1; }
DUCK_SERIES_RSS=$M_RSS
measure duckdb_quarter - "$W/duckdb_quarter.err" \
    "$PY" "${PEER[@]}" query --parquet "$W/parquet" --as-of "$AS_OF" \
    --bounds "$QBOUNDS" --repeat "$REPEAT" --out "$W/duckdb_quarter.json"
cat "$W/duckdb_quarter.err" >&2
[ "$M_RC" -eq 0 ] || { say "duckdb query failed"; exit 1; }

"$PY" "${PEER[@]}" compare --label "series, aligned rules" --duckdb "$W/duckdb_series.json" \
    --tenure "$W/kpi_series.json" --out "$W/compare_series.json"
"$PY" "${PEER[@]}" compare --label "quarter, aligned rules" --duckdb "$W/duckdb_quarter.json" \
    --tenure "$W/kpi_quarter.json" --out "$W/compare_quarter.json"
"$PY" "${PEER[@]}" compare --label "series, tenure default rules (differences expected)" \
    --duckdb "$W/duckdb_series.json" --tenure "$W/kpi_default.json" --out "$W/compare_default.json"

# --- 7. Summary ------------------------------------------------------------------------------
DIRTY=0
[ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || DIRTY=1
{
    put command "bash bench/revenue.sh $ACCOUNTS $USAGE_EVENTS"
    put accounts "$ACCOUNTS"
    put usage_events "$USAGE_EVENTS"
    put repeat "$REPEAT"
    put history "${START}..${LAST_MONTH} (36 months)"
    put series_period "$SERIES_PERIOD"
    put quarter_period "$QUARTER_PERIOD"
    put as_of "$AS_OF"
    put nproc "$(nproc)"
    put cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    put mem "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    put rustc "$(rustc --version)"
    put commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    put dirty "$DIRTY"
    put gen_s "$GEN_S"
    put gen_rss_kb "$GEN_RSS"
    put jsonl_bytes "$JSONL_BYTES"
    put events_total "$EVENTS_TOTAL"
    put import_s "$IMPORT_S"
    put import_reported_s "$IMPORT_REPORTED_S"
    put import_rss_kb "$IMPORT_RSS"
    put import_cpu "$IMPORT_CPU"
    put status_s "$STATUS_S"
    put status_rss_kb "$STATUS_RSS"
    put kpi_revenue_lanes_s "$KPI_REV_S"
    put kpi_revenue_lanes_rss_kb "$KPI_REV_RSS"
    put import_events_per_s "$IMPORT_RATE"
    put usage_stored "$USAGE_STORED"
    put import_usage_events_per_s "$USAGE_RATE"
    put log_bytes "$LOG_BYTES"
    put kpi_first_s "$KPI_FIRST_S"
    put kpi_first_rss_kb "$KPI_FIRST_RSS"
    put state_bytes "$STATE_BYTES"
    put kpi_series_s "$KPI_SERIES_S"
    put kpi_series_rss_kb "$KPI_SERIES_RSS"
    put kpi_quarter_s "$KPI_QUARTER_S"
    put kpi_quarter_rss_kb "$KPI_QUARTER_RSS"
    put kpi_default_s "$KPI_DEFAULT_S"
    put kpi_default_rss_kb "$KPI_DEFAULT_RSS"
    put export_s "$EXPORT_S"
    put duckdb_series_rss_kb "$DUCK_SERIES_RSS"
    put duckdb_series_json "$W/duckdb_series.json"
    put duckdb_quarter_json "$W/duckdb_quarter.json"
    put compare_series_json "$W/compare_series.json"
    put compare_quarter_json "$W/compare_quarter.json"
    put compare_default_json "$W/compare_default.json"
}
if [ "$RECORD" = 1 ]; then
    "$PY" "${PEER[@]}" report --measurements "$M" --benchmarks BENCHMARKS.md
else
    "$PY" "${PEER[@]}" report --measurements "$M"
fi
