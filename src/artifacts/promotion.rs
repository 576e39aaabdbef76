//! Whether a newly registered version is promoted over the serving one: the rule `publish`
//! applies, as a plain function of what both scored on the same hold-out.

use serde::{Deserialize, Serialize};

use crate::evaluation::replay::frontier::{Margin, Saving};

/// The pipeline's `rule:` for publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    pub max_under_provisioned_increase_minutes: f64,
    pub max_exact_accuracy_drop: f64,
    /// Promote only a model whose policy beats the reactive HPA's frontier on either axis
    /// (fewer under-provisioned minutes at equal pod-hours, or fewer pod-hours at equal
    /// minutes); false: judge it against the serving version alone, e.g. to try a model out.
    pub require_beating_hpa: bool,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule { max_under_provisioned_increase_minutes: 0.0, max_exact_accuracy_drop: 0.0, require_beating_hpa: true }
    }
}

/// The new version, under the policy it would serve with, on the hold-out.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub kind: String,
    pub version: String,
    /// Against the HPA's frontier; none when no service could be replayed.
    pub margin: Option<Margin>,
    /// Against the same frontier at its own under-provisioned minutes (the cost axis).
    pub saving: Option<Saving>,
    pub exact_accuracy: f64,
    /// The label rule it learned.
    pub label_rule: String,
    pub rows: usize,
}

/// The version serving now, as far as it could be judged on the same hold-out.
#[derive(Debug, Clone)]
pub enum Serving {
    /// No version is promoted.
    None,
    /// It could not be loaded (a format this build no longer reads, a damaged folder).
    Unloadable { version: String, error: String },
    /// It loaded but could not predict these rows (features it needs are gone).
    CannotScore { version: String, error: String },
    Scored {
        version: String,
        /// Minutes below the HPA frontier (−∞ when it could not be replayed).
        margin_minutes: f64,
        exact_accuracy: f64,
        label_rule: String,
    },
}

impl Serving {
    fn version(&self) -> Option<&str> {
        match self {
            Serving::None => None,
            Serving::Unloadable { version, .. } | Serving::CannotScore { version, .. } | Serving::Scored { version, .. } => Some(version),
        }
    }
}

/// What publish decides for one model, and why, in words for the run summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub promote: bool,
    pub reason: String,
}

/// The promotion rule. `holdout_rule`: the label rule of the hold-out's labels (exact accuracy
/// is compared only between models that learned it).
pub fn decide(new: &Candidate, serving: &Serving, rule: &Rule, holdout_rule: &str) -> Verdict {
    let v = &new.version;
    let verdict = |promote: bool, reason: String| Verdict { promote, reason };
    let against_hpa = match (&new.margin, &new.saving) {
        (Some(m), Some(s)) => format!("{}; {}", m.describe(), s.describe()),
        (Some(m), None) => m.describe(),
        _ => "no service could be replayed".to_string(),
    };
    // Below the frontier on either axis: fewer minutes at its cost, or fewer pod-hours at its
    // health (the two part only at the frontier's ends, where one of them is extrapolated).
    let beats_hpa = new.margin.as_ref().is_some_and(|m| m.beats_hpa()) || new.saving.as_ref().is_some_and(|s| s.cheaper_than_hpa());
    if serving.version() == Some(v.as_str()) {
        return verdict(false, format!("{v} is already serving ({against_hpa})"));
    }
    if !beats_hpa && rule.require_beating_hpa {
        let instead = match serving.version() {
            Some(sv) => format!("kept serving {sv}"),
            None => "serve answers with the reactive HPA".to_string(),
        };
        return verdict(false, format!("{instead}: {v} under its policy does not beat the reactive HPA on {} hold-out rows ({against_hpa})", new.rows));
    }
    match serving {
        Serving::None => verdict(true, format!("first {} version; under its policy it is {against_hpa}", new.kind)),
        Serving::Unloadable { version: sv, error } => verdict(true, format!("serving {sv} cannot be loaded ({error}); replaced")),
        Serving::CannotScore { version: sv, error } => verdict(true, format!("serving {sv} cannot score this hold-out ({error}); replaced")),
        Serving::Scored { version: sv, margin_minutes, exact_accuracy, label_rule } => {
            let new_minutes = new.margin.as_ref().map_or(f64::NEG_INFINITY, |m| m.minutes);
            let learned_holdout = new.label_rule == holdout_rule;
            let comparable = learned_holdout && label_rule == holdout_rule;
            let accuracy = if comparable {
                format!("exact accuracy {:.2}% vs {:.2}%", 100.0 * new.exact_accuracy, 100.0 * exact_accuracy)
            } else {
                format!("exact accuracy not compared ({} and {label_rule} labels, the hold-out has {holdout_rule})", new.label_rule)
            };
            let facts = format!("on {} hold-out rows: {new_minutes:.1} vs {margin_minutes:.1} min below the HPA frontier, {accuracy}", new.rows);
            let ok_margin = new_minutes >= margin_minutes - rule.max_under_provisioned_increase_minutes;
            let ok_exact = !comparable || new.exact_accuracy >= exact_accuracy - rule.max_exact_accuracy_drop;
            if ok_margin && ok_exact {
                verdict(true, format!("{v} beats serving {sv} {facts}"))
            } else {
                let why = if !ok_margin { "a smaller margin below the HPA" } else { "lower exact accuracy" };
                verdict(false, format!("kept serving {sv}: {v} has {why} {facts}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn margin(minutes: f64) -> Margin {
        Margin { hpa_minutes: 100.0, minutes, percent: minutes, within: true }
    }

    fn new(minutes: f64, exact: f64, rule: &str) -> Candidate {
        Candidate {
            kind: "random_forest".into(),
            version: "v2".into(),
            margin: Some(margin(minutes)),
            saving: None,
            exact_accuracy: exact,
            label_rule: rule.into(),
            rows: 1000,
        }
    }

    fn scored(minutes: f64, exact: f64, rule: &str) -> Serving {
        Serving::Scored { version: "v1".into(), margin_minutes: minutes, exact_accuracy: exact, label_rule: rule.into() }
    }

    #[test]
    fn a_version_is_promoted_only_below_the_hpa_and_not_worse_than_the_serving_one() {
        let rule = Rule::default();
        // The first version: below the frontier, promoted; above it, the HPA keeps serving.
        assert!(decide(&new(10.0, 0.5, "demand"), &Serving::None, &rule, "seed").promote);
        let above = decide(&new(-3.0, 0.9, "seed"), &Serving::None, &rule, "seed");
        assert!(!above.promote && above.reason.starts_with("serve answers with the reactive HPA: v2 under its policy does not beat"), "{}", above.reason);
        // Unless the rule says to try it anyway.
        assert!(decide(&new(-3.0, 0.9, "seed"), &Serving::None, &Rule { require_beating_hpa: false, ..rule.clone() }, "seed").promote);
        // Against a serving version: the margin decides; ties promote.
        assert!(decide(&new(10.0, 0.5, "demand"), &scored(10.0, 0.9, "demand"), &rule, "seed").promote);
        let worse = decide(&new(9.9, 0.5, "demand"), &scored(10.0, 0.9, "demand"), &rule, "seed");
        assert!(!worse.promote && worse.reason.contains("a smaller margin below the HPA"), "{}", worse.reason);
        assert!(
            decide(&new(9.9, 0.5, "demand"), &scored(10.0, 0.9, "demand"), &Rule { max_under_provisioned_increase_minutes: 0.5, ..rule.clone() }, "seed")
                .promote
        );
        // Exact accuracy counts only when both learned the hold-out's labels.
        assert!(decide(&new(12.0, 0.5, "demand"), &scored(10.0, 0.9, "seed"), &rule, "seed").promote, "different labels: not compared");
        let less_exact = decide(&new(12.0, 0.5, "seed"), &scored(10.0, 0.9, "seed"), &rule, "seed");
        assert!(
            !less_exact.promote && less_exact.reason.contains("lower exact accuracy") && less_exact.reason.contains("50.00% vs 90.00%"),
            "{}",
            less_exact.reason
        );
        // A serving version that cannot be judged is replaced; the same version is left alone.
        for broken in [
            Serving::Unloadable { version: "v1".into(), error: "old format".into() },
            Serving::CannotScore { version: "v1".into(), error: "no feature x".into() },
        ] {
            let d = decide(&new(1.0, 0.5, "seed"), &broken, &rule, "seed");
            assert!(d.promote && d.reason.ends_with("replaced"), "{}", d.reason);
        }
        let same = decide(&Candidate { version: "v1".into(), ..new(10.0, 0.5, "seed") }, &scored(10.0, 0.5, "seed"), &rule, "seed");
        assert_eq!(same, Verdict { promote: false, reason: "v1 is already serving (10.0 min (10%) below the HPA frontier)".into() });
        // Both axes when the cost axis is known.
        let saving = Saving { hpa_pod_hours: Some(120.0), pod_hours: Some(12.0), percent: Some(10.0) };
        let first = decide(&Candidate { saving: Some(saving.clone()), ..new(10.0, 0.5, "seed") }, &Serving::None, &rule, "seed");
        assert!(first.reason.ends_with("10.0 min (10%) below the HPA frontier; 12.0 pod-h (10%) cheaper than the HPA at equal health"), "{}", first.reason);
        // Cheaper than the HPA at equal health beats it, even where the minutes' margin (at the
        // frontier's end) does not.
        let cheaper = Candidate { saving: Some(saving.clone()), ..new(-0.5, 0.5, "seed") };
        assert!(decide(&cheaper, &Serving::None, &rule, "seed").promote);
        let dearer = Saving { pod_hours: Some(-1.0), percent: Some(-1.0), ..saving };
        assert!(!decide(&Candidate { saving: Some(dearer), ..new(-0.5, 0.5, "seed") }, &Serving::None, &rule, "seed").promote);
        // No replay at all: never promoted over the HPA.
        assert!(!decide(&Candidate { margin: None, ..new(0.0, 1.0, "seed") }, &Serving::None, &rule, "seed").promote);
    }
}
