#!/usr/bin/env bash
# Real clients against a running `tenure serve` (issue 13): schemathesis over the OpenAPI
# document with every check on (response schema conformance included), then Segment's
# official Python SDK delivering with gzip=True and without, a Parquet file written by pyarrow
# imported with `tenure import` (scripts/pyarrow_parquet.py), and Stripe's official Node
# library signing webhook deliveries (scripts/stripe_webhook.mjs). Builds the binary if needed,
# generates and imports a small company, creates a key, starts the server on a free port,
# and exits non-zero on any failure. Python packages go to a venv of their own
# (target/clients-venv, or $VENV), pinned.
#   bash scripts/check-clients.sh                 # EXAMPLES=25 per operation by default
#   TENURE=target/release/tenure bash scripts/check-clients.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
EXAMPLES=${EXAMPLES:-25}
VENV=${VENV:-$ROOT/target/clients-venv}
TENURE=${TENURE:-$ROOT/target/debug/tenure}
if [ ! -x "$TENURE" ]; then
    cargo build --workspace --locked  # the whole workspace: a -p build resolves other features and rebuilds DataFusion
fi
if [ ! -x "$VENV/bin/schemathesis" ] || [ ! -d "$VENV/lib" ] || ! "$VENV/bin/python" -c 'import segment.analytics, pyarrow' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'schemathesis==4.32.5' 'segment-analytics-python==2.4.0' 'pyarrow==26.0.1'
fi

NODE_DIR=${NODE_DIR:-$ROOT/target/clients-node}
if [ ! -d "$NODE_DIR/node_modules/stripe" ]; then
    npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" 'stripe@17.7.0' >/dev/null
fi

WORK=$(mktemp -d)
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$TENURE" gen --accounts 40 --months 12 --seed 13 --out "$WORK/sample" >/dev/null
"$TENURE" import --data "$WORK/data" "$WORK/sample"/*.jsonl >/dev/null 2>&1
KEY=$("$TENURE" key create --data "$WORK/data" --scope ingest,read,write,admin --name clients 2>/dev/null)
STRIPE_SECRET=whsec_check_clients_0123456789
printf '[service]\nstripe_webhook_secret = "%s"\n' "$STRIPE_SECRET" > "$WORK/data/tenure.toml"
"$TENURE" serve --data "$WORK/data" --listen 127.0.0.1:0 2>"$WORK/serve.log" &
SERVER=$!
ADDR=
for _ in $(seq 1 600); do
    ADDR=$(sed -n 's/.*serving .* on http:\/\/\([0-9.:]*\).*/\1/p' "$WORK/serve.log" | head -1)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "the server did not start"; cat "$WORK/serve.log"; exit 1; }
BASE="http://$ADDR"
echo "== tenure serve on $BASE"

# A real account for the account 360 (scripts/schemathesis.toml).
TENURE_ACCOUNT=$("$VENV/bin/python" -c '
import json, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/api/v1/accounts?limit=1", headers={"Authorization": "Bearer " + sys.argv[2]})
print(json.load(urllib.request.urlopen(r, timeout=10))["accounts"][0]["account_id"])' "$BASE" "$KEY")
export TENURE_ACCOUNT
echo "== schemathesis (every check) on $BASE/api/v1/openapi.json"
status=0
# From the scratch directory: schemathesis keeps a cache in the current one.
(cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" run "$BASE/api/v1/openapi.json" \
    --checks all --header "Authorization: Bearer $KEY" \
    --max-examples "$EXAMPLES" --seed "${SEED:-13}" --no-color) || status=1

echo "== Segment's Python SDK"
"$VENV/bin/python" "$ROOT/scripts/segment_sdk.py" "$BASE" "$KEY" "$TENURE" "$WORK/data" || status=1

echo "== a Parquet file written by pyarrow"
"$VENV/bin/python" "$ROOT/scripts/pyarrow_parquet.py" "$TENURE" "$WORK" || status=1

echo "== Stripe's Node library signing webhook deliveries"
STRIPE_NODE_MODULES="$NODE_DIR/node_modules" node "$ROOT/scripts/stripe_webhook.mjs" "$BASE" "$STRIPE_SECRET" "$KEY" || status=1

if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the server died:"; tail -20 "$WORK/serve.log"; status=1
fi
if grep -q '"level":"error"\|panicked' "$WORK/serve.log"; then
    echo "the server logged errors:"; grep '"level":"error"\|panicked' "$WORK/serve.log" | head; status=1
fi
exit $status
