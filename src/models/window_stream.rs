//! Windows predicted while their rows stream past: a split's hold-out read a chunk at a time,
//! each window handed over once its last row has been read, and each row let go once no window
//! still waiting needs it. At 50M rows the LSTM-CNN's 10M test rows were gigabytes held at
//! once; a file in time or service order keeps a chunk and a window's length of rows per service.

use anyhow::Result;

use super::row_keys::RowFilter;
use super::sequences::{Window, WindowSet};
use super::table::Table;

/// Rows read at a time.
pub const CHUNK_ROWS: usize = 65_536;

/// Ready windows, over the rows held: `rows` `[n, steps]` (flattened) and `last` (the row each
/// window predicts), both positions in `table`, and `which`, the positions of the n windows in
/// the list [`stream`] was given.
pub struct Ready<'a> {
    pub table: &'a Table,
    pub rows: &'a [i64],
    pub last: &'a [usize],
    pub which: &'a [usize],
}

/// Reads the rows `windows` (of `set`, over the rows of `path` in file order) cover, `chunk`
/// rows at a time, and hands every window to `each` exactly once, in blocks, as soon as all its
/// rows have been read. `services`: the file's services
/// ([`RowKeys::service_names`](super::row_keys::RowKeys::service_names)); `features` as
/// `Table::load_some` takes them. Returns the most rows held at once.
pub fn stream(
    path: &std::path::Path,
    features: Option<&[String]>,
    set: &WindowSet,
    windows: &[Window],
    file_rows: usize,
    services: &[String],
    chunk: usize,
    mut each: impl FnMut(Ready) -> Result<()>,
) -> Result<usize> {
    // The rows to read, in file order: the k-th row read is `needed[k]`.
    let covered = set.rows_of(windows, file_rows);
    let needed: Vec<u32> = (0..file_rows as u32).filter(|&r| covered[r as usize]).collect();
    let filter = RowFilter::new(covered, services.to_vec());
    let k_of = |row: u32| needed.binary_search(&row).expect("a window's row is among the rows read") as u32;
    // A window is ready once its latest row (in file order) is read; a row is done once the
    // last window that needs it is.
    let ready: Vec<u32> = windows.iter().map(|w| set.rows(w).iter().map(|&r| k_of(r)).max().unwrap_or(0)).collect();
    let mut release = vec![0u32; needed.len()];
    for (w, &at) in windows.iter().zip(&ready) {
        for &r in set.rows(w) {
            let k = k_of(r) as usize;
            release[k] = release[k].max(at);
        }
    }
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&w| ready[w]);

    let mut held: Option<Table> = None;
    // `held`'s rows as positions k among the rows read, ascending.
    let mut held_k: Vec<u32> = Vec::new();
    let (mut read, mut next, mut most) = (0u32, 0usize, 0usize);
    let (mut rows, mut last, mut which) = (Vec::new(), Vec::new(), Vec::new());
    Table::load_chunks(path, features, &filter, chunk, |part| {
        held_k.extend(read..read + part.len() as u32);
        read += part.len() as u32;
        match &mut held {
            Some(t) => t.append(part)?,
            None => held = Some(part),
        }
        let table = held.as_mut().expect("a chunk was just read");
        most = most.max(table.len());
        let position = |k: u32| held_k.binary_search(&k).expect("a ready window's rows are held");
        (rows.clear(), last.clear(), which.clear());
        while next < order.len() && ready[order[next]] < read {
            let w = order[next];
            rows.extend(set.rows(&windows[w]).iter().map(|&r| position(k_of(r)) as i64));
            last.push(position(k_of(set.rows(&windows[w])[set.rows(&windows[w]).len() - 1])));
            which.push(w);
            next += 1;
        }
        if !which.is_empty() {
            each(Ready { table, rows: &rows, last: &last, which: &which })?;
        }
        let keep: Vec<bool> = held_k.iter().map(|&k| release[k as usize] >= read).collect();
        table.retain(&keep);
        held_k.retain(|&k| release[k as usize] >= read);
        Ok(())
    })?;
    debug_assert_eq!(next, order.len(), "every window was handed over");
    Ok(most)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::row_keys::RowKeys;
    use crate::models::sequences::{self, Part};
    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    /// `services` services, `per` rows each, in time order across services (the usual file) or
    /// shuffled; feature `x` = 1000 × service + time step. The last quarter in time is the test.
    fn file(dir: &std::path::Path, services: usize, per: usize, shuffled: bool) -> std::path::PathBuf {
        let mut rows: Vec<(usize, usize)> = (0..per).flat_map(|t| (0..services).map(move |s| (s, t))).collect();
        if shuffled {
            crate::rng::Rng::new(7, 0).shuffle(&mut rows);
        }
        let f = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("timestamp", Arc::new(Int64Array::from_iter_values(rows.iter().map(|&(_, t)| t as i64 * 30_000_000))) as ArrayRef),
            ("service_name", Arc::new(StringArray::from_iter_values(rows.iter().map(|&(s, _)| format!("svc{s}"))))),
            ("replica_count", f(vec![1.0; rows.len()])),
            ("x", f(rows.iter().map(|&(s, t)| (1000 * s + t) as f64).collect())),
            ("target_replicas", f(rows.iter().map(|&(_, t)| (t % 5) as f64).collect())),
            ("split", Arc::new(StringArray::from_iter_values(rows.iter().map(|&(_, t)| if 4 * t >= 3 * per { "test" } else { "train" })))),
        ])
        .unwrap();
        let path = dir.join("split.parquet");
        crate::io::table::write_parquet(&path, batch.schema(), &[batch]).unwrap();
        path
    }

    /// Every test window's rows as `x` values, by stream and from the whole table.
    fn check(shuffled: bool) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let (services, per, steps) = (5, 200, 4);
        let path = file(dir.path(), services, per, shuffled);
        let keys = RowKeys::read_with_time(&path).unwrap();
        let set = sequences::windows(keys.service_ids(), &keys.timestamps, &keys.test, steps, 0.2);
        let test = set.part(Part::Test);
        assert_eq!(test.len(), services * per / 4);
        let whole = Table::load(&path).unwrap();
        let expected: Vec<Vec<f64>> = test.iter().map(|w| set.rows(w).iter().map(|&r| whole.row(r as usize)[0]).collect()).collect();
        let mut seen = vec![None; test.len()];
        let most = stream(&path, None, &set, &test, keys.len(), keys.service_names(), 64, |ready| {
            for (i, &w) in ready.which.iter().enumerate() {
                let xs: Vec<f64> = ready.rows[i * steps..(i + 1) * steps].iter().map(|&r| ready.table.row(r as usize)[0]).collect();
                assert_eq!(ready.table.y[ready.last[i]], whole.y[set.last(&test[w])]);
                assert!(seen[w].replace(xs).is_none(), "window {w} handed over twice");
            }
            Ok(())
        })
        .unwrap();
        let seen: Vec<Vec<f64>> = seen.into_iter().map(|s| s.expect("every window handed over")).collect();
        assert_eq!(seen, expected);
        most
    }

    #[test]
    fn every_window_comes_once_with_its_rows_and_few_rows_are_held() {
        // In time order: a chunk and the rows before it that the next windows reach back to.
        let most = check(false);
        assert!(most <= 64 + 5 * 4, "held {most} rows");
        // Any order is still right; it only holds more.
        check(true);
    }
}
