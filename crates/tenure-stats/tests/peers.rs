//! Every estimator against a peer or a published table, on public data that ships with the
//! peers (tests/data: lifelines' Waltons and Rossi data, lifetimes' CDNOW summary). The
//! figures were produced by `bench/peers/stats_figures.py` (lifelines 0.30.3 with its Newton
//! tolerances tightened to 1e-14, so that both sides reach the optimum, lifetimes
//! 0.11.3, statsmodels 0.15.0, scikit-learn 1.9.1, scipy) and are pasted here.

use tenure_stats::cox::{CoxInput, Ties, cox};
use tenure_stats::km::{CiMethod, kaplan_meier};
use tenure_stats::{bgnbd, eval, logit, logrank, sbg};

/// A CSV of the test data as named numeric columns (the Waltons' group is text).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn load(name: &str) -> Table {
        let text =
            std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap().split(',').map(String::from).collect();
        let rows = lines.map(|l| l.split(',').map(String::from).collect()).collect();
        Table { header, rows }
    }
    fn col(&self, name: &str) -> Vec<f64> {
        let k = self.header.iter().position(|h| h == name).unwrap();
        self.rows.iter().map(|r| r[k].parse().unwrap()).collect()
    }
    fn text(&self, name: &str) -> Vec<String> {
        let k = self.header.iter().position(|h| h == name).unwrap();
        self.rows.iter().map(|r| r[k].clone()).collect()
    }
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(err <= rel, "{what}: {got} vs {want} (rel. error {err:e})");
}

#[test]
fn kaplan_meier_matches_lifelines_on_the_waltons() {
    let w = Table::load("waltons.csv");
    let (t, e, g) = (w.col("T"), w.col("E"), w.text("group"));
    let events: Vec<bool> = e.iter().map(|v| *v == 1.0).collect();
    let at = [6.0, 15.0, 33.0, 51.0, 62.0];
    // lifelines KaplanMeierFitter: survival, exponential-Greenwood 95% CI, median and its CI,
    // restricted mean to 50.
    // (group, S at `at`, CI at `at`, median, median CI, restricted mean to 50)
    type Case = (&'static str, [f64; 5], [[f64; 2]; 5], f64, [f64; 2], f64);
    let cases: [Case; 2] = [
        (
            "all",
            [
                0.9938650306748462,
                0.9383435582822091,
                0.802530674846626,
                0.5981254260395363,
                0.2409205529160324,
            ],
            [
                [0.9572536591090658, 0.9991335232818397],
                [0.8884373147604712, 0.9663424251606045],
                [0.732496108893635, 0.8560234675720562],
                [0.5182839326751614, 0.6690395253022965],
                [0.1777155830422925, 0.30956115978785725],
            ],
            56.0,
            [53.0, 58.0],
            43.15604585605545,
        ),
        (
            "control",
            [1.0, 0.9922480620155038, 0.9688091314167127, 0.7414142999566914, 0.3060977100771855],
            [
                [1.0, 1.0],
                [0.9462521105891367, 0.9989043865506172],
                [0.9190316616678339, 0.9881783090335541],
                [0.6560992297724799, 0.8086344150559551],
                [0.22808915097465474, 0.38742581994261144],
            ],
            58.0,
            [56.0, 60.0],
            f64::NAN,
        ),
    ];
    for (name, surv, ci, median, median_ci, rmst) in cases {
        let keep: Vec<usize> = (0..t.len()).filter(|i| name == "all" || g[*i] == name).collect();
        let tt: Vec<f64> = keep.iter().map(|i| t[*i]).collect();
        let ee: Vec<bool> = keep.iter().map(|i| events[*i]).collect();
        let km = kaplan_meier(&tt, &ee, 0.05, CiMethod::LogLog).unwrap();
        for (k, x) in at.iter().enumerate() {
            close(km.survival_at(*x), surv[k], 1e-12, &format!("{name} S({x})"));
            let c = km.ci_at(*x);
            close(c[0], ci[k][0], 1e-9, &format!("{name} lower({x})"));
            close(c[1], ci[k][1], 1e-9, &format!("{name} upper({x})"));
        }
        assert_eq!(km.median(), Some(median));
        assert_eq!(km.median_ci(), [Some(median_ci[0]), Some(median_ci[1])]);
        if !rmst.is_nan() {
            close(km.restricted_mean(50.0), rmst, 1e-12, "restricted mean");
        }
    }
}

#[test]
fn logrank_matches_lifelines_on_the_waltons() {
    let w = Table::load("waltons.csv");
    let (t, e, g) = (w.col("T"), w.col("E"), w.text("group"));
    let events: Vec<bool> = e.iter().map(|v| *v == 1.0).collect();
    let groups: Vec<usize> = g.iter().map(|x| (x == "control") as usize).collect();
    let lr = logrank::logrank(&t, &events, &groups).unwrap();
    close(lr.chi2, 122.24912557300615, 1e-10, "chi2");
    close(lr.p, 2.0359832222855426e-28, 1e-8, "p");
    assert_eq!(lr.df, 1);
}

const ROSSI: [&str; 7] = ["fin", "age", "race", "wexp", "mar", "paro", "prio"];

fn rossi(covariates: &[&str]) -> (Vec<f64>, Vec<bool>, Vec<f64>, Table) {
    let r = Table::load("rossi.csv");
    let t = r.col("week");
    let e: Vec<bool> = r.col("arrest").iter().map(|v| *v == 1.0).collect();
    let cols: Vec<Vec<f64>> = covariates.iter().map(|c| r.col(c)).collect();
    let x: Vec<f64> = (0..t.len()).flat_map(|i| cols.iter().map(move |c| c[i])).collect();
    (t, e, x, r)
}

#[test]
fn cox_matches_lifelines_and_statsmodels_on_rossi() {
    let (t, e, x, _) = rossi(&ROSSI);
    let fit = |ties, penalizer| {
        cox(&CoxInput { durations: &t, events: &e, x: &x, p: 7, strata: None, ties, penalizer })
            .unwrap()
    };
    // lifelines CoxPHFitter (Efron).
    let m = fit(Ties::Efron, 0.0);
    let coef = [
        -0.379422166871208,
        -0.05743774301376122,
        0.31389978594929346,
        -0.1497956972227854,
        -0.43370387669025245,
        -0.08487108299083594,
        0.09149707935112093,
    ];
    let se = [
        0.1913794807128092,
        0.021999470627953786,
        0.3079927763929371,
        0.21222429615816354,
        0.3818680574649219,
        0.1957566719209232,
        0.028648550073470606,
    ];
    let p = [
        0.04741609529662992,
        0.009031242343955134,
        0.308117967943537,
        0.4802896820962852,
        0.25606423909355047,
        0.664612372552468,
        0.001404245116920318,
    ];
    for k in 0..7 {
        close(m.coef[k], coef[k], 1e-9, ROSSI[k]);
        close(m.se[k], se[k], 1e-9, ROSSI[k]);
        close(m.p[k], p[k], 1e-6, ROSSI[k]);
    }
    close(m.log_likelihood, -658.7476594460858, 1e-12, "ll");
    close(m.lr_test.statistic, 33.26594580156939, 1e-9, "lr test");
    close(m.concordance, 0.6403292470997135, 1e-12, "concordance");
    // R's coxph on the same data (Fox & Weisberg, "Cox proportional-hazards regression for
    // survival data in R", 2018): likelihood ratio 33.27, Wald 32.11, score (log-rank) 33.53
    // on 7 df.
    assert!((m.wald_test.statistic - 32.11).abs() < 0.005, "{:?}", m.wald_test);
    assert!((m.score_test.statistic - 33.53).abs() < 0.005, "{:?}", m.score_test);
    assert_eq!((m.wald_test.df, m.score_test.df), (7, 7));
    // Baseline survival (at the covariate means) and one subject's prediction.
    let base = [(10.0, 0.9705575142862879), (30.0, 0.8779080602300714), (52.0, 0.7600486476815088)];
    let (times, surv) = &m.baseline[0];
    for (at, want) in base {
        let k = times.partition_point(|u| *u <= at) - 1;
        close(surv[k], want, 1e-9, &format!("S0({at})"));
    }
    let row0 = &x[0..7];
    for (at, want) in
        [(10.0, 0.9642225775148259), (30.0, 0.8532125438609325), (52.0, 0.715699317369515)]
    {
        close(m.predict_survival(row0, 0, at), want, 1e-9, &format!("row 0 S({at})"));
    }
    // statsmodels PHReg, Breslow ties.
    let b = fit(Ties::Breslow, 0.0);
    let coef_b = [
        -0.3790218877950281,
        -0.05724592536355606,
        0.31412976506824797,
        -0.1511145996274607,
        -0.4327825725490526,
        -0.08498283575160553,
        0.09111154050046535,
    ];
    let se_b = [
        0.19136442585901942,
        0.021983185751471353,
        0.308017279578757,
        0.21212316079631963,
        0.38179493506430984,
        0.19574820732321205,
        0.028631253066824815,
    ];
    for k in 0..7 {
        close(b.coef[k], coef_b[k], 1e-7, ROSSI[k]);
        close(b.se[k], se_b[k], 1e-7, ROSSI[k]);
    }
    close(b.log_likelihood, -659.1206056773283, 1e-12, "breslow ll");
    // lifelines with penalizer 0.1 (on standardised covariates, per observation).
    let l2 = fit(Ties::Efron, 0.1);
    let coef_l2 = [
        -0.2733424557390699,
        -0.03599558830724432,
        0.20320720038388748,
        -0.201778401621787,
        -0.3132333537882171,
        -0.0578628761735046,
        0.07084896487186966,
    ];
    for k in 0..7 {
        close(l2.coef[k], coef_l2[k], 1e-9, ROSSI[k]);
    }
}

#[test]
fn stratified_cox_matches_lifelines() {
    let cov = ["fin", "age", "race", "mar", "paro", "prio"];
    let (t, e, x, r) = rossi(&cov);
    let strata: Vec<usize> = r.col("wexp").iter().map(|v| *v as usize).collect();
    // lifelines' stratified fit stops at its own tolerance (tightening it changes no digit),
    // hence 1e-7 here.
    let m = cox(&CoxInput {
        durations: &t,
        events: &e,
        x: &x,
        p: 6,
        strata: Some(&strata),
        ties: Ties::Efron,
        penalizer: 0.0,
    })
    .unwrap();
    let coef = [
        -0.3801540987348131,
        -0.05821347910981761,
        0.30656944930661917,
        -0.45387162968490646,
        -0.0827389104985658,
        0.09074364230370222,
    ];
    let se = [
        0.19127255031675486,
        0.022064658641212886,
        0.3080298040663057,
        0.38173697920439403,
        0.19568598516425295,
        0.02868358840553011,
    ];
    for k in 0..6 {
        close(m.coef[k], coef[k], 1e-7, cov[k]);
        close(m.se[k], se[k], 1e-7, cov[k]);
    }
    close(m.log_likelihood, -580.8857465137021, 1e-12, "ll");
}

#[test]
fn logistic_regression_matches_statsmodels() {
    let (_, e, x, _) = rossi(&["fin", "age", "prio"]);
    let m = logit::fit(&x, 3, &e, 0.0).unwrap();
    close(m.intercept, 0.6564739254535106, 1e-8, "const");
    close(m.intercept_se, 0.5765887727337923, 1e-8, "const se");
    let (coef, se) = (
        [-0.4056602414302761, -0.07647962771215268, 0.10564667817269305],
        [0.22672199161646367, 0.02317206109196544, 0.03632072703842787],
    );
    for k in 0..3 {
        close(m.coef[k], coef[k], 1e-8, "coef");
        close(m.se[k], se[k], 1e-8, "se");
    }
    close(m.log_likelihood, -235.52028345598296, 1e-12, "llf");
}

#[test]
fn evaluation_matches_scikit_learn() {
    let (_, y, x, r) = rossi(&["fin", "age", "prio"]);
    let m = logit::fit(&x, 3, &y, 0.0).unwrap();
    let p: Vec<f64> = (0..y.len())
        .map(|i| {
            let eta = m.intercept + (0..3).map(|k| m.coef[k] * x[i * 3 + k]).sum::<f64>();
            1.0 / (1.0 + (-eta).exp())
        })
        .collect();
    close(eval::roc_auc(&y, &p).unwrap().unwrap(), 0.6537432417521791, 1e-9, "auc");
    close(eval::average_precision(&y, &p).unwrap().unwrap(), 0.4264597331034028, 1e-9, "ap");
    close(eval::log_loss(&y, &p).unwrap(), 0.5451858413332938, 1e-9, "log loss");
    close(eval::brier(&y, &p).unwrap(), 0.1814679176204229, 1e-9, "brier");
    // An integer score with many ties.
    let prio = r.col("prio");
    close(eval::roc_auc(&y, &prio).unwrap().unwrap(), 0.5963670969877524, 1e-12, "auc with ties");
    close(
        eval::average_precision(&y, &prio).unwrap().unwrap(),
        0.35310340877512864,
        1e-12,
        "ap with ties",
    );
    // Isotonic regression of the outcome on prio (scikit-learn IsotonicRegression, clip).
    let (xs, ys) = eval::isotonic(&y, &prio).unwrap();
    for (v, want) in [
        (0.0, 0.1986754966887417),
        (1.0, 0.1986754966887417),
        (2.0, 0.21),
        (3.0, 0.31683168316831684),
        (5.0, 0.3333333333333333),
        (8.0, 0.3333333333333333),
        (12.0, 0.47619047619047616),
        (18.0, 1.0),
    ] {
        close(eval::isotonic_predict(&xs, &ys, v), want, 1e-12, &format!("isotonic({v})"));
    }
}

#[test]
fn bg_nbd_and_gamma_gamma_match_lifetimes_and_the_2005_papers() {
    let c = Table::load("cdnow.csv");
    let (x, tx, t, m) = (c.col("frequency"), c.col("recency"), c.col("T"), c.col("monetary_value"));
    let bg = bgnbd::fit(&x, &tx, &t).unwrap();
    // lifetimes BetaGeoFitter; the paper: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
    // LL = -9582.4.
    close(bg.r, 0.24259292827982148, 1e-5, "r");
    close(bg.alpha, 4.413532265271809, 1e-5, "alpha");
    close(bg.a, 0.7928859664406578, 1e-5, "a");
    close(bg.b, 2.4257523826257374, 1e-5, "b");
    assert!((bg.log_likelihood - -9582.4).abs() < 0.05, "{}", bg.log_likelihood);
    close(bg.expected_purchases(39.0), 1.195016228446194, 1e-5, "E[X(39)]");
    close(
        bg.conditional_expected_purchases(39.0, 2.0, 30.43, 38.86),
        1.2259104241744068,
        1e-5,
        "E[Y(39) | 2, 30.43, 38.86]",
    );
    close(bg.p_alive(2.0, 30.43, 38.86), 0.7266091367990596, 1e-5, "P(alive)");
    // lifetimes GammaGammaFitter; the paper: p = 6.25, q = 3.74, gamma = 15.44.
    let gg = bgnbd::fit_gamma_gamma(&x, &m).unwrap();
    close(gg.p, 6.24880249607099, 1e-5, "p");
    close(gg.q, 3.7445884609237634, 1e-5, "q");
    close(gg.gamma, 15.447748064943575, 1e-5, "gamma");
    close(gg.expected_average_value(2.0, 50.0), 47.329813684322005, 1e-5, "E[M | 2, 50]");
    // lifetimes' customer_lifetime_value(bg, 2, 30.43, 38.86, 22.35, time=12,
    // discount_rate=0.01, freq="W"): 12 months of 4.345 weeks.
    close(gg.clv(&bg, 2.0, 30.43, 38.86, 22.35, 12, 4.345, 0.01), 36.278495763627944, 1e-5, "CLV");
}

#[test]
fn shifted_beta_geometric_matches_the_2007_paper() {
    // Fader & Hardie (2007), Table 1 cohorts; the paper's estimates: regular alpha = 0.704,
    // beta = 1.182; high end alpha = 0.668, beta = 3.806. Figures to more places, DEL and DERL
    // at a 10% discount rate: scipy (Nelder-Mead on the same likelihood, hyp2f1).
    let cases = [
        (
            [1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0],
            0.7040773019438622,
            1.1820430307075578,
            -1680.265188463286,
            3.694908420173891,
            5.4420584530919065,
        ),
        (
            [1000.0, 869.0, 743.0, 653.0, 593.0, 551.0, 517.0, 491.0],
            0.6680883728764352,
            3.806095381726049,
            -1611.1581473911551,
            5.9222536076703545,
            6.619920017066146,
        ),
    ];
    for (surv, alpha, beta, ll, del, derl) in cases {
        let m = sbg::fit(&surv).unwrap();
        close(m.alpha, alpha, 1e-6, "alpha");
        close(m.beta, beta, 1e-6, "beta");
        close(m.log_likelihood, ll, 1e-10, "ll");
        close(m.del(0.1), del, 1e-6, "DEL");
        close(m.derl(0.1, 3), derl, 1e-6, "DERL");
        // DEL is also the discounted sum of the survival curve.
        let direct: f64 =
            m.survival(2000).iter().enumerate().map(|(t, s)| s / 1.1f64.powi(t as i32)).sum();
        close(m.del(0.1), direct, 1e-9, "DEL as a sum");
        let r = m.retention(3);
        close(r[0], beta / (alpha + beta), 1e-6, "r1");
    }
}

#[test]
fn bg_nbd_gradient_matches_finite_differences() {
    let c = Table::load("cdnow.csv");
    let (x, tx, t) = (c.col("frequency"), c.col("recency"), c.col("T"));
    let q = [0.3f64.ln(), 4.0f64.ln(), 0.7f64.ln(), 2.0f64.ln()];
    let at = |q: [f64; 4]| [q[0].exp(), q[1].exp(), q[2].exp(), q[3].exp()];
    let (ll, g) = bgnbd::bgnbd_gradient(at(q), &x, &tx, &t);
    close(ll, bgnbd::bgnbd_log_likelihood(at(q), &x, &tx, &t), 1e-12, "value");
    for k in 0..4 {
        let h = 1e-6;
        let (mut up, mut down) = (q, q);
        up[k] += h;
        down[k] -= h;
        let fd = (bgnbd::bgnbd_log_likelihood(at(up), &x, &tx, &t)
            - bgnbd::bgnbd_log_likelihood(at(down), &x, &tx, &t))
            / (2.0 * h);
        // Central differences of a sum of ~10^4 magnitude: about 1e-6 of noise.
        close(g[k], fd, 1e-5, &format!("d/dq{k}"));
    }
}

#[test]
fn evaluation_tables_splits_and_intervals_worked_by_hand() {
    // Ten rows, scores 1..10, positives at 10, 9, 7, 4.
    let score: Vec<f64> = (1..=10).map(f64::from).collect();
    let y: Vec<bool> = score.iter().map(|s| [10.0, 9.0, 7.0, 4.0].contains(s)).collect();
    // Deciles of 2 rows, highest scores first: (10, 9) both positive = 1.0, lift 1.0 / 0.4.
    let lift = eval::lift_table(&y, &score, 5).unwrap();
    assert_eq!(lift.len(), 5);
    assert_eq!((lift[0].n, lift[0].positive_rate), (2, 1.0));
    close(lift[0].lift, 2.5, 1e-12, "top lift");
    assert_eq!(lift[1].positive_rate, 0.5); // 8, 7
    // Calibration of probabilities in two bins: [0, 0.5) and [0.5, 1].
    let p = [0.1, 0.2, 0.3, 0.6, 0.8, 0.9];
    let yp = [false, false, true, true, true, false];
    let cal = eval::calibration_table(&yp, &p, 2).unwrap();
    assert_eq!(cal.len(), 2);
    close(cal[0].mean_score, 0.2, 1e-12, "bin 1 mean");
    close(cal[0].positive_rate, 1.0 / 3.0, 1e-12, "bin 1 rate");
    close(cal[1].mean_score, 2.3 / 3.0, 1e-12, "bin 2 mean");
    // Platt scaling is the logistic regression of the labels on the scores.
    let (a, b) = eval::platt(&y, &score).unwrap();
    let direct = logit::fit(&score, 1, &y, 0.0).unwrap();
    assert_eq!((a, b), (direct.coef[0], direct.intercept));
    assert!(a > 0.0);
    // Wilson 95% interval of 8 of 10 (statsmodels proportion_confint(8, 10, method="wilson")).
    let w = eval::wilson(8, 10, 0.05).unwrap();
    close(w[0], 0.49016247153664183, 1e-9, "wilson low");
    close(w[1], 0.9433178485456247, 1e-9, "wilson high");
    assert_eq!(eval::wilson(0, 0, 0.05), None);
    // k-fold: every fold within one row of n/k, the same folds for the same seed.
    let folds = eval::kfold(103, 5, 9);
    for f in 0..5 {
        let size = folds.iter().filter(|x| **x == f).count();
        assert!((20..=21).contains(&size), "fold {f}: {size}");
    }
    assert_eq!(folds, eval::kfold(103, 5, 9));
    assert_ne!(folds, eval::kfold(103, 5, 10));
    assert_eq!(eval::time_split(&[1.0, 5.0, 3.0], 3.0), [false, true, true]);
}
