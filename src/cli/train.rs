//! `graft train`: folder of class folders -> recognizer file, with validation metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use graft::base::BaseModel;
use graft::dataset::{Dataset, DEFAULT_VAL_SPLIT};
use graft::embeddings::{Embeddings, NoiseAugmentation, NoiseRecording, DEFAULT_NOISE_SNR_DB};
use graft::gpu::DeviceChoice;
use graft::input::audio::BACKGROUND_NOISE;
use graft::input::InputSpec;
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
    /// Noisy copies added per training clip of an audio base (0 = off): each mixes the clip with a
    /// random 1 s segment of the `_background_noise_` recordings (seeded pink noise when there
    /// are none) at a random SNR from --augment-snr. Validation stays clean.
    #[arg(long, default_value_t = 0)]
    pub augment_noise: usize,
    /// Add a left/right mirrored copy of each training example of a pose base (x negated, left
    /// and right keypoints swapped); only for classes that do not tell left from right.
    #[arg(long)]
    pub augment_mirror: bool,
    /// SNR range in dB of the noisy copies, LOW,HIGH.
    #[arg(long, value_delimiter = ',', default_values_t = [DEFAULT_NOISE_SNR_DB.0, DEFAULT_NOISE_SNR_DB.1])]
    pub augment_snr: Vec<f32>,
    /// Where to write the recognizer.
    #[arg(short, long, default_value = "recognizer.safetensors")]
    pub out: PathBuf,
}

pub fn run(args: TrainArgs, ui: Ui) -> Result<()> {
    let base = args.base.open()?;
    let cache = args.base.cache()?;
    let data = embed_folder(&base, &args.data, cache.as_deref(), ui)?;
    let opts = args.head.options();
    let device = args.head.device.choice()?;
    let augment = |train_set: Embeddings| -> Result<Embeddings> {
        let train_set = match args.augment_mirror {
            true => {
                let mirrored = graft::pose::with_mirrored(&train_set)?;
                ui.say(format!(
                    "{} mirrored training copies",
                    mirrored.len() - train_set.len()
                ));
                mirrored
            }
            false => train_set,
        };
        if args.augment_noise == 0 {
            return Ok(train_set);
        }
        let [low, high] = args.augment_snr[..] else {
            anyhow::bail!("--augment-snr takes two values, LOW,HIGH");
        };
        let aug = NoiseAugmentation {
            ratio: args.augment_noise,
            snr_db: (low, high),
            seed: opts.seed,
        };
        let noise = noise_recordings(&base, &args.data)?;
        let start = Instant::now();
        let before = train_set.len();
        let out = train_set.augmented_with_noise(&base, &noise, &aug, cache.as_deref())?;
        ui.say(format!(
            "{} noisy training copies ({}) embedded in {:.1} s",
            out.len() - before,
            match noise.len() {
                0 => "generated pink noise".to_string(),
                n => format!("{n} background-noise recording(s)"),
            },
            start.elapsed().as_secs_f64()
        ));
        Ok(out)
    };
    let recognizer = train_and_report_with(&data, args.val_split, &opts, device, ui, &augment)?;
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

/// The WAV recordings in `dir`'s background-noise class folder, if the base takes audio.
fn noise_recordings(base: &BaseModel, dir: &Path) -> Result<Vec<NoiseRecording>> {
    let InputSpec::Audio(spec) = base.input_spec()? else {
        anyhow::bail!("--augment-noise needs an audio base");
    };
    let folder = dir.join(BACKGROUND_NOISE);
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|e| graft::Error::io(&folder, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    paths.sort();
    Ok(paths
        .iter()
        .map(|p| NoiseRecording::load(p, spec))
        .collect::<graft::Result<_>>()?)
}

/// Splits, trains with a progress bar and prints the split, the result and the confusion matrix.
pub fn train_and_report(
    data: &Embeddings,
    val_split: f32,
    opts: &TrainOptions,
    device: DeviceChoice,
    ui: Ui,
) -> Result<Recognizer> {
    train_and_report_with(data, val_split, opts, device, ui, &|t| Ok(t))
}

/// [`train_and_report`] with `augment` applied to the training part of the split.
pub fn train_and_report_with(
    data: &Embeddings,
    val_split: f32,
    opts: &TrainOptions,
    device: DeviceChoice,
    ui: Ui,
    augment: &dyn Fn(Embeddings) -> Result<Embeddings>,
) -> Result<Recognizer> {
    let (train_set, val_set) = data.split(val_split, opts.seed)?;
    let train_set = augment(train_set)?;
    let counts = train_set.counts().into_iter().zip(val_set.counts());
    ui.say(format!("{:<16} {:>6} {:>6}", "class", "train", "val"));
    for (name, (t, v)) in data.classes.iter().zip(counts) {
        ui.say(format!("{name:<16} {t:>6} {v:>6}"));
    }
    let bar = ui.bar(opts.epochs as u64, "training");
    let mut backend = graft::head::backend_for(device)?;
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
