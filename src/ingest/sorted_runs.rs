//! Ingest in bounded memory. Parsed pieces are gathered until they reach `run_rows` rows; a
//! table that fits is merged in memory ([`merge`]), a larger one is written as sorted runs
//! (Parquet under `artifacts/spill`, removed when done) and merged back run against run in the
//! same (service, timestamp, file, line) order, with the same double writes set aside. Memory
//! then holds one run while it is sorted, and a batch per run while they are merged.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimestampMicrosecondType, UInt32Type, UInt64Type};
use datafusion::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{ParsedFile, Reject, duplicate_reason, gather, merge, sorted};
use crate::io::table::TableWriter;
use crate::row::{self, NUMERIC};

/// Bytes a parsed row takes while its run is sorted and gathered: its parsed values (21 f64,
/// timestamp, service, line), its place in the order, and the gathered table beside them.
pub const HELD_ROW_BYTES: u64 = 400;

/// What ingest holds at most for one run (1.3M rows) when `run --memory` leaves it that much:
/// past it a table is merged from runs on disk, which costs a write and a read of each row.
pub const RUN_BYTES: u64 = 512 << 20;

/// Fewer rows than this per run would only make many small files.
const MIN_RUN_ROWS: usize = 4096;

/// Rows read from each run at a time while merging, and written per output batch.
const READ_ROWS: usize = 8192;
const WRITE_ROWS: usize = 65_536;

/// Rows per sorted run for a stage that may hold `memory` bytes.
pub fn run_rows(memory: u64) -> usize {
    ((memory / HELD_ROW_BYTES) as usize).max(MIN_RUN_ROWS)
}

/// What ingest found, once merged and written.
pub struct Ingested {
    pub rows: u64,
    /// Rows set aside while parsing, in file and line order.
    pub invalid: Vec<Reject>,
    /// Double writes set aside while merging, in the table's order.
    pub duplicates: Vec<Reject>,
    pub rows_per_service: std::collections::BTreeMap<String, u64>,
    /// Each file's notes, in file order.
    pub notes: Vec<String>,
    pub zoned_timestamps: u64,
    pub out_of_order: u64,
    /// Sorted runs written to disk (0: merged in memory).
    pub spilled_runs: usize,
}

/// The parsed pieces of every file, as they arrive (in any order), on their way to one table.
pub struct Runs {
    /// Every file's name, in file order: a row's file is its index here.
    files: Vec<String>,
    file_ids: HashMap<String, u32>,
    run_rows: usize,
    spill_parent: PathBuf,
    spill: Option<tempfile::TempDir>,
    runs: Vec<PathBuf>,
    pending: Vec<ParsedFile>,
    pending_rows: usize,
    names: BTreeSet<String>,
    rows: u64,
    invalid: Vec<(u32, Reject)>,
    notes: Vec<(u32, Vec<String>)>,
    zoned_timestamps: u64,
    out_of_order: u64,
}

impl Runs {
    /// `files`: the names pieces will carry, in file order (which breaks ties between double
    /// writes); `spill_parent`: where runs go when there is more than one.
    pub fn new(files: Vec<String>, run_rows: usize, spill_parent: PathBuf) -> Runs {
        let file_ids = files.iter().enumerate().map(|(i, f)| (f.clone(), i as u32)).collect();
        Runs {
            files,
            file_ids,
            run_rows: run_rows.max(1),
            spill_parent,
            spill: None,
            runs: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            names: BTreeSet::new(),
            rows: 0,
            invalid: Vec::new(),
            notes: Vec::new(),
            zoned_timestamps: 0,
            out_of_order: 0,
        }
    }

    /// Rows parsed so far (kept and double writes).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows set aside while parsing so far.
    /// In file and line order, however the files' pieces arrived.
    pub fn invalid(&mut self) -> impl Iterator<Item = &Reject> {
        self.invalid.sort_by_key(|(id, r)| (*id, r.line));
        self.invalid.iter().map(|(_, r)| r)
    }

    fn file_id(&self, name: &str) -> u32 {
        *self.file_ids.get(name).unwrap_or_else(|| panic!("a piece of {name}, which is not among the listed files"))
    }

    pub fn push(&mut self, mut piece: ParsedFile) -> Result<()> {
        let id = self.file_id(&piece.file);
        self.invalid.extend(piece.rejects.drain(..).map(|r| (id, r)));
        if !piece.notes.is_empty() {
            self.notes.push((id, std::mem::take(&mut piece.notes)));
        }
        self.zoned_timestamps += piece.zoned_timestamps;
        self.out_of_order += piece.out_of_order;
        if piece.rows() == 0 {
            return Ok(());
        }
        self.names.extend(piece.names.iter().cloned());
        self.rows += piece.rows() as u64;
        self.pending_rows += piece.rows();
        self.pending.push(piece);
        if self.pending_rows >= self.run_rows {
            self.spill_pending()?;
        }
        Ok(())
    }

    /// Pieces in file order, a file's pieces in line order: the order `sorted` breaks ties by.
    fn order_pending(&mut self) {
        let ids = &self.file_ids;
        self.pending.sort_by_key(|p| (ids[&p.file], p.lines[0]));
    }

    fn spill_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.order_pending();
        let dir = match &self.spill {
            Some(dir) => dir.path().to_path_buf(),
            None => {
                std::fs::create_dir_all(&self.spill_parent).with_context(|| format!("creating {}", self.spill_parent.display()))?;
                let dir = tempfile::Builder::new()
                    .prefix("ingest-")
                    .tempdir_in(&self.spill_parent)
                    .with_context(|| format!("creating a folder for sorted runs in {}", self.spill_parent.display()))?;
                self.spill.insert(dir).path().to_path_buf()
            }
        };
        let piece_ids: Vec<u32> = self.pending.iter().map(|p| self.file_ids[&p.file]).collect();
        let run = sorted_run(&mut self.pending, &piece_ids)?;
        let path = dir.join(format!("run-{:04}.parquet", self.runs.len()));
        crate::io::table::write_parquet(&path, run.schema(), std::slice::from_ref(&run))
            .with_context(|| format!("writing a sorted run to {}", path.display()))?;
        tracing::debug!("ingest: sorted run {} of {} rows in {}", self.runs.len(), run.num_rows(), path.display());
        self.runs.push(path);
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }

    /// Merge everything into one table at `out`, ordered by (service, timestamp).
    pub fn finish(mut self, out: &Path) -> Result<Ingested> {
        let (table_rows, duplicates, rows_per_service) = if self.runs.is_empty() {
            self.order_pending();
            let merged = merge(&mut self.pending)?;
            self.pending.clear();
            crate::io::table::write_parquet(out, merged.table.schema(), std::slice::from_ref(&merged.table))?;
            (merged.table.num_rows() as u64, merged.rejects, merged.rows_per_service)
        } else {
            self.spill_pending()?;
            let names: Vec<String> = std::mem::take(&mut self.names).into_iter().collect();
            merge_runs(&self.runs, &names, &self.files, out)?
        };
        self.invalid.sort_by_key(|(id, r)| (*id, r.line));
        self.notes.sort_by_key(|(id, _)| *id);
        Ok(Ingested {
            rows: table_rows,
            invalid: self.invalid.into_iter().map(|(_, r)| r).collect(),
            duplicates,
            rows_per_service,
            notes: self.notes.into_iter().flat_map(|(_, n)| n).collect(),
            zoned_timestamps: self.zoned_timestamps,
            out_of_order: self.out_of_order,
            spilled_runs: self.runs.len(),
        })
    }
}

/// A run's columns: the table's, then each row's file (index) and line, for the merge's order
/// and the duplicates' reasons.
fn run_schema() -> SchemaRef {
    let mut fields: Vec<Field> = row::schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_file", DataType::UInt32, false));
    fields.push(Field::new("_line", DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

const FILE_COLUMN: usize = 2 + NUMERIC.len();
const LINE_COLUMN: usize = FILE_COLUMN + 1;

/// Every row of `pieces` (double writes included) in merge order, with its file and line.
fn sorted_run(pieces: &mut [ParsedFile], piece_ids: &[u32]) -> Result<RecordBatch> {
    let (names, order) = sorted(pieces);
    let file = UInt32Array::from_iter_values(order.iter().map(|&(_, _, p, _)| piece_ids[p as usize]));
    let line = UInt64Array::from_iter_values(order.iter().map(|&(_, _, p, r)| pieces[p as usize].lines[r as usize]));
    for p in pieces.iter_mut() {
        p.lines = Vec::new();
    }
    let mut columns = gather(pieces, &order, &names);
    columns.push(Arc::new(file));
    columns.push(Arc::new(line));
    Ok(RecordBatch::try_new(run_schema(), columns)?)
}

/// (service rank, timestamp, file, line): the merge order.
type Key = (u32, i64, u32, u64);

/// One run being read, at its current row.
struct Cursor {
    reader: ParquetRecordBatchReader,
    path: PathBuf,
    /// The current batch's index in `Held`.
    held: usize,
    row: usize,
    rank: Vec<u32>,
    ts: ScalarBuffer<i64>,
    file: ScalarBuffer<u32>,
    line: ScalarBuffer<u64>,
}

impl Cursor {
    fn key(&self) -> Key {
        (self.rank[self.row], self.ts[self.row], self.file[self.row], self.line[self.row])
    }

    /// Load the run's next batch into `held`; false at the run's end.
    fn load(&mut self, held: &mut Vec<RecordBatch>, ranks: &HashMap<&str, u32>) -> Result<bool> {
        let Some(batch) = self.reader.next() else { return Ok(false) };
        let batch = batch.with_context(|| format!("reading the sorted run {}", self.path.display()))?;
        let services = batch.column(1).as_string::<i32>();
        let mut last: Option<(&str, u32)> = None;
        self.rank = services
            .iter()
            .map(|s| {
                let s = s.unwrap_or_default();
                match last {
                    Some((name, rank)) if name == s => rank,
                    _ => {
                        let rank = ranks[s];
                        last = Some((s, rank));
                        rank
                    }
                }
            })
            .collect();
        self.ts = batch.column(0).as_primitive::<TimestampMicrosecondType>().values().clone();
        self.file = batch.column(FILE_COLUMN).as_primitive::<UInt32Type>().values().clone();
        self.line = batch.column(LINE_COLUMN).as_primitive::<UInt64Type>().values().clone();
        self.row = 0;
        held.push(batch);
        self.held = held.len() - 1;
        Ok(self.row < self.rank.len() || self.load(held, ranks)?)
    }

    /// Move to the next row; false at the run's end.
    fn advance(&mut self, held: &mut Vec<RecordBatch>, ranks: &HashMap<&str, u32>) -> Result<bool> {
        self.row += 1;
        if self.row < self.rank.len() {
            return Ok(true);
        }
        self.load(held, ranks)
    }
}

/// Whether two rows hold the same values in every numeric column.
fn same_values(a: &RecordBatch, i: usize, b: &RecordBatch, j: usize) -> bool {
    (2..2 + NUMERIC.len()).all(|c| {
        let (x, y) = (a.column(c), b.column(c));
        match x.data_type() {
            DataType::Int64 => x.as_primitive::<Int64Type>().value(i) == y.as_primitive::<Int64Type>().value(j),
            _ => x.as_primitive::<Float64Type>().value(i) == y.as_primitive::<Float64Type>().value(j),
        }
    })
}

/// The rows picked so far, gathered from the batches they are in and written as one batch.
fn write_picks(out: &mut TableWriter, held: &[RecordBatch], picks: &mut Vec<(usize, usize)>) -> Result<()> {
    if picks.is_empty() {
        return Ok(());
    }
    let columns: Vec<ArrayRef> = (0..2 + NUMERIC.len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = held.iter().map(|b| b.column(c).as_ref()).collect();
            datafusion::arrow::compute::interleave(&arrays, picks)
        })
        .collect::<Result<_, _>>()?;
    out.write(&RecordBatch::try_new(row::schema(), columns)?)?;
    picks.clear();
    Ok(())
}

/// The runs merged into one table at `out`: the first row of each (service, timestamp) by file
/// and line is kept, later ones are set aside naming it, as [`merge`] does in memory.
fn merge_runs(runs: &[PathBuf], names: &[String], files: &[String], out: &Path) -> Result<(u64, Vec<Reject>, std::collections::BTreeMap<String, u64>)> {
    let ranks: HashMap<&str, u32> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut cursors: Vec<Cursor> = Vec::with_capacity(runs.len());
    let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::with_capacity(runs.len());
    for path in runs {
        let file = std::fs::File::open(path).with_context(|| format!("opening the sorted run {}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(READ_ROWS).build()?;
        let mut cursor = Cursor {
            reader,
            path: path.clone(),
            held: 0,
            row: 0,
            rank: Vec::new(),
            ts: ScalarBuffer::from(Vec::new()),
            file: ScalarBuffer::from(Vec::new()),
            line: ScalarBuffer::from(Vec::new()),
        };
        if cursor.load(&mut held, &ranks)? {
            heap.push(Reverse((cursor.key(), cursors.len())));
            cursors.push(cursor);
        }
    }
    let mut writer = TableWriter::create(out, row::schema())?;
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(WRITE_ROWS);
    let mut per_service = vec![0u64; names.len()];
    let mut duplicates = Vec::new();
    // The row kept last: its key, and where it is (batch in `held`, row).
    let mut last: Option<(Key, usize, usize)> = None;
    while let Some(Reverse((key, c))) = heap.pop() {
        let cursor = &mut cursors[c];
        let (h, r) = (cursor.held, cursor.row);
        match last {
            Some((first, lh, lr)) if (first.0, first.1) == (key.0, key.1) => duplicates.push(Reject {
                file: files[key.2 as usize].clone(),
                line: key.3,
                reason: duplicate_reason(same_values(&held[lh], lr, &held[h], r), &format!("{}:{}", files[first.2 as usize], first.3)),
                raw: String::new(),
            }),
            _ => {
                picks.push((h, r));
                per_service[key.0 as usize] += 1;
                last = Some((key, h, r));
            }
        }
        if cursor.advance(&mut held, &ranks)? {
            heap.push(Reverse((cursor.key(), c)));
        }
        if picks.len() == WRITE_ROWS {
            write_picks(&mut writer, &held, &mut picks)?;
            // Keep only the batches still needed: each run's current one and the last kept row's.
            let mut fresh = Vec::with_capacity(cursors.len() + 1);
            for Reverse((_, c)) in heap.iter() {
                fresh.push(held[cursors[*c].held].clone());
                cursors[*c].held = fresh.len() - 1;
            }
            if let Some((_, lh, _)) = &mut last {
                fresh.push(held[*lh].clone());
                *lh = fresh.len() - 1;
            }
            held = fresh;
        }
    }
    write_picks(&mut writer, &held, &mut picks)?;
    let rows = writer.finish()?;
    let rows_per_service = names.iter().zip(per_service).filter(|(_, n)| *n > 0).map(|(s, n)| (s.clone(), n)).collect();
    Ok((rows, duplicates, rows_per_service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::tests::HEADER;
    use crate::ingest::parse_file;

    /// Files with double writes within a file and across files (identical, and with other
    /// values), three services, rows out of order.
    fn files() -> Vec<ParsedFile> {
        let row = |ts: u32, svc: &str, cpu: u32| {
            format!("2025-10-06T06:{:02}:{:02},{svc},{cpu},50,0.1,40,40,0,100,90,120,3,0,0,0.5,1,256,512,0,0.01,0,0,0\n", ts / 60, ts % 60)
        };
        let mut texts = vec![String::from(HEADER) + "\n"; 3];
        for i in 0..400u32 {
            let svc = ["web", "api", "db"][(i % 3) as usize];
            texts[(i % 3) as usize].push_str(&row(i * 7 % 900, svc, i % 50));
            if i % 11 == 0 {
                // A double write in another file, same values; every 33rd with other values.
                texts[((i + 1) % 3) as usize].push_str(&row(i * 7 % 900, svc, if i % 33 == 0 { 99 } else { i % 50 }));
            }
            if i % 17 == 0 {
                texts[(i % 3) as usize].push_str(&row(i * 7 % 900, svc, i % 50));
            }
        }
        texts.iter().enumerate().map(|(i, t)| parse_file(&format!("f{i}.csv"), t.as_bytes(), 1).unwrap()).collect()
    }

    fn split(f: ParsedFile, at: usize) -> Vec<ParsedFile> {
        // Two pieces of one file, as a block boundary makes them.
        let mut a = ParsedFile { file: f.file.clone(), names: f.names.clone(), ..Default::default() };
        let mut b = ParsedFile { file: f.file.clone(), names: f.names.clone(), ..Default::default() };
        a.services = f.services[..at].to_vec();
        b.services = f.services[at..].to_vec();
        a.timestamps = f.timestamps[..at].to_vec();
        b.timestamps = f.timestamps[at..].to_vec();
        a.lines = f.lines[..at].to_vec();
        b.lines = f.lines[at..].to_vec();
        a.values = f.values.iter().map(|v| v[..at].to_vec()).collect();
        b.values = f.values.iter().map(|v| v[at..].to_vec()).collect();
        vec![a, b]
    }

    fn ingest(pieces: Vec<ParsedFile>, run_rows: usize, dir: &Path) -> (RecordBatch, Ingested) {
        let mut runs = Runs::new((0..3).map(|i| format!("f{i}.csv")).collect(), run_rows, dir.join("spill"));
        for p in pieces {
            runs.push(p).unwrap();
        }
        let out = dir.join(format!("out-{run_rows}.parquet"));
        let done = runs.finish(&out).unwrap();
        (crate::io::table::read_table(&out).unwrap(), done)
    }

    #[test]
    fn sorted_runs_merge_to_the_table_an_in_memory_merge_gives() {
        let dir = tempfile::tempdir().unwrap();
        let (table, whole) = ingest(files(), usize::MAX, dir.path());
        assert_eq!(whole.spilled_runs, 0);
        assert!(whole.duplicates.iter().any(|r| r.reason.contains("with different values")));
        assert!(whole.duplicates.iter().any(|r| r.reason.starts_with("duplicate of")));
        let reasons = |d: &Ingested| d.duplicates.iter().map(|r| (r.file.clone(), r.line, r.reason.clone())).collect::<Vec<_>>();
        for run_rows in [1, 7, 100, 333] {
            // Pieces arrive in any order, files cut into pieces.
            let mut pieces: Vec<ParsedFile> = files().into_iter().flat_map(|f| split(f, 50)).collect();
            pieces.reverse();
            let (spilled, done) = ingest(pieces, run_rows, dir.path());
            assert!(done.spilled_runs > 1, "{run_rows} rows a run");
            assert_eq!(spilled, table, "{run_rows} rows a run");
            assert_eq!(reasons(&done), reasons(&whole), "{run_rows} rows a run");
            assert_eq!((done.rows, &done.rows_per_service), (whole.rows, &whole.rows_per_service));
        }
        assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 0, "runs are removed when merged");
    }
}
