//! HTTP load on a running `pipeline serve`: `cargo bench --bench serve_load -- URL INGEST.parquet [RATE] [SECONDS]`.
//!
//! One client thread per service of the exported ingest table, each replaying its service's
//! rows in time order (timestamps shifted forward on every pass, as the server requires) at a
//! fixed total rate over keep-alive connections. Latency is measured from each request's
//! scheduled send time, so a stalled server cannot hide its queue (no coordinated omission).
//! Prints requests/s, p50/p99/max latency and the count of non-200 answers.

use std::time::{Duration, Instant};

use autoscale::row::NUMERIC;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let url = format!("{}/predict", args.first().map(String::as_str).unwrap_or("http://127.0.0.1:8080"));
    let ingest = args.get(1).map(String::as_str).unwrap_or("ingest.parquet");
    let rate: f64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5000.0);
    let seconds: f64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(60.0);

    let t = autoscale::io::table::read_table(std::path::Path::new(ingest))?;
    let col = |n: &str, dt: &DataType| datafusion::arrow::compute::cast(t.column_by_name(n).expect("an ingest table"), dt);
    let ts = col("timestamp", &DataType::Int64)?;
    let ts = ts.as_primitive::<Int64Type>().values().to_vec();
    let svc = col("service_name", &DataType::Utf8)?;
    let svc: Vec<String> = svc.as_string::<i32>().iter().map(|s| s.unwrap_or("").to_string()).collect();
    let nums: Vec<Vec<f64>> =
        NUMERIC.iter().map(|(n, _)| col(n, &DataType::Float64).map(|c| c.as_primitive::<Float64Type>().values().to_vec())).collect::<Result<_, _>>()?;
    let mut by: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, service) in svc.iter().enumerate() {
        by.entry(service.clone()).or_default().push(i);
    }
    let threads = by.len();
    let interval = Duration::from_secs_f64(threads as f64 / rate);
    println!("{url}: {rate} req/s for {seconds} s over {threads} connections (one per service)");
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = by
        .into_iter()
        .map(|(service, mut rows)| {
            rows.sort_by_key(|&i| ts[i]);
            let bodies: Vec<(i64, serde_json::Map<String, serde_json::Value>)> = rows
                .iter()
                .map(|&i| {
                    let mut m = serde_json::Map::new();
                    m.insert("service_name".into(), service.clone().into());
                    for (j, (n, _)) in NUMERIC.iter().enumerate() {
                        m.insert(n.to_string(), nums[j][i].into());
                    }
                    (ts[i], m)
                })
                .collect();
            let span = bodies.last().map(|b| b.0).unwrap_or(0) - bodies.first().map(|b| b.0).unwrap_or(0) + 30_000_000;
            let url = url.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let (mut lat, mut errors, mut k) = (Vec::new(), 0u64, 0usize);
                let mut next = start;
                while next < end {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep(next - now);
                    }
                    let (t0, m) = &bodies[k % bodies.len()];
                    let shifted = t0 + span * (k / bodies.len()) as i64;
                    let mut m = m.clone();
                    let stamp = chrono::DateTime::from_timestamp_micros(shifted).unwrap().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
                    m.insert("timestamp".into(), stamp.into());
                    let body = serde_json::Value::Object(m).to_string();
                    match agent.post(&url).header("Content-Type", "application/json").send(&body) {
                        Ok(mut r) => {
                            let _ = r.body_mut().read_to_vec();
                            if r.status() != 200 {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                    lat.push((Instant::now() - next).as_secs_f64() * 1e3);
                    next += interval;
                    k += 1;
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for h in handles {
        let (l, e) = h.join().expect("a client thread");
        lat.extend(l);
        errors += e;
    }
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| lat[((lat.len() - 1) as f64 * f) as usize];
    println!("requests {}  ({:.0} req/s)  errors {errors}", lat.len(), lat.len() as f64 / seconds);
    println!("latency ms: p50 {:.3}  p99 {:.3}  max {:.3}", q(0.5), q(0.99), lat.last().copied().unwrap_or(0.0));
    Ok(())
}
