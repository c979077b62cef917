#!/usr/bin/env python3
"""The peers of `tenure stats gbm` on the public churn tables in crates/tenure-stats/tests/data,
on the folds stored in each table: scikit-learn's GradientBoostingClassifier at its defaults,
LightGBM at its defaults and a logistic regression (scikit-learn, C=1, standardised numbers,
one indicator per text value). Prints each one's out-of-fold ROC AUC, log-loss and seconds as
JSON; the tests hold these figures.

    python bench/peers/gbm_tables.py write IBM_TELCO_CSV crates/tenure-stats/tests/data
        writes telco.csv (7,043 rows) and telco500.csv (a 500-row sample), each with a
        stratified, seeded `fold` column, from IBM's Telco-Customer-Churn.csv
        (github.com/IBM/telco-customer-churn-on-icp4d, data/, Apache 2.0)
    python bench/peers/gbm_tables.py peers crates/tenure-stats/tests/data [BIG_CSV]
        the peers' figures on every table (and on BIG_CSV, bench/stats.sh's 1,000,000-row
        table, without scikit-learn's exact boosting: hours on one core)

Single-threaded peers (n_jobs=1, num_threads=1) so that timings compare with one core.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

TABLES = {
    "telco500.csv": "Churn",
    "churn.csv": "churned",
    "attrition.csv": "left",
    "telco.csv": "Churn",
}


def add_folds(df, target, seed):
    from sklearn.model_selection import StratifiedKFold

    df = df.reset_index(drop=True)
    df["fold"] = -1
    for k, (_, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(df, df[target])):
        df.loc[te, "fold"] = k
    return df


def write(raw_path, out):
    raw = pd.read_csv(raw_path, dtype=str, keep_default_na=False)
    raw = raw.drop(columns=["customerID"])
    # 11 customers of tenure 0 have a blank TotalCharges: an empty cell, i.e. missing.
    raw["TotalCharges"] = raw["TotalCharges"].str.strip()
    raw["Churn"] = (raw["Churn"] == "Yes").astype(int)
    add_folds(raw, "Churn", 0).to_csv(f"{out}/telco.csv", index=False)
    add_folds(raw.sample(500, random_state=1), "Churn", 1).to_csv(f"{out}/telco500.csv", index=False)


def design(X, text, tr, scale):
    """Text columns one-hot, numbers median-imputed (training medians), optionally standardised."""
    num = [c for c in X.columns if c not in text]
    Xn = X[num].astype(float)
    Xn = Xn.fillna(Xn[tr].median())
    if scale:
        mu, sd = Xn[tr].mean(), Xn[tr].std(ddof=0).replace(0, 1)
        Xn = (Xn - mu) / sd
    return pd.concat([Xn, pd.get_dummies(X[text].astype(str), dtype=float)], axis=1).values


def peers(path, target, exact=True):
    import lightgbm as lgb
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    df = pd.read_csv(path)
    y = df[target].astype(int).values
    fold = df["fold"].astype(int).values
    X = df[[c for c in df.columns if c not in (target, "fold")]].copy()
    text = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    Xc = X.copy()
    for c in text:
        Xc[c] = Xc[c].astype("category")

    def gbc(tr, te):
        D = design(X, text, tr, False)
        return GradientBoostingClassifier(random_state=0).fit(D[tr], y[tr]).predict_proba(D[te])[:, 1]

    def lightgbm(tr, te):
        return lgb.LGBMClassifier(n_jobs=1, verbose=-1).fit(Xc[tr], y[tr]).predict_proba(Xc[te])[:, 1]

    def logistic(tr, te):
        D = design(X, text, tr, True)
        return LogisticRegression(max_iter=2000).fit(D[tr], y[tr]).predict_proba(D[te])[:, 1]

    res = {"rows": len(df)}
    for name, fit in (("sklearn_gbc", gbc), ("lightgbm", lightgbm), ("logistic", logistic)):
        if name == "sklearn_gbc" and not exact:
            continue
        t = time.time()
        oof = np.zeros(len(y))
        for f in np.unique(fold):
            tr, te = fold != f, fold == f
            oof[te] = fit(tr, te)
        res[name] = {"auc": roc_auc_score(y, oof), "log_loss": log_loss(y, oof), "seconds": time.time() - t}
    res["best_auc"] = max(v["auc"] for v in res.values() if isinstance(v, dict))
    return res


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        out = {t: peers(f"{sys.argv[2]}/{t}", target) for t, target in TABLES.items()}
        if len(sys.argv) > 3:
            out["1M"] = peers(sys.argv[3], "target", exact=False)
        print(json.dumps(out, indent=1))
