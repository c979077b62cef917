#!/usr/bin/env python3
"""Peer side of bench/stats.sh (benchmark code, not a test).

  gen OUT            writes survival.csv (1 M rows, 5 covariates, integer durations: many ties)
                     and cdnow_x424.csv (lifetimes' CDNOW summary repeated 424 times: 999,368
                     customers whose BG/NBD estimates are exactly CDNOW's)
  peers OUT          times pandas reading them and lifelines (KM, Cox Efron) and lifetimes
                     (BG/NBD) fitting, writes peers.json with the times and the figures
"""

import json
import sys
import time

import numpy as np
import pandas as pd

cmd, out = sys.argv[1], sys.argv[2]

if cmd == "gen":
    rng = np.random.default_rng(7)
    n = 1_000_000
    x = rng.normal(size=(n, 5))
    beta = np.array([0.5, -0.3, 0.2, 0.0, 0.1])
    hazard = 0.01 * np.exp(x @ beta)
    t_event = rng.exponential(1 / hazard)
    t_cens = rng.uniform(0, 200, size=n)
    dur = np.ceil(np.minimum(t_event, t_cens))
    ev = (t_event <= t_cens).astype(int)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(1, 6)])
    df.insert(0, "event", ev)
    df.insert(0, "duration", dur)
    df.to_csv(f"{out}/survival.csv", index=False)
    from lifetimes.datasets import load_cdnow_summary

    cd = load_cdnow_summary()
    pd.concat([cd] * 424, ignore_index=True).to_csv(f"{out}/cdnow_x424.csv", index=False)
    sys.exit(0)

res = {}
t0 = time.perf_counter()
df = pd.read_csv(f"{out}/survival.csv")
res["read_survival_s"] = time.perf_counter() - t0
from lifelines import CoxPHFitter, KaplanMeierFitter

t0 = time.perf_counter()
km = KaplanMeierFitter().fit(df["duration"], df["event"])
res["km_s"] = time.perf_counter() - t0
res["km_median"] = float(km.median_survival_time_)
res["km_at"] = km.survival_function_at_times([10.0, 50.0, 100.0]).tolist()

t0 = time.perf_counter()
cph = CoxPHFitter().fit(df, "duration", "event")
res["cox_s"] = time.perf_counter() - t0
res["cox_coef"] = cph.params_.to_dict()
res["cox_ll"] = float(cph.log_likelihood_)

from lifetimes import BetaGeoFitter

t0 = time.perf_counter()
cd = pd.read_csv(f"{out}/cdnow_x424.csv")
res["read_cdnow_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
bg = BetaGeoFitter().fit(cd["frequency"], cd["recency"], cd["T"])
res["bgnbd_s"] = time.perf_counter() - t0
res["bgnbd"] = {k: float(v) for k, v in bg.params_.items()}
json.dump(res, open(f"{out}/peers.json", "w"), indent=1)
print(json.dumps(res, indent=1))
