//! Maximum likelihood for the small smooth models (sBG, BG/NBD, Gamma-Gamma): Newton's
//! method on log-parameters with finite-difference derivatives, safeguarded by step halving,
//! after a Nelder-Mead start. A handful of parameters, so exactness matters, not speed.

/// Maximises `f` over `x` (unconstrained; callers pass log-parameters). Returns the argmax.
pub fn maximize(f: &dyn Fn(&[f64]) -> f64, start: &[f64]) -> Vec<f64> {
    let x = nelder_mead(f, start, 4000);
    newton(f, &x)
}

/// A Nelder-Mead search to start Newton from.
pub fn nelder_mead_start(f: &dyn Fn(&[f64]) -> f64, start: &[f64]) -> Vec<f64> {
    nelder_mead(f, start, 4000)
}

/// Newton's method given the value and the analytic gradient; the Hessian by central
/// differences of the gradient; steps halved until the value does not fall.
/// A function's value and gradient at a point.
pub type ValueAndGradient<'a> = &'a dyn Fn(&[f64]) -> (f64, Vec<f64>);

pub fn newton_with_gradient(g: ValueAndGradient<'_>, start: &[f64]) -> Vec<f64> {
    let n = start.len();
    let mut x = start.to_vec();
    let (mut fx, mut gx) = g(&x);
    for _ in 0..100 {
        let mut hess = vec![0.0; n * n];
        for j in 0..n {
            let h = 1e-5 * x[j].abs().max(1.0);
            let (mut up, mut down) = (x.clone(), x.clone());
            up[j] += h;
            down[j] -= h;
            let (gu, gd) = (g(&up).1, g(&down).1);
            for i in 0..n {
                hess[i * n + j] = (gu[i] - gd[i]) / (2.0 * h);
            }
        }
        // Symmetrise, negate: the information matrix.
        let mut info = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                info[i * n + j] = -(hess[i * n + j] + hess[j * n + i]) / 2.0;
            }
        }
        let step = match crate::linalg::cholesky(&info, n) {
            Ok(l) => crate::linalg::cholesky_solve(&l, n, &gx),
            // Not concave here: a gradient step instead.
            Err(_) => gx.iter().map(|v| v * 1e-3).collect(),
        };
        let mut t = 1.0;
        let mut moved = false;
        while t > 1e-10 {
            let y: Vec<f64> = x.iter().zip(&step).map(|(a, s)| a + t * s).collect();
            let (fy, gy) = g(&y);
            if fy.is_finite() && fy >= fx {
                moved = fy > fx || t == 1.0;
                x = y;
                fx = fy;
                gx = gy;
                break;
            }
            t /= 2.0;
        }
        let size = step.iter().map(|s| (s * t).abs()).fold(0.0, f64::max);
        if !moved || size < 1e-11 {
            break;
        }
    }
    x
}

fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, start: &[f64], iters: usize) -> Vec<f64> {
    let n = start.len();
    let g = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() { -v } else { f64::INFINITY }
    };
    let mut simplex: Vec<(Vec<f64>, f64)> = (0..=n)
        .map(|i| {
            let mut x = start.to_vec();
            if i > 0 {
                x[i - 1] += if x[i - 1] == 0.0 { 0.25 } else { 0.25 * x[i - 1].abs().max(0.5) };
            }
            let v = g(&x);
            (x, v)
        })
        .collect();
    for _ in 0..iters {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        // Only a start for Newton's method, which then converges quadratically.
        if (worst - best).abs() <= 1e-9 * (best.abs() + 1e-12) {
            break;
        }
        let centroid: Vec<f64> =
            (0..n).map(|j| simplex[..n].iter().map(|s| s.0[j]).sum::<f64>() / n as f64).collect();
        let at = |t: f64| -> Vec<f64> {
            centroid.iter().zip(&simplex[n].0).map(|(c, w)| c + t * (w - c)).collect()
        };
        let r = at(-1.0);
        let fr = g(&r);
        if fr < simplex[0].1 {
            let e = at(-2.0);
            let fe = g(&e);
            simplex[n] = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (r, fr);
        } else {
            let c = if fr < simplex[n].1 { at(-0.5) } else { at(0.5) };
            let fc = g(&c);
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (c, fc);
            } else {
                let b = simplex[0].0.clone();
                for s in simplex.iter_mut().skip(1) {
                    s.0 = s.0.iter().zip(&b).map(|(x, y)| y + 0.5 * (x - y)).collect();
                    s.1 = g(&s.0);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0).0
}

/// Gradient and Hessian by central differences.
pub fn derivatives(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let h: Vec<f64> = x.iter().map(|v| 1e-4 * v.abs().max(1.0)).collect();
    let at = |d: &[(usize, f64)]| {
        let mut y = x.to_vec();
        for (i, s) in d {
            y[*i] += s;
        }
        f(&y)
    };
    let f0 = f(x);
    let mut grad = vec![0.0; n];
    let mut hess = vec![0.0; n * n];
    for i in 0..n {
        let (fp, fm) = (at(&[(i, h[i])]), at(&[(i, -h[i])]));
        grad[i] = (fp - fm) / (2.0 * h[i]);
        hess[i * n + i] = (fp - 2.0 * f0 + fm) / (h[i] * h[i]);
        for j in 0..i {
            let v = (at(&[(i, h[i]), (j, h[j])])
                - at(&[(i, h[i]), (j, -h[j])])
                - at(&[(i, -h[i]), (j, h[j])])
                + at(&[(i, -h[i]), (j, -h[j])]))
                / (4.0 * h[i] * h[j]);
            hess[i * n + j] = v;
            hess[j * n + i] = v;
        }
    }
    (grad, hess)
}

fn newton(f: &dyn Fn(&[f64]) -> f64, start: &[f64]) -> Vec<f64> {
    let n = start.len();
    let mut x = start.to_vec();
    let mut fx = f(&x);
    for _ in 0..50 {
        let (g, h) = derivatives(f, &x);
        let neg: Vec<f64> = h.iter().map(|v| -v).collect();
        let Ok(l) = crate::linalg::cholesky(&neg, n) else { break };
        let step = crate::linalg::cholesky_solve(&l, n, &g);
        let mut t = 1.0;
        let mut moved = false;
        while t > 1e-6 {
            let y: Vec<f64> = x.iter().zip(&step).map(|(a, s)| a + t * s).collect();
            let fy = f(&y);
            if fy.is_finite() && fy >= fx {
                moved = fy > fx;
                x = y;
                fx = fy;
                break;
            }
            t /= 2.0;
        }
        if !moved || step.iter().map(|s| s.abs()).fold(0.0, f64::max) * t < 1e-12 {
            break;
        }
    }
    x
}
