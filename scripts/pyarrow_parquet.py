"""A Parquet file written by pyarrow (as a data team's pipeline would), imported by tenure.

Usage: python3 pyarrow_parquet.py TENURE_BIN WORK_DIR

Writes subscriptions and usage with pyarrow's own types (dictionary strings, integer ids,
nanosecond timestamps with a time zone, dates, decimal amounts, nulls, an ignored list
column), named so that only the PAR1 magic number says it is Parquet for one of them,
imports both with `tenure import` and checks the counts tenure reports and the stored
values (`tenure sql`). Exits 1 on any difference.
"""

import datetime
import decimal
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

tenure, work = sys.argv[1:3]
data = os.path.join(work, "pyarrow-data")
errors = []
n = 1000

subs = pa.table(
    {
        "type": pa.array(["subscription"] * n).dictionary_encode(),
        "timestamp": pa.array(
            [datetime.datetime(2024, 3, 1, 10, 0, 0, 123456) + datetime.timedelta(hours=i) for i in range(n)],
            pa.timestamp("ns", tz="Europe/Paris"),
        ),
        "account_id": pa.array(range(1, n + 1), pa.int64()),
        "subscription_id": [f"sub-{i}" for i in range(n)],
        "plan": pa.array(["pro" if i % 2 else None for i in range(n)]),
        "quantity": pa.array([1 + i % 7 for i in range(n)], pa.int32()),
        "amount": pa.array([decimal.Decimal(f"{i}.{i % 100:02d}") for i in range(n)], pa.decimal128(12, 2)),
        "currency": pa.array(["EUR"] * n).dictionary_encode(),
        "status": ["active"] * n,
        "term_start": pa.array([datetime.date(2024, 3, 1)] * n, pa.date32()),
        "attributes.segment": ["smb"] * n,
        "tags": pa.array([[i] for i in range(n)]),
    }
)
pq.write_table(subs, os.path.join(work, "subscriptions.parquet"))
usage = pa.table(
    {
        "account_id": pa.array([str(1 + i % 10) for i in range(n)]).dictionary_encode(),
        "timestamp": pa.array([datetime.datetime(2024, 3, 2) + datetime.timedelta(seconds=i) for i in range(n)], pa.timestamp("ms")),
        "user_id": [f"u{i % 50}" for i in range(n)],
        "event": ["login"] * n,
        "quantity": pa.array([float(i % 3) for i in range(n)], pa.float64()),
    }
)
# Named as JSONL: only its magic number says it is Parquet.
pq.write_table(usage, os.path.join(work, "usage.jsonl"), compression="zstd")

files = [os.path.join(work, f) for f in ("subscriptions.parquet", "usage.jsonl")]
r = subprocess.run([tenure, "import", "--no-refresh", "--data", data, *files], capture_output=True, text=True)
print(r.stderr.strip())
if r.returncode != 0:
    errors.append(f"tenure import exited {r.returncode}")
for f in files:
    if f"{f}: {n} stored, 0 already present, 0 rejected" not in r.stderr:
        errors.append(f"{f}: not every row stored")


def sql(q):
    out = subprocess.run([tenure, "sql", "--data", data, "--format", "csv", q], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[1:]


row = sql("SELECT account_id, ts, plan, quantity, amount_minor, currency, term_start FROM subscriptions WHERE subscription_id = 'sub-123'")
want = ["124,2024-03-06T13:00:00.123456Z,pro,5,12323,EUR,2024-03-01T00:00:00Z"]
if row != want:
    errors.append(f"subscription sub-123: {row}, expected {want}")
total = sql("SELECT count(*), sum(quantity) FROM usage")
want = [f"{n},{float(sum(i % 3 for i in range(n)))}"]
if total != want:
    errors.append(f"usage: {total}, expected {want}")

for e in errors:
    print("FAIL:", e)
print("pyarrow Parquet import:", "ok" if not errors else f"{len(errors)} failure(s)")
sys.exit(1 if errors else 0)
