//! How the CLI talks: human text on stdout, progress bars and warnings on stderr, `--quiet` to silence
//! both, `--json` for one JSON object on stdout as the last line.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Output settings shared by every verb.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    pub quiet: bool,
    pub json: bool,
}

impl Ui {
    /// A progress bar on stderr for `len` steps, hidden when quiet.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar
    }

    /// Human-readable output (stdout), unless quiet or JSON.
    pub fn say(&self, text: impl AsRef<str>) {
        if !self.quiet && !self.json {
            out(text.as_ref());
        }
    }

    /// A warning (stderr), unless quiet.
    pub fn warn(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("warning: {}", text.as_ref());
        }
    }

    /// The verb's result: one JSON line on stdout with `--json`.
    pub fn finish(&self, result: Value) {
        if self.json {
            out(&result.to_string());
        }
    }
}

/// Writes a line to stdout; a closed stdout (`graft ... | head`) is not an error worth a panic.
pub fn out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
