//! A run's trace: one line per thing that happened, kept only when asked
//! for (a replay, or a failing seed), so an ordinary run pays nothing.

use std::time::Duration;

/// The lines of a run, if recorded.
#[derive(Debug, Default)]
pub struct Trace {
    lines: Option<Vec<String>>,
}

impl Trace {
    /// A trace that records (`true`) or ignores every line.
    pub fn new(record: bool) -> Self {
        Trace {
            lines: record.then(Vec::new),
        }
    }

    /// Adds a line about `node` at `now`; `line` is only called when
    /// recording.
    pub fn line(&mut self, now: Duration, node: &str, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>9.3} {node:>4} {}", now.as_secs_f64(), line()));
        }
    }

    /// The recorded lines.
    pub fn into_lines(self) -> Option<Vec<String>> {
        self.lines
    }
}
