//! Small deterministic PRNG (xoshiro256++ seeded through SplitMix64).
//!
//! Written here rather than taken from `rand` so that the byte stream for a given seed
//! can never change under us with a dependency upgrade: generated data sets are
//! reproducible forever from `(seed, config)`.

/// One SplitMix64 step; used for seeding and for hashing stream keys.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derive an independent stream key from (seed, index, stream number) so that each
/// account's randomness does not depend on how many draws other accounts made.
pub fn stream_key(seed: u64, index: u64, stream: u64) -> u64 {
    let mut s = seed
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ stream.wrapping_mul(0xAEF1_7502_108E_F2D9);
    splitmix64(&mut s);
    splitmix64(&mut s)
}

/// xoshiro256++ generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s =
            [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Self { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[0].wrapping_add(self.s[3]).rotate_left(23).wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); returns 0 when n == 0 so callers need no special case.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform integer in [lo, hi) (lo when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Uniform real in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box-Muller; one value per call keeps the stream simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson draw: Knuth's product method for small means, a rounded normal above 30
    /// (plenty accurate for event counts and O(1)).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 || lambda.is_nan() {
            return 0;
        }
        if lambda < 30.0 {
            let l = (-lambda).exp();
            let mut k = 0u64;
            let mut p = self.f64();
            while p > l {
                k += 1;
                p *= self.f64();
            }
            k
        } else {
            let v = lambda + lambda.sqrt() * self.normal();
            if v < 0.0 { 0 } else { v.round() as u64 }
        }
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Index drawn with probability proportional to `w` (weights must be >= 0, not all 0).
    pub fn weighted(&mut self, w: &[f64]) -> usize {
        let total: f64 = w.iter().sum();
        let mut r = self.f64() * total;
        for (i, x) in w.iter().enumerate() {
            if r < *x {
                return i;
            }
            r -= x;
        }
        w.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_mean_is_close() {
        let mut r = Rng::new(7);
        for lambda in [0.3, 4.0, 55.0] {
            let n = 20_000;
            let s: u64 = (0..n).map(|_| r.poisson(lambda)).sum();
            let mean = s as f64 / n as f64;
            assert!((mean - lambda).abs() < lambda * 0.05 + 0.02, "lambda {lambda} mean {mean}");
        }
    }

    #[test]
    fn streams_differ() {
        assert_ne!(stream_key(1, 0, 0), stream_key(1, 1, 0));
        assert_ne!(stream_key(1, 0, 0), stream_key(1, 0, 1));
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
