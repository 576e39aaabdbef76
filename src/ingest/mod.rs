//! Ingest: list metrics files, read each under the data contract, and merge them into one
//! table ordered by (service, timestamp) with double writes set aside.

pub mod date_filter;
pub mod fingerprint;
pub mod parse;
pub mod read;
pub mod sorted_runs;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::row::{self, Kind, NUMERIC};
pub use parse::{FileError, ParsedFile, Reject, parse_file, parse_reader};

/// The services the old system knew; others are kept and pointed out.
pub const KNOWN_SERVICES: &[&str] = &["authen", "booking", "frontend", "order", "product", "profile", "recommender"];

/// The merged result of all files.
pub struct Merged {
    pub table: RecordBatch,
    pub rejects: Vec<Reject>,
    pub duplicates: u64,
    pub rows_per_service: BTreeMap<String, u64>,
}

/// A row's place in the merged order: (service rank, timestamp, piece, row in the piece).
pub(crate) type Place = (u32, i64, u32, u32);

/// Every row of `files` in (service, timestamp, piece, row) order, services ranked by name.
/// Pieces must come in file order, and a file's pieces in line order, so that the order breaks
/// ties by file, then by line.
pub(crate) fn sorted(files: &[ParsedFile]) -> (Vec<String>, Vec<Place>) {
    // Rank services by name once, so sorting compares integers.
    let mut names: Vec<&str> = files.iter().flat_map(|f| f.names.iter().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let rank: Vec<Vec<u32>> = files.iter().map(|f| f.names.iter().map(|n| names.binary_search(&n.as_str()).unwrap() as u32).collect()).collect();
    let total: usize = files.iter().map(ParsedFile::rows).sum();
    let mut order: Vec<Place> = Vec::with_capacity(total);
    for (fi, f) in files.iter().enumerate() {
        order.extend((0..f.rows()).map(|r| (rank[fi][f.services[r] as usize], f.timestamps[r], fi as u32, r as u32)));
    }
    order.sort_unstable();
    (names.into_iter().map(String::from).collect(), order)
}

/// Why a row with the same service and timestamp as an earlier one (at `first`, "file:line")
/// is set aside.
pub(crate) fn duplicate_reason(same_values: bool, first: &str) -> String {
    if same_values { format!("duplicate of {first}") } else { format!("same service and timestamp as {first} with different values; kept the first") }
}

/// Order rows by (service, timestamp, file order, line) and keep the first of each
/// (service, timestamp): a double write is quarantined as a duplicate of the row it repeats.
/// The files' row data is released column by column as the table is built (only their
/// rejects, notes and counts are left), so the rows are never held twice over.
pub fn merge(files: &mut [ParsedFile]) -> Result<Merged> {
    let (names, order) = sorted(files);
    let mut keep: Vec<Place> = Vec::with_capacity(order.len());
    let mut rejects = Vec::new();
    for &cur in &order {
        let (s, t, fi, ri) = cur;
        if let Some(&(ps, pt, pf, pr)) = keep.last()
            && ps == s
            && pt == t
        {
            let (f, p) = (&files[fi as usize], &files[pf as usize]);
            let same = (0..NUMERIC.len()).all(|k| p.values[k][pr as usize] == f.values[k][ri as usize]);
            rejects.push(Reject {
                file: f.file.clone(),
                line: f.lines[ri as usize],
                reason: duplicate_reason(same, &format!("{}:{}", p.file, p.lines[pr as usize])),
                raw: String::new(),
            });
            continue;
        }
        keep.push(cur);
    }
    let duplicates = rejects.len() as u64;
    let mut rows_per_service = BTreeMap::new();
    for &(s, ..) in &keep {
        *rows_per_service.entry(names[s as usize].clone()).or_insert(0) += 1;
    }
    drop(order);
    for f in files.iter_mut() {
        f.lines = Vec::new();
    }
    let columns = gather(files, &keep, &names);
    let table = RecordBatch::try_new(row::schema(), columns)?;
    Ok(Merged { table, rejects, duplicates, rows_per_service })
}

/// The rows at `keep` as the table's columns (timestamp, service, then `NUMERIC`). Each column
/// is gathered on its own, on all cores; its parsed values are released as it is done.
pub(crate) fn gather(files: &mut [ParsedFile], keep: &[Place], names: &[String]) -> Vec<ArrayRef> {
    let ts = TimestampMicrosecondArray::from_iter_values(keep.iter().map(|k| k.1));
    let svc: StringArray = keep.iter().map(|k| Some(names[k.0 as usize].as_str())).collect();
    for f in files.iter_mut() {
        f.timestamps = Vec::new();
        f.services = Vec::new();
    }
    let parsed: Vec<(Kind, Vec<Vec<f64>>)> =
        NUMERIC.iter().enumerate().map(|(k, (_, kind))| (*kind, files.iter_mut().map(|f| std::mem::take(&mut f.values[k])).collect())).collect();
    let gathered = crate::io::threads::map_on_threads(parsed, crate::io::threads::available(), |(kind, parts)| {
        let it = keep.iter().map(|&(_, _, f, r)| parts[f as usize][r as usize]);
        let array: ArrayRef =
            if kind == Kind::Count { Arc::new(Int64Array::from_iter_values(it.map(|v| v as i64))) } else { Arc::new(Float64Array::from_iter_values(it)) };
        array
    });
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ts), Arc::new(svc)];
    columns.extend(gathered);
    columns
}

pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

pub fn quarantine_batch(rejects: &[Reject]) -> Result<RecordBatch> {
    let file: StringArray = rejects.iter().map(|r| Some(r.file.as_str())).collect();
    let line = UInt64Array::from_iter_values(rejects.iter().map(|r| r.line));
    let reason: StringArray = rejects.iter().map(|r| Some(r.reason.as_str())).collect();
    let raw: StringArray = rejects.iter().map(|r| Some(r.raw.as_str())).collect();
    Ok(RecordBatch::try_new(quarantine_schema(), vec![Arc::new(file), Arc::new(line), Arc::new(reason), Arc::new(raw)])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, TimestampMicrosecondType};

    fn file(name: &str, rows: &[(&str, &str, &str)]) -> ParsedFile {
        let mut text = format!("{}\n", parse::tests::HEADER);
        for (ts, svc, cpu) in rows {
            text.push_str(&format!("2025-10-06T06:{ts},{svc},{cpu},50,0.1,40,40,0,100,90,120,3,0,0,0.5,1,256,512,0,0.01,0,0,0\n"));
        }
        parse_file(name, text.as_bytes(), 1).unwrap()
    }

    #[test]
    fn rows_come_out_by_service_then_time_and_double_writes_are_set_aside() {
        let mut files = [
            file("a.csv", &[("00:30", "order", "2"), ("00:00", "order", "1"), ("00:00", "cart", "9"), ("01:00", "order", "3")]),
            file("b.csv", &[("00:30", "order", "2"), ("01:00", "order", "4"), ("00:30", "cart", "8")]),
        ];
        let m = merge(&mut files).unwrap();
        let svc: Vec<&str> = m.table.column(1).as_string::<i32>().iter().flatten().collect();
        let ts: Vec<i64> = m.table.column(0).as_primitive::<TimestampMicrosecondType>().values().iter().map(|t| t % 3_600_000_000 / 30_000_000).collect();
        let cpu: Vec<f64> = m.table.column(2).as_primitive::<Float64Type>().values().to_vec();
        assert_eq!(svc, ["cart", "cart", "order", "order", "order"]);
        assert_eq!(ts, [0, 1, 0, 1, 2]);
        assert_eq!(cpu, [9.0, 8.0, 1.0, 2.0, 3.0]);
        let reasons: Vec<(&str, u64, &str)> = m.rejects.iter().map(|r| (r.file.as_str(), r.line, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [("b.csv", 2, "duplicate of a.csv:2"), ("b.csv", 3, "same service and timestamp as a.csv:5 with different values; kept the first"),]
        );
        assert_eq!(m.rows_per_service["order"], 3);
    }
}
