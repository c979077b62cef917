#!/usr/bin/env bash
# Stripe import benchmark: `tenure gen --format stripe` writes ACCOUNTS customers with MONTHS
# months of invoices as Stripe API objects (one per line), then `tenure import --from
# stripe` of them is timed: objects/s, events/s and peak RSS.
#
#   bash bench/stripe.sh [ACCOUNTS] [MONTHS]      (defaults: 100000 36)
#
# Environment: RECORD=0 skips appending the results to BENCHMARKS.md; RUNS (default 3)
# imports the export that many times, and the median run is reported. Works in
# bench-data/stripe/ (gitignored). See bench/README.md.
set -euo pipefail

ACCOUNTS=${1:-100000}
MONTHS=${2:-36}
RECORD=${RECORD:-1}
RUNS=${RUNS:-3}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/stripe
mkdir -p "$W"
say() { echo "[bench] $*" >&2; }

if ! command -v /usr/bin/time >/dev/null 2>&1; then
    say "installing GNU time"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq time
fi

# The whole workspace selected: a -p build resolves other features and rebuilds DataFusion.
say "cargo build --release --workspace --bin tenure"
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"

# --- The export: a generated company's billing as Stripe objects ----------------------------
if [ ! -d "$W/co/stripe" ] || [ "$(cat "$W/params" 2>/dev/null)" != "$ACCOUNTS $MONTHS" ]; then
    rm -rf "$W/co"
    say "tenure gen --format stripe --accounts $ACCOUNTS --months $MONTHS"
    "$T" gen --format stripe --accounts "$ACCOUNTS" --months "$MONTHS" --seed 7 --start 2023-01 \
        --usage-events 1000 --out "$W/co" 2>"$W/gen.log"
    echo "$ACCOUNTS $MONTHS" >"$W/params"
fi
BYTES=$(du -sb "$W/co/stripe" | cut -f1)
COUNTS=$(for f in customers subscriptions invoices credit_notes prices; do
    printf '%s %s, ' "$(wc -l <"$W/co/stripe/$f.jsonl")" "$f"
done)

# --- The import, timed, RUNS times: the median run ----------------------------------------
# (this machine's run-to-run spread is wide: the same import took 7.5 to 9.5 s in a row)
: >"$W/runs"
for run in $(seq "$RUNS"); do
    rm -rf "$W/data"
    say "tenure import --from stripe $W/co/stripe (run $run of $RUNS)"
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$W/time.$run" "$T" import --no-refresh --data "$W/data" --from stripe "$W/co/stripe" \
        --account-key tenure_account_id 2>"$W/import.$run.log" || { cat "$W/import.$run.log"; exit 1; }
    t1=$(date +%s.%N)
    cat "$W/import.$run.log" >&2
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') $run" >>"$W/runs"
done
ALL=$(cut -d' ' -f1 "$W/runs" | paste -sd, | sed 's/,/, /g')
read -r S MEDIAN <<<"$(sort -n "$W/runs" | sed -n "$(((RUNS + 1) / 2))p")"
cp "$W/time.$MEDIAN" "$W/time"
cp "$W/import.$MEDIAN.log" "$W/import.log"
RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$W/time")
CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } /Percent of CPU/ { p = $2 }
    END { printf "user %.1f s, sys %.1f s, CPU %s", u, s, p }' "$W/time")
OBJECTS=$(sed -n 's/^stripe: \([0-9]*\) objects.*/\1/p' "$W/import.log")
EVENTS=$(sed -n 's/.* \([0-9]*\) events: .*/\1/p' "$W/import.log")
READ_RATE=$(sed -n 's/.*(\([0-9]*\) objects\/s read and converted).*/\1/p' "$W/import.log")
RATE=$(awk -v n="$OBJECTS" -v s="$S" 'BEGIN { printf "%.0f", n / s }')
ERATE=$(awk -v n="$EVENTS" -v s="$S" 'BEGIN { printf "%.0f", n / s }')
TARGET=MISSED
awk -v r="$RATE" 'BEGIN { exit !(r >= 200000) }' && TARGET=met

DIRTY=""
[ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || DIRTY=" (with uncommitted changes)"
SECTION=$(
    cat <<EOF

## Stripe import benchmark, $(date -u '+%Y-%m-%d %H:%M') UTC

Command: \`bash bench/stripe.sh $ACCOUNTS $MONTHS\`

Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory; $(rustc --version); tenure at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$DIRTY.

| measure | result |
|---|---|
| export | \`tenure gen --format stripe\`, $ACCOUNTS accounts, $MONTHS months (seed 7): ${COUNTS%, }; $(awk -v b="$BYTES" 'BEGIN { printf "%.2f GiB", b / 1073741824 }') of JSON lines |
| tenure import --from stripe (wall, \`--no-refresh\`), median of $RUNS runs ($ALL s) | $S s = $RATE objects/s (target >= 200k objects/s: $TARGET); $EVENTS events = $ERATE events/s |
| reading and converting (tenure's own figure: to the end of the conversion, which overlaps the store) | $READ_RATE objects/s |
| peak RSS | $RSS MiB |
| CPU | $CPU |
EOF
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then
    echo "$SECTION" >>BENCHMARKS.md
    say "appended to BENCHMARKS.md"
fi
rm -rf "$W/data"
