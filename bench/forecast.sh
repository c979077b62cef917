#!/usr/bin/env bash
# Forecast benchmark (issue 15): the renewal forecast of a generated company of ACCOUNTS
# accounts (default 1,000,000) over MONTHS months (default 12): the time and peak memory of
# `tenure forecast` for the quarter after the history (every term due in it and every
# month-to-month account, two models trained, the intervals) and of `--by csm`. It reuses
# bench/health.sh's company when that is ready (same arguments), else generates it. The
# generation and import are set-up, not measured. RECORD=0 leaves BENCHMARKS.md alone.
set -euo pipefail
ACCOUNTS=${1:-1000000}
MONTHS=${2:-12}
USAGE=${3:-20000000}
RECORD=${RECORD:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/health
say() { echo "[bench] $*" >&2; }
# The whole workspace selected: a -p build resolves other features and rebuilds DataFusion.
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"
START=$(python3 -c "import sys; m = 2026 * 12 + 10 - $MONTHS; print(f'{m // 12}-{m % 12 + 1:02d}')")
AS_OF=2026-11-01T00:00:00Z
if [ ! -f "$W/data/.ready-$ACCOUNTS-$MONTHS-$USAGE" ]; then
    rm -rf "$W"
    mkdir -p "$W"
    say "generating $ACCOUNTS accounts from $START"
    "$T" gen --accounts "$ACCOUNTS" --months "$MONTHS" --usage-events "$USAGE" --start "$START" --seed 5 --format csv --out "$W/company" 2>"$W/gen.log"
    say "importing"
    "$T" import --data "$W/data" $(ls "$W"/company/*.csv | grep -v truth) 2>"$W/import.log"
    mkdir -p "$W/data/company"
    mv "$W/company/truth.csv" "$W/data/company/truth.csv"
    rm -rf "$W/company"
    touch "$W/data/.ready-$ACCOUNTS-$MONTHS-$USAGE"
fi
F=bench-data/forecast
mkdir -p "$F"
measure() { # NAME CMD...: wall seconds and peak RSS (MiB) of CMD in "$F/NAME.time"
    local name=$1
    shift
    /usr/bin/time -f "%e %M" -o "$F/$name.time" "$@" >"$F/$name.out" 2>"$F/$name.err"
    read -r S KB <"$F/$name.time"
    echo "$name $S $((KB / 1024))" >>"$F/measurements.txt"
    say "$name: ${S} s, $((KB / 1024)) MiB"
}
: >"$F/measurements.txt"
measure forecast "$T" forecast --data "$W/data" --as-of "$AS_OF" --period 2026-Q4 --format json
measure by_csm "$T" forecast --data "$W/data" --as-of "$AS_OF" --period 2027-Q1 --by csm --format json
SECTION=$(python3 - "$F" "$ACCOUNTS" "$MONTHS" "$(git rev-parse --short HEAD)" "$(nproc)" <<'PY'
import json, sys, datetime
f, accounts, months, commit, cores = sys.argv[1:6]
m = {l.split()[0]: (float(l.split()[1]), int(l.split()[2])) for l in open(f"{f}/measurements.txt")}
a = json.load(open(f"{f}/forecast.out"))
b = json.load(open(f"{f}/by_csm.out"))
def line(name, j, what):
    t = j["model"]
    terms = sum(1 for i in j["items"] if i["kind"] == "term")
    return (f"| `{name}` | {what}: {t['contracts']:,} renewals ({terms:,} terms), {t['arr_due']:,.0f} ARR due, "
            f"{t['expected_arr']:,.0f} expected ({t['interval'][0]:,.0f} .. {t['interval'][1]:,.0f}, {t['interval_method']}); "
            f"terms from {j['term_contracts']['source']} ({j['term_contracts']['examples']:,} past outcomes), month-to-month from "
            f"{j['month_to_month']['source']} ({j['month_to_month']['examples']:,}) | {m[name][0]:.1f} s | {m[name][1]:,} MiB |")
print(f"\n## Forecast benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n")
print(f"Command: `bash bench/forecast.sh {accounts} {months}`. {cores} cores; tenure at commit {commit}.")
print(f"The company of the health benchmark ({int(accounts):,} accounts over {months} months), as of 2026-11-01;")
print("each command is a new process that folds the log and reads the monthly usage first.\n")
print("| command | what it did | wall time | peak RSS |\n|---|---|---|---|")
print(line("forecast", a, "2026-Q4"))
print(line("by_csm", b, f"2027-Q1 by CSM ({len(b['groups'])} groups)"))
PY
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then
    echo "$SECTION" >>BENCHMARKS.md
    say "appended to BENCHMARKS.md"
fi
