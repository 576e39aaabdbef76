//! The scores the report compares models on: each knows its label, which way is better, and how
//! it is written. Serialised as its label, as `comparison_report.json` has always written it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::evaluation::ModelEvaluation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Rmse,
    Mae,
    R2,
    ExactAccuracy,
    Within1Accuracy,
    ActionAgreement,
    /// Under-provisioned minutes of the replay under the policy it would serve under.
    ServedUnderProvisionedMinutes,
    /// Pod-hours of the same.
    ServedPodHours,
    TrainingSeconds,
    SinglePredictionMicros,
}

impl Metric {
    /// In the order the honest comparison lists them.
    pub const ALL: [Metric; 10] = [
        Metric::Rmse,
        Metric::Mae,
        Metric::R2,
        Metric::ExactAccuracy,
        Metric::Within1Accuracy,
        Metric::ActionAgreement,
        Metric::ServedUnderProvisionedMinutes,
        Metric::ServedPodHours,
        Metric::TrainingSeconds,
        Metric::SinglePredictionMicros,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::Rmse => "RMSE",
            Metric::Mae => "MAE",
            Metric::R2 => "R²",
            Metric::ExactAccuracy => "exact accuracy",
            Metric::Within1Accuracy => "within-1 accuracy",
            Metric::ActionAgreement => "action agreement",
            Metric::ServedUnderProvisionedMinutes => "under-provisioned minutes (replay, as it would serve)",
            Metric::ServedPodHours => "pod-hours (replay, as it would serve)",
            Metric::TrainingSeconds => "training seconds",
            Metric::SinglePredictionMicros => "single prediction µs",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::R2 | Metric::ExactAccuracy | Metric::Within1Accuracy | Metric::ActionAgreement)
    }

    /// A model's value (NaN where it has none).
    pub fn of(self, m: &ModelEvaluation) -> f64 {
        match self {
            Metric::Rmse => m.holdout.overall.rmse,
            Metric::Mae => m.holdout.overall.mae,
            Metric::R2 => m.holdout.overall.r2,
            Metric::ExactAccuracy => m.holdout.overall.exact_accuracy,
            Metric::Within1Accuracy => m.holdout.overall.within_1_accuracy,
            Metric::ActionAgreement => m.holdout.confusion.agreement(),
            Metric::ServedUnderProvisionedMinutes => m.proactive_replay.under_provisioned_minutes,
            Metric::ServedPodHours => m.proactive_replay.pod_hours,
            Metric::TrainingSeconds => m.training_seconds.unwrap_or(f64::NAN),
            Metric::SinglePredictionMicros => m.single_prediction_us.unwrap_or(f64::NAN),
        }
    }

    /// A value as the report writes it: shares in %, minutes, pod-hours and µs to a tenth.
    pub fn format(self, v: f64) -> String {
        match self {
            _ if !v.is_finite() => "-".into(),
            Metric::ExactAccuracy | Metric::Within1Accuracy | Metric::ActionAgreement => format!("{:.2}%", 100.0 * v),
            Metric::ServedUnderProvisionedMinutes | Metric::ServedPodHours | Metric::SinglePredictionMicros => format!("{v:.1}"),
            _ if v.abs() >= 100.0 => format!("{v:.0}"),
            _ => format!("{v:.3}"),
        }
    }

    /// "(higher)" or "(lower)": which way is better.
    pub fn better(self) -> &'static str {
        if self.higher_is_better() { "higher" } else { "lower" }
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Metric, D::Error> {
        let label = String::deserialize(d)?;
        Metric::ALL.into_iter().find(|m| m.label() == label).ok_or_else(|| serde::de::Error::custom(format!("unknown metric `{label}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_know_their_direction_and_format() {
        assert_eq!(Metric::ExactAccuracy.format(0.91234), "91.23%");
        assert_eq!(Metric::Rmse.format(0.2468), "0.247");
        assert_eq!(Metric::ServedPodHours.format(457.04), "457.0");
        assert_eq!(Metric::TrainingSeconds.format(355.89), "356");
        assert_eq!(Metric::Mae.format(f64::NAN), "-");
        assert!(Metric::R2.higher_is_better() && !Metric::Rmse.higher_is_better());
        for m in Metric::ALL {
            let json = serde_json::to_value(m).unwrap();
            assert_eq!(json, serde_json::json!(m.label()));
            assert_eq!(serde_json::from_value::<Metric>(json).unwrap(), m);
        }
    }
}
