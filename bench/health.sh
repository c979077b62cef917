#!/usr/bin/env bash
# Health benchmark (issues 5, 17): a generated company of ACCOUNTS accounts (default 1,000,000)
# over MONTHS months (default 12) with USAGE usage events (default 20,000,000); the time and
# peak memory of training the churn model (`tenure model train`), of scoring every account
# with its probability (`tenure risk`) and with the scorecards (`tenure health`), of a
# quarter's revenue KPIs (`tenure kpi`), of an account's page, of each of them brought
# forward over a day's new events, and of the backtest. The generation and import are
# set-up, not measured. RECORD=0 leaves BENCHMARKS.md alone.
set -euo pipefail
ACCOUNTS=${1:-1000000}
MONTHS=${2:-12}
USAGE=${3:-20000000}
RECORD=${RECORD:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/health
cargo build --release --workspace --bin tenure
T="$ROOT/target/release/tenure"
say() { echo "[bench] $*" >&2; }
# History 2025-11 .. 2026-10 for 12 months; the figures are as of 2026-11-01.
START=$(python3 -c "import sys; m = 2026 * 12 + 10 - $MONTHS; print(f'{m // 12}-{m % 12 + 1:02d}')")
AS_OF=2026-11-01T00:00:00Z
if [ ! -f "$W/data/.ready-$ACCOUNTS-$MONTHS-$USAGE" ]; then
    rm -rf "$W"
    mkdir -p "$W"
    say "generating $ACCOUNTS accounts from $START"
    # CSV is the smaller form; the files go once imported (the log holds the events).
    "$T" gen --accounts "$ACCOUNTS" --months "$MONTHS" --usage-events "$USAGE" --start "$START" --seed 5 --format csv --out "$W/company" 2>"$W/gen.log"
    say "importing"
    "$T" import --data "$W/data" $(ls "$W"/company/*.csv | grep -v truth) 2>"$W/import.log"
    mkdir -p "$W/data/company"
    mv "$W/company/truth.csv" "$W/data/company/truth.csv"
    rm -rf "$W/company"
    touch "$W/data/.ready-$ACCOUNTS-$MONTHS-$USAGE"
fi
EVENTS=$(awk '/^total:/ { print $2 }' "$W/import.log")
measure() { # NAME CMD...: wall seconds and peak RSS (MiB) of CMD in "$W/NAME.time"
    local name=$1
    shift
    /usr/bin/time -f "%e %M" -o "$W/$name.time" "$@" >"$W/$name.out" 2>"$W/$name.err"
    read -r S KB <"$W/$name.time"
    echo "$name $S $((KB / 1024))" >>"$W/measurements.txt"
    say "$name: ${S} s, $((KB / 1024)) MiB"
}
: >"$W/measurements.txt"
rm -rf "$W/data/models" "$W/data/state"
measure train_trees "$T" model train --data "$W/data" --as-of "$AS_OF" --learner trees --format json
measure train "$T" model train --data "$W/data" --as-of "$AS_OF" --format json
# The first health command folds the log and writes the health state checkpoint; the
# others read it (docs/health.md); --replay folds afresh, as every run did before it.
measure state_build "$T" health --data "$W/data" --as-of "$AS_OF" --format csv
measure risk "$T" risk --data "$W/data" --as-of "$AS_OF" --top 50 --format json
measure health "$T" health --data "$W/data" --as-of "$AS_OF" --format csv
measure health_replay "$T" health --data "$W/data" --as-of "$AS_OF" --format csv --replay
cmp "$W/health.out" "$W/health_replay.out" || { say "health from the checkpoint differs from a replay"; exit 1; }
stat -c %s "$W/data/state/health.state" >"$W/state.bytes"
# One account's page: the first run indexes the log's accounts (DATA/state/accounts.idx),
# the next reads the account's events through the index; --replay folds the whole log.
ACC=acc-000123
measure account_first "$T" account --data "$W/data" "$ACC" --as-of "$AS_OF"
measure account "$T" account --data "$W/data" "$ACC" --as-of "$AS_OF"
measure account_replay "$T" account --data "$W/data" "$ACC" --as-of "$AS_OF" --replay
cmp "$W/account.out" "$W/account_replay.out" || { say "the account page through the index differs from a replay"; exit 1; }
stat -c %s "$W/data/state/accounts.idx" >"$W/index.bytes"
# A quarter's revenue KPIs: the first run folds the log into the ledger checkpoint
# (DATA/state/ledger.state, docs/kpis.md), the next reads it.
KPI=(kpi --data "$W/data" --kpis revenue --period 2026-Q3 --as-of "$AS_OF" --format json)
measure kpi_first "$T" "${KPI[@]}"
stat -c %s "$W/data/state/ledger.state" >"$W/ledger.bytes"
measure kpi "$T" "${KPI[@]}"
# A day's new events (bench/tail.py, new ids each run, so the log grows by them): 5,000
# tickets and NPS answers and 500 contacts' moves, then 200,000 usage events (1% of the
# usage). The checkpoint is brought forward over each; the second output is checked
# against a replay.
RUN=$(date +%s)
python3 bench/tail.py "$ACCOUNTS" 5000 500 0 "$RUN-cs" 2026-10-20 >"$W/tail-cs.jsonl"
"$T" import --data "$W/data" "$W/tail-cs.jsonl" 2>"$W/tail-cs.log"
measure forward_kpi "$T" "${KPI[@]}"
measure forward_cs "$T" health --data "$W/data" --as-of "$AS_OF" --format csv
python3 bench/tail.py "$ACCOUNTS" 0 0 200000 "$RUN-usage" 2026-10-21 >"$W/tail-usage.jsonl"
"$T" import --data "$W/data" "$W/tail-usage.jsonl" 2>"$W/tail-usage.log"
measure forward_usage "$T" health --data "$W/data" --as-of "$AS_OF" --format csv
measure forward_replay "$T" health --data "$W/data" --as-of "$AS_OF" --format csv --replay
cmp "$W/forward_usage.out" "$W/forward_replay.out" || { say "the checkpoint brought forward differs from a replay"; exit 1; }
measure kpi_after "$T" "${KPI[@]}"
measure kpi_replay "$T" "${KPI[@]}" --replay
cmp "$W/kpi_after.out" "$W/kpi_replay.out" || { say "the ledger state brought forward differs from a replay"; exit 1; }
grep "ledger state:" "$W/forward_kpi.err" | sed 's/^ledger state: //; s/ ([0-9.]* s)$//; s| beside .*| beside the checkpoint|' >"$W/forward_kpi.said"
grep -o "[0-9]* accounts* folded again[^)]*" "$W/forward_cs.err" >"$W/forward_cs.said"
grep -o "[0-9]* accounts* folded again[^)]*" "$W/forward_usage.err" >"$W/forward_usage.said"
measure backtest "$T" model backtest --data "$W/data" --as-of "$AS_OF" --from 2026-05 --to 2026-07 --format json
SECTION=$(python3 - "$W" "$ACCOUNTS" "$MONTHS" "$EVENTS" "$(git rev-parse --short HEAD)" "$(nproc)" <<'PY'
import json, sys, datetime
w, accounts, months, events, commit, cores = sys.argv[1:7]
m = {l.split()[0]: (float(l.split()[1]), int(l.split()[2])) for l in open(f"{w}/measurements.txt")}
train = json.load(open(f"{w}/train.out"))
risk = json.load(open(f"{w}/risk.out"))
bt = json.load(open(f"{w}/backtest.out"))
health_rows = sum(1 for _ in open(f"{w}/health.out")) - 1
print(f"\n## Health benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n")
print(f"Command: `bash bench/health.sh {accounts} {months}`. {cores} cores; tenure at commit {commit}.")
print(f"A generated company of {int(accounts):,} accounts over {months} months ({events} events imported);")
print("each command is a new process; `model train`, `backtest` and `--replay` fold the log and read the monthly usage first.\n")
print("| command | what it did | wall time | peak RSS |")
print("|---|---|---|---|")
sel = train['selection']
print(f"| `tenure model train --learner trees` (the trees alone, as before issue 17) | {train['n_snapshots']:,} snapshots | {m['train_trees'][0]:.1f} s | {m['train_trees'][1]:,} MiB |")
print(f"| `tenure model train` | {train['n_snapshots']:,} snapshots ({train['n_churned']:,} churned); {len(sel['candidates'])} learners compared on {sel['validation_snapshots']:,} snapshots, chose {sel['chosen']} | {m['train'][0]:.1f} s | {m['train'][1]:,} MiB |")
print(f"| `tenure risk --top 50` (from the checkpoint) | probability and expected loss of {risk['accounts_scored']:,} accounts; drivers of 50 | {m['risk'][0]:.2f} s | {m['risk'][1]:,} MiB |")
state = int(open(f"{w}/state.bytes").read())
print(f"| `tenure health` (first run: folds the log, writes the health state checkpoint) | {state / 1e6:,.0f} MB, {state / int(accounts):,.0f} bytes an account | {m['state_build'][0]:.1f} s | {m['state_build'][1]:,} MiB |")
print(f"| `tenure health --format csv` (from the checkpoint) | scorecard of {health_rows:,} accounts | {m['health'][0]:.2f} s | {m['health'][1]:,} MiB |")
print(f"| `tenure health --format csv --replay` (folds the log) | the same bytes | {m['health_replay'][0]:.1f} s | {m['health_replay'][1]:,} MiB |")
index = int(open(f"{w}/index.bytes").read())
print(f"| `tenure account ID` (first run: indexes the log's accounts) | {index / 1e6:,.0f} MB, {index / int(accounts):,.0f} bytes an account | {m['account_first'][0]:.1f} s | {m['account_first'][1]:,} MiB |")
print(f"| `tenure account ID` (through the account index) | the page of one account | {m['account'][0]:.2f} s | {m['account'][1]:,} MiB |")
print(f"| `tenure account ID --replay` (folds the log) | the same bytes | {m['account_replay'][0]:.1f} s | {m['account_replay'][1]:,} MiB |")
said = {k: open(f"{w}/forward_{k}.said").read().strip() for k in ("cs", "usage")}
print(f"| `tenure health` after 10,500 new CS events (brought forward: {said['cs']}) | the scorecard of every account | {m['forward_cs'][0]:.1f} s | {m['forward_cs'][1]:,} MiB |")
print(f"| `tenure health` after 200,000 new usage events (brought forward: {said['usage']}) | the same bytes as the replay below | {m['forward_usage'][0]:.1f} s | {m['forward_usage'][1]:,} MiB |")
print(f"| `tenure health --replay` after both | | {m['forward_replay'][0]:.1f} s | {m['forward_replay'][1]:,} MiB |")
ledger = int(open(f"{w}/ledger.bytes").read())
said_kpi = open(f"{w}/forward_kpi.said").read().strip()
print(f"| `tenure kpi --kpis revenue --period 2026-Q3` (first run: folds the log, writes the ledger checkpoint) | {ledger / 1e6:,.0f} MB, {ledger / int(accounts):,.0f} bytes an account | {m['kpi_first'][0]:.1f} s | {m['kpi_first'][1]:,} MiB |")
print(f"| the same (from the checkpoint) | a quarter's revenue KPIs | {m['kpi'][0]:.2f} s | {m['kpi'][1]:,} MiB |")
print(f"| the same after the 10,500 new CS events (brought forward: {said_kpi}) | | {m['forward_kpi'][0]:.2f} s | {m['forward_kpi'][1]:,} MiB |")
print(f"| the same after both (from the checkpoint and its delta) | the same bytes as the replay below | {m['kpi_after'][0]:.2f} s | {m['kpi_after'][1]:,} MiB |")
print(f"| the same `--replay` after both | | {m['kpi_replay'][0]:.1f} s | {m['kpi_replay'][1]:,} MiB |")
best = max([("logistic baseline", bt['baseline']['auc'])] + [(f"scorecard {n}", c['auc']) for n, c in bt['scorecards'].items()]
           + [(f"scorecard {n}, learned", c['learned']['auc']) for n, c in bt['scorecards'].items() if c.get('learned')], key=lambda x: x[1] or 0)
print(f"| the selection's cost | `model train` / `--learner trees` | {m['train'][0] / m['train_trees'][0]:.2f}x | |")
print(f"| `tenure model backtest` (3 test months) | trained on {bt['n_train']:,}, tested on {bt['n_snapshots']:,} snapshots; {bt['selection']['chosen']}: AUC {bt['auc']:.3f} (best baseline: {best[0]}, {best[1]:.3f}), ECE {bt['ece']:.3f} | {m['backtest'][0]:.1f} s | {m['backtest'][1]:,} MiB |")
PY
)
echo "$SECTION"
if [ "$RECORD" = 1 ]; then
    echo "$SECTION" >>BENCHMARKS.md
fi
