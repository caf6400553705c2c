//! `graft train`: folder of class folders -> recognizer file, with validation metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use graft::base::BaseModel;
use graft::dataset::{Dataset, DEFAULT_VAL_SPLIT};
use graft::embeddings::Embeddings;
use graft::gpu::DeviceChoice;
use graft::recognizer::Recognizer;
use graft::train::TrainOptions;
use serde_json::json;

use super::args::{BaseArgs, HeadArgs};
use super::Ui;

#[derive(Args)]
pub struct TrainArgs {
    /// Folder with one sub-folder of examples per class.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub head: HeadArgs,
    /// Fraction of each class held out for validation.
    #[arg(long, default_value_t = DEFAULT_VAL_SPLIT)]
    pub val_split: f32,
    /// Where to write the recognizer.
    #[arg(short, long, default_value = "recognizer.safetensors")]
    pub out: PathBuf,
}

pub fn run(args: TrainArgs, ui: Ui) -> Result<()> {
    let base = args.base.open()?;
    let data = embed_folder(&base, &args.data, args.base.cache()?.as_deref(), ui)?;
    let opts = args.head.options();
    let device = args.head.device.choice()?;
    let recognizer = train_and_report(&data, args.val_split, &opts, device, ui)?;
    recognizer.save(&args.out)?;
    ui.say(format!("saved {}", args.out.display()));
    ui.finish(json!({
        "recognizer": args.out,
        "labels": recognizer.labels,
        "base": recognizer.base,
        "training": recognizer.training,
    }));
    Ok(())
}

/// Embeds every example of a labelled folder (cached), warning about files that cannot be used.
pub fn embed_folder(
    base: &BaseModel,
    dir: &Path,
    cache: Option<&Path>,
    ui: Ui,
) -> Result<Embeddings> {
    let dataset = Dataset::from_folder(dir)?;
    let bar = ui.bar(dataset.examples.len() as u64, "embedding");
    let start = Instant::now();
    let (embeddings, skipped) = Embeddings::from_dataset(base, &dataset, cache, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    for (path, err) in &skipped {
        ui.warn(format!("skipped {}: {err}", path.display()));
    }
    if !skipped.is_empty() {
        ui.warn(format!("{} file(s) skipped", skipped.len()));
    }
    ui.say(format!(
        "{} examples in {} classes embedded by {} ({}-d) in {:.1} s",
        embeddings.len(),
        embeddings.classes.len(),
        base.name(),
        base.embedding_dim(),
        start.elapsed().as_secs_f64()
    ));
    Ok(embeddings)
}

/// Splits, trains with a progress bar and prints the split, the result and the confusion matrix.
pub fn train_and_report(
    data: &Embeddings,
    val_split: f32,
    opts: &TrainOptions,
    device: DeviceChoice,
    ui: Ui,
) -> Result<Recognizer> {
    let (train_set, val_set) = data.split(val_split, opts.seed)?;
    let counts = train_set.counts().into_iter().zip(val_set.counts());
    ui.say(format!("{:<16} {:>6} {:>6}", "class", "train", "val"));
    for (name, (t, v)) in data.classes.iter().zip(counts) {
        ui.say(format!("{name:<16} {t:>6} {v:>6}"));
    }
    let bar = ui.bar(opts.epochs as u64, "training");
    let mut backend = graft::gpu::head_backend(device)?;
    ui.say(format!("training on {}", backend.name()));
    let recognizer = Recognizer::train(&train_set, &val_set, opts, backend.as_mut(), &mut |r| {
        bar.inc(1);
        let val = r
            .val_acc
            .map_or(String::new(), |a| format!(" val acc {:.3}", a));
        bar.set_message(format!("loss {:.4}{val}", r.train_loss));
    })?;
    bar.finish_and_clear();
    if let Some(record) = &recognizer.training {
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
    Ok(recognizer)
}
