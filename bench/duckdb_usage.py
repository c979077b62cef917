#!/usr/bin/env python3
"""DuckDB peer for the usage benchmark (bench/usage.sh). Benchmark code only: not a test.

Times DuckDB computing the usage KPIs tenure computes (kpis.md §2, docs/kpis.md) from the
same Parquet files tenure's columnar store holds (`DATA/columnar/usage/*.parquet`):

  * mau: distinct (account, user) pairs with a usage event in the 30 days before the end;
  * license_utilization: over customers at the end, the MAU of those with seats / their seats;
  * feature_adoption.F: customers at the end with an event on F at or after its release and
    before the end / customers at the end.

Customers and seats at the end come from tenure's `accounts` table
(`tenure sql --as-of <end - 1 us>`, as CSV), prepared before the timed runs.
Each run opens a fresh connection and reads the Parquet files (the OS cache is warm).

  duckdb_usage.py --usage-glob G --accounts A --end ISO --features JSON --repeat N --out F
  duckdb_usage.py compare --duckdb F --tenure KPI.json
"""

import argparse
import datetime as dt
import json
import statistics
import sys
import time

import duckdb


def run(args):
    end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    w30 = end - dt.timedelta(days=30)
    features = json.loads(args.features)
    values = ", ".join(
        f"('{name}', TIMESTAMPTZ '{released}')" for name, released in features.items()
    )
    times, result = [], None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            f"CREATE VIEW usage AS SELECT * FROM read_parquet('{args.usage_glob}')"
        )
        reader = "read_csv_auto" if args.accounts.endswith(".csv") else "read_parquet"
        con.execute(f"CREATE VIEW accounts AS SELECT * FROM {reader}('{args.accounts}')")
        per_account = con.execute(
            f"""
            WITH m AS (
                SELECT account_id, count(DISTINCT user_id) AS mau FROM usage
                WHERE ts >= TIMESTAMPTZ '{w30.isoformat()}' AND ts < TIMESTAMPTZ '{end.isoformat()}'
                GROUP BY account_id
            )
            SELECT
                (SELECT coalesce(sum(mau), 0) FROM m) AS mau,
                sum(CASE WHEN a.seats > 0 THEN coalesce(m.mau, 0) ELSE 0 END) AS active,
                sum(a.seats) AS seats,
                count(*) AS customers
            FROM accounts a LEFT JOIN m USING (account_id) WHERE a.customer
            """
        ).fetchone()
        adoption = con.execute(
            f"""
            WITH f(feature, released) AS (VALUES {values}),
            used AS (
                SELECT DISTINCT u.account_id, u.feature FROM usage u JOIN f USING (feature)
                WHERE u.ts >= f.released AND u.ts < TIMESTAMPTZ '{end.isoformat()}'
            )
            SELECT f.feature, count(a.account_id)
            FROM f LEFT JOIN used USING (feature)
                   LEFT JOIN accounts a ON a.account_id = used.account_id AND a.customer
            GROUP BY f.feature
            """
        ).fetchall()
        con.close()
        times.append(time.perf_counter() - t0)
        mau, active, seats, customers = per_account
        result = {
            "mau": mau,
            "license_utilization": active / seats if seats else None,
        }
        for name, n in adoption:
            result[f"feature_adoption.{name}"] = n / customers if customers else None
    out = {"seconds": times, "median": statistics.median(times), "kpis": result}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"duckdb: {['%.3f' % t for t in times]} s, median {out['median']:.3f}", file=sys.stderr)


def compare(args):
    d = json.load(open(args.duckdb))["kpis"]
    t = json.load(open(args.tenure))["kpis"]
    worst = 0.0
    for k, v in d.items():
        tv = t.get(k)
        if v is None or tv is None:
            ok = v is None and tv is None
            diff = 0.0 if ok else float("inf")
        else:
            diff = abs(v - tv) / max(abs(v), 1e-12)
        worst = max(worst, diff)
        print(f"{k}: duckdb {v} tenure {tv} rel.diff {diff:.3g}", file=sys.stderr)
    print(f"{len(d)} {worst:.3g}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query")
    q.add_argument("--usage-glob", required=True)
    q.add_argument("--accounts", required=True)
    q.add_argument("--end", required=True)
    q.add_argument("--features", required=True)
    q.add_argument("--repeat", type=int, default=3)
    q.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--duckdb", required=True)
    c.add_argument("--tenure", required=True)
    a = p.parse_args()
    run(a) if a.cmd == "query" else compare(a)


if __name__ == "__main__":
    main()
