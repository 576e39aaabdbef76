//! A table read a chunk of rows at a time, and a table that rows join and leave: what predicts
//! a hold-out of 10M rows while holding a few thousand (see `models::window_stream`).

use anyhow::{Context, Result, bail};

use super::{Table, columns_for};
use crate::models::row_keys::RowFilter;

impl Table {
    /// The rows `rows` keeps, as [`Table::load_some`] reads them, handed to `each` in file order
    /// as tables of at most about `chunk` rows. Every chunk has the same features (every service
    /// of the file is known to each), so chunks can be [`Table::append`]ed.
    pub fn load_chunks(
        path: &std::path::Path,
        wanted: Option<&[String]>,
        rows: &RowFilter,
        chunk: usize,
        mut each: impl FnMut(Table) -> Result<()>,
    ) -> Result<()> {
        use datafusion::arrow::array::BooleanArray;
        use datafusion::arrow::compute::filter_record_batch;
        use datafusion::parquet::arrow::ProjectionMask;
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let all = |_: &str| true;
        let (keep, one_hot): (Box<dyn Fn(&str) -> bool>, bool) = match wanted {
            Some(w) => {
                let (keep, one_hot) = columns_for(w);
                (Box::new(keep), one_hot)
            }
            None => (Box::new(all), true),
        };
        let mut read = || -> Result<()> {
            let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
            let in_file = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            if rows.keep.len() != in_file {
                bail!("the row filter has {} rows, the file {in_file}", rows.keep.len());
            }
            let roots: Vec<usize> = builder.schema().fields().iter().enumerate().filter(|(_, f)| keep(f.name())).map(|(i, _)| i).collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            let reader = builder.with_projection(mask).with_batch_size(chunk.max(1)).build()?;
            let schema = datafusion::arrow::array::RecordBatchReader::schema(&reader);
            let mut offset = 0;
            for batch in reader {
                let batch = batch?;
                let kept = BooleanArray::from(rows.keep[offset..offset + batch.num_rows()].to_vec());
                offset += batch.num_rows();
                let batch = filter_record_batch(&batch, &kept)?;
                if batch.num_rows() == 0 {
                    continue;
                }
                let table = Table::build(&schema, batch.num_rows(), std::iter::once(Ok(batch)), one_hot, &rows.services)?;
                each(match wanted {
                    Some(w) => table.select(w)?,
                    None => table,
                })?;
            }
            Ok(())
        };
        read().with_context(|| format!("reading {}", path.display()))
    }

    /// `other`'s rows after this table's. Both must come from one file read alike (as
    /// [`Table::load_chunks`] gives them): the same features and services.
    pub fn append(&mut self, other: Table) -> Result<()> {
        if other.features != self.features || other.stored != self.stored || other.service_names != self.service_names {
            bail!("appending a table of other features or services");
        }
        self.x.extend(other.x);
        self.hot.extend(other.hot);
        self.y.extend(other.y);
        self.test.extend(other.test);
        self.service_ids.extend(other.service_ids);
        self.timestamps.extend(other.timestamps);
        self.replicas.extend(other.replicas);
        Ok(())
    }

    /// Keeps the rows `keep` marks, in order.
    pub fn retain(&mut self, keep: &[bool]) {
        fn kept<T: Copy>(v: &mut Vec<T>, keep: &[bool], width: usize) {
            if v.is_empty() {
                return;
            }
            let mut to = 0;
            for i in (0..keep.len()).filter(|&i| keep[i]) {
                v.copy_within(i * width..(i + 1) * width, to * width);
                to += 1;
            }
            v.truncate(to * width);
        }
        kept(&mut self.x, keep, self.stored);
        kept(&mut self.hot, keep, 1);
        kept(&mut self.y, keep, 1);
        kept(&mut self.test, keep, 1);
        kept(&mut self.service_ids, keep, 1);
        kept(&mut self.timestamps, keep, 1);
        kept(&mut self.replicas, keep, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::row_keys::RowKeys;
    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    /// `n` rows alternating between two services, feature `x` = the row number.
    fn file(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
        let path = dir.join("split.parquet");
        let f = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("timestamp", Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i / 2))) as ArrayRef),
            ("service_name", Arc::new(StringArray::from_iter_values((0..n).map(|i| if i % 2 == 0 { "a" } else { "b" })))),
            ("replica_count", f(vec![1.0; n])),
            ("x", f((0..n).map(|i| i as f64).collect())),
            ("target_replicas", f((0..n).map(|i| (i % 3) as f64).collect())),
            ("split", Arc::new(StringArray::from_iter_values((0..n).map(|i| if i >= n / 2 { "test" } else { "train" })))),
        ])
        .unwrap();
        crate::io::table::write_parquet(&path, batch.schema(), &[batch]).unwrap();
        path
    }

    #[test]
    fn chunks_appended_are_the_table_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 50);
        let keys = RowKeys::read(&path).unwrap();
        // Only service b's rows: a keeps its one-hot column in every chunk all the same.
        let only_b: Vec<bool> = (0..50).map(|i| i % 2 == 1).collect();
        let whole = Table::load_some(&path, None, Some(&keys.keep(only_b.clone()))).unwrap();
        let mut sizes = Vec::new();
        let mut joined: Option<Table> = None;
        Table::load_chunks(&path, None, &keys.keep(only_b), 8, |t| {
            sizes.push(t.len());
            match &mut joined {
                Some(j) => j.append(t),
                None => {
                    joined = Some(t);
                    Ok(())
                }
            }
        })
        .unwrap();
        let joined = joined.unwrap();
        assert!(sizes.len() > 1 && sizes.iter().all(|&s| s <= 8), "{sizes:?}");
        assert_eq!((joined.features.clone(), joined.dense(), joined.y.clone()), (whole.features.clone(), whole.dense(), whole.y.clone()));
        assert_eq!(
            (joined.service_refs(), joined.timestamps.clone(), joined.test.clone()),
            (whole.service_refs(), whole.timestamps.clone(), whole.test.clone())
        );
        assert_eq!(whole.features, ["x", "service_a", "service_b"]);
        // Features by name, as load_some reads them.
        let mut firsts = Vec::new();
        Table::load_chunks(&path, Some(&["x".into()]), &keys.keep(vec![true; 50]), 20, |t| {
            firsts.push((t.features.clone(), t.row(0)));
            Ok(())
        })
        .unwrap();
        assert_eq!(firsts, [(vec!["x".to_string()], vec![0.0]), (vec!["x".to_string()], vec![20.0]), (vec!["x".to_string()], vec![40.0])]);
        let e = Table::load_chunks(&path, None, &keys.keep(vec![true; 3]), 8, |_| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("the row filter has 3 rows, the file 50"), "{e:#}");
    }

    #[test]
    fn retain_keeps_the_marked_rows_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), 6);
        let mut t = Table::load(&path).unwrap();
        t.retain(&[false, true, false, true, true, false]);
        assert_eq!((t.len(), t.row(0), t.row(2)), (3, vec![1.0, 0.0, 1.0], vec![4.0, 1.0, 0.0]));
        assert_eq!((t.y.clone(), t.timestamps.clone(), t.service_refs()), (vec![1.0, 0.0, 1.0], vec![0, 1, 2], vec!["b", "b", "a"]));
        let other = Table::load_some(&path, Some(&["x".into()]), None).unwrap();
        assert!(t.append(other).is_err(), "other features");
    }
}
