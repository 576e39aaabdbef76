//! A guard against one silent wrong answer of DataFusion 55: a named window extended in place.
//!
//! `OVER (w ROWS BETWEEN ...)`, `OVER (w ORDER BY ...)` and `WINDOW w2 AS (w ROWS ...)` are
//! accepted, but the extension replaces what `w` says instead of adding to it: its PARTITION BY
//! (and ORDER BY) are dropped without an error, so the function runs across services. SQL given
//! to the engine is checked here first, on DataFusion's own parse of it.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, DFParser, Statement};
use datafusion::sql::sqlparser::ast::{self, NamedWindowExpr, SetExpr, Visit, Visitor, WindowSpec, WindowType};

/// `Err` names the line and says how to write the window instead. SQL that does not parse passes:
/// running it reports the syntax error with DataFusion's own message.
pub fn check(sql: &str) -> Result<(), ExtendedWindow> {
    let Ok(statements) = DFParser::parse_sql(sql) else { return Ok(()) };
    let mut finder = Extended;
    for statement in &statements {
        if let ControlFlow::Break(message) = visit_statement(statement, &mut finder) {
            return Err(message);
        }
    }
    Ok(())
}

fn visit_statement(statement: &Statement, finder: &mut Extended) -> ControlFlow<ExtendedWindow> {
    match statement {
        Statement::Statement(s) => s.visit(finder),
        Statement::Explain(e) => visit_statement(&e.statement, finder),
        Statement::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => q.visit(finder),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
    }
}

/// Breaks with the message for the first window that extends a named one.
struct Extended;

impl Visitor for Extended {
    type Break = ExtendedWindow;

    fn pre_visit_expr(&mut self, expr: &ast::Expr) -> ControlFlow<ExtendedWindow> {
        match expr {
            ast::Expr::Function(f) => match &f.over {
                Some(WindowType::WindowSpec(spec)) => refuse_extension(spec, "OVER "),
                _ => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        }
    }

    // Every query, subqueries and CTEs included, comes through here; its WINDOW clause does not
    // hold expressions, so the definitions are looked at from their query.
    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<ExtendedWindow> {
        window_definitions(&query.body)
    }
}

fn window_definitions(body: &SetExpr) -> ControlFlow<ExtendedWindow> {
    match body {
        SetExpr::Select(select) => {
            for ast::NamedWindowDefinition(name, expr) in &select.named_window {
                if let NamedWindowExpr::WindowSpec(spec) = expr {
                    refuse_extension(spec, &format!("WINDOW {name} AS "))?;
                }
            }
            ControlFlow::Continue(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            window_definitions(left)?;
            window_definitions(right)
        }
        _ => ControlFlow::Continue(()),
    }
}

/// A window that extends a named one in place: where, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}`{context}({window} {clause} ...)` extends the named window `{window}`, which DataFusion does not \
     support (it drops the window's PARTITION BY and ORDER BY without an error); define the whole \
     window in the WINDOW clause instead, e.g. `last_10 AS (PARTITION BY ... ORDER BY ... ROWS \
     BETWEEN 9 PRECEDING AND CURRENT ROW)`",
    .line.map(|n| format!("line {n}: ")).unwrap_or_default()
)]
pub struct ExtendedWindow {
    /// 1-based; `None` when the parser gave no position.
    pub line: Option<u64>,
    /// `OVER ` or `WINDOW w2 AS `.
    pub context: String,
    pub window: String,
    pub clause: String,
}

fn refuse_extension(spec: &WindowSpec, context: &str) -> ControlFlow<ExtendedWindow> {
    let Some(name) = &spec.window_name else { return ControlFlow::Continue(()) };
    let clause = if !spec.partition_by.is_empty() {
        "PARTITION BY".to_string()
    } else if !spec.order_by.is_empty() {
        "ORDER BY".to_string()
    } else if let Some(frame) = &spec.window_frame {
        frame.units.to_string()
    } else {
        // `OVER (w)` is `OVER w`.
        return ControlFlow::Continue(());
    };
    ControlFlow::Break(ExtendedWindow { line: Some(name.span.start.line).filter(|&n| n > 0), context: context.to_string(), window: name.value.clone(), clause })
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn windows_named_or_written_out_pass() {
        let ok = "SELECT lag(x) OVER w, max(x) OVER (PARTITION BY s ORDER BY t ROWS 3 PRECEDING), f(x) OVER last_10,\n\
                  g(x) OVER (w), h(x) OVER(ORDER BY t) -- OVER (w ROWS in a comment\n\
                  FROM t WINDOW w AS (PARTITION BY s ORDER BY t), last_10 AS w";
        assert_eq!(check(ok), Ok(()));
        // A column named like a clause keyword is not a window; SQL that does not parse is left to DataFusion.
        assert_eq!(check("SELECT \"rows\" FROM t"), Ok(()));
        assert_eq!(check("SELECT hover(w ROWS) FROM t"), Ok(()));
    }

    #[test]
    fn a_named_window_extended_in_place_is_refused_where_it_is() {
        let e = check("SELECT 1,\n  max(x) over (w rows between 2 preceding and current row) FROM t WINDOW w AS (PARTITION BY s)").unwrap_err().to_string();
        assert!(e.starts_with("line 2: `OVER (w ROWS ...)` extends the named window `w`"), "{e}");
        assert!(e.contains("define the whole window in the WINDOW clause"), "{e}");
        // Spread over lines, in a CTE, and the name keeps its case.
        let e = check("WITH a AS (\n  SELECT lag(x) OVER (\n    By_Time\n    ORDER BY t) FROM t)\nSELECT * FROM a").unwrap_err().to_string();
        assert!(e.starts_with("line 3: `OVER (By_Time ORDER BY ...)` extends the named window `By_Time`"), "{e}");
        let e = check("SELECT sum(x) OVER (w PARTITION BY s) FROM t").unwrap_err().to_string();
        assert!(e.contains("`OVER (w PARTITION BY ...)`"), "{e}");
        // In a subquery of a UNION, and behind EXPLAIN.
        let e = check("SELECT 1 UNION ALL SELECT * FROM (SELECT sum(x) OVER (w RANGE UNBOUNDED PRECEDING) FROM t)").unwrap_err().to_string();
        assert!(e.contains("(w RANGE ...)"), "{e}");
        assert!(check("EXPLAIN SELECT sum(x) OVER (w GROUPS 1 PRECEDING) FROM t").unwrap_err().to_string().contains("(w GROUPS ...)"));
    }

    #[test]
    fn a_window_definition_extending_another_is_refused() {
        // DataFusion runs this too, and gets the rows where one service meets the next wrong.
        let sql = "SELECT sum(x) OVER w2 FROM t\nWINDOW w1 AS (PARTITION BY s ORDER BY t),\n  w2 AS (w1 ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)";
        let e = check(sql).unwrap_err().to_string();
        assert!(e.starts_with("line 3: `WINDOW w2 AS (w1 ROWS ...)` extends the named window `w1`"), "{e}");
    }
}
