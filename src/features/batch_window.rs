//! Window functions computed a stretch of rows at a time instead of a row at a time.
//!
//! DataFusion's streaming window operator (BoundedWindowAggExec) calls each function once per
//! row and boxes every result in a ScalarValue; on 1M rows that loop took 0.40-0.51 s of each
//! of the features and labels stages, on one thread (0.13-0.18 s here). Its input is already sorted by partition,
//! so the same node can be computed column-wise: rows are gathered until they lie far enough
//! from the end of what has arrived, then every window column is computed for all of them in
//! one pass, and the input columns are passed on without copying.
//!
//! [`BatchWindows`] only replaces a window node whose input is sorted by its partition and
//! whose functions are all positional with a bounded reach: `lag`/`lead` (not IGNORE NULLS)
//! and the rolling_* functions over ROWS frames of fixed size. Anything else (aggregates over
//! windows, ranks, RANGE frames, unbounded frames) keeps DataFusion's operator. The tests run
//! the same queries through both and require identical results.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{concat, partition};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::functions_window::lead_lag::WindowShift;
use datafusion::logical_expr::window_state::WindowFrameContext;
use datafusion::logical_expr::{WindowFrame, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::window::{StandardWindowExpr, StandardWindowFunctionExpr, WindowExpr};
use datafusion::physical_expr::{OrderingRequirements, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode, PlanProperties, ReplaceChildrenOptions,
    SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};

use super::rolling::{self, Rolling, Stat};

/// The physical optimizer rule: each eligible BoundedWindowAggExec becomes a [`BatchWindowExec`].
#[derive(Debug, Default)]
pub struct BatchWindows;

impl PhysicalOptimizerRule for BatchWindows {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match BatchWindowExec::replacing(&node) {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "batch_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Reads further than this from a row (IGNORE NULLS, huge offsets) are left to DataFusion,
/// whose operator does not hold them in memory.
const MAX_REACH: usize = 1 << 16;

/// How one window column is computed.
#[derive(Debug, Clone)]
enum Function {
    /// `lag`/`lead`: DataFusion's own evaluator, run over a stretch of the partition.
    Shift(Arc<dyn StandardWindowFunctionExpr>),
    /// `rolling_*` over a ROWS frame, whose bounds DataFusion's own frame arithmetic computes.
    Rolling { stat: Stat, frame: Arc<WindowFrame> },
}

#[derive(Debug, Clone)]
struct Column {
    expr: Arc<dyn WindowExpr>,
    function: Function,
    /// How many rows before and after a row its value may read.
    back: usize,
    ahead: usize,
}

impl Column {
    /// The batch form of `expr`, if it has one.
    fn of(expr: &Arc<dyn WindowExpr>) -> Option<Column> {
        let standard = expr.as_any().downcast_ref::<StandardWindowExpr>()?;
        let function = standard.get_standard_func_expr();
        let udf = function.as_any().downcast_ref::<WindowUDFExpr>()?;
        let inner = udf.fun().inner();
        let (function, back, ahead) = if let Some(rolling) = inner.downcast_ref::<Rolling>() {
            let frame = Arc::clone(expr.get_window_frame());
            if frame.units != WindowFrameUnits::Rows {
                return None;
            }
            let back = match &frame.start_bound {
                WindowFrameBound::Preceding(ScalarValue::UInt64(Some(n))) => usize::try_from(*n).ok()?,
                WindowFrameBound::CurrentRow | WindowFrameBound::Following(ScalarValue::UInt64(Some(_))) => 0,
                _ => return None,
            };
            let ahead = match &frame.end_bound {
                WindowFrameBound::Following(ScalarValue::UInt64(Some(n))) => usize::try_from(*n).ok()?,
                WindowFrameBound::CurrentRow | WindowFrameBound::Preceding(ScalarValue::UInt64(Some(_))) => 0,
                _ => return None,
            };
            (Function::Rolling { stat: rolling.stat(), frame }, back, ahead)
        } else if inner.is::<WindowShift>() {
            let evaluator = function.create_evaluator().ok()?;
            if evaluator.uses_window_frame() || evaluator.include_rank() {
                return None;
            }
            // The rows the evaluator asks for around a row far from both ends: lag(x, k) reaches
            // k back, lead k ahead; IGNORE NULLS reaches to the partition's edge and is refused.
            let (row, rows) = (4 * MAX_REACH, 8 * MAX_REACH);
            let reach = evaluator.get_range(row, rows).ok()?;
            (Function::Shift(Arc::clone(function)), row.checked_sub(reach.start)?, reach.end.checked_sub(row)?)
        } else {
            return None;
        };
        (back <= MAX_REACH && ahead <= MAX_REACH).then(|| Column { expr: Arc::clone(expr), function, back, ahead })
    }

    /// Values for the partition's rows `rows`, from `args` (this column's arguments over the
    /// partition's rows `context`). `context` reaches `back` rows before `rows` (or starts the
    /// partition) and `ahead` rows after it (or ends the partition).
    fn evaluate(&self, args: &[ArrayRef], context: Range<usize>, rows: Range<usize>) -> Result<ArrayRef> {
        match &self.function {
            Function::Shift(function) => {
                let all = function.create_evaluator()?.evaluate_all(args, context.len())?;
                Ok(all.slice(rows.start - context.start, rows.len()))
            }
            Function::Rolling { stat, frame } => {
                let mut frames = WindowFrameContext::new(Arc::clone(frame), Vec::new());
                let mut ranges = Vec::with_capacity(rows.len());
                let mut last = 0..0;
                for row in rows {
                    // Partition positions, with the partition ending where the context does
                    // (the rows the frame can reach are all there).
                    let range = frames.calculate_range(&[], &last, context.end, row)?;
                    let end = range.end.max(range.start);
                    ranges.push(range.start - context.start..end - context.start);
                    last = range;
                }
                rolling::evaluate_frames(*stat, args, ranges.into_iter())
            }
        }
    }
}

/// A BoundedWindowAggExec computed by [`Windower`]: same input, schema, ordering and
/// requirements (it keeps the node it replaces for those), different evaluation.
#[derive(Debug)]
pub struct BatchWindowExec {
    window: Arc<dyn ExecutionPlan>,
    columns: Vec<Column>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    metrics: ExecutionPlanMetricsSet,
}

impl BatchWindowExec {
    /// The replacement for `node`, when it is a window node this operator can compute.
    pub(crate) fn replacing(node: &Arc<dyn ExecutionPlan>) -> Option<BatchWindowExec> {
        let window = node.downcast_ref::<BoundedWindowAggExec>()?;
        if !matches!(window.input_order_mode, InputOrderMode::Sorted) {
            return None;
        }
        let exprs = window.window_expr();
        let partition_by = exprs.first()?.partition_by().to_vec();
        let same_partitions =
            exprs.iter().all(|e| e.partition_by().len() == partition_by.len() && e.partition_by().iter().zip(&partition_by).all(|(a, b)| a.eq(b)));
        if !same_partitions {
            return None;
        }
        let columns = exprs.iter().map(Column::of).collect::<Option<Vec<_>>>()?;
        Some(BatchWindowExec { window: Arc::clone(node), columns, partition_by, metrics: ExecutionPlanMetricsSet::new() })
    }

    /// The window node this one computes (what travels to a Ballista executor).
    #[cfg(feature = "ballista")]
    pub(crate) fn window(&self) -> &Arc<dyn ExecutionPlan> {
        &self.window
    }
}

impl DisplayAs for BatchWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.columns.iter().map(|c| c.expr.name()).collect();
        write!(f, "BatchWindowExec: wdw=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for BatchWindowExec {
    fn name(&self) -> &str {
        "BatchWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.window.children()
    }

    fn apply_expressions(&self, f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
        let window = Arc::clone(&self.window).replace_children(children, options)?;
        Ok(match BatchWindowExec::replacing(&window) {
            Some(exec) => Arc::new(exec),
            None => window,
        })
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(input) = self.window.children().first().map(|c| c.execute(partition, context)) else {
            return internal_err!("BatchWindowExec has no input");
        };
        let schema = self.schema();
        Ok(Box::pin(WindowStream {
            input: input?,
            windower: Windower::new(Arc::clone(&schema), self.columns.clone(), self.partition_by.clone()),
            ready: VecDeque::new(),
            done: false,
            schema,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct WindowStream {
    input: SendableRecordBatchStream,
    windower: Windower,
    ready: VecDeque<RecordBatch>,
    done: bool,
    schema: SchemaRef,
    metrics: BaselineMetrics,
}

impl Stream for WindowStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(batch) = this.ready.pop_front() {
                this.metrics.record_output(batch.num_rows());
                return Poll::Ready(Some(Ok(batch)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let step = match this.input.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(batch))) => {
                    let _timer = this.metrics.elapsed_compute().timer();
                    this.windower.push(&batch, &mut this.ready)
                }
                Poll::Ready(Some(Err(e))) => Err(e),
                Poll::Ready(None) => {
                    this.done = true;
                    let _timer = this.metrics.elapsed_compute().timer();
                    this.windower.end_partition(&mut this.ready)
                }
            };
            if let Err(e) = step {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

impl RecordBatchStream for WindowStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// The rows of the current partition between arrival and output. Row numbers count from the
/// partition's first row.
struct Windower {
    schema: SchemaRef,
    columns: Vec<Column>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The furthest any column reads before / after a row.
    back: usize,
    ahead: usize,
    /// Rows `emitted..seen`, as they arrived.
    pending: VecDeque<RecordBatch>,
    /// Each column's arguments over rows `kept..seen`.
    args: Vec<Vec<ArrayRef>>,
    kept: usize,
    emitted: usize,
    seen: usize,
    /// The partition key of the last row seen, to tell whether the next batch continues it.
    last_key: Option<Vec<ArrayRef>>,
}

impl Windower {
    fn new(schema: SchemaRef, columns: Vec<Column>, partition_by: Vec<Arc<dyn PhysicalExpr>>) -> Windower {
        let back = columns.iter().map(|c| c.back).max().unwrap_or(0);
        let ahead = columns.iter().map(|c| c.ahead).max().unwrap_or(0);
        let args = vec![Vec::new(); columns.len()];
        Windower { schema, columns, partition_by, back, ahead, pending: VecDeque::new(), args, kept: 0, emitted: 0, seen: 0, last_key: None }
    }

    fn push(&mut self, batch: &RecordBatch, out: &mut VecDeque<RecordBatch>) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self.partition_by.iter().map(|e| e.evaluate(batch)?.into_array(n)).collect::<Result<Vec<_>>>()?;
        let ranges = if keys.is_empty() { std::iter::once(0..n).collect() } else { partition(&keys)?.ranges() };
        if let Some(last) = &self.last_key {
            let first: Vec<ArrayRef> = keys.iter().map(|k| k.slice(0, 1)).collect();
            if !same_key(last, &first)? {
                self.end_partition(out)?;
            }
        }
        // Arguments once for the whole batch, sliced for each partition in it.
        let args = self.columns.iter().map(|c| c.expr.evaluate_args(batch)).collect::<Result<Vec<_>>>()?;
        for (i, range) in ranges.into_iter().enumerate() {
            if i > 0 {
                self.end_partition(out)?;
            }
            let slice = |a: &Vec<ArrayRef>| a.iter().map(|a| a.slice(range.start, range.len())).collect();
            self.extend(batch.slice(range.start, range.len()), args.iter().map(slice).collect())?;
            self.emit(false, out)?;
        }
        self.last_key = Some(keys.iter().map(|k| k.slice(n - 1, 1)).collect());
        Ok(())
    }

    /// Emit what is left of the partition; the next row starts a new one.
    fn end_partition(&mut self, out: &mut VecDeque<RecordBatch>) -> Result<()> {
        self.emit(true, out)?;
        self.args.iter_mut().for_each(Vec::clear);
        (self.kept, self.emitted, self.seen) = (0, 0, 0);
        Ok(())
    }

    /// Add rows of the current partition, with each column's arguments over them.
    fn extend(&mut self, rows: RecordBatch, new_args: Vec<Vec<ArrayRef>>) -> Result<()> {
        for (args, new) in self.args.iter_mut().zip(new_args) {
            *args =
                if self.seen == self.kept { new } else { args.iter().zip(&new).map(|(a, b)| concat(&[a.as_ref(), b.as_ref()])).collect::<Result<_, _>>()? };
        }
        self.seen += rows.num_rows();
        self.pending.push_back(rows);
        Ok(())
    }

    /// Compute and emit every row whose reach has arrived (all of them at the partition's end).
    fn emit(&mut self, partition_ended: bool, out: &mut VecDeque<RecordBatch>) -> Result<()> {
        let upto = if partition_ended { self.seen } else { self.seen.saturating_sub(self.ahead) };
        if upto <= self.emitted {
            return Ok(());
        }
        let context = self.kept..self.seen;
        let values = self.columns.iter().zip(&self.args).map(|(c, args)| c.evaluate(args, context.clone(), self.emitted..upto)).collect::<Result<Vec<_>>>()?;
        // One output batch per arrived piece, so the input columns are passed on as they are.
        let (mut offset, total) = (0, upto - self.emitted);
        while offset < total {
            let Some(piece) = self.pending.pop_front() else {
                return internal_err!("BatchWindowExec: {} rows to emit but none pending", total - offset);
            };
            let take = (total - offset).min(piece.num_rows());
            if take < piece.num_rows() {
                self.pending.push_front(piece.slice(take, piece.num_rows() - take));
            }
            let mut columns = piece.slice(0, take).columns().to_vec();
            columns.extend(values.iter().map(|v| v.slice(offset, take)));
            out.push_back(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
            offset += take;
        }
        self.emitted = upto;
        // Later rows read back at most `back` rows from `upto`.
        let keep = upto.saturating_sub(self.back).max(self.kept);
        if keep > self.kept {
            let drop = keep - self.kept;
            for a in self.args.iter_mut().flatten() {
                *a = a.slice(drop, a.len() - drop);
            }
            self.kept = keep;
        }
        Ok(())
    }
}

/// Whether two one-row keys are equal, by the same rule that splits a batch into partitions.
fn same_key(a: &[ArrayRef], b: &[ArrayRef]) -> Result<bool> {
    if a.is_empty() {
        return Ok(true);
    }
    let pairs = a.iter().zip(b).map(|(x, y)| concat(&[x.as_ref(), y.as_ref()])).collect::<Result<Vec<_>, _>>()?;
    Ok(partition(&pairs)?.len() == 1)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::col;

    use super::*;

    /// Services of 1, 2, 5, 37 and 300 rows, in pieces of 1-50 rows so that partitions
    /// span batches and batches span partitions; `x` has nulls, NaN and ties.
    fn table() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
        ]));
        let (mut service, mut ts, mut x) = (Vec::new(), Vec::new(), Vec::new());
        for (s, n) in [("a", 1), ("b", 2), ("c", 5), ("d", 37), ("e", 300)] {
            for i in 0..n {
                service.push(s);
                ts.push(i as i64 * 30);
                x.push(match (i * 7 + n) % 11 {
                    0 => None,
                    1 => Some(f64::NAN),
                    k => Some((k % 4) as f64 * 2.5 + i as f64 / 8.0),
                });
            }
        }
        let all = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(service)), Arc::new(Int64Array::from(ts)), Arc::new(Float64Array::from(x))],
        )
        .unwrap();
        let (mut pieces, mut start, mut len) = (Vec::new(), 0, 1);
        while start < all.num_rows() {
            let n = len.min(all.num_rows() - start);
            pieces.push(all.slice(start, n));
            start += n;
            len = (len * 7 + 3) % 50 + 1;
        }
        // Declared sorted, so the pieces reach the window operator as they are.
        let order = vec![col("service").sort(true, false), col("ts").sort(true, false)];
        MemTable::try_new(schema, vec![pieces]).unwrap().with_sort_order(vec![order])
    }

    /// The query's plan and its rows as text, with or without the batch operator.
    async fn run(sql: &str, batch_windows: bool) -> (String, String) {
        let session = crate::features::session_with(1, batch_windows);
        session.register_table("t", Arc::new(table())).unwrap();
        let df = session.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let plan_text = datafusion::physical_plan::displayable(plan.as_ref()).indent(false).to_string();
        let rows = pretty_format_batches(&df.collect().await.unwrap()).unwrap().to_string();
        (plan_text, rows)
    }

    async fn same_rows_both_ways(sql: &str) -> String {
        let (batch_plan, batch_rows) = run(sql, true).await;
        let (plan, rows) = run(sql, false).await;
        assert!(!plan.contains("BatchWindowExec"), "{plan}");
        assert_eq!(batch_rows, rows, "{sql}\n{batch_plan}");
        batch_plan
    }

    #[tokio::test]
    async fn lag_lead_and_rolling_frames_agree_with_datafusion() {
        let plan = same_rows_both_ways(
            "SELECT service, ts, x,
                lag(x) OVER w AS lag1, lag(x, 3, -1.0) OVER w AS lag3, lead(x, 2) OVER w AS lead2,
                lead(ts, 10) OVER w IS NOT NULL AS full,
                rolling_max(x) OVER last_10 AS max10,
                rolling_stddev(x) OVER around AS sd5,
                rolling_quantile(x, 0.95) OVER ahead AS p95_ahead,
                rolling_max(x) OVER before AS max_before
             FROM t WINDOW
                w AS (PARTITION BY service ORDER BY ts),
                last_10 AS (PARTITION BY service ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW),
                around AS (PARTITION BY service ORDER BY ts ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING),
                ahead AS (PARTITION BY service ORDER BY ts ROWS BETWEEN 1 FOLLOWING AND 10 FOLLOWING),
                before AS (PARTITION BY service ORDER BY ts ROWS BETWEEN 5 PRECEDING AND 2 PRECEDING)
             ORDER BY service, ts",
        )
        .await;
        assert!(plan.contains("BatchWindowExec"), "{plan}");
    }

    #[tokio::test]
    async fn each_function_alone_waits_for_its_own_reach() {
        for f in ["lead(x, 3)", "lead(x)", "lag(x, 4)", "lag(x, -2)", "rolling_max(x)"] {
            let frame = if f.starts_with("rolling") { " ROWS BETWEEN 2 FOLLOWING AND 6 FOLLOWING" } else { "" };
            let plan =
                same_rows_both_ways(&format!("SELECT service, ts, {f} OVER (PARTITION BY service ORDER BY ts{frame}) AS v FROM t ORDER BY service, ts")).await;
            assert!(plan.contains("BatchWindowExec"), "{plan}");
        }
    }

    #[tokio::test]
    async fn a_window_without_partitions_is_one_partition() {
        let plan = same_rows_both_ways(
            "SELECT service, ts, lag(x, 2) OVER (ORDER BY service, ts) AS lag2,
                rolling_quantile(x, 0.5) OVER (ORDER BY service, ts ROWS BETWEEN 3 PRECEDING AND 3 FOLLOWING) AS median7
             FROM t ORDER BY service, ts",
        )
        .await;
        assert!(plan.contains("BatchWindowExec"), "{plan}");
    }

    #[tokio::test]
    async fn other_window_functions_keep_datafusions_operator() {
        for sql in [
            // An aggregate over the window, beside a function the batch path knows.
            "SELECT lag(x) OVER w, avg(x) OVER w FROM t WINDOW w AS (PARTITION BY service ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
            // Reaches to the partition's edge.
            "SELECT lag(x) IGNORE NULLS OVER (PARTITION BY service ORDER BY ts) FROM t",
            "SELECT rolling_max(x) OVER (PARTITION BY service ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t",
            // Frames by value, not position.
            "SELECT rolling_max(x) OVER (PARTITION BY service ORDER BY ts RANGE BETWEEN 60 PRECEDING AND CURRENT ROW) FROM t",
            "SELECT row_number() OVER (PARTITION BY service ORDER BY ts) FROM t",
        ] {
            let (plan, _) = run(sql, true).await;
            assert!(!plan.contains("BatchWindowExec"), "{sql}\n{plan}");
            same_rows_both_ways(&format!("{sql} ORDER BY 1")).await;
        }
    }
}
