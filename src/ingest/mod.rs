//! Ingest: list metrics files, read each under the data contract, and merge them into one
//! table ordered by (service, timestamp) with double writes set aside.

pub mod date_filter;
pub mod parse;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::metrics::{self, Kind, NUMERIC};
pub use parse::{parse_file, ParsedFile, Reject};

/// The services the old system knew; others are kept and pointed out.
pub const KNOWN_SERVICES: &[&str] = &["authen", "booking", "frontend", "order", "product", "profile", "recommender"];

/// The merged result of all files.
pub struct Merged {
    pub table: RecordBatch,
    pub rejects: Vec<Reject>,
    pub duplicates: u64,
    pub rows_per_service: BTreeMap<String, u64>,
}

/// Order rows by (service, timestamp, file order, line) and keep the first of each
/// (service, timestamp): a double write is quarantined as a duplicate of the row it repeats.
pub fn merge(files: &[ParsedFile]) -> Result<Merged> {
    let mut order: Vec<(u32, u32)> = Vec::new(); // (file, row)
    for (fi, f) in files.iter().enumerate() {
        order.extend((0..f.rows() as u32).map(|r| (fi as u32, r)));
    }
    order.sort_by(|&(fa, ra), &(fb, rb)| {
        let (a, b) = (&files[fa as usize], &files[fb as usize]);
        a.services[ra as usize]
            .cmp(&b.services[rb as usize])
            .then(a.timestamps[ra as usize].cmp(&b.timestamps[rb as usize]))
            .then((fa, ra).cmp(&(fb, rb)))
    });
    let mut keep: Vec<(u32, u32)> = Vec::with_capacity(order.len());
    let mut rejects = Vec::new();
    for &(fi, ri) in &order {
        let f = &files[fi as usize];
        let r = ri as usize;
        if let Some(&(pf, pr)) = keep.last() {
            let p = &files[pf as usize];
            if p.services[pr as usize] == f.services[r] && p.timestamps[pr as usize] == f.timestamps[r] {
                let same = (0..NUMERIC.len()).all(|k| p.values[k][pr as usize] == f.values[k][r]);
                let first = format!("{}:{}", p.file, p.lines[pr as usize]);
                rejects.push(Reject {
                    file: f.file.clone(),
                    line: f.lines[r],
                    reason: if same {
                        format!("duplicate of {first}")
                    } else {
                        format!("same service and timestamp as {first} with different values; kept the first")
                    },
                    raw: String::new(),
                });
                continue;
            }
        }
        keep.push((fi, ri));
    }
    let duplicates = rejects.len() as u64;
    let mut rows_per_service = BTreeMap::new();
    for &(fi, ri) in &keep {
        *rows_per_service.entry(files[fi as usize].services[ri as usize].clone()).or_insert(0) += 1;
    }
    let ts = TimestampMicrosecondArray::from_iter_values(keep.iter().map(|&(f, r)| files[f as usize].timestamps[r as usize]));
    let svc: StringArray = keep.iter().map(|&(f, r)| Some(files[f as usize].services[r as usize].as_str())).collect();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ts), Arc::new(svc)];
    for (k, (_, kind)) in NUMERIC.iter().enumerate() {
        let it = keep.iter().map(|&(f, r)| files[f as usize].values[k][r as usize]);
        columns.push(if *kind == Kind::Count {
            Arc::new(Int64Array::from_iter_values(it.map(|v| v as i64)))
        } else {
            Arc::new(Float64Array::from_iter_values(it))
        });
    }
    let table = RecordBatch::try_new(metrics::schema(), columns)?;
    Ok(Merged { table, rejects, duplicates, rows_per_service })
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
