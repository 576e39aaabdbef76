//! `report.html`: the whole report in one file that opens in any browser, plots inlined.

use std::fmt::Write;
use std::path::Path;

use base64::Engine;

use super::Report;
use crate::evaluation::Action;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.2}%", 100.0 * v) } else { "-".into() }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The report with the plots of `plots` (file names in `dir`) embedded as data URIs.
pub fn render(r: &Report, text: &str, dir: &Path, plots: &[(&str, &str)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Model comparison: {}</title><style>\
body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}th{{background:#f3f3f3}}.win{{font-weight:bold;color:#1a7f37}}\
.rec{{background:#eef6ee;border-left:4px solid #1a7f37;padding:.6em 1em}}img{{max-width:100%;border:1px solid #ddd;margin:.5em 0}}\
details pre{{background:#f8f8f8;padding:1em;overflow:auto}}</style></head><body>",
        esc(&r.pipeline)
    );
    let _ = write!(
        h,
        "<h1>ML autoscaling: model comparison</h1><p>Pipeline <code>{}</code>, generated {}.<br>Hold-out: {}</p>",
        esc(&r.pipeline),
        esc(&r.generated_at),
        esc(&r.holdout)
    );
    let _ = write!(h, "<p class=\"rec\"><b>Recommendation.</b> {}</p>", esc(&r.recommendation));

    let _ = write!(h, "<h2>The honest comparison: one temporal hold-out</h2><table><tr><th>metric</th>");
    for m in &r.models {
        let _ = write!(h, "<th>{}</th>", esc(m));
    }
    h.push_str("</tr>");
    for row in &r.honest_comparison {
        let _ = write!(h, "<tr><td>{} ({} is better)</td>", esc(row.metric.label()), row.metric.better());
        for (m, v) in r.models.iter().zip(&row.values) {
            let cell = row.metric.format(*v);
            let class = if row.winner.as_deref() == Some(m.as_str()) { " class=\"win\"" } else { "" };
            let _ = write!(h, "<td{class}>{cell}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");

    let _ = write!(
        h,
        "<h2>The old comparison: each model on its own split</h2><table><tr><th>model</th><th>split</th><th>RMSE</th><th>exact</th><th>within-1</th><th>leaks the future</th></tr>"
    );
    for m in &r.own_split {
        let s = m.scores.as_ref();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.model),
            esc(&m.split),
            s.map(|s| num(s.rmse)).unwrap_or_default(),
            s.map(|s| pct(s.exact_accuracy)).unwrap_or_default(),
            s.map(|s| pct(s.within_1_accuracy)).unwrap_or_default(),
            if m.leaks_future { "<b>yes</b>" } else { "no" }
        );
    }
    h.push_str("</table>");

    let _ = write!(
        h,
        "<h2>Autoscaling replay</h2><p>{}</p><table><tr><th>policy</th><th>under-provisioned minutes</th><th>surplus pod-hours</th><th>pod-hours</th><th>actions per hour</th></tr>",
        esc(&r.replay_method)
    );
    for p in &r.replay {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.1}</td><td>{:.2}</td></tr>",
            esc(&p.policy),
            p.under_provisioned_minutes,
            p.over_provisioned_pod_hours,
            p.pod_hours,
            p.actions_per_hour
        );
    }
    h.push_str("</table>");
    if let Some(rule) = &r.better_label_rule {
        let _ = write!(h, "<p>Of the label rules, <b>{}</b> gives the better replay.</p>", esc(rule));
    }

    let _ = write!(h, "<h2>Scaling actions (actual rows, predicted columns)</h2>");
    for (model, c) in &r.confusion {
        let _ = write!(h, "<h3>{} (agreement {})</h3><table><tr><th></th>", esc(model), pct(c.agreement()));
        for a in Action::ALL {
            let _ = write!(h, "<th>{}</th>", a.name());
        }
        h.push_str("</tr>");
        for (i, a) in Action::ALL.iter().enumerate() {
            let _ = write!(h, "<tr><td>{}</td>", a.name());
            for n in c.counts[i] {
                let _ = write!(h, "<td>{n}</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Plots</h2>");
    for (file, caption) in plots {
        if let Ok(bytes) = std::fs::read(dir.join(file)) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let _ = write!(h, "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{b64}\"><figcaption>{0}</figcaption></figure>", esc(caption));
        }
    }
    h.push_str("<h2>Notes</h2><ul>");
    for n in &r.notes {
        let _ = write!(h, "<li>{}</li>", esc(n));
    }
    let _ = write!(h, "</ul><details><summary>The text report</summary><pre>{}</pre></details></body></html>", esc(text));
    h
}
