#!/usr/bin/env bash
# Service load bench (issue 6): `tenure serve` on loopback, fed EVENTS events (default
# 3,000,000) in batches of BATCH (1000) over CONNECTIONS keep-alive connections (4), for at
# most SECONDS (120). Every batch is acknowledged once durable; every 20th carries a
# detractor answer whose alert reaches a local webhook receiver. Runs twice: as fast as
# acknowledged (the sustained rate), then paced at 100,000 events/s. Reports events/s,
# event-to-alert latency (end to end and the server's histogram) and the server's memory.
# RECORD=0 leaves BENCHMARKS.md alone.
set -euo pipefail
EVENTS=${1:-3000000}
BATCH=${2:-1000}
CONNECTIONS=${3:-4}
SECONDS_MAX=${4:-120}
RECORD=${RECORD:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cargo build --release --workspace --bin tenure
cargo build --release --workspace --example load
# The sustained maximum (senders wait only for acknowledgements), then latency at the
# target rate of 100,000 events/s (latency at saturation is queueing, not the service).
MAX=$("$ROOT/target/release/examples/load" "$ROOT/target/release/tenure" "$EVENTS" "$BATCH" "$CONNECTIONS" "$SECONDS_MAX" 0)
PACED=$("$ROOT/target/release/examples/load" "$ROOT/target/release/tenure" "$EVENTS" "$BATCH" "$CONNECTIONS" "$SECONDS_MAX" 100000)
OUT="$MAX

$PACED"
echo "$OUT"
if [ "$RECORD" = 1 ]; then
    {
        echo
        echo "## Service load benchmark, $(date -u '+%Y-%m-%d %H:%M')"
        echo
        echo "\`bash bench/serve.sh $EVENTS $BATCH $CONNECTIONS $SECONDS_MAX\` on $(nproc) cores, client and server on the same machine:"
        echo
        echo '```'
        echo "$OUT"
        echo '```'
    } >> BENCHMARKS.md
fi
