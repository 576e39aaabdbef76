//! `rolling_quantile(x, q) OVER (... ROWS BETWEEN ...)`: the exact quantile of the frame with
//! linear interpolation between order statistics at position q·(n−1), as numpy and pandas
//! compute it. DataFusion's `percentile_cont` rounds the interpolation weight and
//! `approx_percentile_cont` cannot slide, so the old numbers need this.

use std::ops::Range;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};

/// Linear-interpolation quantile of `sorted` (ascending, non-empty).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let w = pos - lo as f64;
    // numpy's form, so results match to the last bit where possible.
    sorted[lo] + (sorted[hi] - sorted[lo]) * w
}

/// Quantile of any values (NaN and nulls are skipped by the callers).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, q))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RollingQuantile {
    signature: Signature,
}

impl RollingQuantile {
    pub fn new() -> RollingQuantile {
        RollingQuantile {
            signature: Signature::exact(vec![DataType::Float64, DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for RollingQuantile {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowUDFImpl for RollingQuantile {
    fn name(&self) -> &str {
        "rolling_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Evaluator { buf: Vec::with_capacity(16) }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Field::new(field_args.name(), DataType::Float64, true).into())
    }
}

#[derive(Debug)]
struct Evaluator {
    buf: Vec<f64>,
}

impl PartitionEvaluator for Evaluator {
    fn uses_window_frame(&self) -> bool {
        true
    }

    /// Each value depends only on its frame, so DataFusion may stream the partition through
    /// (BoundedWindowAggExec) instead of materialising it whole.
    fn supports_bounded_execution(&self) -> bool {
        true
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let x = values[0].as_primitive::<Float64Type>();
        let qs = values[1].as_primitive::<Float64Type>();
        if qs.is_empty() || qs.is_null(0) {
            return exec_err!("rolling_quantile: the quantile must be a constant between 0 and 1");
        }
        let q = qs.value(0);
        if !(0.0..=1.0).contains(&q) {
            return exec_err!("rolling_quantile: quantile {q} is not between 0 and 1");
        }
        self.buf.clear();
        for i in range.clone() {
            if x.is_valid(i) && !x.value(i).is_nan() {
                self.buf.push(x.value(i));
            }
        }
        if self.buf.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        self.buf.sort_unstable_by(f64::total_cmp);
        Ok(ScalarValue::Float64(Some(quantile_sorted(&self.buf, q))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], 95) == 3.85
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.95).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.95), None);
        assert_eq!(quantile(&[1.0, 1.0, 1.0], 0.5), Some(1.0));
    }
}
