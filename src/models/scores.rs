//! The old system's test metrics: RMSE, MAE and R² on the raw prediction; exact and
//! within-1 accuracy on `clip(round(prediction), lo, hi)`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    pub exact_accuracy: f64,
    pub within_1_accuracy: f64,
    pub rows: usize,
}

/// The replica count a prediction stands for: rounded half to even, as numpy's `np.round`
/// in the old system (2.5 → 2, 3.5 → 4), then clipped.
pub fn replicas(prediction: f64, lo: f64, hi: f64) -> f64 {
    prediction.round_ties_even().clamp(lo, hi)
}

pub fn score(actual: &[f64], predicted: &[f64], lo: f64, hi: f64) -> Scores {
    let n = actual.len().max(1) as f64;
    let mean = actual.iter().sum::<f64>() / n;
    let (mut se, mut ae, mut tot, mut exact, mut within) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for (a, p) in actual.iter().zip(predicted) {
        se += (a - p) * (a - p);
        ae += (a - p).abs();
        tot += (a - mean) * (a - mean);
        let r = replicas(*p, lo, hi);
        exact += usize::from(r == *a);
        within += usize::from((r - a).abs() <= 1.0);
    }
    Scores {
        rmse: (se / n).sqrt(),
        mae: ae / n,
        r2: if tot > 0.0 { 1.0 - se / tot } else { 0.0 },
        exact_accuracy: exact as f64 / n,
        within_1_accuracy: within as f64 / n,
        rows: actual.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_hand_computation() {
        let s = score(&[1.0, 2.0, 3.0, 4.0], &[1.2, 2.6, 2.0, 6.0], 1.0, 10.0);
        assert!((s.mae - (0.2 + 0.6 + 1.0 + 2.0) / 4.0).abs() < 1e-12);
        assert!((s.rmse - ((0.04 + 0.36 + 1.0 + 4.0) / 4.0f64).sqrt()).abs() < 1e-12);
        assert!((s.r2 - (1.0 - 5.4 / 5.0)).abs() < 1e-12);
        assert_eq!(s.exact_accuracy, 0.25); // 1, 3≠2, 2≠3, 6≠4
        assert_eq!(s.within_1_accuracy, 0.75);
        assert_eq!(replicas(12.4, 1.0, 10.0), 10.0);
    }

    #[test]
    fn halves_round_to_even_as_numpy_does() {
        let got: Vec<f64> = [0.5, 1.5, 2.5, 3.5, 4.5, 2.5000001, -0.5].iter().map(|&p| replicas(p, 0.0, 10.0)).collect();
        assert_eq!(got, vec![0.0, 2.0, 2.0, 4.0, 4.0, 3.0, 0.0]);
        // Exact accuracy counts 2.5 as 2, not 3.
        assert_eq!(score(&[2.0, 3.0], &[2.5, 2.5], 1.0, 10.0).exact_accuracy, 0.5);
    }
}
