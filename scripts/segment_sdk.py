"""Segment's official Python SDK (segment-analytics-python) delivering to `tenure serve`.

Usage: python3 segment_sdk.py BASE_URL INGEST_READ_KEY TENURE_BIN DATA_DIR

Two clients, one with gzip=True (how Segment's libraries compress their batches) and one
with the default (no compression), each send group, identify, track and page through the
SDK's own queue and consumer thread, flush, and report any error the SDK saw. Then the
service is asked what it stored: `tenure status` counts per lane (each lane grows by
exactly what was sent) and the REST API's account 360 (name from the group call, the
identified contact). Exits 1 on any difference.
"""

import json
import subprocess
import sys
import time
import urllib.request
import uuid

from segment.analytics import Client

base, key, tenure, data = sys.argv[1:5]
run = uuid.uuid4().hex[:8]
errors = []


def lanes():
    out = subprocess.run([tenure, "status", "--data", data], check=True, capture_output=True, text=True).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


before = lanes()
sent = {}
for gzip in (True, False):
    label = "gzip" if gzip else "plain"
    account = f"sdk-{run}-{label}"
    user = f"u-{run}-{label}"
    client = Client(
        key,
        host=base,
        gzip=gzip,
        max_retries=1,
        on_error=lambda e, batch, label=label: errors.append(f"{label}: {e!r} ({len(batch)} messages)"),
    )
    client.group(user, account, {"name": f"SDK {label}", "plan": "enterprise", "employees": 42})
    client.identify(user, {"email": f"{user}@example.com", "name": "Ada Lovelace", "role": "champion"},
                    context={"groupId": account})
    client.track(user, "Report Exported", {"feature": "reports", "quantity": 3}, context={"groupId": account})
    client.page(user, "Docs", "Getting started", {"path": "/docs/start"}, context={"groupId": account})
    client.flush()
    client.join()
    sent[label] = (account, user)

if errors:
    print("the SDK reported errors:", *errors, sep="\n  ")
    sys.exit(1)

# Acknowledged means durable: the lanes show every message at once.
expected = {"account": 2, "contact": 2, "usage": 2, "web_visit": 2}
after = lanes()
grown = {lane: after.get(lane, 0) - before.get(lane, 0) for lane in expected}
failures = [f"lane {lane}: {grown[lane]} new events, expected {n}" for lane, n in expected.items() if grown[lane] != n]

for label, (account, user) in sent.items():
    # The live state folds the commit a moment later.
    deadline = time.time() + 10
    while True:
        try:
            a = get(f"/api/v1/accounts/{account}")
            if a.get("name") and a.get("contacts"):
                break
        except urllib.error.HTTPError:
            pass
        if time.time() > deadline:
            failures.append(f"{label}: account {account} not in the REST API")
            a = None
            break
        time.sleep(0.1)
    if a is None:
        continue
    if a["name"] != f"SDK {label}":
        failures.append(f"{label}: account name {a['name']!r}")
    if a["attributes"].get("plan") != "enterprise":
        failures.append(f"{label}: attributes {a['attributes']}")
    if [c["contact_id"] for c in a["contacts"]] != [user]:
        failures.append(f"{label}: contacts {a['contacts']}")

if failures:
    print("Segment SDK check failed:", *failures, sep="\n  ")
    sys.exit(1)
print(f"Segment SDK: group, identify, track and page delivered with gzip and without ({grown})")
