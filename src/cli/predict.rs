//! `pipeline predict ROW.json|-`: decisions for raw metrics rows from the promoted model, with
//! no server: the old quick start's "run one example through the trained model", and a way to
//! check a model by hand before `pipeline serve` answers with it.
//!
//! The input is one row (a JSON object with the collector's 23 fields), an array of rows, or
//! rows one after another (JSON Lines). They go through the same predictor the server uses, in
//! order, so several rows of a service give it the history its rolling features and the
//! LSTM-CNN's window need. One row prints one decision as indented JSON; several print one
//! decision per line.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::args::{GuardrailArgs, ModelArgs};
use super::exit;
use crate::artifacts::models::Registry;
use crate::invalid::InvalidInput;
use crate::serving::features::RawRow;
use crate::serving::predictor::{Loaded, Predictor};

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The rows: a .json file, or - for standard input.
    #[arg(value_name = "ROWS")]
    pub input: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub guardrails: GuardrailArgs,
}

pub fn predict(o: PredictArgs) -> Result<u8> {
    let guardrails = o.guardrails.check("predict")?;
    let name = if o.input == Path::new("-") { "standard input".to_string() } else { o.input.display().to_string() };
    let text = read_input(&o.input).with_context(|| format!("reading {name}"))?;
    let rows = parse_rows(&name, &text)?;
    let registry = Registry::at(&o.model.registry.dir);
    let Some(loaded) = Loaded::promoted(&registry, o.model.model)? else {
        bail!(
            "no promoted {} model in {}; train one with `pipeline run` (or promote one with `pipeline models promote`)",
            o.model.model,
            o.model.registry.dir.display()
        );
    };
    tracing::info!(model = %loaded.name, version = %loaded.version, "model loaded");
    let predictor = Predictor::new(Some(loaded), guardrails);
    let mut decisions = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let outcome = predictor.decide(row).map_err(|e| invalid(&name, rows.len(), i, e.to_string()))?;
        decisions.push(outcome.decision);
    }
    if let [one] = decisions.as_slice() {
        println!("{}", serde_json::to_string_pretty(one)?);
    } else {
        for d in &decisions {
            println!("{}", serde_json::to_string(d)?);
        }
    }
    Ok(exit::SUCCESS)
}

fn read_input(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
    }
}

/// Rows from an object, an array of objects, or objects one after another. A mistake is an
/// input error (exit 2) naming the file and the line or the row.
fn parse_rows(name: &str, text: &str) -> Result<Vec<RawRow>> {
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let v = v.map_err(|e| input_error(name, format!("not JSON: {e}")).at(e.line() as u32, e.column() as u32))?;
        match v {
            serde_json::Value::Array(items) => values.extend(items),
            other => values.push(other),
        }
    }
    if values.is_empty() {
        return Err(input_error(name, "no rows (expected a JSON object with the 23 metrics fields, an array of them, or one per line)".into()).into());
    }
    let n = values.len();
    values.iter().enumerate().map(|(i, v)| RawRow::from_json(v).map_err(|e| invalid(name, n, i, e.to_string()))).collect()
}

fn invalid(name: &str, rows: usize, i: usize, message: String) -> anyhow::Error {
    let at = if rows > 1 { format!("row {}: ", i + 1) } else { String::new() };
    input_error(name, format!("{at}{message}")).into()
}

fn input_error(name: &str, message: String) -> InvalidInput {
    InvalidInput::file(name, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(second: u32) -> String {
        let mut v = serde_json::json!({ "timestamp": format!("2025-10-13T10:00:{second:02}"), "service_name": "api" });
        for (n, _) in crate::row::NUMERIC {
            v[n] = serde_json::json!(1.0);
        }
        v.to_string()
    }

    #[test]
    fn rows_come_as_an_object_an_array_or_json_lines() {
        assert_eq!(parse_rows("r.json", &row(0)).unwrap().len(), 1);
        assert_eq!(parse_rows("r.json", &format!("[{}, {}]", row(0), row(30))).unwrap().len(), 2);
        assert_eq!(parse_rows("r.json", &format!("{}\n{}\n{}\n", row(0), row(10), row(20))).unwrap().len(), 3);
    }

    #[test]
    fn mistakes_name_the_file_and_where() {
        let e = parse_rows("rows.json", "{\"timestamp\": ").unwrap_err();
        assert!(e.to_string().starts_with("rows.json:1:"), "{e}");
        assert!(e.chain().any(|c| c.is::<InvalidInput>()), "an input error exits with 2");
        let bad = row(10).replace("\"cpu_usage_percent\":1.0", "\"cpu_usage_percent\":\"lots\"");
        let e = parse_rows("rows.json", &format!("[{}, {bad}]", row(0))).unwrap_err().to_string();
        assert!(e.contains("rows.json") && e.contains("row 2") && e.contains("cpu_usage_percent"), "{e}");
        assert!(parse_rows("empty.json", "  \n").unwrap_err().to_string().contains("no rows"));
    }
}
