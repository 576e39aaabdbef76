//! The name of a replayed policy, one type for every place that builds or reads one: the replay,
//! evaluate's and publish's lookups, the report's rows and plots. Written as evaluation.json and
//! the report have always keyed them (`hpa`, `train_random_forest_demand+hpa`, …).

/// A policy the replay runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyName {
    /// The replicas the hold-out recorded.
    Recorded,
    /// The reactive HPA at the replay's target.
    Hpa,
    /// Forecasting baselines, as predictive autoscalers build them.
    SeasonalNaive,
    HoltWinters,
    /// A model's prediction used as the replica count (the old system): `<stage>`.
    Predicted(String),
    /// A model's forecast through the HPA, as it would serve (a floor, or alone): `<stage>+hpa`.
    Forecast(String),
}

const FORECAST_SUFFIX: &str = "+hpa";

impl PolicyName {
    /// The model's train stage, for a model's policy.
    pub fn stage(&self) -> Option<&str> {
        match self {
            PolicyName::Predicted(s) | PolicyName::Forecast(s) => Some(s),
            _ => None,
        }
    }

    /// A forecast turned into pods under the HPA (a model's or a baseline's): the policies the
    /// replay runs at several HPA targets.
    pub fn is_forecast(&self) -> bool {
        matches!(self, PolicyName::Forecast(_) | PolicyName::SeasonalNaive | PolicyName::HoltWinters)
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyName::Recorded => f.pad("recorded"),
            PolicyName::Hpa => f.pad("hpa"),
            PolicyName::SeasonalNaive => f.pad("seasonal_naive"),
            PolicyName::HoltWinters => f.pad("holt_winters"),
            PolicyName::Predicted(stage) => f.pad(stage),
            PolicyName::Forecast(stage) => f.pad(&format!("{stage}{FORECAST_SUFFIX}")),
        }
    }
}

impl std::str::FromStr for PolicyName {
    type Err = std::convert::Infallible;

    /// Any name reads: a stage's name is whatever the pipeline file called it.
    fn from_str(s: &str) -> Result<PolicyName, Self::Err> {
        Ok(match s {
            "recorded" => PolicyName::Recorded,
            "hpa" => PolicyName::Hpa,
            "seasonal_naive" => PolicyName::SeasonalNaive,
            "holt_winters" => PolicyName::HoltWinters,
            other => match other.strip_suffix(FORECAST_SUFFIX) {
                Some(stage) => PolicyName::Forecast(stage.to_string()),
                None => PolicyName::Predicted(other.to_string()),
            },
        })
    }
}

impl From<&str> for PolicyName {
    fn from(s: &str) -> PolicyName {
        s.parse().unwrap_or_else(|e| match e {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_written() {
        let all = [
            PolicyName::Recorded,
            PolicyName::Hpa,
            PolicyName::SeasonalNaive,
            PolicyName::HoltWinters,
            PolicyName::Predicted("train_random_forest_demand".into()),
            PolicyName::Forecast("train_random_forest_demand".into()),
        ];
        for p in &all {
            assert_eq!(PolicyName::from(p.to_string().as_str()), *p);
        }
        assert_eq!(PolicyName::Forecast("train_lstm_cnn".into()).to_string(), "train_lstm_cnn+hpa");
        assert_eq!(PolicyName::from("train_lstm_cnn+hpa").stage(), Some("train_lstm_cnn"));
        assert!(PolicyName::HoltWinters.is_forecast() && !PolicyName::Hpa.is_forecast());
        assert_eq!(format!("{:<8}|", PolicyName::Hpa), "hpa     |");
    }
}
