//! `graft listen`: find the words a speech recognizer knows in a long recording.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use graft::listen::{evaluate, listen_file, ListenOptions, WordTime};
use graft::recognizer::Recognizer;
use serde_json::json;

use super::args::BackendArgs;
use super::Ui;

#[derive(Args)]
pub struct ListenArgs {
    /// A speech recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// A WAV recording (any rate, mono or multi-channel).
    pub audio: PathBuf,
    /// Lowest probability of a word that is reported.
    #[arg(long, default_value_t = ListenOptions::default().threshold)]
    pub threshold: f32,
    /// After a report, ignore windows starting within this many milliseconds.
    #[arg(long, default_value_t = ListenOptions::default().suppression_ms)]
    pub suppression_ms: u32,
    /// Overlap of consecutive 1 s windows, in [0, 1).
    #[arg(long, default_value_t = ListenOptions::default().overlap)]
    pub overlap: f32,
    /// How far the centre of a window's sound energy may lie from its middle (fraction of the
    /// window, 0.5: no limit) for the window to count.
    #[arg(long, default_value_t = ListenOptions::default().centring)]
    pub centring: f32,
    /// Windows quieter than this RMS level (dBFS) are silence and never count.
    #[arg(long, default_value_t = ListenOptions::default().silence_db, allow_hyphen_values = true)]
    pub silence_db: f32,
    /// CSV of the words known to be spoken (`time_s,word` per line, the time at the word's
    /// middle): score the detections (hits within --tolerance, misses, false alarms).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Largest gap in seconds between a detection's window centre and a known word's time.
    #[arg(long, default_value_t = 0.5)]
    pub tolerance: f64,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: ListenArgs, ui: Ui) -> Result<()> {
    let recognizer = Recognizer::load(&args.recognizer)?;
    let base = args.backend.reopen(&recognizer.base)?;
    let options = ListenOptions {
        threshold: args.threshold,
        suppression_ms: args.suppression_ms,
        overlap: args.overlap,
        centring: args.centring,
        silence_db: args.silence_db,
        ..ListenOptions::default()
    };
    let detections = listen_file(&base, &recognizer, &args.audio, options)?;
    for d in &detections {
        ui.say(format!(
            "{:>8.2}s  {:<12} {:.3}",
            d.start_s, d.word, d.probability
        ));
    }
    if detections.is_empty() {
        ui.say("no words above the threshold");
    }
    let mut result = json!({ "detections": detections });
    if let Some(truth) = &args.truth {
        let truth = read_truth(truth)?;
        let score = evaluate(&detections, &truth, args.tolerance);
        ui.say(format!(
            "hits {}/{} ({:.1}%), misses {}, false alarms {}",
            score.hits,
            truth.len(),
            100.0 * score.hit_rate,
            score.misses.len(),
            score.false_alarms.len()
        ));
        result["score"] = json!(score);
    }
    ui.finish(result);
    Ok(())
}

/// Reads `time_s,word` lines (blank lines and `#` comments skipped).
fn read_truth(path: &Path) -> Result<Vec<WordTime>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(',')
            .and_then(|(t, w)| Some((t.trim().parse::<f64>().ok()?, w.trim())));
        match parsed {
            Some((time_s, word)) if time_s.is_finite() && !word.is_empty() => out.push(WordTime {
                word: word.to_string(),
                time_s,
            }),
            _ => anyhow::bail!(
                "{} line {}: expected `time_s,word`, got {line:?}",
                path.display(),
                n + 1
            ),
        }
    }
    Ok(out)
}
