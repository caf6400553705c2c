//! `graft listen`: find the words a speech recognizer knows in a long recording.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::EngineOptions;
use graft::listen::{evaluate, listen_file, read_truth, ListenOptions};
use graft::task::Classifier;
use serde_json::json;

use super::Ui;

#[derive(Args)]
pub struct ListenArgs {
    /// A speech recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// A WAV recording (any rate, mono or multi-channel).
    pub audio: PathBuf,
    #[command(flatten)]
    pub options: ListenOptions,
    /// CSV of the words known to be spoken (`time_s,word` per line, the time at the word's
    /// middle): score the detections (hits within --tolerance, misses, false alarms).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Largest gap in seconds between a detection's window centre and a known word's time.
    #[arg(long, default_value_t = 0.5)]
    pub tolerance: f64,
    #[command(flatten)]
    pub engine: EngineOptions,
}

pub fn run(args: ListenArgs, ui: Ui) -> Result<()> {
    let classifier = Classifier::load(&args.recognizer, &args.engine, &ui.progress())?;
    let detections = listen_file(
        classifier.base(),
        classifier.recognizer(),
        &args.audio,
        args.options,
    )?;
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
