//! Small dense linear algebra for the models (a few dozen parameters at most): symmetric
//! positive-definite solves and inverses by Cholesky, row-major `Vec<f64>` matrices.

use crate::StatsError;

/// The Cholesky factor `L` (lower, row-major) of an `n x n` symmetric positive-definite
/// matrix; an error names a singular (or not positive-definite) design.
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>, StatsError> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                // Relative to the diagonal's scale: a pivot this small means collinear columns.
                if s <= a[i * n + i].abs() * 1e-13 || !s.is_finite() {
                    return Err(StatsError::Singular(format!(
                        "the information matrix is singular at parameter {} (a constant or \
                         collinear covariate, or complete separation)",
                        i + 1
                    )));
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Solves `A x = b` given `A`'s Cholesky factor.
pub fn cholesky_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= l[i * n + k] * y[k];
        }
        y[i] /= l[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= l[k * n + i] * y[k];
        }
        y[i] /= l[i * n + i];
    }
    y
}

/// The inverse of a symmetric positive-definite matrix.
pub fn spd_inverse(a: &[f64], n: usize) -> Result<Vec<f64>, StatsError> {
    let l = cholesky(a, n)?;
    let mut inv = vec![0.0; n * n];
    let mut e = vec![0.0; n];
    for j in 0..n {
        e.iter_mut().for_each(|x| *x = 0.0);
        e[j] = 1.0;
        let col = cholesky_solve(&l, n, &e);
        for i in 0..n {
            inv[i * n + j] = col[i];
        }
    }
    Ok(inv)
}

/// `xᵀ A⁻¹ x` for a symmetric positive-definite `A`.
pub fn quad_inv(a: &[f64], n: usize, x: &[f64]) -> Result<f64, StatsError> {
    let l = cholesky(a, n)?;
    let y = cholesky_solve(&l, n, x);
    Ok(x.iter().zip(&y).map(|(a, b)| a * b).sum())
}
