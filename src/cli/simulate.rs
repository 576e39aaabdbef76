//! `pipeline simulate`: write realistic metrics files.

use anyhow::Result;

use super::exit;
use crate::simulate::{self, label_mix, Options};

pub fn simulate(opts: Options) -> Result<u8> {
    let t0 = std::time::Instant::now();
    let summary = simulate::simulate(&opts)?;
    let mix = label_mix(&summary.samples);
    println!("wrote {} files to {} in {:.2}s", summary.files.len(), opts.out.display(), t0.elapsed().as_secs_f64());
    println!("{:<14} {:>7} {:>9} {:>8} {:>8} {:>8}", "service", "rows", "replicas", "up", "down", "keep");
    for (svc, rows) in &summary.rows {
        let (lo, hi) = summary.replicas[svc];
        let (u, d, k) = mix.get(svc).copied().unwrap_or_default();
        let total = (u + d + k).max(1) as f64;
        let pct = |x: u64| format!("{:.1}%", 100.0 * x as f64 / total);
        println!("{svc:<14} {rows:>7} {:>9} {:>8} {:>8} {:>8}", format!("{lo}–{hi}"), pct(u), pct(d), pct(k));
    }
    println!("(up / down / keep: how the seed's look-ahead rules label the rows)");
    Ok(exit::SUCCESS)
}
