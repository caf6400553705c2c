//! `graft demo`: the whole job on what ships in the repository (EfficientNet-Lite0 from the zoo and
//! the Tux Paint image set): embed, train, evaluate, save, reload, predict, export, KNN.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use graft::base::{BaseModel, BaseOptions};
use graft::dataset::DEFAULT_VAL_SPLIT;
use graft::export::{export_onnx, PROBABILITIES};
use graft::input::image::load_image;
use graft::recognizer::Recognizer;
use graft::train::TrainOptions;
use ndarray::Axis;
use serde_json::json;

use super::args::{BackendArgs, DeviceArgs};
use super::knn::index_of;
use super::train::{embed_folder, train_and_report};
use super::Ui;

/// The base model the demo grafts on.
const DEMO_BASE: &str = "efficientnet-lite0";

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the recognizer, the KNN index and the exported ONNX file.
    #[arg(long, default_value = "graft-demo")]
    pub out_dir: PathBuf,
    /// Do not read or write the embedding cache (embed every image again).
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The image set shipped in the repository.
pub fn demo_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev")
}

pub fn run(args: DemoArgs, ui: Ui) -> Result<()> {
    let start = Instant::now();
    let base = args.backend.open(DEMO_BASE)?;
    ui.say(format!(
        "base: {DEMO_BASE}, cut at '{}' ({}-d embedding), frozen",
        base.cut(),
        base.embedding_dim()
    ));
    let cache = if args.no_cache {
        None
    } else {
        graft::zoo::cache_dir().ok()
    };
    let data = embed_folder(&base, &demo_data(), cache.as_deref(), ui)?;

    let opts = TrainOptions::default();
    let recognizer = train_and_report(&data, DEFAULT_VAL_SPLIT, &opts, args.device.choice()?, ui)?;
    let rec_path = args.out_dir.join("recognizer.safetensors");
    recognizer.save(&rec_path)?;
    let reloaded = Recognizer::load(&rec_path)?;
    ui.say(format!("saved and reloaded {}", rec_path.display()));

    // Predict one validation image per class with the reloaded recognizer, from the files.
    let (train_set, val_set) = data.split(DEFAULT_VAL_SPLIT, opts.seed)?;
    let spec = base.image_spec()?;
    let mut shown = Vec::new();
    let mut samples = Vec::new();
    for class in 0..data.classes.len() {
        let Some(i) = val_set.labels.iter().position(|&l| l == class) else {
            continue;
        };
        let path = &val_set.sources[i];
        let tensor = load_image(path, spec)?.insert_axis(Axis(0)).into_dyn();
        let embedding = base.embed(tensor.view())?;
        let p = reloaded.predict(embedding.view(), 2)?.remove(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ui.say(format!(
            "  {name:<40} true {:<11} predicted {:<11} p={:.3}",
            data.classes[class], p.label, p.probability
        ));
        shown.push(json!({ "file": path, "true": data.classes[class], "predicted": p.label, "probability": p.probability }));
        samples.push((tensor, reloaded.probabilities(embedding.view())?));
    }

    // Export base + head as one ONNX file and check it against the recognizer.
    let onnx_path = args.out_dir.join("recognizer.onnx");
    export_onnx(&base, &reloaded.head, &reloaded.labels, &onnx_path)?;
    let exported = BaseModel::load_with(
        &onnx_path,
        &BaseOptions {
            cut: Some(PROBABILITIES.into()),
            input_shape: Some(base.input_shape().to_vec()),
            ..args.backend.options()
        },
    )
    .context("reloading the exported ONNX file")?;
    let mut max_diff = 0f32;
    for (tensor, expected) in &samples {
        let got = exported.embed(tensor.view())?;
        max_diff = got
            .iter()
            .zip(expected)
            .fold(max_diff, |m, (a, b)| m.max((a - b).abs()));
    }
    ui.say(format!(
        "exported {} (base + head + softmax); its probabilities differ from graft's by at most {max_diff:.1e}",
        onnx_path.display()
    ));

    // A KNN index over the training embeddings, scored on the validation ones.
    let knn = index_of(&train_set)?;
    let index_path = args.out_dir.join("knn-index.safetensors");
    knn.save(&index_path)?;
    let predictions = knn.classify(val_set.vectors.view(), 3)?;
    let correct = predictions
        .iter()
        .zip(&val_set.labels)
        .filter(|(p, &l)| p.label == data.classes[l])
        .count();
    let knn_accuracy = correct as f64 / val_set.len().max(1) as f64;
    ui.say(format!(
        "KNN (k=3, cosine) over {} training embeddings: validation accuracy {:.3} ({correct}/{}); saved {}",
        knn.len(),
        knn_accuracy,
        val_set.len(),
        index_path.display()
    ));
    ui.say(format!(
        "demo finished in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    ui.finish(json!({
        "recognizer": rec_path,
        "onnx": onnx_path,
        "knn_index": index_path,
        "validation": reloaded.training.as_ref().and_then(|t| t.validation.clone()),
        "report": reloaded.training.as_ref().map(|t| &t.report),
        "predictions": shown,
        "export_max_abs_diff": max_diff,
        "knn_accuracy": knn_accuracy,
        "seconds": start.elapsed().as_secs_f64(),
    }));
    Ok(())
}
