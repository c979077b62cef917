#!/usr/bin/env python3
"""Writes the small public datasets the tenure-stats tests use and prints the peers' figures
for them (lifelines, lifetimes, statsmodels, scikit-learn). The figures are pasted into
crates/tenure-stats/tests/*.rs; this script is how they were obtained.

    python bench/peers/stats_figures.py crates/tenure-stats/tests/data
"""

import json
import sys

import numpy as np

out = sys.argv[1]
fig = {}

# --- Kaplan-Meier and log-rank: lifelines' Waltons data -----------------------------------
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi, load_waltons
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import median_survival_times, restricted_mean_survival_time

w = load_waltons()
w.to_csv(f"{out}/waltons.csv", index=False)
km = {}
for name, g in [("all", w)] + list(w.groupby("group")):
    f = KaplanMeierFitter().fit(g["T"], g["E"])
    at = [6.0, 15.0, 33.0, 51.0, 62.0]
    sf = f.survival_function_at_times(at).values.tolist()
    ci = f.confidence_interval_
    ci_at = [[float(np.interp(t, ci.index, ci.iloc[:, 0], period=None)) for t in []]]
    # CI at a time: the row in force (last index <= t).
    rows = [ci.loc[ci.index[ci.index <= t].max()].values.tolist() for t in at]
    med_ci = median_survival_times(f.confidence_interval_).values.tolist()[0]
    km[name] = {
        "n": int(len(g)),
        "events": int(g["E"].sum()),
        "at": at,
        "survival": sf,
        "ci": rows,
        "median": float(f.median_survival_time_),
        "median_ci": med_ci,
        "rmst_50": float(restricted_mean_survival_time(f, t=50.0)),
    }
    for method in []:
        pass
fig["km"] = km
lr = multivariate_logrank_test(w["T"], w["group"], w["E"])
fig["logrank"] = {"chi2": lr.test_statistic, "p": lr.p_value, "df": int(lr.degrees_of_freedom)}

# --- Cox: the Rossi recidivism data -------------------------------------------------------
r = load_rossi()
r.to_csv(f"{out}/rossi.csv", index=False)
TIGHT = {"precision": 1e-14, "r_precision": 1e-15, "max_steps": 500}
cph = CoxPHFitter().fit(r, "week", "arrest", fit_options=TIGHT)
s = cph.summary
fig["cox_efron"] = {
    "coef": s["coef"].to_dict(),
    "se": s["se(coef)"].to_dict(),
    "p": s["p"].to_dict(),
    "ll": cph.log_likelihood_,
    "concordance": cph.concordance_index_,
    "lr": cph.log_likelihood_ratio_test().test_statistic,
}
cs = CoxPHFitter().fit(r, "week", "arrest", strata=["wexp"], fit_options=TIGHT)
fig["cox_strata"] = {"coef": cs.summary["coef"].to_dict(), "se": cs.summary["se(coef)"].to_dict(), "ll": cs.log_likelihood_}
cp = CoxPHFitter(penalizer=0.1).fit(r, "week", "arrest", fit_options=TIGHT)
fig["cox_l2"] = {"coef": cp.summary["coef"].to_dict()}
# baseline survival and one row's prediction
bs = cph.baseline_survival_
fig["cox_baseline"] = {str(t): float(bs.loc[bs.index[bs.index <= t].max()].iloc[0]) for t in [10.0, 30.0, 52.0]}
fig["cox_predict_row0"] = cph.predict_survival_function(r.iloc[[0]], times=[10.0, 30.0, 52.0]).iloc[:, 0].tolist()

import statsmodels.api as sm
from statsmodels.duration.hazard_regression import PHReg

X = r.drop(columns=["week", "arrest"])
for ties in ["breslow", "efron"]:
    m = PHReg(r["week"], X, status=r["arrest"], ties=ties).fit()
    fig[f"cox_sm_{ties}"] = {"coef": dict(zip(X.columns, m.params.tolist())), "se": dict(zip(X.columns, m.bse.tolist())), "ll": m.llf}

# --- Logistic regression: statsmodels on Rossi --------------------------------------------
Xl = sm.add_constant(r[["fin", "age", "prio"]])
lg = sm.Logit(r["arrest"], Xl).fit(disp=0)
fig["logit"] = {"params": lg.params.to_dict(), "bse": lg.bse.to_dict(), "llf": lg.llf}

# --- Evaluation: scikit-learn on the logit's in-sample scores ------------------------------
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

pr = lg.predict(Xl).values
y = r["arrest"].values
fig["eval"] = {
    "auc": roc_auc_score(y, pr),
    "ap": average_precision_score(y, pr),
    "log_loss": log_loss(y, pr),
    "brier": brier_score_loss(y, pr),
    "auc_prio": roc_auc_score(y, r["prio"].values),  # many ties
    "ap_prio": average_precision_score(y, r["prio"].values),
}
iso = IsotonicRegression(out_of_bounds="clip").fit(r["prio"].values, y)
fig["isotonic_prio"] = {str(v): float(iso.predict([v])[0]) for v in [0, 1, 2, 3, 5, 8, 12, 18]}

# --- BG/NBD and Gamma-Gamma: lifetimes' CDNOW summaries ----------------------------------
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

cd = load_cdnow_summary_data_with_monetary_value()
cd.to_csv(f"{out}/cdnow.csv", index=False)
bg = BetaGeoFitter().fit(cd["frequency"], cd["recency"], cd["T"])
fig["bgnbd"] = {k: float(v) for k, v in bg.params_.items()}
fig["bgnbd"]["ll"] = float(-bg._negative_log_likelihood_ * len(cd))
fig["bgnbd"]["expected_39"] = float(np.ravel(bg.expected_number_of_purchases_up_to_time(39))[0])
fig["bgnbd"]["cond_39_2_30_38"] = float(np.ravel(bg.conditional_expected_number_of_purchases_up_to_time(39, 2, 30.43, 38.86))[0])
fig["bgnbd"]["p_alive_2_30_38"] = float(np.ravel(bg.conditional_probability_alive(2, 30.43, 38.86))[0])
rep = cd[cd["frequency"] > 0]
gg = GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
fig["gamma_gamma"] = {k: float(v) for k, v in gg.params_.items()}
fig["gamma_gamma"]["avg_2_50"] = float(np.ravel(gg.conditional_expected_average_profit(2, 50.0))[0])

# --- sBG: the 2007 paper's cohorts, by direct maximisation -------------------------------
from scipy.optimize import minimize
from scipy.special import betaln, hyp2f1


def sbg_ll(params, surv):
    a, b = np.exp(params)
    n = len(surv) - 1
    ll = 0.0
    for t in range(1, n + 1):
        lost = surv[t - 1] - surv[t]
        ll += lost * (betaln(a + 1, b + t - 1) - betaln(a, b))
    ll += surv[n] * (betaln(a, b + n) - betaln(a, b))
    return -ll


for name, surv in {
    "regular": [1000, 631, 468, 382, 326, 289, 262, 241],
    "high_end": [1000, 869, 743, 653, 593, 551, 517, 491],
}.items():
    res = minimize(sbg_ll, [0.0, 0.0], args=(surv,), method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-12, "maxiter": 20000})
    a, b = np.exp(res.x)
    fig[f"sbg_{name}"] = {"alpha": a, "beta": b, "ll": -res.fun, "del_10": hyp2f1(1, b, a + b, 1 / 1.1),
                          "derl_10_3": (b + 3) / (a + b + 3) * hyp2f1(1, b + 4, a + b + 4, 1 / 1.1)}

json.dump(fig, sys.stdout, indent=1, default=float)
