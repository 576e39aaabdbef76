//! Reading one metrics CSV under the data contract: every good row is kept, every bad row is
//! set aside with its line and the reason, and only a file that cannot be read as a whole
//! (no header, a required column missing) is an error.

use std::collections::HashMap;
use std::io::Read;

use crate::metrics::{self, NUMERIC};

/// A row set aside, with enough to find and fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

/// The good rows of one file, column by column.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub file: String,
    pub timestamps: Vec<i64>,
    pub services: Vec<String>,
    /// One vector per entry of `metrics::NUMERIC`.
    pub values: Vec<Vec<f64>>,
    pub lines: Vec<u64>,
    pub rejects: Vec<Reject>,
    /// Things a user should know that lost no data (extra columns, zoned timestamps).
    pub notes: Vec<String>,
    pub zoned_timestamps: u64,
    pub out_of_order: u64,
}

impl ParsedFile {
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }
}

fn decompress(name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    if name.ends_with(".gz") {
        let mut out = Vec::with_capacity(bytes.len() * 6);
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("{name}: not a readable gzip file ({e})"))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn split_fields(line: &str) -> Vec<String> {
    if !line.contains('"') {
        return line.split(',').map(str::to_string).collect();
    }
    // Quoted fields are rare in collector output; let the csv crate handle their escapes.
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line.as_bytes());
    match r.records().next() {
        Some(Ok(rec)) => rec.iter().map(str::to_string).collect(),
        _ => line.split(',').map(str::to_string).collect(),
    }
}

/// Parse one file's bytes. `Err` means the whole file is unusable, with the reason.
pub fn parse_file(name: &str, bytes: &[u8]) -> Result<ParsedFile, String> {
    let data = decompress(name, bytes)?;
    let text = String::from_utf8_lossy(&data);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = ParsedFile { file: name.to_string(), values: vec![Vec::new(); NUMERIC.len()], ..Default::default() };
    if text.trim().is_empty() {
        out.notes.push(format!("{name}: empty file, nothing to read"));
        return Ok(out);
    }
    let ends_with_newline = text.ends_with('\n');
    let mut lines = text.split('\n').enumerate().peekable();
    let (_, header) = lines.next().expect("non-empty text has a first line");
    let header: Vec<String> = split_fields(header.trim_end_matches('\r')).into_iter().map(|h| h.trim().to_string()).collect();
    let index: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (h.as_str(), i)).collect();
    if header.first().is_some_and(|h| metrics::parse_timestamp(h).is_ok()) {
        return Err(format!("{name}:1: no header row; the first line must name the 23 columns ({}, …)", metrics::column_names()[..3].join(", ")));
    }
    if index.len() != header.len() {
        return Err(format!("{name}:1: the header names a column twice"));
    }
    let missing: Vec<&str> = metrics::column_names().into_iter().filter(|c| !index.contains_key(c)).collect();
    if !missing.is_empty() {
        return Err(format!("{name}:1: required column{} missing: {}", if missing.len() > 1 { "s" } else { "" }, missing.join(", ")));
    }
    let known: Vec<&str> = metrics::column_names();
    let extra: Vec<&str> = header.iter().map(String::as_str).filter(|h| !known.contains(h)).collect();
    if !extra.is_empty() {
        out.notes.push(format!("{name}: ignored column{} not in the schema: {}", if extra.len() > 1 { "s" } else { "" }, extra.join(", ")));
    }
    let ts_i = index[metrics::TIMESTAMP];
    let svc_i = index[metrics::SERVICE];
    let num_i: Vec<usize> = NUMERIC.iter().map(|(c, _)| index[c]).collect();
    let mut last_ts: HashMap<String, i64> = HashMap::new();
    let mut fields_buf: Vec<f64> = vec![0.0; NUMERIC.len()];

    while let Some((i, raw)) = lines.next() {
        let line_no = i as u64 + 1;
        let is_last = lines.peek().is_none();
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let reject = |reason: String| Reject { file: name.to_string(), line: line_no, reason, raw: line.chars().take(500).collect() };
        let fields = split_fields(line);
        if fields.len() != header.len() {
            let torn = is_last && !ends_with_newline && fields.len() < header.len();
            out.rejects.push(reject(if torn {
                format!("torn last line: the file ends mid-row ({} of {} fields; was the writer killed?)", fields.len(), header.len())
            } else {
                format!("expected {} fields, found {}", header.len(), fields.len())
            }));
            continue;
        }
        let mut errors: Vec<String> = Vec::new();
        let ts = match metrics::parse_timestamp(&fields[ts_i]) {
            Ok((t, zoned)) => {
                if zoned {
                    out.zoned_timestamps += 1;
                }
                Some(t)
            }
            Err(e) => {
                errors.push(format!("column `timestamp`: {e}"));
                None
            }
        };
        let service = fields[svc_i].trim();
        if service.is_empty() {
            errors.push("column `service_name`: empty".into());
        }
        for (k, (col, kind)) in NUMERIC.iter().enumerate() {
            match metrics::parse_value(&fields[num_i[k]], *kind) {
                Ok(v) => fields_buf[k] = v,
                Err(e) => errors.push(format!("column `{col}`: {e}")),
            }
        }
        if !errors.is_empty() {
            let torn = is_last && !ends_with_newline;
            let mut reason = errors.join("; ");
            if torn {
                reason = format!("torn last line? {reason}");
            }
            out.rejects.push(reject(reason));
            continue;
        }
        let ts = ts.unwrap();
        match last_ts.get_mut(service) {
            Some(prev) => {
                if ts < *prev {
                    out.out_of_order += 1;
                }
                *prev = (*prev).max(ts);
            }
            None => {
                last_ts.insert(service.to_string(), ts);
            }
        }
        out.timestamps.push(ts);
        out.services.push(service.to_string());
        for (k, v) in fields_buf.iter().enumerate() {
            out.values[k].push(*v);
        }
        out.lines.push(line_no);
    }
    if out.rows() == 0 && out.rejects.is_empty() {
        out.notes.push(format!("{name}: header only, no rows"));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const HEADER: &str = "timestamp,service_name,cpu_usage_percent,cpu_usage_percent_last_5_min,cpu_usage_percent_slope,ram_usage_percent,ram_usage_percent_last_5_min,ram_usage_percent_slope,request_count_per_second,request_count_per_second_last_5_min,response_time_ms,replica_count,is_holiday,is_weekend,cpu_request,cpu_limit,ram_request,ram_limit,queue_length,error_rate,pod_restart_count,node_cpu_pressure_flag,node_memory_pressure_flag";

    fn row(ts: &str, svc: &str, cpu: &str) -> String {
        format!("{ts},{svc},{cpu},50,0.1,40,40,0,100,90,120,3,0,0,0.5,1,256,512,0,0.01,0,0,0")
    }

    #[test]
    fn good_rows_are_kept_bad_rows_quarantined() {
        let text = format!(
            "{HEADER}\n{}\n{}\n{}\n{}\n",
            row("2025-10-06T06:00:00.937643", "order", "75.5"),
            row("2025-10-06T06:00:30", "order", "NaN"),
            row("2025-10-06T06:01:00", "order", "lots"),
            row("2025-10-06T06:01:30", "order", ""),
        );
        let f = parse_file("m.csv", text.as_bytes()).unwrap();
        assert_eq!(f.rows(), 1);
        assert_eq!(f.values[0], vec![75.5]);
        let reasons: Vec<(u64, &str)> = f.rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(reasons, vec![
            (3, "column `cpu_usage_percent`: NaN"),
            (4, "column `cpu_usage_percent`: `lots` is not a number"),
            (5, "column `cpu_usage_percent`: empty"),
        ]);
    }

    #[test]
    fn torn_last_line_is_named() {
        let full = row("2025-10-06T06:00:00", "order", "75");
        let text = format!("{HEADER}\n{full}\n{}", &full[..40]);
        let f = parse_file("m.csv", text.as_bytes()).unwrap();
        assert_eq!(f.rows(), 1);
        assert!(f.rejects[0].reason.starts_with("torn last line"), "{:?}", f.rejects);
        assert_eq!(f.rejects[0].line, 3);
    }

    #[test]
    fn missing_column_makes_file_unusable_extra_is_noted() {
        let no_cpu = HEADER.replace("cpu_usage_percent,", "");
        let e = parse_file("m.csv", format!("{no_cpu}\n").as_bytes()).unwrap_err();
        assert!(e.contains("required column missing: cpu_usage_percent"), "{e}");
        let text = format!("{HEADER},gpu\n{},7\n", row("2025-10-06T06:00:00", "order", "1"));
        let f = parse_file("m.csv", text.as_bytes()).unwrap();
        assert_eq!(f.rows(), 1);
        assert!(f.notes[0].contains("ignored column not in the schema: gpu"));
    }

    #[test]
    fn empty_and_header_only_files_are_notes() {
        assert!(parse_file("e.csv", b"").unwrap().notes[0].contains("empty file"));
        let f = parse_file("h.csv", format!("{HEADER}\n").as_bytes()).unwrap();
        assert_eq!(f.rows(), 0);
        assert!(f.notes[0].contains("header only"));
    }

    #[test]
    fn reordered_columns_and_crlf_and_gzip() {
        let mut cols: Vec<&str> = HEADER.split(',').collect();
        cols.swap(0, 1);
        let r = row("2025-10-06T06:00:00", "order", "5");
        let mut vals: Vec<&str> = r.split(',').collect();
        vals.swap(0, 1);
        let text = format!("{}\r\n{}\r\n", cols.join(","), vals.join(","));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let f = parse_file("m.csv.gz", &gz.finish().unwrap()).unwrap();
        assert_eq!(f.rows(), 1);
        assert_eq!(f.services, vec!["order"]);
    }
}
