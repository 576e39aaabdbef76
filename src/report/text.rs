//! `comparison_report.txt`: the report as aligned plain-text tables.

use std::fmt::Write;

use super::Report;
use crate::evaluation::Action;

/// A metric's value as the report prints it (percentages, minutes, plain numbers).

fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> =
        (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].chars().count()]).max().unwrap_or(0)).collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "  {}", line(header));
    let _ = writeln!(out, "  {}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for r in rows {
        let _ = writeln!(out, "  {}", line(r));
    }
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "ML AUTOSCALING: MODEL COMPARISON REPORT");
    let _ = writeln!(o, "pipeline `{}`, generated {}", r.pipeline, r.generated_at);
    let _ = writeln!(o, "hold-out: {}\n", r.holdout);

    let _ = writeln!(o, "RECOMMENDATION\n  {}\n", r.recommendation);

    let _ = writeln!(o, "1. THE HONEST COMPARISON: every model on the same temporal hold-out");
    let mut header = vec!["metric".to_string()];
    header.extend(r.models.iter().cloned());
    header.push("better".into());
    let rows: Vec<Vec<String>> = r
        .honest_comparison
        .iter()
        .map(|m| {
            let mut row = vec![format!("{} ({})", m.metric.label(), m.metric.better())];
            row.extend(m.values.iter().map(|v| m.metric.format(*v)));
            row.push(m.winner.clone().unwrap_or_else(|| "tie".into()));
            row
        })
        .collect();
    table(&mut o, &header, &rows);

    let _ = writeln!(o, "\n2. THE OLD COMPARISON: each model on its own split (as the Python system reported it)");
    let header: Vec<String> = ["model", "split", "RMSE", "MAE", "R²", "exact", "within-1", "leaks the future"].iter().map(|s| s.to_string()).collect();
    let rows: Vec<Vec<String>> = r
        .own_split
        .iter()
        .map(|m| {
            let s = m.scores.as_ref();
            let f = |g: &dyn Fn(&crate::models::scores::Scores) -> f64, metric: super::Metric| s.map(|s| metric.format(g(s))).unwrap_or_else(|| "-".into());
            vec![
                m.model.clone(),
                m.split.clone(),
                f(&|s| s.rmse, super::Metric::Rmse),
                f(&|s| s.mae, super::Metric::Mae),
                f(&|s| s.r2, super::Metric::R2),
                f(&|s| s.exact_accuracy, super::Metric::ExactAccuracy),
                f(&|s| s.within_1_accuracy, super::Metric::Within1Accuracy),
                if m.leaks_future { "YES".into() } else { "no".into() },
            ]
        })
        .collect();
    table(&mut o, &header, &rows);

    let _ = writeln!(o, "\n3. PER SERVICE on the hold-out (exact accuracy / RMSE)");
    let mut header = vec!["service".to_string()];
    header.extend(r.models.iter().cloned());
    let rows: Vec<Vec<String>> = r
        .per_service
        .iter()
        .map(|(s, by)| {
            let mut row = vec![s.clone()];
            row.extend(
                r.models.iter().map(|m| by.get(m).map(|sc| format!("{:.1}% / {:.3}", 100.0 * sc.exact_accuracy, sc.rmse)).unwrap_or_else(|| "-".into())),
            );
            row
        })
        .collect();
    table(&mut o, &header, &rows);

    let _ = writeln!(o, "\n4. SCALING ACTIONS: actual (rows) vs predicted (columns)");
    for (model, c) in &r.confusion {
        let _ = writeln!(o, "  {model} (agreement {:.1}%)", 100.0 * c.agreement());
        let mut header = vec!["actual \\ predicted".to_string()];
        header.extend(Action::ALL.iter().map(|a| a.name().to_string()));
        let rows: Vec<Vec<String>> = Action::ALL
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut row = vec![a.name().to_string()];
                row.extend(c.counts[i].iter().map(|n| n.to_string()));
                row
            })
            .collect();
        table(&mut o, &header, &rows);
    }

    let p = &r.replay_params;
    let _ = writeln!(
        o,
        "\n5. AUTOSCALING REPLAY on the hold-out (target utilisation {:.0}%, HPA target {:.0}%, replicas {}-{})",
        p.target_utilization, p.hpa_target, p.min_replicas, p.max_replicas
    );
    let _ = writeln!(
        o,
        "  pods start {:.0} s after they are asked for; metrics {:.0} s late, averaged over {:.0} s; HPA sync every {:.0} s, \
scale-down stabilisation {:.0} s",
        p.pod_startup_seconds, p.metrics_delay_seconds, p.metrics_window_seconds, p.hpa_sync_seconds, p.scale_down_stabilization_seconds
    );
    let header: Vec<String> =
        ["policy", "under-prov. min", "requests over cap.", "pod-hours", "surplus pod-h", "actions/h", "vs the HPA at equal cost", "at equal health"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let rows: Vec<Vec<String>> = r
        .replay
        .iter()
        .map(|s| {
            let margin = match &s.frontier_margin {
                Some(m) => {
                    format!("{:.1} min {}{}", m.minutes.abs(), if m.beats_hpa() { "below" } else { "above" }, if m.within { "" } else { " (extrapolated)" })
                }
                None => "-".into(),
            };
            let saving = match s.frontier_saving.as_ref().map(|v| v.pod_hours) {
                Some(Some(p)) => format!("{:.1} pod-h {}", p.abs(), if p > 0.0 { "cheaper" } else { "dearer" }),
                Some(None) => "HPA never this healthy".into(),
                None => "-".into(),
            };
            // The HPA at its own target is a point of the frontier, not a policy against it.
            let (margin, saving) = if crate::evaluation::policy_name::PolicyName::from(s.policy.as_str()) == crate::evaluation::policy_name::PolicyName::Hpa {
                ("on the frontier".to_string(), "on the frontier".to_string())
            } else {
                (margin, saving)
            };
            vec![
                s.policy.clone(),
                format!("{:.1}", s.under_provisioned_minutes),
                format!("{:.2}%", s.requests_over_capacity_percent),
                format!("{:.1}", s.pod_hours),
                format!("{:.2}", s.over_provisioned_pod_hours),
                format!("{:.2}", s.actions_per_hour),
                margin,
                saving,
            ]
        })
        .collect();
    table(&mut o, &header, &rows);
    let _ = writeln!(o, "\n  What each policy is:");
    for s in &r.replay {
        let _ = writeln!(o, "  {:<34} {}", s.policy, s.kind);
    }
    if !r.frontier.is_empty() {
        let _ = writeln!(o, "\n  The reactive HPA's frontier (target: pod-hours, under-provisioned minutes):");
        let points: Vec<String> = r.frontier.iter().map(|q| format!("{:.0}%: {:.1}, {:.1}", q.target, q.pod_hours, q.under_provisioned_minutes)).collect();
        let _ = writeln!(o, "  {}", wrap(&points.join("; "), 96, "  "));
    }
    for (model, members) in &r.risk {
        let _ = writeln!(
            o,
            "\n  The risk family of {model} (its forecast raised by the hold-out errors' quantile per service, cross-fitted; a pipeline picks a member with `risk`):"
        );
        let _ = writeln!(
            o,
            "  {:>6} {:>10} {:>14} {:>22} {:>16} {:>16}",
            "risk", "pod-hours", "under-prov min", "demand above it (rows)", "vs HPA: min", "vs HPA: pod-h"
        );
        let or_dash = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.1}"));
        for m in members {
            let _ = writeln!(
                o,
                "  {:>5.0}% {:>10.1} {:>14.1} {:>21.1}% {:>16} {:>16}",
                100.0 * m.level,
                m.pod_hours,
                m.under_provisioned_minutes,
                100.0 * m.exceedance,
                or_dash(m.margin_minutes),
                or_dash(m.saving_pod_hours)
            );
        }
        let _ = writeln!(o, "  (vs HPA: minutes below the frontier at equal pod-hours, pod-hours saved at equal minutes; positive beats it)");
    }
    let _ = writeln!(o, "\n  Method: {}", wrap(&r.replay_method, 96, "  "));

    if !r.label_rules.is_empty() {
        let _ = writeln!(o, "\n6. LABEL RULES: the model furthest below the HPA frontier per rule (as it would serve)");
        for (rule, model) in &r.label_rules {
            let _ = writeln!(o, "  {rule:<6} {model}");
        }
        match &r.better_label_rule {
            Some(rule) => {
                let _ = writeln!(o, "  The `{rule}` labels give the better replay.");
            }
            None => {
                let _ = writeln!(o, "  Only one label rule was trained.");
            }
        }
    }

    let _ = writeln!(o, "\nNOTES");
    for n in &r.notes {
        let _ = writeln!(o, "  - {}", wrap(n, 96, "    "));
    }
    o
}

/// Greedy word wrap; continuation lines get `indent`.
fn wrap(s: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    for word in s.split_whitespace() {
        if len > 0 && len + 1 + word.len() > width {
            out.push('\n');
            out.push_str(indent);
            len = 0;
        } else if len > 0 {
            out.push(' ');
            len += 1;
        }
        out.push_str(word);
        len += word.len();
    }
    out
}
