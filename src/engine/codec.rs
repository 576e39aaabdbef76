//! The wire form of the project's plan nodes, for Ballista's scheduler and executors.
//!
//! Ballista sends physical plans as DataFusion protobuf; a node it does not know goes through
//! the extension codec. The only such node is [`BatchWindowExec`], which is a
//! BoundedWindowAggExec computed differently: it travels as that window node (DataFusion's own
//! encoding, the input left out, since the plan carries it beside) and becomes a
//! BatchWindowExec again on the other side. Everything else is Ballista's codec's.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::WindowUDF;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use datafusion_proto::physical_plan::{AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::PhysicalPlanNode;

use crate::features::batch_window::BatchWindowExec;

/// Marks our node's bytes (Ballista's own are a protobuf message, which never starts so).
const BATCH_WINDOW: &[u8] = b"autoscale.BatchWindowExec.v1\0";

fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

#[derive(Debug, Default)]
pub struct PlanCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(window) = buf.strip_prefix(BATCH_WINDOW) else {
            return self.ballista.try_decode(buf, inputs, ctx, converter);
        };
        let window = PhysicalPlanNode::try_decode(window)?.try_into_physical_plan(ctx, self)?;
        let window = window.replace_children(inputs.to_vec(), recompute())?;
        BatchWindowExec::replacing(&window)
            .map(|exec| Arc::new(exec) as Arc<dyn ExecutionPlan>)
            .ok_or_else(|| DataFusionError::Internal(format!("a BatchWindowExec arrived as a window node it cannot compute: {}", window.name())))
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>, converter: &dyn PhysicalProtoConverterExtension) -> Result<()> {
        let Some(exec) = node.downcast_ref::<BatchWindowExec>() else {
            return self.ballista.try_encode(node, buf, converter);
        };
        let window = exec.window();
        let inputs: Vec<Arc<dyn ExecutionPlan>> =
            window.children().into_iter().map(|c| Arc::new(EmptyExec::new(c.schema())) as Arc<dyn ExecutionPlan>).collect();
        let window = Arc::clone(window).replace_children(inputs, recompute())?;
        buf.extend_from_slice(BATCH_WINDOW);
        PhysicalPlanNode::try_from_physical_plan(window, self)?.try_encode(buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        match crate::features::window_functions().into_iter().find(|f| f.name() == name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udwf(name, buf),
        }
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::ParquetReadOptions;

    /// A plan with our window node survives the trip to an executor as the same plan.
    #[tokio::test]
    async fn a_batch_window_plan_comes_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let session = crate::features::session(1);
        session
            .sql("SELECT * FROM (VALUES ('a', 1.0), ('a', 3.0), ('b', 2.0)) AS t(service_name, x) ORDER BY service_name")
            .await
            .unwrap()
            .write_parquet(path.to_str().unwrap(), Default::default(), None)
            .await
            .unwrap();
        let order = vec![datafusion::prelude::col("service_name").sort(true, false)];
        session.register_parquet("t", path.to_str().unwrap(), ParquetReadOptions::default().file_sort_order(vec![order])).await.unwrap();
        let sql = "SELECT service_name, x, rolling_max(x) OVER (PARTITION BY service_name ORDER BY x ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS m, \
                   lag(x) OVER (PARTITION BY service_name ORDER BY x) AS l FROM t";
        let plan = session.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();

        let codec = PlanCodec::default();
        let mut bytes = Vec::new();
        PhysicalPlanNode::try_from_physical_plan(Arc::clone(&plan), &codec).unwrap().try_encode(&mut bytes).unwrap();
        // An executor's registry has no rolling_* until we give it ours: the codec supplies them.
        let bare = datafusion::prelude::SessionContext::new().task_ctx();
        let back = PhysicalPlanNode::try_decode(&bytes).unwrap().try_into_physical_plan(&bare, &codec).unwrap();
        assert!(shown.contains("BatchWindowExec"), "{shown}");
        assert_eq!(datafusion::physical_plan::displayable(back.as_ref()).indent(true).to_string(), shown);

        let ran = datafusion::physical_plan::collect(back, session.task_ctx()).await.unwrap();
        let expected = datafusion::physical_plan::collect(plan, session.task_ctx()).await.unwrap();
        assert_eq!(ran, expected);
    }
}
