#!/usr/bin/env bash
# Service start and refresh at scale (issue 18): `tenure serve` on the data of
# bench/health.sh (run it first; 1,000,000 accounts by default). Polls an account's page
# over the API every POLL seconds (0.3) from the start: reports when the service first
# answers, the load's phases from its log ("live state loaded"), peak resident memory and,
# over HOLD seconds (150) with `refresh_minutes = 1`, the slowest answer while it refreshes
# every account. RUNS starts (3). Each run is stopped with SIGINT: the service saves its
# live state (DATA/state/live.state), which the next start reads unless the log changed;
# the stop's time, the saved bytes and the peak while saving are reported too. FRESH=1
# removes the saved state first, so that the first run replays the log.
# SAVE_MINUTES=N saves the live state while running every N minutes (the saves' times are
# reported). INGEST=N posts N tickets over the API after the first answer, and STOP=KILL
# stops with SIGKILL instead (a crash: the next start brings the state saved before forward
# over the log's tail). CONF_EXTRA adds to the configuration. UPGRADE=1 starts each run
# by a copy of the binary with another build id (another build reads the state the last one
# saved). IMPORT=COMMAND imports what COMMAND prints (`{run}` in it replaced by a
# new tag each time: `python3 bench/tail.py 1000000 5000 500 0 {run} $(date -u +%F)`) while
# the service is down, before each start after the first: the saved state's tail, which the
# start's immediate rules evaluate. Prints the figures;
# BENCHMARKS.md is written by hand.
# Each start and refresh records its alerts in the log: later runs replay a little more.
set -euo pipefail
RUNS=${RUNS:-3}
POLL=${POLL:-0.3}
HOLD=${HOLD:-150}
ACCOUNT=${ACCOUNT:-acc-000123}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/health
[ -d "$W/data/log" ] || { echo "run bench/health.sh first" >&2; exit 2; }
cargo build --release --workspace --bin tenure
[ "${FRESH:-0}" = 1 ] && rm -f "$W/data/state/live.state" "$W/data/state"/live-ledger.*state
T="$ROOT/target/release/tenure"
say() { echo "[bench] $*" >&2; }
KEY=$("$T" key create --data "$W/data" --scope read --name serve-start-bench | tail -1)
KEY_ID=$("$T" key list --data "$W/data" | awk '/serve-start-bench/ && /active/ { print $1 }' | tail -1)
INGEST_KEY=""
if [ "${INGEST:-0}" -gt 0 ]; then
    INGEST_KEY=$("$T" key create --data "$W/data" --scope ingest --name serve-start-bench | tail -1)
fi
CONF=$(mktemp)
printf '[service]\nrefresh_minutes = 1\nsave_state_minutes = %s\n' "${SAVE_MINUTES:-0}" >"$CONF"
# CONF_EXTRA: more of the configuration (a rule changed, say: the saved state was made
# with another setup, and the start reads the recent days from the columnar store again).
printf '%b' "${CONF_EXTRA:-}" >>"$CONF"
PORT=18089
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    for id in $("$T" key list --data "$W/data" | awk '/serve-start-bench/ && /active/ { print $1 }'); do
        "$T" key revoke --data "$W/data" "$id" >/dev/null 2>&1 || true
    done
    rm -f "$CONF"
}
trap cleanup EXIT
# A start that has not answered within this many seconds failed.
DEADLINE=${DEADLINE:-600}
start() { # RUN: one start, then HOLD seconds of answers
    local run=$1 t0 pid el code secs rss peak=0 first="" slowest=0
    t0=$(date +%s.%N)
    "$T" serve --data "$W/data" --config "$CONF" --listen "127.0.0.1:$PORT" >/dev/null 2>"$W/serve-start.$run.err" &
    pid=$!
    PID=$pid
    while kill -0 "$pid" 2>/dev/null; do
        sleep "$POLL"
        el=$(echo "$(date +%s.%N) - $t0" | bc)
        read -r code secs < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -m 10 \
            -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/accounts/$ACCOUNT" || true)
        rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "$rss" -gt "$peak" ] && peak=$rss
        if [ "$code" = 200 ]; then
            if [ -z "$first" ] && [ "${INGEST:-0}" -gt 0 ]; then
                # Tickets for the first INGEST accounts, 500 a request.
                for ((i = 0; i < INGEST; i += 500)); do
                    for ((j = i; j < i + 500 && j < INGEST; j++)); do
                        printf '{"type":"ticket","timestamp":"%s","account_id":"acc-%06d","ticket_id":"bench-%s-%d","status":"opened"}\n' \
                            "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$j" "$run" "$j"
                    done | curl -s -o /dev/null -m 60 -H "Authorization: Bearer $INGEST_KEY" \
                        -H 'Content-Type: application/x-ndjson' --data-binary @- \
                        "http://127.0.0.1:$PORT/api/v1/events"
                done
                say "start $run: $INGEST tickets posted"
            fi
            [ -z "$first" ] && first=$el
            # After the first answer: the slowest answer (the refresh runs meanwhile).
            [ "$(echo "$secs > $slowest" | bc)" = 1 ] && [ "$(echo "$el - $first > 1" | bc)" = 1 ] && slowest=$secs
        elif [ -n "$first" ]; then
            slowest="timeout($code)"
        fi
        if [ -n "$first" ] && [ "$(echo "$el - $first > $HOLD" | bc)" = 1 ]; then break; fi
        if [ -z "$first" ] && [ "$(echo "$el > $DEADLINE" | bc)" = 1 ]; then
            say "start $run: no answer after $DEADLINE s (see $W/serve-start.$run.err)"
            break
        fi
    done
    local stop0 stopped stop_peak=0
    stop0=$(date +%s.%N)
    if [ "${STOP:-INT}" = KILL ]; then kill -KILL "$pid" 2>/dev/null || true; else kill -INT "$pid" 2>/dev/null || true; fi
    # The stop saves the live state: its time and peak memory.
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$stop_peak" ] && stop_peak=$rss
        sleep 0.2
    done
    wait "$pid" || true
    stopped=$(echo "$(date +%s.%N) - $stop0" | bc)
    PID=""
    local phases
    phases=$(grep -o '"msg":"the immediate rules evaluated the saved state.s tail"[^}]*' "$W/serve-start.$run.err" | tr '\n' ' ' || true)
    phases+=$(grep -o '"fold_and_score_secs":[0-9.]*\|"read_secs":[0-9.]*\|"msg":"live state read from its snapshot[^"]*","secs":[0-9.]*\|"msg":"the saved state.s history replayed[^"]*","secs":[0-9.]*\|"bytes":[0-9]*\|"msg":"live state saved[^"]*","secs":[0-9.]*\|"records_since":[0-9]*\|"msg":"the refresh in progress is left[^"]*"' "$W/serve-start.$run.err" | tr '\n' ' ' || true)
    say "start $run: first answer after ${first:-never} s; $phases; slowest answer during refreshes ${slowest} s; peak ${peak} MiB; stop ${stopped} s, peak while stopping ${stop_peak} MiB"
}
# UPGRADE=1: each start by a copy of the binary whose GNU build id (what saved state is kept
# by) differs from the last one's, so that each reads the state saved by "another build", as
# after an upgrade.
BUILD=$T
another_build() {
    python3 - "$BUILD" "$W/tenure-upgrade" "$1" <<'PY'
import re, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = bytearray(open(src, "rb").read())
# The note: name size 4, a description's size, type 3 (NT_GNU_BUILD_ID), "GNU\0", the id.
m = re.search(rb"\x04\x00\x00\x00....\x03\x00\x00\x00GNU\x00", b, re.S)
if not m:
    sys.exit("no GNU build id in " + src)
b[m.end()] = (b[m.end()] + n) % 256
open(dst, "wb").write(b)
PY
    chmod +x "$W/tenure-upgrade"
}
for run in $(seq 1 "$RUNS"); do
    if [ -n "${IMPORT:-}" ] && [ "$run" -gt 1 ]; then
        # `{run}` made unique, so that each import's records are new.
        ${IMPORT//\{run\}/B$(date +%s)R$run} >"$W/serve-start.import.jsonl"
        "$T" import --data "$W/data" "$W/serve-start.import.jsonl" >&2
    fi
    if [ "${UPGRADE:-0}" = 1 ]; then
        another_build "$run"
        T="$ROOT/$W/tenure-upgrade"
    fi
    start "$run"
done
rm -f "$W/tenure-upgrade"
