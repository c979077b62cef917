#!/usr/bin/env python3
"""Writes the two public churn tables the gradient-boosting tests use (from the pysurvival
0.1.2 sdist on PyPI, Apache 2.0: churn.csv, and employee_attrition.csv subsampled to 6,000
rows), each with a `fold` column (5 folds, seeded), and prints LightGBM's out-of-fold ROC AUC
on them with LightGBM's defaults (100 rounds, learning rate 0.1, 31 leaves, 20 rows per
leaf, 255 bins; text columns categorical), which `tenure stats gbm` uses once any tree
setting is given (bench/peers/gbm_tables.py has the peers of its chosen settings).

    python bench/peers/gbm_figures.py PYSURVIVAL_DATASETS_DIR crates/tenure-stats/tests/data
"""

import json
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

src, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(11)
sets = {
    "churn": (pd.read_csv(f"{src}/churn.csv"), "churned"),
    "attrition": (pd.read_csv(f"{src}/employee_attrition.csv").sample(6000, random_state=11).reset_index(drop=True), "left"),
}
fig = {}
for name, (df, target) in sets.items():
    df["fold"] = rng.permutation(len(df)) % 5
    df.to_csv(f"{out}/{name}.csv", index=False)
    features = [c for c in df.columns if c not in (target, "fold")]
    X = df[features].copy()
    for c in X.columns:
        if X[c].dtype == object:
            X[c] = X[c].astype("category")
    y = df[target].astype(int).values
    oof = np.zeros(len(df))
    for f in range(5):
        tr, te = df["fold"] != f, df["fold"] == f
        m = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.1, num_leaves=31, min_child_samples=20,
                               min_child_weight=1e-3, reg_lambda=0.0, max_bin=255, verbose=-1)
        m.fit(X[tr], y[tr])
        oof[te.values] = m.predict_proba(X[te])[:, 1]
    fig[name] = {"auc": roc_auc_score(y, oof), "log_loss": log_loss(y, oof), "brier": brier_score_loss(y, oof),
                 "rows": len(df), "features": features, "target": target}
print(json.dumps(fig, indent=1))
