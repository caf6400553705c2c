//! `graft train`: folder of class folders -> recognizer file, with validation metrics.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::dataset::Dataset;
use graft::recognizer::TrainingRecord;
use graft::task::{self, CreateOptions, CreateReport, EmbedReport};
use serde_json::json;

use super::args::BaseArgs;
use super::Ui;

#[derive(Args)]
pub struct TrainArgs {
    /// Folder with one sub-folder of examples per class.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub options: CreateOptions,
    /// Where to write the recognizer.
    #[arg(short, long, default_value = "recognizer.safetensors")]
    pub out: PathBuf,
}

pub fn run(args: TrainArgs, ui: Ui) -> Result<()> {
    let base = args.base.open(ui)?;
    let data = Dataset::from_folder(&args.data)?;
    let created = task::create(&base, &data, &args.options, &ui.progress())?;
    if let Some(embedded) = &created.report.embedded {
        say_embedded(embedded, ui);
    }
    say_created(&created.report, created.recognizer.training(), ui);
    created.recognizer.save(&args.out)?;
    ui.say(format!("saved {}", args.out.display()));
    let r = &created.recognizer;
    ui.finish(json!({
        "recognizer": args.out,
        "labels": r.labels(),
        "base": r.base(),
        "training": r.training(),
        "unknown": r.unknown_rule(),
        "report": created.report,
    }));
    Ok(())
}

/// Prints what embedding a folder did, with a warning per skipped file.
pub fn say_embedded(r: &EmbedReport, ui: Ui) {
    for (path, err) in &r.skipped {
        ui.warn(format!("skipped {}: {err}", path.display()));
    }
    if !r.skipped.is_empty() {
        ui.warn(format!("{} file(s) skipped", r.skipped.len()));
    }
    ui.say(format!(
        "{} examples in {} classes embedded by {} ({}-d) in {:.1} s",
        r.examples, r.classes, r.base, r.dim, r.seconds
    ));
}

/// Prints the augmentation, the split, the training run and the validation metrics.
pub fn say_created(report: &CreateReport, training: Option<&TrainingRecord>, ui: Ui) {
    for a in &report.augmented {
        let what = match (a.kind, a.noise_recordings) {
            ("noise", 0) => "noisy training copies (generated pink noise)".to_string(),
            ("noise", n) => format!("noisy training copies ({n} background-noise recording(s))"),
            _ => "mirrored training copies".to_string(),
        };
        ui.say(format!("{} {what} in {:.1} s", a.added, a.seconds));
    }
    ui.say(format!("{:<16} {:>6} {:>6}", "class", "train", "val"));
    for c in &report.split {
        ui.say(format!("{:<16} {:>6} {:>6}", c.class, c.train, c.val));
    }
    ui.say(format!("training on {}", report.backend));
    if let Some(record) = training {
        let r = &record.report;
        ui.say(format!(
            "trained on {} for {} epoch(s) in {:.2} s{}; weights of epoch {}",
            r.backend,
            r.history.len(),
            r.seconds,
            if r.stopped_early { " (early stop)" } else { "" },
            r.weights_epoch
        ));
        match &record.validation {
            Some(m) => ui.say(format!("validation: {m}")),
            None => ui.say("no validation split (--val-split 0)"),
        }
    }
    ui.say(&report.unknown);
    say_mistakes(report, ui);
    if let Some(dir) = report.plots.first().and_then(|p| p.parent()) {
        ui.say(format!(
            "{} plot file(s) written to {}",
            report.plots.len(),
            dir.display()
        ));
    }
}

/// Names the validation examples the recognizer got wrong (at most [`MISTAKES_SHOWN`]; all of
/// them are in `--json`).
fn say_mistakes(report: &CreateReport, ui: Ui) {
    const MISTAKES_SHOWN: usize = 10;
    let class = |i: usize| report.split.get(i).map_or("?", |c| c.class.as_str());
    let wrong: Vec<_> = report
        .validation
        .iter()
        .filter(|a| a.label != a.predicted)
        .collect();
    if wrong.is_empty() {
        return;
    }
    ui.say(format!(
        "{} validation example(s) answered wrong:",
        wrong.len()
    ));
    for a in wrong.iter().take(MISTAKES_SHOWN) {
        ui.say(format!(
            "  {} ({}) answered {} ({:.2})",
            a.file.display(),
            class(a.label),
            class(a.predicted),
            a.probability
        ));
    }
    if wrong.len() > MISTAKES_SHOWN {
        ui.say(format!("  ... and {} more", wrong.len() - MISTAKES_SHOWN));
    }
}
