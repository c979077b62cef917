//! Small statistics for reported rates.

/// The 95% Wilson score interval of `x` successes in `n` trials; `None` when `n` is 0
/// (`tenure_stats::eval::wilson` as a pair).
pub fn wilson(x: u64, n: u64) -> Option<(f64, f64)> {
    tenure_stats::eval::wilson(x, n, 0.05).map(|[lo, hi]| (lo, hi))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(24, 1200, method="wilson")
        let (lo, hi) = super::wilson(24, 1200).unwrap();
        assert!((lo - 0.013_476_268_672_128).abs() < 1e-9, "{lo}");
        assert!((hi - 0.029_587_091_906_497).abs() < 1e-9, "{hi}");
        // proportion_confint(90, 100, method="wilson")
        // 16 of 18: (0.672002348698212, 0.9689804773543876)
        let (lo, hi) = super::wilson(16, 18).unwrap();
        assert!(
            (lo - 0.672_002_348_698_212).abs() < 1e-9 && (hi - 0.968_980_477_354_388).abs() < 1e-9
        );
        let (lo, hi) = super::wilson(90, 100).unwrap();
        assert!((lo - 0.825_634_338_495_087).abs() < 1e-9, "{lo}");
        assert!((hi - 0.944_770_862_939_325).abs() < 1e-9, "{hi}");
        assert_eq!(super::wilson(0, 0), None);
        assert_eq!(super::wilson(0, 10).unwrap().0, 0.0);
    }
}
