use super::*;

#[test]
fn calibration_is_monotonic_and_does_not_saturate() {
    assert!((calibrate(CALIBRATION_HALF) - 0.5).abs() < 1e-12);
    let mut prev = -1.0;
    for z in [0.0, 1.0, 3.0, 6.0, 10.0, 29.9, 30.1, 100.0, 1e4] {
        let s = calibrate(neg_log10_sf(z));
        assert!(s > prev && s < 1.0, "z {z}: {s}");
        prev = s;
    }
    // Continuous across the switch to the asymptotic formula.
    assert!((neg_log10_sf(29.999) - neg_log10_sf(30.001)).abs() < 0.1);
}
