#!/usr/bin/env bash
# Log growth benchmark: usage events imported chunk after chunk into one data directory, as
# a consumer business's history grows, to show what grows with it and what does not.
#
#   bash bench/log-scale.sh [CHUNKS] [ROWS_PER_CHUNK]     (defaults: 20 50000000: 1 B events)
#
# Each chunk is a Parquet file DuckDB writes (distinct rows: 1,000,000 accounts, 10,000,000
# users, 20 events a second from 2023-01-01), deleted once imported. After each chunk:
#  - the chunk's `tenure import --no-refresh` (the log alone): rows/s, peak RSS (the writer's
#    memory, which must stay flat: its key index holds recent keys and ~1.3 bytes a key of
#    filters, not every key);
#  - a one-event import into the same log, a whole process: the writer's open (which reads
#    the key runs' filters, about 1.3 bytes a key, not the keys) plus one commit;
#  - the same chunk's rows again (a re-import: every key is looked up, none is stored);
#    only for the first, middle and last chunks (it costs as much as the import);
#  - the log's and the key index's bytes on disk.
# Stops early, saying so, when the disk would keep less than 8 GiB free. Environment:
# RECORD=0 skips appending to BENCHMARKS.md; REFRESH=1 imports each chunk as users do, with
# the default columnar refresh (Parquet tables and rollups beside the log), and adds the
# columnar store's bytes. PER_ROW=K gives each user K events in a row (the same account,
# feature and day: one daily row of the columnar store for K events; default 1, every event
# a daily row of its own, the refresh's worst case). Works in bench-data/log-scale/
# (gitignored).
set -euo pipefail

CHUNKS=${1:-20}
ROWS=${2:-50000000}
RECORD=${RECORD:-1}
REFRESH=${REFRESH:-0}
PER_ROW=${PER_ROW:-1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/log-scale
rm -rf "$W"
mkdir -p "$W"
say() { echo "[bench] $(date -u +%H:%M:%S) $*" >&2; }

if [ ! -x bench-data/venv/bin/python ]; then
    say "creating bench-data/venv"
    python3 -m venv bench-data/venv
fi
PY=bench-data/venv/bin/python
if ! "$PY" -c 'import duckdb' 2>/dev/null; then
    say "installing duckdb"
    bench-data/venv/bin/pip install --quiet duckdb pyarrow
fi
if ! command -v /usr/bin/time >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq time
fi

say "cargo build --release --workspace --bin tenure"
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"
D="$W/data"

# measure NAME CMD...: wall seconds in M_S, peak RSS (MiB) in M_RSS
measure() {
    local name=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$W/time.$name" "$@" >"$W/$name.out" 2>"$W/$name.log" ||
        { cat "$W/$name.log" >&2; say "$name failed"; exit 1; }
    t1=$(date +%s.%N)
    M_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    M_RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$W/time.$name")
}

chunk() { # chunk I FILE: rows I*ROWS .. (I+1)*ROWS
    "$PY" - "$1" "$ROWS" "$2" "$PER_ROW" <<'EOF'
import sys, duckdb
i, rows, out, k = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
# m: the user's run of k events (50 ms apart, so on one day but at a run's day boundary).
duckdb.sql(f"""
COPY (
  SELECT 'acc-' || lpad((m % 1000000)::VARCHAR, 7, '0') AS account_id,
         TIMESTAMPTZ '2023-01-01 00:00:00+00' + to_microseconds(n * 50000) AS timestamp,
         'user-' || (m % 10000000)::VARCHAR AS user_id,
         ['login', 'view_report', 'export', 'share', 'comment', 'upload', 'search',
          'invite', 'api_call', 'dashboard', 'alert', 'settings'][1 + (m * 7) % 12] AS event,
         ['core', 'reports', 'exports', 'collab', 'collab', 'files', 'search',
          'admin', 'api', 'dashboards', 'alerts', 'admin'][1 + (m * 7) % 12] AS feature,
         (1 + n % 5)::DOUBLE AS quantity
  FROM (SELECT n, n // {k} AS m FROM range({i * rows}, {(i + 1) * rows}) t(n))
) TO '{out}' (FORMAT parquet)
""")
EOF
}

ROWS_OUT="$W/rows.md"
: >"$ROWS_OUT"
STOPPED=""
TOTAL=0
for i in $(seq 0 $((CHUNKS - 1))); do
    FREE=$(df -B1 --output=avail "$W" | tail -1)
    if [ "$i" -gt 0 ]; then
        NEED=$(awk -v l="$DATA_BYTES" -v n="$TOTAL" -v r="$ROWS" 'BEGIN { printf "%.0f", l / n * r * 1.2 + 8 * 2^30 }')
        if [ "$FREE" -lt "$NEED" ]; then
            STOPPED="Stopped after $i chunks: $(awk -v f="$FREE" 'BEGIN { printf "%.1f", f / 2^30 }') GiB free, another chunk needs about $(awk -v f="$NEED" 'BEGIN { printf "%.1f", f / 2^30 }') GiB with the margin."
            say "$STOPPED"
            break
        fi
    fi
    FILE="$W/usage.parquet"
    say "chunk $((i + 1)) of $CHUNKS: writing $ROWS rows"
    chunk "$i" "$FILE"
    say "importing chunk $((i + 1))"
    if [ "$REFRESH" = 1 ]; then
        measure import "$T" import --type usage --data "$D" "$FILE"
    else
        measure import "$T" import --no-refresh --type usage --data "$D" "$FILE"
    fi
    IMP_S=$M_S IMP_RSS=$M_RSS
    STORED=$(sed -n 's/.*usage\.parquet: \([0-9]*\) stored.*/\1/p' "$W/import.log")
    [ "$STORED" = "$ROWS" ] || { cat "$W/import.log" >&2; say "stored $STORED of $ROWS rows"; exit 1; }
    TOTAL=$((TOTAL + ROWS))
    REIMPORT="-"
    if [ "$i" -eq 0 ] || [ "$i" -eq $((CHUNKS / 2)) ] || [ "$i" -eq $((CHUNKS - 1)) ]; then
        measure again "$T" import --no-refresh --type usage --data "$D" "$FILE"
        grep -q "usage\.parquet: 0 stored" "$W/again.log" ||
            { cat "$W/again.log" >&2; say "a re-import stored rows"; exit 1; }
        REIMPORT="$M_S s = $(awk -v n="$ROWS" -v s="$M_S" 'BEGIN { printf "%.2f", n / s / 1e6 }') M rows/s, $M_RSS MiB"
    fi
    rm -f "$FILE"
    # One new event: the writer's open on the whole history, plus one commit.
    printf '{"type":"usage","account_id":"acc-open","timestamp":"2024-06-01T00:00:00Z","user_id":"u","event":"e%d"}\n' "$i" >"$W/one.jsonl"
    measure one "$T" import --no-refresh --data "$D" "$W/one.jsonl"
    ONE_S=$M_S ONE_RSS=$M_RSS
    LOG_BYTES=$(du -sb "$D/log" | cut -f1)
    DATA_BYTES=$(du -sb "$D" | cut -f1)
    COL_BYTES=$(du -sb "$D/columnar" 2>/dev/null | cut -f1 || echo 0)
    KEYS_BYTES=$(du -sb "$D/log/keys.idx" 2>/dev/null | cut -f1 || echo 0)
    RUNS=$(find "$D/log/keys.idx" -name '*.run' 2>/dev/null | wc -l)
    LINE="| $TOTAL | $IMP_S s = $(awk -v n="$ROWS" -v s="$IMP_S" 'BEGIN { printf "%.2f", n / s / 1e6 }') M rows/s | $IMP_RSS MiB | $REIMPORT | $ONE_S s, $ONE_RSS MiB | $(awk -v b="$LOG_BYTES" 'BEGIN { printf "%.1f GiB", b / 2^30 }') | $(awk -v b="$KEYS_BYTES" 'BEGIN { printf "%.2f GiB", b / 2^30 }') in $RUNS runs | $(awk -v b="$COL_BYTES" 'BEGIN { printf "%.1f GiB", b / 2^30 }') |"
    echo "$LINE" >>"$ROWS_OUT"
    say "$LINE"
done

IMPORTED="\`tenure import --no-refresh\` (the log alone)"
[ "$REFRESH" = 1 ] && IMPORTED="\`tenure import\` with its default columnar refresh (REFRESH=1)"
DIRTY=""
[ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || DIRTY=" (with uncommitted changes)"
SECTION=$(
    cat <<EOF

## Log growth benchmark, $(date -u '+%Y-%m-%d %H:%M') UTC

Command: \`REFRESH=$REFRESH PER_ROW=$PER_ROW bash bench/log-scale.sh $CHUNKS $ROWS\`

Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory; $(rustc --version); tenure at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$DIRTY.
Chunks of $ROWS usage rows (Parquet from DuckDB, distinct; $PER_ROW event(s) of a user in a row, one daily row), each imported with
$IMPORTED into the same data directory. ${STOPPED}

| events in the log | chunk import | its peak RSS | the chunk again (every key found) | one-event import (open + commit) | log on disk | key index on disk | columnar store on disk |
|---|---|---|---|---|---|---|---|
$(cat "$ROWS_OUT")
EOF
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then
    echo "$SECTION" >>BENCHMARKS.md
    say "appended to BENCHMARKS.md"
fi
