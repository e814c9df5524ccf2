//! Order statistics over a handful of rounds.

/// Sorted copy.
fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// Nearest-rank quantile (`q` in 0..=1); NaN for an empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = (q * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

pub fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

/// The median of the per-round ratios `a[i] / b[i]`: two scenarios measured in the same rounds,
/// each round's drift shared by both. NaN unless both have the same, non-zero number of rounds.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&r)
}

/// `{min, median, p90}` of a sample, rounded to 0.1.
pub fn summary(v: &[f64]) -> serde_json::Value {
    let r = |x: f64| (x * 10.0).round() / 10.0;
    serde_json::json!({ "min": r(min(v)), "median": r(median(v)), "p90": r(quantile(v, 0.9)), "samples": v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paired_ratio_is_the_median_of_each_rounds_own_ratio() {
        // A slow second round moves both scenarios: the ratio of the medians (25 / 12 = 2.08)
        // would mix rounds, the paired one does not.
        let a = [20.0, 40.0, 25.0];
        let b = [10.0, 20.0, 12.0];
        assert!((paired_ratio(&a, &b) - 2.0).abs() < 1e-9);
        assert!(paired_ratio(&a, &b[..2]).is_nan());
        assert!(paired_ratio(&[], &[]).is_nan());
    }
}
