//! A scaling policy as publish promotes it and `pipeline serve` applies it: how a model's output
//! becomes replicas, with the HPA (`crate::hpa`) the replay judged it with.

use serde::{Deserialize, Serialize};

use super::replay;
use crate::hpa::Hpa;

/// How a promoted model's output becomes replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySpec {
    /// The prediction is the replica count, as the old system used it (versions published
    /// before policies were recorded).
    AsPredicted,
    /// `max(reactive HPA, the model's forecast)`, scale-down stabilised: the forecast only adds
    /// pods ahead of the HPA.
    Proactive(Hpa),
    /// The model's forecast alone, scale-down stabilised as the HPA is; the reactive HPA with
    /// these settings decides only where the model gives no forecast (a service it does not
    /// know, an LSTM-CNN warming up). Publish records it when it lies further below the HPA's
    /// frontier than the forecast over any HPA floor: a floor reacts to every burst of CPU the
    /// forecast already provisioned for, and the stabilisation holds what it adds for minutes.
    Forecast(Hpa),
}

impl PolicySpec {
    /// The policy of a forecast replayed with its HPA floor at `target`, or with none.
    pub fn of_forecast(floor: Option<f64>, p: &replay::Params) -> PolicySpec {
        match floor {
            Some(target) => PolicySpec::Proactive(p.hpa(target)),
            None => PolicySpec::Forecast(p.hpa(p.hpa_target)),
        }
    }

    /// How the output becomes replicas, in a phrase (`pipeline models`, the run summary).
    pub fn describe(&self) -> String {
        match self {
            PolicySpec::AsPredicted => "its prediction is the replica count".into(),
            PolicySpec::Proactive(r) => format!("its forecast as a floor under the reactive HPA at {:.0} % CPU", r.target),
            PolicySpec::Forecast(r) => format!(
                "its forecast alone, scale-down stabilised over {:.0} s (the reactive HPA at {:.0} % CPU where it has none)",
                r.scale_down_stabilization_seconds, r.target
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_written_with_their_kind() {
        let p = PolicySpec::Proactive(Hpa::default());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["kind"], "proactive");
        assert_eq!(json["target"], 60.0);
        assert_eq!(serde_json::from_value::<PolicySpec>(json).unwrap(), p);
        assert_eq!(serde_json::from_str::<PolicySpec>(r#"{"kind":"as_predicted"}"#).unwrap(), PolicySpec::AsPredicted);
        let alone = PolicySpec::of_forecast(None, &replay::Params::default());
        let json = serde_json::to_value(&alone).unwrap();
        assert_eq!((json["kind"].as_str(), json["target"].as_f64()), (Some("forecast"), Some(60.0)), "the HPA's settings for where it has no forecast");
        assert_eq!(serde_json::from_value::<PolicySpec>(json).unwrap(), alone);
        assert_eq!(PolicySpec::of_forecast(Some(75.0), &replay::Params::default()), PolicySpec::Proactive(replay::Params::default().hpa(75.0)));
        // A version published before the one HPA model still reads, with its four settings.
        let old = r#"{"kind":"proactive","target":70.0,"tolerance":0.1,"stabilization_seconds":300.0,"window_seconds":60.0}"#;
        let PolicySpec::Proactive(h) = serde_json::from_str::<PolicySpec>(old).unwrap() else { panic!() };
        assert_eq!((h.target, h.scale_down_stabilization_seconds, h.metrics_window_seconds), (70.0, 300.0, 60.0));
    }
}
