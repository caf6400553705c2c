//! Creating a recognizer: embed a labelled folder, split it, augment the training part, train a
//! head, validate, as one call with one options struct.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::embed::{embed_folder, embed_unlabelled, EmbedReport};
use super::figures::{embedding_map, training_charts, PLOT_FORMATS};
use super::{in_phase, Event, Phase, Progress};
use crate::base::BaseModel;
use crate::cache::CacheOptions;
use crate::dataset::{Dataset, DEFAULT_VAL_SPLIT};
use crate::embeddings::{
    noise_recordings, Embeddings, NoiseAugmentation, NoiseRecording, Source, DEFAULT_NOISE_SNR_DB,
};
use crate::gpu::DeviceChoice;
use crate::recognizer::Recognizer;
use crate::reject::UnknownOptions;
use crate::train::TrainOptions;
use crate::{Error, Result};

/// A way of adding copies of the training examples (validation always stays clean).
#[derive(Clone, Debug, PartialEq)]
pub enum Augmentation {
    /// `copies` noisy copies per training clip of an audio base: each mixes the clip with a random
    /// 1 s segment of the folder's `_background_noise_` recordings (seeded pink noise when there
    /// are none) at a random SNR in `snr_db` (low, high), as tfjs speech-commands'
    /// `augmentByMixingNoiseRatio`.
    Noise { copies: usize, snr_db: (f32, f32) },
    /// A left/right mirrored copy of each training example of a pose base (x negated, left and
    /// right keypoints swapped); only for classes that do not tell left from right.
    Mirror,
}

/// The augmentations of a training run, applied in order. Default: none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augmentations(pub Vec<Augmentation>);

/// Everything that shapes [`create`], with its defaults.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CreateOptions {
    /// Fraction of each class held out for validation, in [0, 1). Default 0.3 (a 70/30 split,
    /// seeded by the training seed).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT_VAL_SPLIT))]
    pub val_split: f32,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub augment: Augmentations,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub train: TrainOptions,
    /// The "unknown" rule calibrated on the validation split (default: keep 95 % of the correct
    /// answers; see [`crate::reject`]).
    #[cfg_attr(feature = "cli", command(flatten))]
    pub unknown: UnknownOptions,
    /// Where the head trains: auto (a hardware GPU if there is one, else the CPU), cpu, or gpu
    /// (any GPU, software ones included). Default: $GRAFT_DEVICE, else auto.
    #[cfg_attr(feature = "cli", arg(long))]
    pub device: Option<DeviceChoice>,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub cache: CacheOptions,
    /// Folder to write the training's plots to, as SVG and PNG: training curves, the validation
    /// confusion matrix, per-class precision and recall, and the embedding map (training and
    /// validation examples, validation mistakes circled). Default: none.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub plots: Option<PathBuf>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            val_split: DEFAULT_VAL_SPLIT,
            augment: Augmentations::default(),
            train: TrainOptions::default(),
            unknown: UnknownOptions::default(),
            device: None,
            cache: CacheOptions::default(),
            plots: None,
        }
    }
}

/// A trained recognizer with how it was made.
#[derive(Clone, Debug)]
pub struct Created {
    pub recognizer: Recognizer,
    pub report: CreateReport,
}

/// Examples of one class on each side of the split (after augmentation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassSplit {
    pub class: String,
    pub train: usize,
    pub val: usize,
}

/// What one augmentation added.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AugmentReport {
    /// `noise` or `mirror`.
    pub kind: &'static str,
    /// Training examples added.
    pub added: usize,
    /// For noise: the background-noise recordings used (0: generated pink noise).
    pub noise_recordings: usize,
    pub seconds: f64,
}

/// How the trained recognizer answered one validation example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidationAnswer {
    /// The file the example was made from.
    pub file: PathBuf,
    /// Its class and the class the recognizer gave it (indices into the recognizer's labels).
    pub label: usize,
    pub predicted: usize,
    /// The predicted class's probability.
    pub probability: f32,
}

/// What [`create`] did, beside the recognizer's own training record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreateReport {
    /// The folder's embedding; `None` when [`create_from_embeddings`] was given embeddings.
    pub embedded: Option<EmbedReport>,
    pub augmented: Vec<AugmentReport>,
    pub split: Vec<ClassSplit>,
    /// Each validation example's answer, in the validation split's order: where the validation
    /// metrics' confusion matrix comes from, cell by cell.
    pub validation: Vec<ValidationAnswer>,
    /// The "unknown" rule chosen and why, or why there is none (the rule itself is the
    /// recognizer's, [`Recognizer::unknown_rule`]).
    pub unknown: String,
    /// The training backend (`cpu (ndarray)` or the GPU adapter).
    pub backend: String,
    /// The plot files written (with [`CreateOptions::plots`]).
    pub plots: Vec<PathBuf>,
    /// Wall time of the whole call.
    pub seconds: f64,
}

/// Embeds the labelled folder `data` with `base` and trains a recognizer on it as `options` say.
pub fn create(
    base: &BaseModel,
    data: &Dataset,
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Created> {
    let start = Instant::now();
    let embedded = embed_folder(base, data, &options.cache, progress)?;
    let needs_noise = options
        .augment
        .0
        .iter()
        .any(|a| matches!(a, Augmentation::Noise { .. }));
    let noise = match needs_noise {
        true => noise_recordings(base, &data.root)?,
        false => Vec::new(),
    };
    let mut created =
        create_from_embeddings(base, &embedded.embeddings, &noise, options, progress)?;
    created.report.embedded = Some(embedded.report);
    created.report.seconds = start.elapsed().as_secs_f64();
    Ok(created)
}

/// Trains a recognizer on embeddings already made by `base`: splits them, augments the training
/// part (noise copies mix in `noise`, or generated noise when it is empty), trains and validates.
pub fn create_from_embeddings(
    base: &BaseModel,
    data: &Embeddings,
    noise: &[NoiseRecording],
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Created> {
    let start = Instant::now();
    options.train.validate()?;
    options.unknown.validate()?;
    let (mut train_set, val_set) = data.split(options.val_split, options.train.seed)?;
    let mut augmented = Vec::new();
    for aug in &options.augment.0 {
        let begun = Instant::now();
        let before = train_set.len();
        let (result, kind, noise_recordings) =
            in_phase(progress, Phase::Augmenting, 0, |_| match aug {
                Augmentation::Mirror => (crate::pose::with_mirrored(&train_set), "mirror", 0),
                Augmentation::Noise { copies, snr_db } => {
                    let noise_aug = NoiseAugmentation {
                        ratio: *copies,
                        snr_db: *snr_db,
                        seed: options.train.seed,
                    };
                    let root = options.cache.root();
                    let copies =
                        train_set.augmented_with_noise(base, noise, &noise_aug, root.as_deref());
                    (copies, "noise", noise.len())
                }
            });
        train_set = result?;
        augmented.push(AugmentReport {
            kind,
            added: train_set.len() - before,
            noise_recordings,
            seconds: begun.elapsed().as_secs_f64(),
        });
    }
    let split = data
        .classes()
        .iter()
        .zip(train_set.counts().into_iter().zip(val_set.counts()))
        .map(|(class, (train, val))| ClassSplit {
            class: class.clone(),
            train,
            val,
        })
        .collect();
    let device = DeviceChoice::resolve(options.device)?;
    let mut backend = crate::head::backend_for(device)?;
    let epochs = options.train.epochs as u64;
    let recognizer = in_phase(progress, Phase::Training, epochs, |advance| {
        Recognizer::train(
            &train_set,
            &val_set,
            &options.train,
            backend.as_mut(),
            &mut |record| {
                advance(1);
                progress.on(Event::Epoch(record));
            },
        )
    });
    let mut recognizer = recognizer?;
    let unknown = calibrate_unknown(
        base,
        &mut recognizer,
        &train_set,
        &val_set,
        options,
        progress,
    )?;
    let validation = validation_answers(&recognizer, &val_set)?;
    let plots = match &options.plots {
        Some(dir) => write_training_plots(dir, &recognizer, &train_set, &val_set)?,
        None => Vec::new(),
    };
    Ok(Created {
        recognizer,
        report: CreateReport {
            embedded: None,
            augmented,
            split,
            validation,
            unknown,
            backend: backend.name(),
            plots,
            seconds: start.elapsed().as_secs_f64(),
        },
    })
}

/// Writes the training run's charts to `dir`: its curves and validation figures, and the map of
/// the training examples (not the augmented copies) with the validation ones.
fn write_training_plots(
    dir: &std::path::Path,
    recognizer: &Recognizer,
    train_set: &Embeddings,
    val_set: &Embeddings,
) -> Result<Vec<PathBuf>> {
    let originals: Vec<usize> = (0..train_set.len())
        .filter(|&i| {
            matches!(
                train_set.sources()[i],
                Source::File(_) | Source::NoiseClip { .. }
            )
        })
        .collect();
    let train_originals = train_set.subset(&originals);
    let map = embedding_map(recognizer, &[(&train_originals, false), (val_set, true)])?;
    let charts = training_charts(recognizer.training(), map.as_ref());
    crate::plots::write_charts(dir, &charts, &PLOT_FORMATS)
}

/// The recognizer's answer to each of `val`'s examples (whose classes are the recognizer's).
fn validation_answers(recognizer: &Recognizer, val: &Embeddings) -> Result<Vec<ValidationAnswer>> {
    if val.is_empty() {
        return Ok(Vec::new());
    }
    let answers = recognizer.predict(val.vectors(), 1)?;
    let index = |label: &str| recognizer.labels().iter().position(|l| l == label);
    Ok(answers
        .iter()
        .zip(val.labels().iter().zip(val.sources()))
        .filter_map(|(answer, (&label, source))| {
            Some(ValidationAnswer {
                file: source.file().to_path_buf(),
                label,
                predicted: index(&answer.label)?,
                probability: answer.probability,
            })
        })
        .collect())
}

/// Calibrates `recognizer`'s "unknown" rule as `options.unknown` says (embedding its
/// `unknown_data` folder), returning what was chosen.
fn calibrate_unknown(
    base: &BaseModel,
    recognizer: &mut Recognizer,
    train_set: &Embeddings,
    val_set: &Embeddings,
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<String> {
    let (out, skipped) = match &options.unknown.unknown_data {
        Some(dir) if options.unknown.accept > 0.0 => {
            let (rows, skipped) = embed_unlabelled(base, dir, &options.cache, progress)?;
            (Some(rows), skipped.len())
        }
        _ => (None, 0),
    };
    let accept = options.unknown.accept;
    let calibration =
        recognizer.calibrate_unknown(train_set, val_set, out.as_ref().map(|o| o.view()), accept)?;
    Ok(match skipped {
        0 => calibration.note,
        n => format!(
            "{} ({n} unusable file(s) of the unknown data skipped)",
            calibration.note
        ),
    })
}

impl Augmentations {
    /// Noise copies per clip (0: none) and their SNR range, as the command line gives them.
    fn from_flags(noise: usize, snr: &[f32], mirror: bool) -> Result<Augmentations> {
        let mut out = Vec::new();
        if mirror {
            out.push(Augmentation::Mirror);
        }
        if noise > 0 {
            let [low, high] = snr[..] else {
                return Err(Error::Invalid(
                    "the noise SNR range takes two values, LOW,HIGH".into(),
                ));
            };
            out.push(Augmentation::Noise {
                copies: noise,
                snr_db: (low, high),
            });
        }
        Ok(Augmentations(out))
    }
}

#[cfg(feature = "cli")]
mod flags {
    use clap::{value_parser, Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

    use super::{Augmentations, DEFAULT_NOISE_SNR_DB};

    const NOISE: &str = "augment_noise";
    const SNR: &str = "augment_snr";
    const MIRROR: &str = "augment_mirror";

    /// `--augment-noise N`, `--augment-snr LOW,HIGH`, `--augment-mirror`.
    impl Args for Augmentations {
        fn augment_args(cmd: Command) -> Command {
            let (low, high) = DEFAULT_NOISE_SNR_DB;
            cmd.arg(
                Arg::new(NOISE)
                    .long("augment-noise")
                    .value_name("N")
                    .value_parser(value_parser!(usize))
                    .default_value("0")
                    .help(
                        "Noisy copies added per training clip of an audio base (0 = off): each \
                         mixes the clip with a random 1 s segment of the `_background_noise_` \
                         recordings (seeded pink noise when there are none) at a random SNR \
                         from --augment-snr. Validation stays clean",
                    ),
            )
            .arg(
                Arg::new(SNR)
                    .long("augment-snr")
                    .value_name("LOW,HIGH")
                    .value_parser(value_parser!(f32))
                    .value_delimiter(',')
                    .allow_hyphen_values(true)
                    .default_values([low.to_string(), high.to_string()])
                    .help("SNR range in dB of the noisy copies"),
            )
            .arg(
                Arg::new(MIRROR)
                    .long("augment-mirror")
                    .action(ArgAction::SetTrue)
                    .help(
                        "Add a left/right mirrored copy of each training example of a pose base \
                         (x negated, left and right keypoints swapped); only for classes that \
                         do not tell left from right",
                    ),
            )
        }

        fn augment_args_for_update(cmd: Command) -> Command {
            Self::augment_args(cmd)
        }
    }

    impl FromArgMatches for Augmentations {
        fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
            let noise = m.get_one::<usize>(NOISE).copied().unwrap_or(0);
            let snr: Vec<f32> = m
                .get_many::<f32>(SNR)
                .map(|v| v.copied().collect())
                .unwrap_or_default();
            let mirror = m.get_flag(MIRROR);
            Augmentations::from_flags(noise, &snr, mirror)
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))
        }

        fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
            *self = Self::from_arg_matches(m)?;
            Ok(())
        }
    }
}
