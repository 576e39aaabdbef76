//! The report's PNG plots (plotters, bitmap backend). Fonts are the DejaVu files in
//! `assets/fonts`, compiled in, so a plot looks the same on every machine.

use crate::evaluation::policy_name::PolicyName;
use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::models::lstm_cnn::Epoch;

const FONT: &str = "sans-serif";
const SERIES: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 128),
];
const GREY: RGBColor = RGBColor(120, 120, 120);
const ORANGE: RGBColor = RGBColor(255, 127, 14);

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Both files are valid fonts shipped with the crate; a failure here is a build defect.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../../assets/fonts/DejaVuSans.ttf"));
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf"));
    });
}

pub fn color(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// Colours of replay policies: the recorded replicas grey, the HPA orange, the baselines
/// brown and teal, models in order (a model with the HPA floor in its own colour).
pub fn policy_color(policy: &str, models: &[String]) -> RGBColor {
    match PolicyName::from(policy) {
        PolicyName::Recorded => GREY,
        PolicyName::Hpa => ORANGE,
        PolicyName::SeasonalNaive => SERIES[4],
        PolicyName::HoltWinters => SERIES[5],
        PolicyName::Predicted(stage) | PolicyName::Forecast(stage) => color(models.iter().position(|x| *x == stage).unwrap_or(0)),
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Draws into a PNG under a temporary name, then renames: a plot is whole or absent.
fn png(path: &Path, size: (u32, u32), title: &str, draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>) -> Result<()> {
    fonts();
    // The encoder picks the format by extension, so the temporary name ends in .png too.
    let tmp = path.with_file_name(format!(".tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("plot.png")));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let body = root.titled(title, (FONT, 26).into_font().style(FontStyle::Bold)).map_err(err)?;
        draw(&body)?;
        root.present().map_err(err)?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One bar chart per metric, a bar per model, values printed on the bars.
pub struct Bars<'a> {
    pub metric: &'a str,
    pub values: Vec<f64>,
    /// Higher is better (accuracy, R²) or lower is (errors, time): said in the caption.
    pub higher_is_better: bool,
}

pub fn model_comparison(path: &Path, models: &[String], charts: &[Bars]) -> Result<()> {
    if models.is_empty() {
        return Ok(());
    }
    png(path, (1500, 900), "Models on the common temporal hold-out", |root| {
        let (legend, grid) = root.split_vertically(50);
        draw_legend(&legend, &models.iter().enumerate().map(|(i, m)| (m.clone(), color(i))).collect::<Vec<_>>())?;
        let cols = 3;
        let rows = charts.len().div_ceil(cols);
        for (area, bars) in grid.split_evenly((rows, cols)).iter().zip(charts) {
            bar_chart(area, models, bars)?;
        }
        Ok(())
    })
}

fn bar_chart(area: &DrawingArea<BitMapBackend, Shift>, models: &[String], b: &Bars) -> Result<()> {
    let finite: Vec<f64> = b.values.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite.iter().copied().fold(0.0, f64::min);
    let hi = finite.iter().copied().fold(0.0, f64::max);
    let pad = ((hi - lo) * 0.15).max(1e-9);
    let caption = format!("{} ({} is better)", b.metric, if b.higher_is_better { "higher" } else { "lower" });
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((0..models.len() - 1).into_segmented(), (lo.min(0.0) - if lo < 0.0 { pad } else { 0.0 })..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .disable_x_mesh()
        .x_labels(models.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => format!("#{}", i + 1),
            _ => String::new(),
        })
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, v) in b.values.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let mut bar = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)], color(i).filled());
        bar.set_margin(0, 0, 14, 14);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        let label = if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else if v.abs() >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        };
        // Above a positive bar, below a negative one.
        let (y, vpos) = if *v >= 0.0 { (*v + pad * 0.2, VPos::Bottom) } else { (*v - pad * 0.2, VPos::Top) };
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (SegmentValue::CenterOf(i), y),
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, vpos)),
            )))
            .map_err(err)?;
    }
    Ok(())
}

fn draw_legend(area: &DrawingArea<BitMapBackend, Shift>, items: &[(String, RGBColor)]) -> Result<()> {
    let mut x = 20;
    for (i, (name, c)) in items.iter().enumerate() {
        area.draw(&Rectangle::new([(x, 15), (x + 18, 33)], c.filled())).map_err(err)?;
        let label = if items.len() > 1 && name.starts_with('#') { name.clone() } else { format!("#{} {name}", i + 1) };
        area.draw(&Text::new(label.clone(), (x + 24, 16), (FONT, 16))).map_err(err)?;
        x += 40 + (label.chars().count() as i32) * 9;
    }
    Ok(())
}

/// For each model: predicted vs actual and the error histogram; below, the last test steps.
pub struct ModelPredictions<'a> {
    pub name: &'a str,
    pub actual: &'a [f64],
    pub predicted: &'a [f64],
}

pub fn prediction_comparison(path: &Path, models: &[ModelPredictions], series_title: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
    let height = 380 * models.len() as u32 + 420;
    png(path, (1400, height), "Predictions on the hold-out", |root| {
        let (top, bottom) = root.split_vertically(380 * models.len() as u32);
        for (i, (row, m)) in top.split_evenly((models.len(), 1)).iter().zip(models).enumerate() {
            let (left, right) = row.split_horizontally(700);
            scatter(&left, m, color(i))?;
            histogram(&right, m, color(i))?;
        }
        time_series(&bottom, series_title, series)
    })
}

/// One model: its output against the target over one service's hold-out, then predicted vs
/// actual and the error histogram over every hold-out row.
pub fn model_predictions(path: &Path, m: &ModelPredictions, series_title: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
    png(path, (1400, 820), &format!("{}: predictions on the hold-out", m.name), |root| {
        let (top, bottom) = root.split_vertically(400);
        time_series(&top, series_title, series)?;
        let (left, right) = bottom.split_horizontally(700);
        scatter(&left, m, color(0))?;
        histogram(&right, m, color(0))
    })
}

fn scatter(area: &DrawingArea<BitMapBackend, Shift>, m: &ModelPredictions, c: RGBColor) -> Result<()> {
    // The axes follow the actual targets; wild predictions are drawn at the edge, not allowed
    // to squash the rest into a corner.
    let hi = m.actual.iter().copied().filter(|v| v.is_finite()).fold(1.0, f64::max) * 1.25 + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{}: predicted vs actual", m.name), (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..hi, 0.0..hi)
        .map_err(err)?;
    chart.configure_mesh().light_line_style(WHITE).x_desc("actual target replicas").y_desc("predicted").label_style((FONT, 14)).draw().map_err(err)?;
    chart
        .draw_series(m.actual.iter().zip(m.predicted).filter(|(_, p)| p.is_finite()).map(|(a, p)| Circle::new((*a, p.clamp(0.0, hi)), 2, c.mix(0.25).filled())))
        .map_err(err)?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (hi, hi)], BLACK.stroke_width(1))).map_err(err)?;
    Ok(())
}

fn histogram(area: &DrawingArea<BitMapBackend, Shift>, m: &ModelPredictions, c: RGBColor) -> Result<()> {
    let errors: Vec<f64> = m.actual.iter().zip(m.predicted).map(|(a, p)| p - a).filter(|e| e.is_finite()).collect();
    let span = errors.iter().map(|e| e.abs()).fold(0.5, f64::max).min(5.0);
    let bins = 40;
    let width = 2.0 * span / bins as f64;
    let mut counts = vec![0u32; bins];
    for e in &errors {
        let b = (((e + span) / width).floor() as isize).clamp(0, bins as isize - 1) as usize;
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{}: prediction error", m.name), (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-span..span, 0.0..top)
        .map_err(err)?;
    chart.configure_mesh().light_line_style(WHITE).x_desc("predicted − actual (replicas)").y_desc("rows").label_style((FONT, 14)).draw().map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, n)| {
            let x0 = -span + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, *n as f64)], c.mix(0.8).filled())
        }))
        .map_err(err)?;
    Ok(())
}

/// Lines over a step index (the last test steps of one service).
fn time_series(area: &DrawingArea<BitMapBackend, Shift>, title: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
    let (width, _) = area.dim_in_pixel();
    let (area, legend) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let line_color = |i: usize| if i == 0 { BLACK } else { color(i - 1) };
    let entries: Vec<(String, RGBColor)> = series.iter().enumerate().map(|(i, (name, _))| (name.clone(), line_color(i))).collect();
    legend_column(&legend, "replicas", &entries)?;
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(2);
    let hi = series.iter().flat_map(|s| s.1.iter()).copied().filter(|v| v.is_finite()).fold(1.0, f64::max) + 1.0;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0..n, 0.0..hi)
        .map_err(err)?;
    chart.configure_mesh().light_line_style(WHITE).x_desc("hold-out step (30 s)").y_desc("replicas").label_style((FONT, 14)).draw().map_err(err)?;
    for (i, (_, ys)) in series.iter().enumerate() {
        chart.draw_series(LineSeries::new(ys.iter().enumerate().map(|(x, y)| (x, *y)), line_color(i).stroke_width(2))).map_err(err)?;
    }
    Ok(())
}

/// Horizontal bars of the largest importances.
pub fn feature_importance(path: &Path, model: &str, importances: &[(String, f64)]) -> Result<()> {
    let top: Vec<&(String, f64)> = importances.iter().take(20).collect();
    let height = 140 + 32 * top.len() as u32;
    png(path, (1100, height.max(400)), &format!("{model}: feature importance (top {})", top.len()), |root| {
        let hi = top.iter().map(|t| t.1).fold(0.0, f64::max) * 1.15 + 1e-12;
        let names: Vec<String> = top.iter().map(|t| t.0.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(300)
            .build_cartesian_2d(0.0..hi, (0..top.len().max(1) - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .disable_y_mesh()
            .y_labels(top.len())
            .y_label_formatter(&|v| match v {
                // Largest at the top.
                SegmentValue::CenterOf(i) => names.get(names.len().saturating_sub(1 + *i)).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("mean decrease in impurity (share of the total)")
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        let n = top.len();
        for (rank, (_, v)) in top.iter().enumerate() {
            let row = n - 1 - rank;
            let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(row)), (*v, SegmentValue::Exact(row + 1))], color(0).filled());
            bar.set_margin(5, 5, 0, 0);
            chart.draw_series(std::iter::once(bar)).map_err(err)?;
        }
        Ok(())
    })
}

/// Loss, MAE and learning rate per epoch, training and validation.
pub fn training_history(path: &Path, model: &str, history: &[Epoch], best_epoch: usize) -> Result<()> {
    png(path, (1500, 520), &format!("{model}: training history (best epoch {best_epoch}, restored)"), |root| {
        let (charts, legend) = root.split_horizontally(1500 - 190);
        let entries = [("train".to_string(), color(0)), ("validation".to_string(), ORANGE), ("best epoch (dashed)".to_string(), GREY)];
        legend_column(&legend, "", &entries)?;
        let panels = charts.split_evenly((1, 3));
        let epochs = history.len().max(2) as f64;
        let lines = |area: &DrawingArea<BitMapBackend, Shift>, title: &str, ylabel: &str, series: Vec<(Vec<f64>, RGBColor)>, log: bool| -> Result<()> {
            let vals = series.iter().flat_map(|s| s.0.iter()).copied().filter(|v| v.is_finite() && (!log || *v > 0.0));
            let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = if lo > hi {
                (0.0, 1.0)
            } else if log {
                (lo / 1.5, hi * 1.5)
            } else {
                (lo.min(0.0), hi * 1.1 + 1e-9)
            };
            let mut builder = ChartBuilder::on(area);
            builder.caption(title, (FONT, 18)).margin(12).x_label_area_size(40).y_label_area_size(70);
            macro_rules! draw {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    chart.configure_mesh().light_line_style(WHITE).x_desc("epoch").y_desc(ylabel).label_style((FONT, 14)).draw().map_err(err)?;
                    for (ys, c) in &series {
                        chart.draw_series(LineSeries::new(ys.iter().enumerate().map(|(i, y)| ((i + 1) as f64, *y)), c.stroke_width(2))).map_err(err)?;
                    }
                    if best_epoch > 0 {
                        chart
                            .draw_series(DashedLineSeries::new([(best_epoch as f64, lo), (best_epoch as f64, hi)], 6, 4, GREY.stroke_width(1)))
                            .map_err(err)?;
                    }
                }};
            }
            if log {
                draw!(builder.build_cartesian_2d(1.0..epochs, (lo..hi).log_scale()).map_err(err)?);
            } else {
                draw!(builder.build_cartesian_2d(1.0..epochs, lo..hi).map_err(err)?);
            }
            Ok(())
        };
        let pick = |f: fn(&Epoch) -> f64| history.iter().map(f).collect::<Vec<f64>>();
        // One legend column for the three panels: train and validation look the same in each.
        lines(&panels[0], "Huber loss", "loss", vec![(pick(|e| e.loss), color(0)), (pick(|e| e.val_loss), ORANGE)], false)?;
        lines(&panels[1], "Mean absolute error", "replicas", vec![(pick(|e| e.mae), color(0)), (pick(|e| e.val_mae), ORANGE)], false)?;
        lines(&panels[2], "Learning rate", "learning rate (log)", vec![(pick(|e| e.learning_rate), color(1))], true)
    })
}

/// Index ranges of a time axis (hours) between gaps of more than 5 minutes.
fn segments(hours: &[f64]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..hours.len() {
        if hours[i] - hours[i - 1] > 5.0 / 60.0 {
            out.push(start..i);
            start = i;
        }
    }
    if start < hours.len() {
        out.push(start..hours.len());
    }
    out
}

/// One policy's replay on the busy service.
pub struct PolicyTrace {
    pub policy: String,
    pub hours: Vec<f64>,
    pub replicas: Vec<f64>,
    pub utilization: Vec<f64>,
}

/// Which colour is which line, in a column of its own beside the charts: inside a chart a
/// legend hides some of the lines whatever corner it takes.
fn legend_column(area: &DrawingArea<BitMapBackend, Shift>, heading: &str, entries: &[(String, RGBColor)]) -> Result<()> {
    let top = 70;
    if !heading.is_empty() {
        area.draw(&Text::new(heading.to_string(), (10, top - 28), (FONT, 15).into_font().style(FontStyle::Bold))).map_err(err)?;
    }
    for (i, (name, c)) in entries.iter().enumerate() {
        let y = top + 24 * i as i32;
        area.draw(&PathElement::new([(10, y + 8), (34, y + 8)], c.stroke_width(3))).map_err(err)?;
        area.draw(&Text::new(name.clone(), (42, y), (FONT, 14))).map_err(err)?;
    }
    Ok(())
}

/// Room for `legend_column`'s longest name at 14 px.
const LEGEND_WIDTH: u32 = 260;

pub fn replay(path: &Path, service: &str, traces: &[PolicyTrace], models: &[String], target: f64) -> Result<()> {
    png(path, (1500, 900), &format!("Autoscaling replay: {service} on the hold-out"), |root| {
        let (charts, legend) = root.split_horizontally(1500 - LEGEND_WIDTH);
        let entries: Vec<(String, RGBColor)> = traces.iter().map(|t| (t.policy.clone(), policy_color(&t.policy, models))).collect();
        legend_column(&legend, "policy", &entries)?;
        let (top, bottom) = charts.split_vertically(430);
        let end = traces.iter().flat_map(|t| t.hours.last()).copied().fold(0.01, f64::max);
        let max_r = traces.iter().flat_map(|t| t.replicas.iter()).copied().fold(1.0, f64::max) + 1.0;
        let mut chart = ChartBuilder::on(&top)
            .caption("Replicas each policy sets", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.0..max_r)
            .map_err(err)?;
        chart.configure_mesh().light_line_style(WHITE).x_desc("hours into the hold-out").y_desc("replicas").label_style((FONT, 14)).draw().map_err(err)?;
        for t in traces {
            let c = policy_color(&t.policy, models);
            // Replicas hold until the next row: steps, broken where the data has a gap (nights).
            for seg in segments(&t.hours) {
                let mut pts = Vec::with_capacity(seg.len() * 2);
                for i in seg.clone() {
                    pts.push((t.hours[i], t.replicas[i]));
                    if i + 1 < seg.end {
                        pts.push((t.hours[i + 1], t.replicas[i]));
                    }
                }
                chart.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(err)?;
            }
        }

        let max_u = traces.iter().flat_map(|t| t.utilization.iter()).copied().filter(|u| u.is_finite()).fold(target, f64::max).min(400.0) * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .caption(format!("CPU utilisation under each policy (over {target:.0}% = under-provisioned)"), (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.0..max_u)
            .map_err(err)?;
        chart.configure_mesh().light_line_style(WHITE).x_desc("hours into the hold-out").y_desc("CPU %").label_style((FONT, 14)).draw().map_err(err)?;
        for t in traces {
            let c = policy_color(&t.policy, models);
            for seg in segments(&t.hours) {
                let pts: Vec<(f64, f64)> = seg.map(|i| (t.hours[i], t.utilization[i].min(max_u))).collect();
                chart.draw_series(LineSeries::new(pts, c.mix(0.85).stroke_width(1))).map_err(err)?;
            }
        }
        chart.draw_series(DashedLineSeries::new([(0.0, target), (end, target)], 8, 5, RED.stroke_width(2))).map_err(err)?;
        Ok(())
    })
}

/// A policy's point on the frontier plot.
pub struct PolicyPoint {
    pub policy: String,
    pub pod_hours: f64,
    pub minutes: f64,
    /// Minutes below the frontier at the same pod-hours (positive: beats the HPA).
    pub margin: Option<f64>,
    /// Pod-hours saved against the frontier at the same minutes: `Some(None)` when no HPA
    /// target is that healthy.
    pub saving: Option<Option<f64>>,
}

/// A model's risk family on the frontier plot: (level, pod-hours, under-provisioned minutes)
/// of each member, from the riskiest.
pub struct Family {
    pub model: String,
    pub members: Vec<(f64, f64, f64)>,
}

/// The frontier's y at `x`, by straight lines between its points (None outside them).
fn curve_at(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    curve.windows(2).find(|w| (w[0].0.min(w[1].0)..=w[0].0.max(w[1].0)).contains(&x)).map(|w| {
        let (a, b) = (w[0], w[1]);
        if b.0 == a.0 { a.1.max(b.1) } else { a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0) }
    })
}

/// The reactive HPA's curve over its targets (target, pod-hours, minutes) and every policy's
/// point: below the curve is better than the HPA at the same cost. The view is zoomed to the
/// policies (the frontier beyond them says nothing about them); points are numbered, and the
/// legend gives each number's policy and margin, so crowded points never hide a name.
pub fn frontier(path: &Path, hpa: &[(f64, f64, f64)], policies: &[PolicyPoint], families: &[Family]) -> Result<()> {
    const WIDTH: u32 = 1500;
    const LEGEND: u32 = 470;
    png(path, (WIDTH, 820), "Under-provisioning against cost: policies and the reactive HPA's frontier", |root| {
        let (chart_area, legend) = root.split_horizontally(WIDTH - LEGEND);
        let mut curve: Vec<(f64, f64)> = hpa.iter().map(|h| (h.1, h.2)).collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut xs: Vec<f64> = if policies.is_empty() { curve.iter().map(|c| c.0).collect() } else { policies.iter().map(|p| p.pod_hours).collect() };
        xs.extend(families.iter().flat_map(|f| f.members.iter().map(|m| m.1)));
        let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let pad = ((hi - lo) * 0.12).max(hi.abs() * 0.02).max(0.5);
        let (x0, x1) = (lo - pad, hi + pad);
        // The curve inside the view, cut where it leaves it.
        let mut shown: Vec<(f64, f64)> = curve.iter().copied().filter(|c| (x0..=x1).contains(&c.0)).collect();
        for edge in [x0, x1] {
            if let Some(y) = curve_at(&curve, edge) {
                shown.push((edge, y));
            }
        }
        shown.sort_by(|a, b| a.0.total_cmp(&b.0));
        let curve_top = shown.iter().map(|c| c.1).fold(0.0, f64::max);
        let points_top = policies.iter().map(|p| p.minutes).fold(0.0, f64::max);
        // A policy far above everything else would flatten the rest: it sits at the top edge.
        let top = (if curve_top > 0.0 { points_top.min(2.0 * curve_top).max(curve_top) } else { points_top }).max(1.0) * 1.15;
        let mut chart =
            ChartBuilder::on(&chart_area).margin(16).x_label_area_size(45).y_label_area_size(70).build_cartesian_2d(x0..x1, 0.0..top).map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("pod-hours on the hold-out (starting pods included)")
            .y_desc("under-provisioned minutes")
            .label_style((FONT, 14))
            .draw()
            .map_err(err)?;
        let clipped: Vec<(f64, f64)> = shown.iter().map(|&(x, y)| (x, y.min(top))).collect();
        chart.draw_series(LineSeries::new(clipped, ORANGE.stroke_width(3))).map_err(err)?;
        for h in hpa.iter().filter(|h| (x0..=x1).contains(&h.1) && h.2 <= top) {
            chart.draw_series(std::iter::once(Circle::new((h.1, h.2), 5, ORANGE.filled()))).map_err(err)?;
            let style = TextStyle::from((FONT, 14).into_font()).color(&ORANGE).pos(Pos::new(HPos::Right, VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(format!("HPA {:.0}%", h.0), (h.1, h.2), style))).map_err(err)?;
        }
        let mut bases: Vec<String> = Vec::new();
        let mut entries = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let name = PolicyName::from(p.policy.as_str());
            let base = name.stage().unwrap_or(&p.policy).to_string();
            // One colour per model or baseline: its `+hpa` twin shares it, with another marker.
            let c = match bases.iter().position(|b| *b == base) {
                Some(k) => color(k),
                None => {
                    bases.push(base);
                    color(bases.len() - 1)
                }
            };
            // Circles: a forecast the HPA's floor or a baseline drives; triangles: replicas as given.
            let floor = name.is_forecast();
            let at = (p.pod_hours, p.minutes.min(top * 0.98));
            if floor {
                chart.draw_series(std::iter::once(Circle::new(at, 8, c.filled()))).map_err(err)?;
            } else {
                chart.draw_series(std::iter::once(TriangleMarker::new(at, 9, c.filled()))).map_err(err)?;
            }
            // The number beside the marker, not on it.
            let style = TextStyle::from((FONT, 15).into_font().style(FontStyle::Bold)).color(&c).pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series(std::iter::once(EmptyElement::at(at) + Text::new(format!("{}", i + 1), (10, 0), style))).map_err(err)?;
            let margin = match p.margin {
                Some(m) if m >= 0.0 => format!("{m:.1} min below"),
                Some(m) => format!("{:.1} min above", -m),
                None => "no margin".into(),
            };
            let saving = match p.saving {
                Some(Some(s)) if s >= 0.0 => format!("; {s:.1} pod-h cheaper"),
                Some(Some(s)) => format!("; {:.1} pod-h dearer", -s),
                Some(None) => "; healthier than any HPA".into(),
                None => String::new(),
            };
            let clip = if p.minutes > top { format!(", ↑ {:.0} min", p.minutes) } else { String::new() };
            entries.push((format!("{:>2}  {}", i + 1, p.policy), format!("{margin}{saving}{clip}"), c, floor));
        }
        // Each risk family: a dashed line through its members, in its model's colour, each
        // member labelled with its level.
        for f in families {
            let c = bases.iter().position(|b| *b == f.model).map_or(color(bases.len()), color);
            let line: Vec<(f64, f64)> = f.members.iter().map(|m| (m.1, m.2.min(top * 0.98))).collect();
            chart.draw_series(DashedLineSeries::new(line, 7, 4, c.stroke_width(2))).map_err(err)?;
            for &(level, x, y) in &f.members {
                let at = (x, y.min(top * 0.98));
                chart.draw_series(std::iter::once(Cross::new(at, 5, c.stroke_width(2)))).map_err(err)?;
                let style = TextStyle::from((FONT, 12).into_font()).color(&c).pos(Pos::new(HPos::Left, VPos::Top));
                chart.draw_series(std::iter::once(EmptyElement::at(at) + Text::new(format!("{:.0}%", 100.0 * level), (6, 4), style))).map_err(err)?;
            }
        }
        // The legend: the curve, then each numbered point with its margin below the frontier.
        let y0 = 60;
        legend.draw(&Text::new("policy (vs the HPA: equal cost; equal health)", (10, y0 - 30), (FONT, 15).into_font().style(FontStyle::Bold))).map_err(err)?;
        legend.draw(&PathElement::new([(10, y0 + 8), (34, y0 + 8)], ORANGE.stroke_width(3))).map_err(err)?;
        legend.draw(&Text::new("reactive HPA at 40–80 % targets", (42, y0), (FONT, 14))).map_err(err)?;
        for (i, (name, margin, c, floor)) in entries.iter().enumerate() {
            let y = y0 + 30 + 40 * i as i32;
            if *floor {
                legend.draw(&Circle::new((22, y + 8), 7, c.filled())).map_err(err)?;
            } else {
                legend.draw(&TriangleMarker::new((22, y + 8), 8, c.filled())).map_err(err)?;
            }
            legend.draw(&Text::new(name.clone(), (42, y), (FONT, 14))).map_err(err)?;
            legend.draw(&Text::new(margin.clone(), (70, y + 17), TextStyle::from((FONT, 13).into_font()).color(&GREY))).map_err(err)?;
        }
        for (k, f) in families.iter().enumerate() {
            let y = y0 + 30 + 40 * (entries.len() + k) as i32;
            let c = bases.iter().position(|b| *b == f.model).map_or(color(bases.len()), color);
            legend.draw(&PathElement::new([(10, y + 8), (34, y + 8)], c.stroke_width(2))).map_err(err)?;
            legend.draw(&Text::new(format!("risk family of {}", f.model), (42, y), (FONT, 14))).map_err(err)?;
            legend
                .draw(&Text::new("(dashed; % = chance demand exceeds it)".to_string(), (70, y + 17), TextStyle::from((FONT, 13).into_font()).color(&GREY)))
                .map_err(err)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_is_interpolated_between_its_points_only() {
        let c = [(100.0, 50.0), (200.0, 10.0), (300.0, 0.0)];
        assert_eq!(curve_at(&c, 150.0), Some(30.0));
        assert_eq!(curve_at(&c, 300.0), Some(0.0));
        assert_eq!(curve_at(&c, 99.0), None);
    }

    #[test]
    fn a_frontier_with_crowded_and_far_points_is_drawn() {
        let hpa: Vec<(f64, f64, f64)> = (0..9).map(|i| (40.0 + 5.0 * i as f64, 850.0 - 48.0 * i as f64, 20.0 * (1.6f64).powi(i))).collect();
        let point = |policy: &str, pod_hours: f64, minutes: f64, margin: f64| PolicyPoint {
            policy: policy.into(),
            pod_hours,
            minutes,
            margin: Some(margin),
            saving: Some(Some(margin / 10.0)),
        };
        let policies = vec![
            point("recorded", 700.0, 95.0, -30.0),
            point("holt_winters", 590.0, 180.0, 60.0),
            point("train_random_forest_demand", 640.0, 130.0, -5.0),
            point("train_random_forest_demand+hpa", 642.0, 90.0, 31.0),
            point("train_lstm_cnn", 640.5, 5000.0, -4800.0),
            point("train_lstm_cnn+hpa", 641.0, 100.0, 20.0),
            PolicyPoint { policy: "never_short".into(), pod_hours: 800.0, minutes: 0.0, margin: Some(10.0), saving: Some(None) },
        ];
        let path = std::env::temp_dir().join(format!("frontier-{}.png", std::process::id()));
        let family = Family {
            model: "train_random_forest_demand".into(),
            members: vec![(0.5, 600.0, 150.0), (0.2, 625.0, 100.0), (0.1, 650.0, 70.0), (0.02, 700.0, 40.0)],
        };
        frontier(&path, &hpa, &policies, &[family]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        if std::env::var_os("KEEP_PLOTS").is_none() {
            std::fs::remove_file(&path).unwrap();
        }
    }
}
