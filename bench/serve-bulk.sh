#!/usr/bin/env bash
# A bulk batch over the API at scale (issue 18): `tenure serve` on the data of
# bench/health.sh (run it first; 1,000,000 accounts by default), started from its saved state.
# Once the history is installed and every account refreshed (WAIT seconds after the service
# says the history is in: 35), one POST /api/v1/events of N tickets (40,000) for N distinct
# accounts, while an account's page is asked for every POLL seconds (0.1) for HOLD seconds
# (40). Reports how long the POST took, the slowest answer, the answers over 0.3 s, and the
# holds of the live state's lock of half a second or more (the service logs them). RUNS
# starts (2); each is stopped with SIGINT (the stop saves the state the next start reads).
# TBIN=path measures another build (say, an earlier commit's) instead of this checkout's.
# Prints the figures; BENCHMARKS.md is written by hand.
set -euo pipefail
N=${N:-40000}
RUNS=${RUNS:-2}
POLL=${POLL:-0.1}
HOLD=${HOLD:-40}
WAIT=${WAIT:-35}
ACCOUNT=${ACCOUNT:-acc-000123}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
W=bench-data/health
[ -d "$W/data/log" ] || { echo "run bench/health.sh first" >&2; exit 2; }
if [ -z "${TBIN:-}" ]; then
    cargo build --release --workspace --bin tenure
fi
T=${TBIN:-$ROOT/target/release/tenure}
say() { echo "[bench] $*" >&2; }
KEY=$("$T" key create --data "$W/data" --scope read --name serve-bulk-bench 2>/dev/null | tail -1)
INGEST_KEY=$("$T" key create --data "$W/data" --scope ingest --name serve-bulk-bench 2>/dev/null | tail -1)
CONF=$(mktemp)
printf '[service]\nrefresh_minutes = 60\nsave_state_minutes = 0\n' >"$CONF"
PORT=18090
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    for id in $("$T" key list --data "$W/data" | awk '/serve-bulk-bench/ && /active/ { print $1 }'); do
        "$T" key revoke --data "$W/data" "$id" >/dev/null 2>&1 || true
    done
    rm -f "$CONF" "$W/bulk.ndjson" "$W/bulk.poll"
}
trap cleanup EXIT
for run in $(seq 1 "$RUNS"); do
    ERR="$W/serve-bulk.$run.err"
    "$T" serve --data "$W/data" --config "$CONF" --listen "127.0.0.1:$PORT" >/dev/null 2>"$ERR" &
    PID=$!
    for _ in $(seq 1 900); do
        grep -q "history replayed" "$ERR" 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || { say "run $run: the service stopped (see $ERR)"; exit 1; }
        sleep 1
    done
    sleep "$WAIT"
    # Tickets for N distinct accounts (37 is prime to the million: every id differs).
    NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    STAMP=$(date +%s)
    for ((j = 0; j < N; j++)); do
        printf '{"type":"ticket","timestamp":"%s","account_id":"acc-%06d","ticket_id":"bulk-%s-%d","status":"opened"}\n' \
            "$NOW" "$(((j * 37) % 1000000 + 1))" "$STAMP" "$j"
    done >"$W/bulk.ndjson"
    (
        end=$((SECONDS + HOLD))
        while [ $SECONDS -lt $end ]; do
            curl -s -o /dev/null -m 30 -w '%{time_total}\n' -H "Authorization: Bearer $KEY" \
                "http://127.0.0.1:$PORT/api/v1/accounts/$ACCOUNT" || echo 30
            sleep "$POLL"
        done >"$W/bulk.poll"
    ) &
    POLLER=$!
    sleep 3
    POSTED=$(curl -s -o /dev/null -m 120 -w '%{http_code} %{time_total}' \
        -H "Authorization: Bearer $INGEST_KEY" -H 'Content-Type: application/x-ndjson' \
        --data-binary @"$W/bulk.ndjson" "http://127.0.0.1:$PORT/api/v1/events")
    wait "$POLLER"
    SLOWEST=$(sort -g "$W/bulk.poll" | tail -1)
    OVER=$(awk '$1 > 0.3' "$W/bulk.poll" | wc -l)
    HOLDS=$(grep "half a second" "$ERR" | sed -n 's/.*"for":"\([a-z ]*\)".*"seconds":\([0-9.]*\).*/\1 \2 s/p' | paste -sd, - || true)
    say "run $run: POST of $N tickets: HTTP ${POSTED% *} in ${POSTED#* } s; $(wc -l <"$W/bulk.poll") answers, the slowest $SLOWEST s, $OVER over 0.3 s; holds of 0.5 s or more: ${HOLDS:-none}"
    kill -INT "$PID"
    wait "$PID" || true
    PID=""
done
