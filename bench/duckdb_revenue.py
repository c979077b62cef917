#!/usr/bin/env python3
"""DuckDB peer for the revenue benchmark (bench/revenue.sh). Benchmark code only: not a test.

Subcommands:
  export   JSONL (as written by `tenure gen`) -> Parquet (subscriptions, accounts). Not timed.
  query    Times DuckDB computing the revenue KPI series from the Parquet files.
  compare  Compares a DuckDB result with `tenure kpi --format json` output.
  report   Prints the summary table and appends a section to BENCHMARKS.md.

The query reproduces the core of kpis.md §1 under the rules that tenure runs with when
`tenure.toml` says past_due_churn_days = 0, grouping_window_minutes = 0, pause = "churn":
  * line MRR = amount (minor units) / interval months, rounded half up, when the line is
    active or past_due; trialing, paused, canceled = 0; each later event of a
    subscription_id replaces its state (ties: file order);
  * a scheduled cancellation (`cancel_at`) on an active/past_due line zeroes it at
    max(cancel_at, ts) unless the line changes before (and only if <= as_of);
  * account MRR at instant t = sum over its lines of the latest state strictly before t;
    a customer is an account with MRR > 0;
  * each change of account MRR is classified new / reactivation / expansion /
    contraction / churn; NRR/GRR/logo churn over accounts that were customers at start;
  * amounts in EUR/GBP are taken 1:1 (tenure does the same without an FX table).
"""

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time

import duckdb

QUERY = """
WITH
src AS (
    SELECT account_id, subscription_id, ts, ord, status, cancel_at,
           CAST(amount * 100 AS BIGINT) AS amt,
           CASE "interval" WHEN 'month' THEN 1 WHEN 'quarter' THEN 3 WHEN 'year' THEN 12
                ELSE CAST(rtrim("interval", 'm') AS INTEGER) END AS months
    FROM read_parquet($subs)
    WHERE ts <= $as_of
),
ev AS (
    SELECT account_id, subscription_id, ts, ord, status, cancel_at,
           CASE WHEN status IN ('active', 'past_due')
                THEN (2 * amt + months) // (2 * months) ELSE 0 END AS val,
           lead(ts) OVER (PARTITION BY account_id, subscription_id ORDER BY ts, ord) AS next_ts
    FROM src
),
-- change points of every line: its events, plus the derived end of a scheduled cancellation
pts AS (
    SELECT account_id, subscription_id, ts, ord, 0 AS sub, val FROM ev
    UNION ALL
    SELECT account_id, subscription_id, greatest(cancel_at, ts), ord, 1, 0 FROM ev
    WHERE cancel_at IS NOT NULL AND status IN ('active', 'past_due')
      AND greatest(cancel_at, ts) < coalesce(next_ts, 'infinity'::TIMESTAMPTZ)
      AND greatest(cancel_at, ts) <= $as_of
),
-- per line: the change of its value at each point
deltas AS (
    SELECT account_id, ts,
           val - coalesce(lag(val) OVER (PARTITION BY account_id, subscription_id
                                        ORDER BY ts, ord, sub), 0) AS delta
    FROM pts
),
-- per account: its MRR from each distinct timestamp on
steps AS (
    SELECT account_id, ts,
           CAST(sum(sum(delta)) OVER (PARTITION BY account_id ORDER BY ts
                                      ROWS UNBOUNDED PRECEDING) AS BIGINT) AS mrr
    FROM deltas GROUP BY account_id, ts
),
classified AS (
    SELECT account_id, ts, mrr,
           coalesce(lag(mrr) OVER w, 0) AS prev,
           coalesce(max(mrr > 0) OVER (PARTITION BY account_id ORDER BY ts
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS ever_paid
    FROM steps
    WINDOW w AS (PARTITION BY account_id ORDER BY ts)
),
bounds AS (SELECT unnest($bounds::TIMESTAMPTZ[]) AS t),
periods AS (SELECT t AS p_start, lead(t) OVER (ORDER BY t) AS p_end FROM bounds),
mv AS (
    SELECT c.account_id, p.p_start,
           sum(CASE WHEN prev = 0 AND mrr > 0 AND NOT ever_paid THEN mrr ELSE 0 END) AS new,
           sum(CASE WHEN prev = 0 AND mrr > 0 AND ever_paid THEN mrr ELSE 0 END) AS react,
           sum(CASE WHEN prev > 0 AND mrr > prev THEN mrr - prev ELSE 0 END) AS exp,
           sum(CASE WHEN prev > 0 AND mrr > 0 AND mrr < prev THEN prev - mrr ELSE 0 END) AS contr,
           sum(CASE WHEN prev > 0 AND mrr = 0 THEN prev ELSE 0 END) AS churn,
           bool_or(prev = 0 AND mrr > 0 AND NOT ever_paid) AS had_new,
           bool_or(prev = 0 AND mrr > 0 AND ever_paid) AS had_react,
           bool_or(prev > 0 AND mrr = 0) AS had_churn
    FROM classified c
    ASOF JOIN periods p ON c.ts >= p.p_start
    WHERE c.ts < (SELECT max(t) FROM bounds) AND mrr <> prev
    GROUP BY ALL
),
-- per account and boundary: MRR just before the boundary
grid AS (SELECT a.account_id, b.t FROM (SELECT DISTINCT account_id FROM steps) a, bounds b),
at_bound AS (
    SELECT g.account_id, g.t, coalesce(s.mrr, 0) AS mrr
    FROM grid g ASOF LEFT JOIN steps s ON g.account_id = s.account_id AND g.t > s.ts
),
acct_period AS (
    SELECT account_id, t AS p_start, mrr AS mrr_s,
           lead(mrr) OVER (PARTITION BY account_id ORDER BY t) AS mrr_e
    FROM at_bound
),
joined AS (
    SELECT ap.p_start, ap.mrr_s, ap.mrr_e, ap.mrr_s > 0 AS cust_s,
           coalesce(mv.new, 0) AS new, coalesce(mv.react, 0) AS react,
           coalesce(mv.exp, 0) AS exp, coalesce(mv.contr, 0) AS contr,
           coalesce(mv.churn, 0) AS churn,
           coalesce(mv.had_new, false) AS had_new, coalesce(mv.had_react, false) AS had_react,
           coalesce(mv.had_churn, false) AS had_churn
    FROM acct_period ap
    LEFT JOIN mv ON mv.account_id = ap.account_id AND mv.p_start = ap.p_start
    WHERE ap.mrr_e IS NOT NULL
)
SELECT strftime(p_start, '%Y-%m-%dT%H:%M:%SZ') AS period_start,
       CAST(sum(mrr_s) AS BIGINT) AS mrr_start,
       CAST(sum(mrr_e) AS BIGINT) AS mrr_end,
       CAST(sum(new) AS BIGINT) AS mrr_new,
       CAST(sum(exp) AS BIGINT) AS mrr_expansion,
       CAST(sum(contr) AS BIGINT) AS mrr_contraction,
       CAST(sum(churn) AS BIGINT) AS mrr_churn,
       CAST(sum(react) AS BIGINT) AS mrr_reactivation,
       CAST(sum(CASE WHEN cust_s THEN mrr_e ELSE 0 END) AS BIGINT) AS cohort_end,
       CAST(sum(CASE WHEN cust_s THEN least(mrr_s, mrr_e) ELSE 0 END) AS BIGINT) AS cohort_kept,
       count_if(cust_s) AS customers_start,
       count_if(mrr_e > 0) AS customers_end,
       count_if(had_new) AS customers_new,
       count_if(had_react AND NOT cust_s) AS customers_reactivated,
       count_if(cust_s AND NOT mrr_e > 0) AS customers_churned,
       count_if(cust_s AND mrr_e > 0) AS customers_retained
FROM joined
GROUP BY p_start
ORDER BY p_start
"""


def ratio(a, b):
    return None if b == 0 else a / b


def div_round(a, b):
    q, r = divmod(abs(a), abs(b))
    q += 2 * r >= abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def finish(r):
    """Money in major units like tenure's JSON; rates as fractions."""
    out = {"period_start": r["period_start"]}
    ms, me = r["mrr_start"], r["mrr_end"]
    for k in ("mrr_start", "mrr_end", "mrr_new", "mrr_expansion", "mrr_contraction",
              "mrr_churn", "mrr_reactivation"):
        out[k] = r[k] / 100
    # NRR: end MRR of the accounts that were customers at the start (docs/kpis.md).
    out["nrr"] = ratio(r["cohort_end"], ms)
    out["grr"] = ratio(r["cohort_kept"], ms)
    for k in ("customers_start", "customers_end", "customers_new", "customers_reactivated",
              "customers_churned"):
        out[k] = r[k]
    out["logo_churn_rate"] = ratio(r["customers_churned"], r["customers_start"])
    out["customer_retention_rate"] = ratio(r["customers_retained"], r["customers_start"])
    out["arpa"] = None if r["customers_end"] == 0 else div_round(me, r["customers_end"]) / 100
    out["quick_ratio"] = ratio(r["mrr_new"] + r["mrr_expansion"] + r["mrr_reactivation"],
                               r["mrr_contraction"] + r["mrr_churn"])
    return out


def month_bounds(first, months):
    y, m = map(int, first.split("-"))
    out = []
    for i in range(months + 1):
        yy, mm = y + (m - 1 + i) // 12, (m - 1 + i) % 12 + 1
        out.append(f"{yy:04d}-{mm:02d}-01T00:00:00Z")
    return out


def cmd_export(a):
    os.makedirs(a.out, exist_ok=True)
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    subs = os.path.join(a.company, "subscriptions.jsonl")
    accts = os.path.join(a.company, "accounts.jsonl")
    # `ord` keeps file order (= import order, which breaks timestamp ties in tenure).
    c.execute(f"""
        COPY (
            SELECT row_number() OVER () AS ord, account_id, subscription_id,
                   "timestamp" AS ts, product, plan, kind, quantity,
                   CAST(amount AS DECIMAL(18, 2)) AS amount, currency, "interval", status,
                   term_start, term_end, cancel_reason, cancel_at
            FROM read_json('{subs}', format = 'newline_delimited',
                           columns = {{type: 'VARCHAR', "timestamp": 'TIMESTAMPTZ',
                             account_id: 'VARCHAR', subscription_id: 'VARCHAR',
                             product: 'VARCHAR', plan: 'VARCHAR', kind: 'VARCHAR',
                             quantity: 'BIGINT', amount: 'VARCHAR', currency: 'VARCHAR',
                             "interval": 'VARCHAR', status: 'VARCHAR',
                             term_start: 'TIMESTAMPTZ', term_end: 'TIMESTAMPTZ',
                             cancel_reason: 'VARCHAR', cancel_at: 'TIMESTAMPTZ'}})
        ) TO '{os.path.join(a.out, "subscriptions.parquet")}' (FORMAT parquet)
    """)
    c.execute(f"""
        COPY (
            SELECT row_number() OVER () AS ord, account_id, "timestamp" AS ts, name,
                   attributes.segment AS segment, attributes.region AS region,
                   attributes.industry AS industry, attributes.channel AS channel,
                   attributes.csm AS csm, attributes.plan AS plan
            FROM read_json('{accts}', format = 'newline_delimited')
        ) TO '{os.path.join(a.out, "accounts.parquet")}' (FORMAT parquet)
    """)
    n = c.execute(f"SELECT count(*) FROM '{os.path.join(a.out, 'subscriptions.parquet')}'").fetchall()[0][0]
    print(f"duckdb export: {n} subscription events to Parquet in "
          f"{time.perf_counter() - t0:.2f} s", file=sys.stderr)


def run_query(subs, as_of, bounds):
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    cur = c.execute(QUERY, {"subs": subs, "as_of": as_of, "bounds": bounds})
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    c.close()
    return rows


def cmd_query(a):
    subs = os.path.join(a.parquet, "subscriptions.parquet")
    bounds = month_bounds(a.first_month, a.months) if a.first_month else a.bounds.split(",")
    times = []
    rows = None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        rows = run_query(subs, a.as_of, bounds)
        times.append(time.perf_counter() - t0)
    res = {
        "duckdb_version": duckdb.__version__,
        "threads": duckdb.connect().execute("SELECT current_setting('threads')").fetchall()[0][0],
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "rows": [finish(r)
                 for r in rows],
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(f"duckdb query: {len(rows)} periods, times " +
          ", ".join(f"{t:.3f}" for t in times) + " s", file=sys.stderr)


COMPARED = ["mrr_start", "mrr_end", "mrr_new", "mrr_expansion", "mrr_contraction", "mrr_churn",
            "mrr_reactivation", "nrr", "grr", "logo_churn_rate", "customers_start",
            "customers_end", "customers_new", "customers_reactivated", "customers_churned",
            "customer_retention_rate", "arpa", "quick_ratio"]


def rel(a, b):
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def cmd_compare(a):
    d = json.load(open(a.duckdb))["rows"]
    t = json.load(open(a.tenure))
    if isinstance(t, dict):
        t = [t]
    if len(t) != len(d):
        print(f"compare: {len(t)} tenure periods vs {len(d)} duckdb periods", file=sys.stderr)
    worst = {k: 0.0 for k in COMPARED}
    exact = {k: 0 for k in COMPARED}
    for tr, dr in zip(t, d):
        for k in COMPARED:
            r = rel(tr["kpis"].get(k), dr.get(k))
            worst[k] = max(worst[k], r)
            exact[k] += r < 1e-12
    res = {"periods": min(len(t), len(d)), "max_rel_diff": worst, "exact_periods": exact}
    if a.out:
        json.dump(res, open(a.out, "w"), indent=1)
    print(f"{a.label}: {res['periods']} periods; max relative difference (periods exactly equal):")
    for k in COMPARED:
        print(f"  {k:<24} {worst[k]:.3g} ({exact[k]}/{res['periods']})")


def cmd_report(a):
    m = {}
    for line in open(a.measurements):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            m[k] = v
    dq = json.load(open(m["duckdb_series_json"]))
    dqq = json.load(open(m["duckdb_quarter_json"]))
    cmp_s = json.load(open(m["compare_series_json"]))
    cmp_q = json.load(open(m["compare_quarter_json"]))
    cmp_def = json.load(open(m["compare_default_json"]))
    f = float

    def mib(kb):
        return f"{int(kb) / 1024:.0f} MiB"

    kpi_s, kpi_q = f(m["kpi_series_s"]), f(m["kpi_quarter_s"])
    duck_s, duck_q = dq["median_s"], dqq["median_s"]
    imp_all, imp_usage = f(m["import_events_per_s"]), f(m["import_usage_events_per_s"])
    ok_import = imp_all >= 1e6
    ok_kpi = kpi_s < duck_s
    rows = [
        ("company", f"{m['accounts']} accounts, {m['usage_events']} usage events requested, "
                    f"36 months (seed 7); {m['events_total']} events, "
                    f"{f(m['jsonl_bytes']) / 2**30:.2f} GiB JSONL"),
        ("generation (tenure gen)", f"{f(m['gen_s']):.1f} s, peak RSS {mib(m['gen_rss_kb'])}"),
        ("import, all files (wall)",
         f"{f(m['import_s']):.1f} s = {imp_all / 1e6:.2f} M events/s "
         f"(tenure's own total: {f(m['import_reported_s']):.1f} s); target >= 1 M/s: "
         f"{'met' if ok_import else 'MISSED'}"),
        ("import, usage.jsonl alone", f"{int(m['usage_stored'])} events, "
                                      f"{imp_usage / 1e6:.2f} M events/s (tenure's per-file figure)"),
        ("import peak RSS", mib(m["import_rss_kb"])),
        ("import CPU", m["import_cpu"]),
        ("log on disk", f"{f(m['log_bytes']) / 2**30:.2f} GiB"),
        ("tenure kpi, first run (folds the log into the ledger checkpoint)",
         f"{f(m['kpi_first_s']):.3f} s, peak RSS {mib(m['kpi_first_rss_kb'])}; checkpoint "
         f"{int(m['state_bytes']) / 2**20:.1f} MiB, "
         f"{int(m['state_bytes']) / int(m['accounts']):.0f} bytes an account"),
        ("tenure kpi, 12-month series (aligned rules)",
         f"{kpi_s:.3f} s (median of {m['repeat']}), peak RSS {mib(m['kpi_series_rss_kb'])}"),
        ("tenure kpi, one quarter (aligned rules)",
         f"{kpi_q:.3f} s, peak RSS {mib(m['kpi_quarter_rss_kb'])}"),
        ("  for scale: opening the log alone (`tenure status`)",
         f"{f(m['status_s']):.3f} s, peak RSS {mib(m['status_rss_kb'])}"),
        ("  for scale: same series, log of only accounts+subscriptions+costs",
         f"{f(m['kpi_revenue_lanes_s']):.3f} s, peak RSS {mib(m['kpi_revenue_lanes_rss_kb'])}"),
        ("tenure kpi, 12-month series (default rules)",
         f"{f(m['kpi_default_s']):.3f} s, peak RSS {mib(m['kpi_default_rss_kb'])}"),
        ("DuckDB, same 12-month series from Parquet",
         f"{duck_s:.3f} s (median of {len(dq['times_s'])}), peak RSS "
         f"{mib(m['duckdb_series_rss_kb'])}; threads {dq['threads']}"),
        ("DuckDB, same quarter", f"{duck_q:.3f} s"),
        ("tenure time / DuckDB time (series)",
         f"{kpi_s / duck_s:.2f}; target tenure faster (< 1): {'met' if ok_kpi else 'MISSED'}"),
        ("tenure time / DuckDB time (quarter)", f"{kpi_q / duck_q:.2f}"),
        ("DuckDB Parquet export (untimed in ratio)", f"{f(m['export_s']):.1f} s"),
        ("agreement mrr_start / mrr_end (series, aligned)",
         f"max rel. diff {cmp_s['max_rel_diff']['mrr_start']:.3g} / "
         f"{cmp_s['max_rel_diff']['mrr_end']:.3g}; exactly equal in "
         f"{cmp_s['exact_periods']['mrr_end']}/{cmp_s['periods']} months"),
        ("agreement, all compared KPIs (series, aligned)",
         "exact in every month" if all(v == cmp_s["periods"] for v in cmp_s["exact_periods"].values())
         else "; ".join(f"{k} {v:.3g}" for k, v in cmp_s["max_rel_diff"].items() if v > 0)),
        ("agreement (quarter, aligned)",
         "exact" if all(v == cmp_q["periods"] for v in cmp_q["exact_periods"].values())
         else "; ".join(f"{k} {v:.3g}" for k, v in cmp_q["max_rel_diff"].items() if v > 0)),
        ("DuckDB vs tenure default rules (expected to differ)",
         f"mrr_end max rel. diff {cmp_def['max_rel_diff']['mrr_end']:.3g}, "
         f"mrr_churn {cmp_def['max_rel_diff']['mrr_churn']:.3g}, "
         f"customers_end {cmp_def['max_rel_diff']['customers_end']:.3g}"),
    ]
    w = max(len(k) for k, _ in rows)
    print()
    print("=" * 100)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print("=" * 100)
    if not a.benchmarks:
        return
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        f"\n## Revenue benchmark, {day}\n",
        f"Command: `{m['command']}`\n",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem']} memory; {m['rustc']}; "
        f"DuckDB {dq['duckdb_version']} (Python, in-process, default threads); "
        f"tenure at commit {m['commit']}{' (dirty tree)' if m.get('dirty') == '1' else ''}.\n",
        f"History: {m['history']}; series `--period {m['series_period']} --every month`, "
        f"quarter `--period {m['quarter_period']}`, `--as-of {m['as_of']}`. "
        "Aligned rules (`tenure.toml`: past_due_churn_days = 0, grouping_window_minutes = 0, "
        "pause = \"churn\"; no FX table, so EUR/GBP are taken 1:1 by both).\n",
        "| measure | result |",
        "|---|---|",
    ]
    md += [f"| {k} | {v} |" for k, v in rows]
    md.append("")
    with open(a.benchmarks, "a") as fh:
        fh.write("\n".join(md) + "\n")
    print(f"appended to {a.benchmarks}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--company", required=True)
    e.add_argument("--out", required=True)
    q = sub.add_parser("query")
    q.add_argument("--parquet", required=True)
    q.add_argument("--as-of", required=True)
    q.add_argument("--first-month", help="YYYY-MM: monthly series from this month")
    q.add_argument("--months", type=int, default=12)
    q.add_argument("--bounds", help="comma-separated period boundaries (instead of months)")
    q.add_argument("--repeat", type=int, default=3)
    q.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--duckdb", required=True)
    c.add_argument("--tenure", required=True)
    c.add_argument("--label", default="compare")
    c.add_argument("--out")
    r = sub.add_parser("report")
    r.add_argument("--measurements", required=True)
    r.add_argument("--benchmarks")
    a = p.parse_args()
    {"export": cmd_export, "query": cmd_query, "compare": cmd_compare, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
