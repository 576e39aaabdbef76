//! Reading one metrics CSV under the data contract: every good row is kept, every bad row is
//! set aside with its line and the reason, and only a file that cannot be read as a whole
//! (no header, a required column missing) is an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use crate::row::{self, NUMERIC};

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
    /// Service names seen in this file; rows refer to them by index.
    pub names: Vec<String>,
    pub services: Vec<u32>,
    pub timestamps: Vec<i64>,
    /// One vector per entry of `row::NUMERIC`.
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

    pub fn service(&self, row: usize) -> &str {
        &self.names[self.services[row] as usize]
    }

    fn intern(&mut self, name: &str) -> u32 {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                self.names.push(name.to_string());
                (self.names.len() - 1) as u32
            }
        }
    }

    /// Append another part of the same file, re-numbering its services.
    fn append(&mut self, mut other: ParsedFile) {
        let map: Vec<u32> = other.names.iter().map(|n| self.intern(n)).collect();
        if self.services.is_empty() && map.iter().enumerate().all(|(i, &m)| m == i as u32) {
            self.services = std::mem::take(&mut other.services);
        } else {
            self.services.extend(other.services.iter().map(|&s| map[s as usize]));
        }
        take_or_append(&mut self.timestamps, &mut other.timestamps);
        for (a, b) in self.values.iter_mut().zip(other.values.iter_mut()) {
            take_or_append(a, b);
        }
        take_or_append(&mut self.lines, &mut other.lines);
        take_or_append(&mut self.rejects, &mut other.rejects);
        self.notes.append(&mut other.notes);
        self.zoned_timestamps += other.zoned_timestamps;
        self.out_of_order += other.out_of_order;
    }
}

/// The first part's columns are moved in, not copied: a file's rows are never held twice.
fn take_or_append<T>(into: &mut Vec<T>, from: &mut Vec<T>) {
    if into.is_empty() {
        std::mem::swap(into, from);
    } else {
        into.append(from);
    }
}

/// Split a line into `out`; quoted fields (rare in collector output) go through the csv crate.
fn split_fields<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) {
    out.clear();
    // One pass over the bytes finds the commas, or a quote that sends the line to the csv crate.
    let bytes = line.as_bytes();
    let mut start = 0;
    let mut quoted = false;
    for (i, &c) in bytes.iter().enumerate() {
        if c == b',' {
            out.push(Cow::Borrowed(&line[start..i]));
            start = i + 1;
        } else if c == b'"' {
            quoted = true;
            break;
        }
    }
    if !quoted {
        out.push(Cow::Borrowed(&line[start..]));
        return;
    }
    out.clear();
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line.as_bytes());
    match r.records().next() {
        Some(Ok(rec)) => out.extend(rec.iter().map(|f| Cow::Owned(f.to_string()))),
        _ => out.extend(line.split(',').map(Cow::Borrowed)),
    }
}

/// Where each needed column sits in this file's header.
struct Columns {
    width: usize,
    ts: usize,
    service: usize,
    numeric: Vec<usize>,
}

/// Text above this size is parsed in parallel pieces.
const PARALLEL_BYTES: usize = 8 << 20;

/// Text read and parsed per step. A file is never held whole: its bytes (or, for `.csv.gz`, the
/// text they unpack to, six times as large) would sit beside the parsed columns until the end.
const BLOCK_BYTES: usize = 32 << 20;

/// Why a whole file is unusable (a bad row is quarantined instead, with its line).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{file}: not a readable gzip file ({source})")]
    Gzip { file: String, source: std::io::Error },
    #[error("{file}: cannot be read ({source})")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:1: no header row; the first line must name the 23 columns ({}, …)", row::column_names()[..3].join(", "))]
    NoHeader { file: String },
    #[error("{file}:1: the header names a column twice")]
    DuplicateColumn { file: String },
    #[error("{file}:1: required column{} missing: {}", if .columns.len() > 1 { "s" } else { "" }, .columns.join(", "))]
    MissingColumns { file: String, columns: Vec<String> },
}

/// Parse one file's bytes on up to `threads` threads. `Err` means the whole file is unusable.
pub fn parse_file(name: &str, bytes: &[u8], threads: usize) -> Result<ParsedFile, FileError> {
    let mut out: Option<ParsedFile> = None;
    parse_reader(name, bytes, threads, &mut |piece| match &mut out {
        Some(out) => out.append(piece),
        None => out = Some(piece),
    })?;
    Ok(out.unwrap_or_default())
}

/// [`parse_file`] reading `reader` block by block and handing each piece the threads parsed to
/// `sink` as soon as it is parsed, in file order, so a file is never held whole, read or parsed.
/// The last piece carries the file's notes and out-of-order count (it may have no rows).
/// `.gz` names are unpacked as they are read.
pub fn parse_reader(name: &str, reader: impl Read, threads: usize, sink: &mut dyn FnMut(ParsedFile)) -> Result<(), FileError> {
    parse_blocks(name, reader, threads, BLOCK_BYTES, sink)
}

/// Counts rows earlier than the previous row of their service, in file order, across pieces.
#[derive(Default)]
struct OrderCheck {
    names: Vec<String>,
    last: Vec<i64>,
    out_of_order: u64,
}

impl OrderCheck {
    fn see(&mut self, p: &ParsedFile) {
        let slot: Vec<usize> = p
            .names
            .iter()
            .map(|n| {
                self.names.iter().position(|m| m == n).unwrap_or_else(|| {
                    self.names.push(n.clone());
                    self.last.push(i64::MIN);
                    self.names.len() - 1
                })
            })
            .collect();
        for (s, t) in p.services.iter().zip(&p.timestamps) {
            let l = &mut self.last[slot[*s as usize]];
            if *t < *l {
                self.out_of_order += 1;
            }
            *l = (*l).max(*t);
        }
    }
}

fn parse_blocks(name: &str, reader: impl Read, threads: usize, block: usize, sink: &mut dyn FnMut(ParsedFile)) -> Result<(), FileError> {
    let mut reader: Box<dyn Read + '_> = if name.ends_with(".gz") { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    let read_error = |source: std::io::Error| {
        let file = name.to_string();
        if name.ends_with(".gz") { FileError::Gzip { file, source } } else { FileError::Read { file, source } }
    };
    let mut out = ParsedFile { file: name.to_string(), values: vec![Vec::new(); NUMERIC.len()], ..Default::default() };
    let mut order = OrderCheck::default();
    let mut anything = false;
    let mut buf: Vec<u8> = Vec::new();
    let mut want = block;
    let mut cols: Option<Columns> = None;
    let mut next_line = 2u64;
    loop {
        let got = (&mut reader).take((want - buf.len()) as u64).read_to_end(&mut buf).map_err(read_error)?;
        let eof = buf.len() < want || got == 0;
        let first_block = cols.is_none();
        let mut skip = 0;
        if first_block {
            if buf.starts_with("\u{feff}".as_bytes()) {
                skip = 3;
            }
            if eof && buf[skip..].iter().all(u8::is_ascii_whitespace) {
                out.notes.push(format!("{name}: empty file, nothing to read"));
                sink(out);
                return Ok(());
            }
        }
        // Whole lines only; a line longer than a block waits for the next read.
        let cut = if eof { buf.len() } else { buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
        if cut <= skip {
            if eof {
                break;
            }
            want += block;
            continue;
        }
        let text: Cow<str> = match std::str::from_utf8(&buf[skip..cut]) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&buf[skip..cut]),
        };
        let mut body: &str = &text;
        if first_block {
            let (header, rest) = text.split_once('\n').unwrap_or((&text, ""));
            cols = Some(read_header(name, header, &mut out.notes)?);
            body = rest;
        }
        let torn_tail = eof && !text.ends_with('\n');
        if !body.is_empty() {
            let (pieces, after) = parse_block(name, body, next_line, cols.as_ref().expect("header read"), threads, torn_tail);
            next_line = after;
            for p in pieces {
                order.see(&p);
                anything |= p.rows() > 0 || !p.rejects.is_empty();
                sink(p);
            }
        }
        drop(text);
        buf.drain(..cut);
        want = block.max(buf.len() + 1);
        if eof {
            break;
        }
    }
    if !anything {
        out.notes.push(format!("{name}: header only, no rows"));
    }
    out.out_of_order = order.out_of_order;
    sink(out);
    Ok(())
}

/// Where the columns are, from the header line; notes columns outside the schema.
fn read_header(name: &str, line: &str, notes: &mut Vec<String>) -> Result<Columns, FileError> {
    let mut fields = Vec::new();
    split_fields(line.trim_end_matches('\r'), &mut fields);
    let header: Vec<String> = fields.iter().map(|h| h.trim().to_string()).collect();
    let index: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (h.as_str(), i)).collect();
    if header.first().is_some_and(|h| row::parse_timestamp(h).is_ok()) {
        return Err(FileError::NoHeader { file: name.into() });
    }
    if index.len() != header.len() {
        return Err(FileError::DuplicateColumn { file: name.into() });
    }
    let missing: Vec<&str> = row::column_names().into_iter().filter(|c| !index.contains_key(c)).collect();
    if !missing.is_empty() {
        return Err(FileError::MissingColumns { file: name.into(), columns: missing.iter().map(|c| c.to_string()).collect() });
    }
    let known: Vec<&str> = row::column_names();
    let extra: Vec<&str> = header.iter().map(String::as_str).filter(|h| !known.contains(h)).collect();
    if !extra.is_empty() {
        notes.push(format!("{name}: ignored column{} not in the schema: {}", if extra.len() > 1 { "s" } else { "" }, extra.join(", ")));
    }
    Ok(Columns { width: header.len(), ts: index[row::TIMESTAMP], service: index[row::SERVICE], numeric: NUMERIC.iter().map(|(c, _)| index[c]).collect() })
}

/// Parse whole lines (the first is line `first_line`) on up to `threads` threads, cut at line
/// ends into pieces of similar size. `torn_tail`: the file ends with this text, without a newline.
/// Returns the pieces and the number of the line after the text.
fn parse_block(name: &str, body: &str, first_line: u64, cols: &Columns, threads: usize, torn_tail: bool) -> (Vec<ParsedFile>, u64) {
    let pieces = if body.len() >= PARALLEL_BYTES { threads.max(1) } else { 1 };
    let mut bounds = vec![0usize];
    for k in 1..pieces {
        let target = body.len() * k / pieces;
        let cut = body[target..].find('\n').map(|i| target + i + 1).unwrap_or(body.len());
        if cut > *bounds.last().unwrap() && cut < body.len() {
            bounds.push(cut);
        }
    }
    bounds.push(body.len());
    // (text, its first line number, its line count, whether it ends the file torn)
    let mut jobs = Vec::new();
    let mut line = first_line;
    for w in bounds.windows(2) {
        let chunk = &body[w[0]..w[1]];
        let newlines = chunk.bytes().filter(|&b| b == b'\n').count();
        jobs.push((chunk, line, newlines + 1, w[1] == body.len() && torn_tail));
        line += newlines as u64;
    }
    let parsed = crate::io::threads::map_on_threads(jobs, pieces, |(chunk, start, rows, torn)| parse_rows(name, chunk, start, rows, cols, torn));
    (parsed, line)
}

/// Parse a run of whole lines starting at line number `first_line`. `torn_tail`: the text
/// ends without a newline, so its last line may have been cut off by a killed writer.
/// `max_rows` (the line count) sizes the columns once: growing them by doubling held the old
/// and new buffers at once and left up to half of each unused.
fn parse_rows(name: &str, text: &str, first_line: u64, max_rows: usize, cols: &Columns, torn_tail: bool) -> ParsedFile {
    let mut out = ParsedFile { file: name.to_string(), values: vec![Vec::new(); NUMERIC.len()], ..Default::default() };
    let estimate = max_rows;
    out.timestamps.reserve(estimate);
    out.services.reserve(estimate);
    out.lines.reserve(estimate);
    for v in &mut out.values {
        v.reserve(estimate);
    }
    let mut fields: Vec<Cow<str>> = Vec::with_capacity(cols.width);
    let mut row: Vec<f64> = vec![0.0; NUMERIC.len()];
    let mut last_service: Option<(usize, u32)> = None;
    let mut lines = text.split('\n').peekable();
    let mut line_no = first_line - 1;
    while let Some(raw) = lines.next() {
        line_no += 1;
        let is_last = lines.peek().is_none();
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let reject = |reason: String| Reject { file: name.to_string(), line: line_no, reason, raw: line.chars().take(500).collect() };
        split_fields(line, &mut fields);
        if fields.len() != cols.width {
            let torn = is_last && torn_tail && fields.len() < cols.width;
            out.rejects.push(reject(if torn {
                format!("torn last line: the file ends mid-row ({} of {} fields; was the writer killed?)", fields.len(), cols.width)
            } else {
                format!("expected {} fields, found {}", cols.width, fields.len())
            }));
            continue;
        }
        let mut errors: Vec<String> = Vec::new();
        let ts = match row::parse_timestamp(&fields[cols.ts]) {
            Ok((t, zoned)) => {
                out.zoned_timestamps += zoned as u64;
                t
            }
            Err(e) => {
                errors.push(format!("column `timestamp`: {e}"));
                0
            }
        };
        let service = fields[cols.service].trim();
        if service.is_empty() {
            errors.push("column `service_name`: empty".into());
        }
        for (k, (col, kind)) in NUMERIC.iter().enumerate() {
            match row::parse_value(&fields[cols.numeric[k]], *kind) {
                Ok(v) => row[k] = v,
                Err(e) => errors.push(format!("column `{col}`: {e}")),
            }
        }
        if !errors.is_empty() {
            let mut reason = errors.join("; ");
            if is_last && torn_tail {
                reason = format!("torn last line? {reason}");
            }
            out.rejects.push(reject(reason));
            continue;
        }
        // Consecutive rows of one service are common; skip the name lookup for them.
        let sid = match last_service {
            Some((len, id)) if len == service.len() && out.names[id as usize] == service => id,
            _ => out.intern(service),
        };
        last_service = Some((service.len(), sid));
        out.timestamps.push(ts);
        out.services.push(sid);
        for (col, v) in out.values.iter_mut().zip(&row) {
            col.push(*v);
        }
        out.lines.push(line_no);
    }
    out
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
        let f = parse_file("m.csv", text.as_bytes(), 2).unwrap();
        assert_eq!(f.rows(), 1);
        assert_eq!(f.values[0], vec![75.5]);
        let reasons: Vec<(u64, &str)> = f.rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            vec![(3, "column `cpu_usage_percent`: NaN"), (4, "column `cpu_usage_percent`: `lots` is not a number"), (5, "column `cpu_usage_percent`: empty"),]
        );
    }

    #[test]
    fn torn_last_line_is_named() {
        let full = row("2025-10-06T06:00:00", "order", "75");
        let text = format!("{HEADER}\n{full}\n{}", &full[..40]);
        let f = parse_file("m.csv", text.as_bytes(), 2).unwrap();
        assert_eq!(f.rows(), 1);
        assert!(f.rejects[0].reason.starts_with("torn last line"), "{:?}", f.rejects);
        assert_eq!(f.rejects[0].line, 3);
    }

    #[test]
    fn missing_column_makes_file_unusable_extra_is_noted() {
        let no_cpu = HEADER.replace("cpu_usage_percent,", "");
        let e = parse_file("m.csv", format!("{no_cpu}\n").as_bytes(), 1).unwrap_err().to_string();
        assert!(e.contains("required column missing: cpu_usage_percent"), "{e}");
        let text = format!("{HEADER},gpu\n{},7\n", row("2025-10-06T06:00:00", "order", "1"));
        let f = parse_file("m.csv", text.as_bytes(), 2).unwrap();
        assert_eq!(f.rows(), 1);
        assert!(f.notes[0].contains("ignored column not in the schema: gpu"));
    }

    #[test]
    fn big_files_parse_the_same_in_parallel_pieces() {
        let mut text = format!("{HEADER}\n");
        for i in 0..120_000 {
            let svc = ["order", "product", "frontend"][i % 3];
            let line = row(&format!("2025-10-06T{:02}:{:02}:{:02}", 6 + i / 3600 % 16, i / 60 % 60, i % 60), svc, &(i % 97).to_string());
            text.push_str(&if i == 31_337 { line.replacen(",3,", ",x,", 1) } else { line });
            text.push('\n');
        }
        assert!(text.len() > PARALLEL_BYTES);
        let one = parse_file("big.csv", text.as_bytes(), 1).unwrap();
        let three = parse_file("big.csv", text.as_bytes(), 3).unwrap();
        assert_eq!(one.rows(), 119_999);
        assert_eq!(one.timestamps, three.timestamps);
        assert_eq!(one.lines, three.lines);
        assert_eq!(one.values, three.values);
        assert_eq!((0..one.rows()).map(|i| one.service(i)).collect::<Vec<_>>(), (0..three.rows()).map(|i| three.service(i)).collect::<Vec<_>>());
        assert_eq!(three.rejects.len(), 1);
        assert_eq!(three.rejects[0].line, 31_339);
    }

    #[test]
    fn reading_in_small_blocks_gives_the_same_rows_and_line_numbers() {
        let mut text = format!("\u{feff}{HEADER}\r\n");
        for i in 0..300 {
            let line = row(&format!("2025-10-06T06:{:02}:{:02}", i / 60, i % 60), ["order", "product"][i % 2], &(i % 89).to_string());
            text.push_str(&match i {
                17 => line.replacen(",3,", ",x,", 1),
                // Longer than a block: read on until its end.
                40 => format!("{line},{}", "9".repeat(700)),
                _ => line,
            });
            text.push_str("\r\n");
        }
        text.push_str("2025-10-06T07:00:00,order,1,2");
        let whole = parse_file("m.csv", text.as_bytes(), 1).unwrap();
        let mut blocks = Vec::new();
        parse_blocks("m.csv", text.as_bytes(), 2, 256, &mut |p| blocks.push(p)).unwrap();
        assert!(blocks.len() > 10, "{} pieces", blocks.len());
        let mut joined = blocks.into_iter();
        let mut b = joined.next().unwrap();
        joined.for_each(|p| b.append(p));
        assert_eq!(whole.rows(), 298);
        assert_eq!((&b.timestamps, &b.lines, &b.values), (&whole.timestamps, &whole.lines, &whole.values));
        let lines = |f: &ParsedFile| f.rejects.iter().map(|r| (r.line, r.reason.clone())).collect::<Vec<_>>();
        assert_eq!(lines(&b), lines(&whole));
        assert_eq!(whole.rejects.iter().map(|r| r.line).collect::<Vec<_>>(), vec![19, 42, 302]);
        assert!(whole.rejects[2].reason.starts_with("torn last line"));
    }

    #[test]
    fn empty_and_header_only_files_are_notes() {
        assert!(parse_file("e.csv", b"", 1).unwrap().notes[0].contains("empty file"));
        let f = parse_file("h.csv", format!("{HEADER}\n").as_bytes(), 1).unwrap();
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
        let f = parse_file("m.csv.gz", &gz.finish().unwrap(), 1).unwrap();
        assert_eq!(f.rows(), 1);
        assert_eq!(f.service(0), "order");
    }
}
