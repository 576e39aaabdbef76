//! Progress of running stages: one bar per stage on a terminal, plain log lines otherwise
//! (cron, CI, pipes), never both.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars only when stderr is a terminal and the caller did not ask for quiet.
    pub fn new(allow_bars: bool) -> Progress {
        let multi = (allow_bars && std::io::stderr().is_terminal()).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    pub fn bars(&self) -> bool {
        self.multi.is_some()
    }

    pub fn stage(&self, name: &str) -> StageProgress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:<22.bold} {elapsed:>4} {wide_msg}").expect("valid template").tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"),
            );
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if bar.is_none() {
            tracing::info!("{name}: started");
        }
        StageProgress { name: name.to_string(), bar }
    }

    /// Print a line above the bars (or plainly) without tearing them.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// A running stage's handle for telling the user how far along it is.
#[derive(Clone)]
pub struct StageProgress {
    name: String,
    bar: Option<ProgressBar>,
}

impl StageProgress {
    /// A detached handle, for running an op outside a pipeline run (tests, benchmarks).
    pub fn hidden(name: &str) -> StageProgress {
        StageProgress { name: name.to_string(), bar: None }
    }

    pub fn message(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => tracing::debug!("{}: {msg}", self.name),
        }
    }

    pub fn set_rows(&self, rows: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{rows} rows"));
        }
    }

    /// Switch to a bar with a known length (files, trees, epochs).
    pub fn set_length(&self, len: u64, unit: &str) {
        if let Some(b) = &self.bar {
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner:.cyan}} {{prefix:<22.bold}} {{elapsed:>4}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {unit} {{wide_msg}}"
                ))
                .expect("valid template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓")
                .progress_chars("=> "),
            );
            b.set_length(len);
            b.set_position(0);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn finish(&self, ok: bool, line: &str) {
        match &self.bar {
            Some(b) => {
                if ok {
                    b.finish_with_message(line.to_string());
                } else {
                    b.abandon_with_message(format!("FAILED {line}"));
                }
            }
            None if ok => tracing::info!("{}: {line}", self.name),
            None => tracing::error!("{}: failed: {line}", self.name),
        }
    }
}
