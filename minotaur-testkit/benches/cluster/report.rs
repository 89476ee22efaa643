//! Figures and how they are reported: the printed table and the JSON lines
//! file, plus the small statistics every figure uses (medians, percentiles).

use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// One reported figure, with the baseline it is compared against.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The figure's name (issue 6), with a suffix for a part.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Its unit (shared with the baseline).
    pub unit: String,
    /// What the baseline is.
    pub baseline: String,
    /// The baseline's value measured in the same run (None: no baseline).
    pub baseline_value: Option<f64>,
    /// `value / baseline_value`.
    pub ratio: Option<f64>,
    /// The goal, as text (not part of the JSON line).
    #[serde(skip)]
    pub goal: Option<Goal>,
    /// How many samples the medians are over, and anything else worth
    /// knowing (not part of the JSON line).
    #[serde(skip)]
    pub note: String,
}

/// A goal on a figure's ratio or value.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// ratio <= x
    RatioAtMost(f64),
    /// ratio >= x
    RatioAtLeast(f64),
    /// value < x (in the figure's unit)
    ValueBelow(f64),
}

impl Goal {
    fn text(&self, unit: &str) -> String {
        match self {
            Goal::RatioAtMost(x) => format!("ratio <= {x}"),
            Goal::RatioAtLeast(x) => format!("ratio >= {x}"),
            Goal::ValueBelow(x) => format!("< {x} {unit}"),
        }
    }

    fn met(&self, value: f64, ratio: Option<f64>) -> bool {
        match (self, ratio) {
            (Goal::RatioAtMost(x), Some(r)) => r <= *x,
            (Goal::RatioAtLeast(x), Some(r)) => r >= *x,
            (Goal::ValueBelow(x), _) => value < *x,
            _ => false,
        }
    }
}

impl Figure {
    /// A figure compared against a baseline.
    pub fn new(
        name: &str,
        value: f64,
        unit: &str,
        baseline: &str,
        baseline_value: Option<f64>,
    ) -> Figure {
        let ratio = baseline_value
            .filter(|b| *b != 0.0 && b.is_finite())
            .map(|b| value / b);
        Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            baseline: baseline.to_string(),
            baseline_value,
            ratio,
            goal: None,
            note: String::new(),
        }
    }

    /// Sets the goal.
    pub fn goal(mut self, goal: Goal) -> Figure {
        self.goal = Some(goal);
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    fn met(&self) -> &'static str {
        match self.goal {
            Some(g) if g.met(self.value, self.ratio) => "yes",
            Some(_) => "NO",
            None => "-",
        }
    }
}

/// Collects figures, printing each as it arrives.
#[derive(Default)]
pub struct Report {
    figures: Vec<Figure>,
}

impl Report {
    /// Adds a figure and prints it at once (a long run shows progress).
    pub fn add(&mut self, figure: Figure) {
        eprintln!(
            "  {} = {} {} (baseline {}: {}) ratio {} {}",
            figure.name,
            num(figure.value),
            figure.unit,
            figure.baseline,
            figure.baseline_value.map(num).unwrap_or_else(|| "-".into()),
            figure
                .ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or("-".into()),
            figure.note
        );
        self.figures.push(figure);
    }

    /// Prints the whole table (markdown, so it can go into BENCHMARKS.md).
    pub fn print_table(&self) {
        println!();
        println!("| figure | value | baseline | baseline value | ratio | goal | met? | samples / notes |");
        println!("| --- | ---: | --- | ---: | ---: | --- | :---: | --- |");
        for f in &self.figures {
            println!(
                "| {} | {} {} | {} | {} | {} | {} | {} | {} |",
                f.name,
                num(f.value),
                f.unit,
                f.baseline,
                f.baseline_value
                    .map(|b| format!("{} {}", num(b), f.unit))
                    .unwrap_or_else(|| "-".into()),
                f.ratio.map(|r| format!("{r:.2}")).unwrap_or("-".into()),
                f.goal.map(|g| g.text(&f.unit)).unwrap_or("-".into()),
                f.met(),
                f.note
            );
        }
    }

    /// Writes one JSON object per line per figure to `path`.
    pub fn write_json(&self, path: &PathBuf) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for f in &self.figures {
            let line = serde_json::to_string(f).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}

/// A number with a sensible amount of precision.
pub fn num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// Where the JSON lines go: `minotaur-bench.json` in the workspace's target
/// directory (`CARGO_TARGET_DIR` when set, as cargo itself does).
pub fn json_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    };
    target.join("minotaur-bench.json")
}

/// The median of `samples` (0 if empty).
pub fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

/// The `p`th percentile of `samples` (nearest rank; 0 if empty).
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
