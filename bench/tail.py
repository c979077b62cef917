#!/usr/bin/env python3
"""New events for a generated company already imported (bench/health.sh): what a day of a
live business adds to its log. Writes JSON lines to stdout: TICKETS tickets opened and NPS
answers for random accounts, MOVES contacts turning up under another account, and USAGE
usage events. Every run's events are new (their ids carry RUN), so each run grows the log.

Usage: tail.py ACCOUNTS TICKETS MOVES USAGE RUN DATE
"""
import json
import random
import sys

accounts, tickets, moves, usage, run, date = sys.argv[1:7]
accounts, tickets, moves, usage = int(accounts), int(tickets), int(moves), int(usage)
rng = random.Random(run)
out = sys.stdout


def acc():
    return f"acc-{rng.randrange(1, accounts + 1):06d}"


def ts(i):
    return f"{date}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"


for i in range(tickets):
    a = acc()
    out.write(json.dumps({"type": "ticket", "timestamp": ts(i), "account_id": a,
                          "ticket_id": f"t-{run}-{i}", "status": "opened", "category": "defect",
                          "severity": rng.choice(["low", "normal", "high", "urgent"])}) + "\n")
    out.write(json.dumps({"type": "survey_response", "timestamp": ts(i), "account_id": a,
                          "survey": "nps", "score": rng.randrange(0, 11)}) + "\n")
for i in range(moves):
    # The generator names contacts c-<account>-<n>: the first contact of one account
    # sighted under another.
    src, dst = rng.randrange(1, accounts + 1), acc()
    out.write(json.dumps({"type": "contact", "timestamp": ts(i), "account_id": dst,
                          "contact_id": f"c-{src:06d}-1", "role": "champion",
                          "status": "active"}) + "\n")
for i in range(usage):
    a = acc()
    out.write(json.dumps({"type": "usage", "timestamp": ts(i), "account_id": a,
                          "user_id": f"u-{a[4:]}-1", "event": "export",
                          "feature": "reports"}) + "\n")
