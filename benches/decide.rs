//! In-process decision latency per model: `cargo bench --bench decide -- INGEST.parquet [REGISTRY]`.
//!
//! Replays the rows of an exported ingest table through the predictor with each promoted model
//! (random_forest, lstm_cnn) and prints p50 / p99 / mean of `decide`, features included.
//! `benches/serve.sh` runs it with the HTTP load test.

use std::time::Instant;

use autoscale::artifacts::models::Registry;
use autoscale::row::NUMERIC;
use autoscale::serving::features::RawRow;
use autoscale::serving::predictor::{Guardrails, Loaded, Predictor};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let ingest = args.first().map(String::as_str).unwrap_or("ingest.parquet");
    let registry = Registry::at(args.get(1).map(String::as_str).unwrap_or("artifacts/models"));
    let t = autoscale::io::table::read_table(std::path::Path::new(ingest))?;
    let col = |n: &str, dt: &DataType| datafusion::arrow::compute::cast(t.column_by_name(n).expect("an ingest table"), dt);
    let ts = col("timestamp", &DataType::Int64)?;
    let ts = ts.as_primitive::<Int64Type>();
    let svc = col("service_name", &DataType::Utf8)?;
    let svc = svc.as_string::<i32>();
    let nums: Vec<_> = NUMERIC.iter().map(|(n, _)| col(n, &DataType::Float64)).collect::<Result<_, _>>()?;
    let mut rows: Vec<RawRow> = (0..t.num_rows())
        .map(|i| {
            let mut values = [0.0; NUMERIC.len()];
            for (j, c) in nums.iter().enumerate() {
                values[j] = c.as_primitive::<Float64Type>().value(i);
            }
            RawRow { timestamp: ts.value(i), service: svc.value(i).to_string(), values }
        })
        .collect();
    rows.sort_by_key(|r| r.timestamp);
    println!("{} rows, {} cores", rows.len(), std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("{:<14} {:>10} {:>10} {:>10} {:>8}", "model", "p50 µs", "p99 µs", "mean µs", "decided");
    for kind in autoscale::models::ModelKind::ALL {
        let Some(model) = Loaded::promoted(&registry, kind)? else {
            println!("{kind:<14} (no promoted version in {})", registry.root().display());
            continue;
        };
        autoscale::models::torch_runtime::set_threads(1);
        let p = Predictor::new(Some(model), Guardrails::default());
        let limit = if kind == autoscale::models::ModelKind::LstmCnn { 20_000 } else { rows.len() };
        let mut us = Vec::with_capacity(limit);
        for r in rows.iter().take(limit) {
            let t0 = Instant::now();
            let out = p.decide(r).map_err(|e| anyhow::anyhow!("{e}"))?;
            let dt = t0.elapsed().as_secs_f64() * 1e6;
            // Warm-up answers (LSTM-CNN before 12 rows) are not model decisions.
            if out.fallback.is_none() {
                us.push(dt);
            }
        }
        us.sort_by(f64::total_cmp);
        let q = |f: f64| us[((us.len() - 1) as f64 * f) as usize];
        println!("{kind:<14} {:>10.1} {:>10.1} {:>10.1} {:>8}", q(0.5), q(0.99), us.iter().sum::<f64>() / us.len() as f64, us.len());
    }
    Ok(())
}
