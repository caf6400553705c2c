//! How the CLI talks: human text on stdout, progress bars and warnings on stderr, `--quiet` to silence
//! both, `--json` for one JSON object on stdout as the last line.

use std::sync::Mutex;

use graft::task::{Event, Phase, Progress};
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

    /// A progress bar on stderr for a download of `len` bytes (0: unknown), hidden when quiet.
    pub fn byte_bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let template = if len == 0 {
            "{msg:>12} {bytes} {elapsed_precise}"
        } else {
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar
    }

    /// Progress bars for a library task's events.
    pub fn progress(&self) -> Bars {
        Bars {
            ui: *self,
            bar: Mutex::new(None),
        }
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

/// One bar per phase of a task: embedding files, training epochs (with the loss).
pub struct Bars {
    ui: Ui,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn on(&self, event: Event<'_>) {
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Started(phase, total) => {
                *bar = Some(match phase {
                    Phase::Augmenting => {
                        let b = self.ui.bar(0, phase.name());
                        b.enable_steady_tick(std::time::Duration::from_millis(200));
                        b
                    }
                    Phase::Downloading => self.ui.byte_bar(total, phase.name()),
                    _ => self.ui.bar(total, phase.name()),
                });
            }
            Event::Advanced(n) => {
                if let Some(b) = bar.as_ref() {
                    b.inc(n);
                }
            }
            Event::Epoch(r) => {
                if let Some(b) = bar.as_ref() {
                    let val = r
                        .val_acc
                        .map_or(String::new(), |a| format!(" val acc {a:.3}"));
                    b.set_message(format!("loss {:.4}{val}", r.train_loss));
                }
            }
            Event::Finished(_) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
            }
            Event::Notice(line) => {
                if !self.ui.quiet {
                    match bar.as_ref() {
                        Some(b) => b.suspend(|| eprintln!("{line}")),
                        None => eprintln!("{line}"),
                    }
                }
            }
        }
    }
}

/// Writes a line to stdout; a closed stdout (`graft ... | head`) is not an error worth a panic.
pub fn out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
