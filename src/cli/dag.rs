//! `pipeline dag`: the stage graph as text, Graphviz dot or Mermaid.

use anyhow::Result;

use super::{PipelineArgs, exit};
use crate::dag::Pipeline;
use crate::dag::plan::build_stages;

#[derive(clap::Args, Debug)]
pub struct DagArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How `pipeline dag` draws the graph.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For a terminal.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid, for Markdown.
    Mermaid,
}

pub fn dag(args: DagArgs) -> Result<u8> {
    let p = args.pipeline.load()?;
    let stages = build_stages(&p, crate::ops::build)?;
    let out = match args.format {
        Format::Dot => dot(&p),
        Format::Mermaid => mermaid(&p),
        Format::Text => text(&p, &stages.iter().map(|(n, s)| (n.clone(), s.describe())).collect::<Vec<_>>()),
    };
    print!("{out}");
    Ok(exit::SUCCESS)
}

/// Stages in run order, each with its op, what it reads, and the stages it needs: readable
/// at any width, unlike box drawings of wide graphs.
pub fn text(p: &Pipeline, described: &[(String, String)]) -> String {
    let depth = depths(p);
    let width = described.iter().map(|(n, _)| n.len() + 2 * depth[n]).max().unwrap_or(0);
    let mut out = String::new();
    for (name, what) in described {
        let s = &p.stages[name];
        let indent = "  ".repeat(depth[name]);
        let deps = if s.deps.is_empty() { String::new() } else { format!("  ← {}", s.deps.join(", ")) };
        let label = format!("{indent}{name}");
        out.push_str(&format!("{label:<width$}  [{}] {what}{deps}\n", s.op));
    }
    out
}

fn depths(p: &Pipeline) -> std::collections::HashMap<String, usize> {
    let mut d = std::collections::HashMap::new();
    for name in crate::dag::graph::topo_order(&p.stages).unwrap_or_default() {
        let level = p.stages[&name].deps.iter().map(|x| d.get(x).copied().unwrap_or(0) + 1).max().unwrap_or(0);
        d.insert(name, level);
    }
    d
}

pub fn dot(p: &Pipeline) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n", p.name);
    for s in p.stages.values() {
        out.push_str(&format!("  {} [label=\"{}\\n({})\"];\n", s.name, s.name, s.op));
    }
    for s in p.stages.values() {
        for d in &s.deps {
            out.push_str(&format!("  {d} -> {};\n", s.name));
        }
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(p: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    for s in p.stages.values() {
        out.push_str(&format!("  {}[\"{}<br/>({})\"]\n", s.name, s.name, s.op));
    }
    for s in p.stages.values() {
        for d in &s.deps {
            out.push_str(&format!("  {d} --> {}\n", s.name));
        }
    }
    out
}
