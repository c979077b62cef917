#!/usr/bin/env bash
# Parquet import benchmark: DuckDB writes ROWS usage rows to a Parquet file (and, for scale,
# the same rows as JSONL), then `tenure import` of each is timed: rows/s and peak RSS; and the
# Parquet file imported with the default columnar refresh, end to end.
#
#   bash bench/parquet.sh [ROWS]      (default: 10000000)
#
# Environment: RECORD=0 skips appending the results to BENCHMARKS.md; JSONL=0 skips the
# JSONL comparison; RUNS (default 3) imports the Parquet file that many times, and the
# median run is reported. Works in bench-data/parquet/ (gitignored). See bench/README.md.
set -euo pipefail

ROWS=${1:-10000000}
RECORD=${RECORD:-1}
JSONL=${JSONL:-1}
RUNS=${RUNS:-3}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/parquet
mkdir -p "$W"
say() { echo "[bench] $*" >&2; }

# --- 1. Python venv with DuckDB and pyarrow (shared with the other benchmarks) ---------------
if [ ! -x bench-data/venv/bin/python ]; then
    say "creating bench-data/venv"
    python3 -m venv bench-data/venv
fi
PY=bench-data/venv/bin/python
if ! "$PY" -c 'import duckdb, pyarrow' 2>/dev/null; then
    say "installing duckdb and pyarrow"
    bench-data/venv/bin/pip install --quiet duckdb pyarrow
fi
if ! command -v /usr/bin/time >/dev/null 2>&1; then
    say "installing GNU time"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq time
fi

# --- 2. Build (the whole workspace selected: a -p build resolves other features) ------------
say "cargo build --release --workspace --bin tenure"
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"

# --- 3. The rows: 100,000 accounts, 1,000,000 users, 12 events, 3 s apart from 2024-01-01 ---
FILE="$W/usage.parquet"
if [ ! -f "$FILE" ] || [ "$(cat "$W/rows" 2>/dev/null)" != "$ROWS" ]; then
    say "writing $ROWS usage rows to $FILE (DuckDB)"
    rm -f "$FILE" "$W/usage.jsonl"
    "$PY" - "$ROWS" "$FILE" <<'EOF'
import sys, duckdb
rows, out = int(sys.argv[1]), sys.argv[2]
duckdb.sql(f"""
COPY (
  SELECT 'acc-' || lpad((i % 100000)::VARCHAR, 6, '0') AS account_id,
         TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i * 3) AS timestamp,
         'user-' || (i % 1000000)::VARCHAR AS user_id,
         ['login', 'view_report', 'export', 'share', 'comment', 'upload', 'search',
          'invite', 'api_call', 'dashboard', 'alert', 'settings'][1 + (i * 7) % 12] AS event,
         ['core', 'reports', 'exports', 'collab', 'collab', 'files', 'search',
          'admin', 'api', 'dashboards', 'alerts', 'admin'][1 + (i * 7) % 12] AS feature,
         (1 + i % 5)::DOUBLE AS quantity
  FROM range({rows}) t(i)
) TO '{out}' (FORMAT parquet)
""")
EOF
    echo "$ROWS" >"$W/rows"
fi
FILE_BYTES=$(stat -c %s "$FILE")
SCHEMA=$("$PY" -c 'import sys, pyarrow.parquet as pq; f = pq.ParquetFile(sys.argv[1]); print(", ".join(f"{x.name} {x.type}" for x in f.schema_arrow), f"; {f.metadata.num_row_groups} row groups")' "$FILE")

# measure NAME CMD... : wall seconds in M_S, peak RSS (KiB) in M_RSS, CPU in M_CPU
measure() {
    local name=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    set +e
    /usr/bin/time -v -o "$W/time.$name" "$@" >/dev/null 2>"$W/$name.log"
    M_RC=$?
    set -e
    t1=$(date +%s.%N)
    M_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    M_RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$W/time.$name")
    M_CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } /Percent of CPU/ { p = $2 }
        END { printf "user %.1f s, sys %.1f s, CPU %s", u, s, p }' "$W/time.$name")
    cat "$W/$name.log" >&2
    [ "$M_RC" -eq 0 ] || { say "$name failed ($M_RC)"; exit 1; }
}

# median NAME CMD...: CMD run RUNS times, each into a fresh data directory: the median run's
# wall seconds, peak RSS and CPU in MED_S, MED_RSS, MED_CPU, every run's seconds in MED_ALL
# (this machine's run-to-run spread is wide: the same import took 3.7 to 5.8 s in a row)
median() {
    local name=$1
    shift
    MED_ALL=""
    for run in $(seq "$RUNS"); do
        rm -rf "$W/data"
        say "$name: $* (run $run of $RUNS)"
        measure "$name" "$@"
        echo "$M_S $M_RSS $M_CPU" >>"$W/runs.$$"
        MED_ALL="$MED_ALL${MED_ALL:+, }$M_S"
    done
    read -r MED_S MED_RSS MED_CPU <<<"$(sort -n "$W/runs.$$" | sed -n "$(((RUNS + 1) / 2))p")"
    rm -f "$W/runs.$$"
}

# --- 4. Import the Parquet file into a fresh data directory, RUNS times: the median run ------
median parquet "$T" import --no-refresh --data "$W/data" "$FILE"
PQ_S=$MED_S PQ_RSS=$MED_RSS PQ_CPU=$MED_CPU ALL=$MED_ALL
PQ_RATE=$(awk -v n="$ROWS" -v s="$PQ_S" 'BEGIN { printf "%.2f", n / s / 1e6 }')
PQ_STORED=$(sed -n 's/.*usage\.parquet: \([0-9]*\) stored.*/\1/p' "$W/parquet.log")
[ "$PQ_STORED" = "$ROWS" ] || { say "stored $PQ_STORED of $ROWS rows"; exit 1; }

# --- 4b. The same import as users run it: with the default columnar refresh (Parquet tables,
# the daily and monthly rollups), RUNS times: the median run (issue 18: >= 1 M events/s) ---
median refresh "$T" import --data "$W/data" "$FILE"
RF_S=$MED_S RF_RSS=$MED_RSS RF_CPU=$MED_CPU ALL_R=$MED_ALL
RF_RATE=$(awk -v n="$ROWS" -v s="$RF_S" 'BEGIN { printf "%.2f", n / s / 1e6 }')
grep -q "columnar store: $ROWS new events materialised" "$W/refresh.log" ||
    { say "the refresh did not materialise $ROWS events"; exit 1; }
RF_TARGET=MISSED
awk -v r="$RF_RATE" 'BEGIN { exit !(r >= 1) }' && RF_TARGET=met

# --- 5. For scale: the same rows as JSONL ---------------------------------------------------
JSONL_LINE="not run (JSONL=0)"
if [ "$JSONL" = 1 ]; then
    if [ ! -f "$W/usage.jsonl" ]; then
        say "writing the same rows as JSONL (DuckDB)"
        "$PY" - "$FILE" "$W/usage.jsonl" <<'EOF'
import sys, duckdb
duckdb.sql(f"""
COPY (SELECT account_id, strftime(timestamp AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS timestamp,
             user_id, event, feature, quantity FROM '{sys.argv[1]}')
TO '{sys.argv[2]}' (FORMAT json)
""")
EOF
    fi
    rm -rf "$W/data-jsonl"
    say "tenure import --no-refresh --type usage $W/usage.jsonl"
    measure jsonl "$T" import --no-refresh --data "$W/data-jsonl" --type usage "$W/usage.jsonl"
    J_RATE=$(awk -v n="$ROWS" -v s="$M_S" 'BEGIN { printf "%.2f", n / s / 1e6 }')
    J_BYTES=$(stat -c %s "$W/usage.jsonl")
    JSONL_LINE="$M_S s = $J_RATE M rows/s, peak RSS $M_RSS MiB ($M_CPU); $(awk -v b="$J_BYTES" 'BEGIN { printf "%.2f GiB", b / 1073741824 }') of JSONL"
    rm -rf "$W/data-jsonl"
fi

# --- 6. Summary ------------------------------------------------------------------------------
TARGET=MISSED
awk -v r="$PQ_RATE" 'BEGIN { exit !(r >= 2) }' && TARGET=met
DIRTY=""
[ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || DIRTY=" (with uncommitted changes)"
SECTION=$(
    cat <<EOF

## Parquet import benchmark, $(date -u '+%Y-%m-%d %H:%M') UTC

Command: \`bash bench/parquet.sh $ROWS\`

Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory; $(rustc --version); tenure at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$DIRTY.

| measure | result |
|---|---|
| input | $ROWS usage rows written by DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)'), $(awk -v b="$FILE_BYTES" 'BEGIN { printf "%.0f MiB", b / 1048576 }') of Parquet (snappy); columns: $SCHEMA |
| tenure import of the Parquet file (wall, \`--no-refresh\`), median of $RUNS runs ($ALL s) | $PQ_S s = $PQ_RATE M rows/s; target >= 2 M rows/s: $TARGET |
| peak RSS (median run) | $PQ_RSS MiB |
| CPU (median run) | $PQ_CPU |
| tenure import with the default columnar refresh (wall), median of $RUNS runs ($ALL_R s) | $RF_S s = $RF_RATE M events/s; target >= 1 M events/s: $RF_TARGET; peak RSS $RF_RSS MiB; $RF_CPU |
| for scale: the same rows as JSONL | $JSONL_LINE |
EOF
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then
    echo "$SECTION" >>BENCHMARKS.md
    say "appended to BENCHMARKS.md"
fi
rm -rf "$W/data"
