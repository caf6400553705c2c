//! The whole job on what ships in the repository (EfficientNet-Lite0 from the zoo and the Tux
//! Paint image set): embed, train, evaluate, save, reload, predict, export, KNN.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::answer::single;
use super::classify::Classifier;
use super::create::{create_from_embeddings, CreateOptions, CreateReport};
use super::embed::{embed_folder, EmbedReport};
use super::exported::ExportedClassifier;
use super::knn::knn_index;
use super::Progress;
use crate::base::{BaseModel, BaseOptions};
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::export::ExportOptions;
use crate::gpu::DeviceChoice;
use crate::input::image::load_image;
use crate::metrics::Metrics;
use crate::recognizer::{Recognizer, TrainingRecord};
use crate::train::TrainReport;
use crate::{Error, Result};

/// The base model the demo grafts on.
pub const DEMO_BASE: &str = "efficientnet-lite0";

/// The demo's images (`examples/data/tuxpaint-dev` of graft's source: 88 Tux Paint stamps in 7
/// classes, GPL-2.0), compiled into graft: (path relative to the set's folder, bytes).
const DEMO_FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));

/// The demo's image set as a folder: written out of graft itself into
/// `<cache>/demo/tuxpaint-dev-<hash>` on first use (so an installed graft needs no source tree),
/// then reused. A folder a killed run left half-written is completed.
pub fn demo_data() -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (name, bytes) in DEMO_FILES {
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    let digest = hash.finalize();
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let dir = crate::cache::cache_dir()?
        .join("demo")
        .join(format!("tuxpaint-dev-{tag}"));
    let complete = dir.join(".complete");
    if complete.is_file() {
        return Ok(dir);
    }
    for (name, bytes) in DEMO_FILES {
        let path = dir.join(name);
        let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !whole {
            crate::atomic::write_atomic(&path, bytes)?;
        }
    }
    crate::atomic::write_atomic(&complete, b"")?;
    Ok(dir)
}

/// How to run the demo.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DemoOptions {
    /// Folder for the recognizer, the KNN index and the exported ONNX file. Default graft-demo.
    #[cfg_attr(feature = "cli", arg(long, default_value = "graft-demo"))]
    pub out_dir: PathBuf,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub cache: CacheOptions,
    /// Where the head trains: auto, cpu or gpu. Default: $GRAFT_DEVICE, else auto.
    #[cfg_attr(feature = "cli", arg(long))]
    pub device: Option<DeviceChoice>,
    /// Inference engine for the base: auto (ONNX Runtime when it can be had, else tract), tract
    /// or ort. Default auto.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = crate::base::Backend::default()))]
    pub backend: crate::base::Backend,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            out_dir: PathBuf::from("graft-demo"),
            cache: CacheOptions::default(),
            device: None,
            backend: crate::base::Backend::default(),
        }
    }
}

/// One validation image the reloaded recognizer answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DemoPrediction {
    pub file: PathBuf,
    #[serde(rename = "true")]
    pub truth: String,
    pub predicted: String,
    pub probability: f32,
}

/// Everything the demo did and measured.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub base: String,
    /// The engine that ran the base: "ONNX Runtime" or "tract".
    pub engine: String,
    pub cut: String,
    pub embedding_dim: usize,
    pub embedded: EmbedReport,
    pub created: CreateReport,
    pub recognizer: PathBuf,
    pub validation: Option<Metrics>,
    pub report: Option<TrainReport>,
    /// The whole training record (its validation and report are the two fields above).
    #[serde(skip)]
    pub training: Option<TrainingRecord>,
    pub predictions: Vec<DemoPrediction>,
    pub onnx: PathBuf,
    /// Largest difference between the exported file's probabilities and graft's.
    pub export_max_abs_diff: f32,
    pub knn_index: PathBuf,
    pub knn_examples: usize,
    pub knn_correct: usize,
    pub knn_val: usize,
    pub knn_accuracy: f64,
    pub seconds: f64,
}

/// Runs the demo, writing into `options.out_dir`.
pub fn run(options: &DemoOptions, progress: &dyn Progress) -> Result<DemoReport> {
    let start = Instant::now();
    let base_options = BaseOptions::on(options.backend);
    let base = Arc::new(BaseModel::open_with(DEMO_BASE, &base_options, progress)?);
    let data = Dataset::from_folder(demo_data()?)?;
    let embedded = embed_folder(&base, &data, &options.cache, progress)?;

    let create_options = CreateOptions {
        device: options.device,
        cache: options.cache.clone(),
        ..CreateOptions::default()
    };
    let created =
        create_from_embeddings(&base, &embedded.embeddings, &[], &create_options, progress)?;
    let rec_path = options.out_dir.join("recognizer.safetensors");
    created.recognizer.save(&rec_path)?;
    let reloaded = Classifier::new(Recognizer::load(&rec_path)?, base.clone())?;

    // Predict one validation image per class with the reloaded recognizer, from the files.
    let seed = create_options.train.seed;
    let (train_set, val_set) = embedded.embeddings.split(create_options.val_split, seed)?;
    let spec = base.image_spec()?;
    let classes = embedded.embeddings.classes();
    let mut predictions = Vec::new();
    let mut samples = Vec::new();
    for (class, truth) in classes.iter().enumerate() {
        let Some(i) = val_set.labels().iter().position(|&l| l == class) else {
            continue;
        };
        let file = val_set.sources()[i].file().to_path_buf();
        let tensor = load_image(&file, spec)?
            .insert_axis(ndarray::Axis(0))
            .into_dyn();
        // One embedding for both the answer and the probabilities the export is checked with.
        let embedding = base.embed(tensor.view())?;
        let recognizer = reloaded.recognizer();
        let p = single(recognizer.predict(embedding.view(), 2)?)?;
        predictions.push(DemoPrediction {
            file,
            truth: truth.clone(),
            predicted: p.label,
            probability: p.probability,
        });
        let probabilities = recognizer.probabilities(embedding.view())?;
        samples.push((tensor, probabilities));
    }

    // Export base + head as one ONNX file (image in) and check it against the recognizer.
    let onnx_path = options.out_dir.join("recognizer.onnx");
    reloaded.export(&onnx_path, &ExportOptions::default())?;
    let exported = ExportedClassifier::load(&onnx_path, &base_options.engine)
        .map_err(|e| Error::Internal(format!("reloading the exported ONNX file: {e}")))?;
    let mut max_diff = 0f32;
    for (tensor, expected) in &samples {
        let got = exported.probabilities(tensor.view())?;
        max_diff = got
            .iter()
            .zip(expected)
            .fold(max_diff, |m, (a, b)| m.max((a - b).abs()));
    }

    // A KNN index over the training embeddings, scored on the validation ones.
    let knn = knn_index(&train_set)?;
    let index_path = options.out_dir.join("knn-index.safetensors");
    knn.save(&index_path)?;
    let answers = knn.classify(val_set.vectors(), 3)?;
    let knn_correct = answers
        .iter()
        .zip(val_set.labels())
        .filter(|(p, &l)| p.label == classes[l])
        .count();
    let training = reloaded.recognizer().training();
    Ok(DemoReport {
        base: DEMO_BASE.into(),
        engine: match base.backend() {
            crate::base::Backend::Ort => "ONNX Runtime".into(),
            _ => "tract".into(),
        },
        cut: base.cut().into(),
        embedding_dim: base.embedding_dim(),
        embedded: embedded.report,
        created: created.report,
        recognizer: rec_path,
        validation: training.and_then(|t| t.validation.clone()),
        report: training.map(|t| t.report.clone()),
        training: training.cloned(),
        predictions,
        onnx: onnx_path,
        export_max_abs_diff: max_diff,
        knn_index: index_path,
        knn_examples: knn.len(),
        knn_correct,
        knn_val: val_set.len(),
        knn_accuracy: knn_correct as f64 / val_set.len().max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}
