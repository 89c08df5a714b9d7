//! Small robust statistics shared by fitting, scoring and breach forecasting.

/// Median of finite values (`NaN` when there are none). Reorders `v`.
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        m
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + m) / 2.0
    }
}

/// Median of a slice, without reordering it.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut c: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    median_in_place(&mut c)
}

/// Median absolute deviation from `center`, scaled by 1.4826 to estimate a normal sigma.
pub(crate) fn mad_sigma(v: &[f64], center: f64) -> f64 {
    let mut d: Vec<f64> = v
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| (x - center).abs())
        .collect();
    1.4826 * median_in_place(&mut d)
}

/// Standard deviation of finite values.
pub(crate) fn std_dev(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.len() < 2 {
        return 0.0;
    }
    let mean = f.iter().sum::<f64>() / f.len() as f64;
    (f.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (f.len() - 1) as f64).sqrt()
}

/// Upper tail of the standard normal, accurate far into the tail (used for likelihoods).
pub(crate) fn norm_sf(x: f64) -> f64 {
    if x < 0.0 {
        return 1.0 - norm_sf(-x);
    }
    // erfc via a continued-fraction-free rational approximation (W. J. Cody style bound):
    // for large x use the asymptotic expansion to keep relative accuracy.
    if x > 6.0 {
        let x2 = x * x;
        let pdf = (-0.5 * x2).exp() / (2.0 * std::f64::consts::PI).sqrt();
        return pdf / x * (1.0 - 1.0 / x2 + 3.0 / (x2 * x2));
    }
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' erfcc, fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, relative error below
/// 1.2e-9), for `p` in (0, 1).
pub(crate) fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -probit(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // Reference values from R: pnorm(lower.tail = FALSE), qnorm(); tolerance matches the approximations'
        // documented errors.
        assert!((norm_sf(1.96) - 0.024_997_9).abs() < 2e-7);
        assert!((norm_sf(-1.0) - 0.841_344_7).abs() < 2e-7);
        assert!((norm_sf(3.0) - 1.349_898e-3).abs() < 1e-8);
        assert!((norm_sf(8.0) / 6.220_961e-16 - 1.0).abs() < 1e-2);
        assert!((probit(0.975) - 1.959_964).abs() < 1e-6);
        assert!((probit(0.1) + 1.281_552).abs() < 1e-6);
        assert!((probit(1e-10) + 6.361_341).abs() < 1e-5);
    }

    #[test]
    fn robust_center_and_scale() {
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(median(&v), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        // Deviations 2,1,0,1,97 → median 1 → 1.4826.
        assert!((mad_sigma(&v, 3.0) - 1.4826).abs() < 1e-12);
        assert!((std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) - 2.138_089_9).abs() < 1e-6);
    }
}
