//! Input a command cannot use as given: a flag, a config file, a JSON row. It names where the
//! mistake is, and `pipeline` exits with 2 (nothing ran). A pipeline file's mistakes are a
//! [`SpecError`](crate::dag::SpecError), which also names the stage.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct InvalidInput {
    /// What was given: `pipeline serve --token`, a file's path, `standard input`.
    pub origin: String,
    /// Line and column in `origin`, when it is text.
    pub at: Option<(u32, u32)>,
    /// The field inside `origin` (`columns.cpu_usage_percent`).
    pub field: Option<String>,
    pub message: String,
}

impl InvalidInput {
    /// A flag of `pipeline COMMAND` with a value that cannot work.
    pub fn flag(command: &str, flag: &str, message: impl Into<String>) -> Self {
        InvalidInput { origin: format!("pipeline {command} {flag}"), at: None, field: None, message: message.into() }
    }

    /// A flag every command takes (`--store`, `--engine`), with a value that cannot work.
    pub fn global_flag(flag: &str, message: impl Into<String>) -> Self {
        InvalidInput { origin: format!("pipeline {flag}"), at: None, field: None, message: message.into() }
    }

    /// A file (or standard input) whose content cannot be used.
    pub fn file(origin: impl fmt::Display, message: impl Into<String>) -> Self {
        InvalidInput { origin: origin.to_string(), at: None, field: None, message: message.into() }
    }

    pub fn at(self, line: u32, column: u32) -> Self {
        InvalidInput { at: Some((line, column)), ..self }
    }

    pub fn field(self, field: impl Into<String>) -> Self {
        InvalidInput { field: Some(field.into()), ..self }
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, column)) = self.at {
            write!(f, ":{line}:{column}")?;
        }
        match &self.field {
            Some(field) => write!(f, ": field `{field}`: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for InvalidInput {}

#[cfg(test)]
mod tests {
    use super::InvalidInput;

    #[test]
    fn says_where_the_mistake_is() {
        assert_eq!(InvalidInput::flag("serve", "--token", "too short").to_string(), "pipeline serve --token: too short");
        assert_eq!(InvalidInput::global_flag("--store", "not s3://").to_string(), "pipeline --store: not s3://");
        assert_eq!(InvalidInput::file("rows.json", "not JSON").at(3, 7).to_string(), "rows.json:3:7: not JSON");
        assert_eq!(
            InvalidInput::file("collect.yaml", "not a metrics column").field("columns.cpu").to_string(),
            "collect.yaml: field `columns.cpu`: not a metrics column"
        );
    }
}
