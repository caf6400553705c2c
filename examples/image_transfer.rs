//! Image transfer learning in a handful of calls: a frozen EfficientNet-Lite0 from the zoo, a new
//! head trained on a folder of class folders, evaluation, save, predict, ONNX export — each step
//! one call of `graft::task`.
//!
//! `cargo run --release --example image_transfer -- [DATA_DIR] [OUT_DIR]`
//! (defaults: the demo's Tux Paint images, and `image-transfer-out/`).

use std::path::PathBuf;
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions, EngineOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::task::{self, Classifier, CreateOptions, Silent};

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = args
        .next()
        .map(PathBuf::from)
        .map_or_else(task::demo::demo_data, Ok)?;
    let out_dir = PathBuf::from(args.next().unwrap_or_else(|| "image-transfer-out".into()));

    // 1. Import the base and freeze it (cut at the zoo's 1280-d embedding).
    let base = Arc::new(BaseModel::open(
        "efficientnet-lite0",
        &BaseOptions::default(),
    )?);
    // 2. Embed every example once (cached), split 70/30 (seeded, stratified), train a head.
    let dataset = Dataset::from_folder(&data_dir)?;
    let created = task::create(&base, &dataset, &CreateOptions::default(), &Silent)?;
    if let Some(embedded) = &created.report.embedded {
        for (path, why) in &embedded.skipped {
            eprintln!("skipped {}: {why}", path.display());
        }
    }
    // 3. The validation metrics, then save.
    let record = created.recognizer.training();
    if let Some(metrics) = record.and_then(|r| r.validation.as_ref()) {
        println!("validation {metrics}");
    }
    let saved = out_dir.join("recognizer.safetensors");
    created.recognizer.save(&saved)?;
    // 4. Predict files with the reloaded recognizer (its base reopened from the reference).
    let classifier = Classifier::load(&saved, &EngineOptions::default(), &Silent)?;
    let files: Vec<PathBuf> = dataset
        .examples
        .iter()
        .take(3)
        .map(|e| e.path.clone())
        .collect();
    for answer in classifier.predict_files(&files, 1, &CacheOptions::default(), &Silent)? {
        let best = answer.answer?;
        println!(
            "{}: {} ({:.3})",
            answer.file.display(),
            best.label,
            best.probability
        );
    }
    // 5. Export base + head as one ONNX file.
    let exported = classifier.export(&out_dir.join("recognizer.onnx"), &Default::default())?;
    println!("wrote {}", exported.onnx.display());
    Ok(())
}
