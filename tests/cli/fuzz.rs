//! Fuzzing of the three inputs that come from outside: the pipeline YAML, the metrics CSV and
//! the `/predict` JSON. Each target mutates a valid input (or makes one up) and checks that the
//! code answers with a value or an error that names where, and never panics.
//!
//! The suite runs a few hundred cases per target; for a longer hunt:
//! `PROPTEST_CASES=100000 cargo test --release --test cli fuzz::`. Failures proptest finds are kept in
//! `tests/cli/fuzz.proptest-regressions` and replayed first on every run.

use crate::common;
use common::row_json;

use std::path::Path;

use autoscale::dag::spec;
use autoscale::ingest::parse_file;
use autoscale::serving::features::RawRow;
use autoscale::serving::predictor::{Guardrails, Predictor};
use proptest::prelude::*;
use serde_json::Value;

/// Text that means something to a YAML, CSV or JSON parser, for mutations to insert.
const TOKENS: &[&str] = &[
    "\n",
    "\r\n",
    ":",
    ": ",
    "- ",
    "-",
    "{",
    "}",
    "[",
    "]",
    "${",
    "${seed}",
    "${nope}",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "'",
    "\"",
    "\t",
    "  ",
    "~",
    "null",
    ".nan",
    "1e999",
    "-1",
    "0",
    "op: ingest",
    "deps: [features]",
    "deps: [labels, labels]",
    ",",
    ",,",
    "\"a,b\"",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "\u{feff}",
    "é",
    "\u{0}",
    "9999999999999999999999",
    "18446744073709551617",
    "2024-13-45 25:61:61",
    "2024-10-15T00:00:00+02:00",
    "true",
    "#",
    "%",
    "\\",
];

/// Edits applied to a text: (where, what) pairs; `what` picks delete, insert a token, or cut.
fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, prop::sample::Index)>> {
    prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<prop::sample::Index>()), 1..6)
}

fn mutate(text: &str, edits: &[(prop::sample::Index, u8, prop::sample::Index)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, what, token) in edits {
        let i = if chars.is_empty() { 0 } else { at.index(chars.len()) };
        match what {
            0 => {
                let end = (i + 1 + token.index(12)).min(chars.len());
                chars.drain(i..end);
            }
            1 | 2 => {
                let t = token.get(TOKENS);
                chars.splice(i..i, t.chars());
            }
            _ => chars.truncate(i),
        }
    }
    chars.into_iter().collect()
}

/// The pipeline the YAML mutations start from, read once for all cases.
static TRAIN_YAML: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| std::fs::read_to_string(common::repo().join("pipelines/train.yaml")).unwrap());

/// Parse a pipeline and build every stage's op from it, as `plan` does before anything runs.
fn check_pipeline(source: &str) {
    // Line breaks as YAML (and editors) count them: \r\n, \n or a lone \r.
    let lines = source.replace("\r\n", "\n").matches(['\n', '\r']).count() as u32 + 1;
    match spec::parse(Path::new("pipelines/fuzz.yaml"), source, &[]) {
        Ok(p) => {
            // Every stage, in dependency order, with what was built upstream of it.
            let mut built = autoscale::dag::stage::Built::new();
            for name in autoscale::dag::graph::topo_order(&p.stages).expect("parse rejects cycles") {
                let s = &p.stages[&name];
                match autoscale::ops::build(&p, s, &built) {
                    Ok(stage) => {
                        built.insert(name, stage);
                    }
                    Err(e) => assert!(e.stage.as_deref() == Some(s.name.as_str()), "a stage's error must name it: {e}"),
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("fuzz.yaml"), "the error must name the file: {shown}");
            if let Some(loc) = e.loc {
                assert!(loc.line <= lines, "line {} is past the end ({lines} lines): {shown}", loc.line);
            }
        }
    }
}

/// A valid data row for the collector's 23 columns.
fn csv_row(minute: u32, service: &str) -> String {
    common::row(&format!("2024-10-15 {:02}:{:02}:00", minute / 60 % 24, minute % 60), service, 40.0 + (minute % 50) as f64)
}

fn check_csv(name: &str, bytes: &[u8]) {
    let lines = bytes.split(|b| *b == b'\n').count() as u64;
    let Ok(parsed) = parse_file(name, bytes, 2) else { return };
    let mut seen = std::collections::HashSet::new();
    for (row, line) in parsed.lines.iter().enumerate() {
        assert!((2..=lines).contains(line), "row {row} claims line {line} of {lines}");
        assert!(seen.insert(*line), "line {line} accepted twice");
        for column in &parsed.values {
            assert!(column[row].is_finite(), "line {line}: a kept value must be finite, got {}", column[row]);
        }
    }
    for r in &parsed.rejects {
        assert!((1..=lines).contains(&r.line), "a reject claims line {} of {lines}", r.line);
        assert!(seen.insert(r.line), "line {} both kept and rejected", r.line);
        assert!(!r.reason.is_empty());
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        prop::sample::select(TOKENS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_predict(predictor: &Predictor, body: &Value) {
    let Ok(row) = RawRow::from_json(body) else { return };
    match predictor.decide(&row) {
        Ok(outcome) => {
            let d = outcome.decision;
            assert_eq!(d.service_name, row.service);
            // Without a model the reactive HPA decides, within the guardrails, and says so.
            assert!((1..=10).contains(&d.predicted_replicas), "{d:?}");
            assert!(d.reasoning.starts_with("fallback: no promoted model is loaded; the reactive HPA decides"), "{d:?}");
        }
        Err(e) => assert_eq!(e.field, "timestamp", "only an out-of-order row is refused after parsing: {e:?}"),
    }
}

proptest! {
    #[test]
    fn pipeline_yaml_mutations(e in edits()) {
        check_pipeline(&mutate(&TRAIN_YAML, &e));
    }

    #[test]
    fn pipeline_yaml_made_up(source in ".{0,200}") {
        check_pipeline(&source);
    }

    #[test]
    fn metrics_csv_mutations(rows in 1u32..30, e in edits(), crlf in any::<bool>(), services in 1usize..4) {
        let names = ["api", "order", "db"];
        let mut text = common::HEADER.to_string();
        for m in 0..rows {
            text.push_str(if crlf { "\r\n" } else { "\n" });
            text.push_str(&csv_row(m, names[m as usize % services]));
        }
        check_csv("metrics_20241015.csv", mutate(&text, &e).as_bytes());
    }

    #[test]
    fn metrics_csv_made_up(bytes in prop::collection::vec(any::<u8>(), 0..400), gz in any::<bool>()) {
        check_csv(if gz { "metrics_20241015.csv.gz" } else { "metrics_20241015.csv" }, &bytes);
    }

    /// Numbers as a collector may write them, up to 25 digits: ingest's fast path for plain
    /// decimals must read each as the general float parser does (a 20-digit mantissa once
    /// wrapped around u64 and read as a small number).
    #[test]
    fn metrics_numbers_read_as_the_float_parser_reads_them(digits in "[0-9]{1,25}", point in any::<prop::sample::Index>(), negative in any::<bool>()) {
        let at = point.index(digits.len() + 1);
        let text = format!("{}{}.{}", if negative { "-" } else { "" }, &digits[..at], &digits[at..]);
        let text = text.trim_end_matches('.');
        let expected: f64 = text.parse().unwrap();
        let got = autoscale::row::parse_value(text, autoscale::row::Kind::Signed).unwrap();
        prop_assert_eq!(got.to_bits(), expected.to_bits(), "{}", text);
    }

    #[test]
    fn predict_json_fields(changes in prop::collection::vec((any::<prop::sample::Index>(), prop::option::of(json_value())), 1..4)) {
        let predictor = Predictor::new(None, Guardrails::default());
        let mut body = row_json("checkout", 0, 40.0);
        let names: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        for (which, value) in changes {
            let field = which.get(&names).clone();
            let obj = body.as_object_mut().unwrap();
            match value {
                Some(v) => { obj.insert(field, v); }
                None => { obj.remove(&field); }
            }
        }
        check_predict(&predictor, &row_json("checkout", 0, 40.0));
        check_predict(&predictor, &body);
    }

    #[test]
    fn predict_json_made_up(text in ".{0,200}", value in json_value()) {
        let predictor = Predictor::new(None, Guardrails::default());
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            check_predict(&predictor, &v);
        }
        check_predict(&predictor, &value);
    }
}

/// A history of rows for one service, in order and then repeated: the repeat is refused.
#[test]
fn predict_keeps_time_order_per_service() {
    let predictor = Predictor::new(None, Guardrails::default());
    for m in 0..40 {
        check_predict(&predictor, &row_json("checkout", m, 40.0));
    }
    let again = RawRow::from_json(&row_json("checkout", 10, 40.0)).unwrap();
    assert_eq!(predictor.decide(&again).err().map(|e| e.field), Some("timestamp".to_string()));
}

/// Aliases that expand to billions of nodes must not take the machine down.
#[test]
fn a_yaml_bomb_is_refused() {
    let mut bomb = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
        let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
        bomb.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    bomb.push_str("stages:\n  ingest: {op: ingest}\n");
    let started = std::time::Instant::now();
    assert!(spec::parse(Path::new("bomb.yaml"), &bomb, &[]).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
