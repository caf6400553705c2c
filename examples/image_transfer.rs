//! Image transfer learning in a handful of calls: a frozen EfficientNet-Lite0 from the zoo, a new
//! head trained on a folder of class folders, evaluation, save, predict, ONNX export.
//!
//! `cargo run --release --example image_transfer -- [DATA_DIR] [OUT_DIR]`
//! (defaults: the demo's Tux Paint images, and `image-transfer-out/`).

use std::path::PathBuf;

use graft::base::BaseModel;
use graft::dataset::Dataset;
use graft::embeddings::{embed_files, Embeddings};
use graft::export::export_onnx;
use graft::head::CpuBackend;
use graft::recognizer::Recognizer;
use graft::train::TrainOptions;

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev")
    });
    let out_dir = PathBuf::from(args.next().unwrap_or_else(|| "image-transfer-out".into()));
    let cache = graft::zoo::cache_dir().ok();

    // 1. Import the base and freeze it (cut at the zoo's 1280-d embedding).
    let base = BaseModel::open("efficientnet-lite0", None, None, None)?;
    // 2. Embed every example once (cached on disk).
    let dataset = Dataset::from_folder(&data_dir)?;
    let (embeddings, skipped) =
        Embeddings::from_dataset(&base, &dataset, cache.as_deref(), &|_| {})?;
    for (path, why) in &skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    // 3. Seeded, stratified 70/30 split; train a softmax head on the CPU.
    let (train, val) = embeddings.split(0.3, 42)?;
    let options = TrainOptions::default();
    let recognizer =
        Recognizer::train(&train, &val, &options, &mut CpuBackend::new(), &mut |_| {})?;
    // 4. Evaluate, save.
    println!("validation {}", recognizer.evaluate(&val)?);
    recognizer.save(&out_dir.join("recognizer.safetensors"))?;
    // 5. Predict files with the reloaded recognizer.
    let reloaded = Recognizer::load(&out_dir.join("recognizer.safetensors"))?;
    let files: Vec<PathBuf> = val.sources.iter().take(3).cloned().collect();
    for (file, embedding) in
        files
            .iter()
            .zip(embed_files(&base, &files, cache.as_deref(), &|_| {})?)
    {
        let embedding = embedding?;
        let best = reloaded.predict(embedding.view().insert_axis(ndarray::Axis(0)), 1)?;
        println!(
            "{}: {} ({:.3})",
            file.display(),
            best[0].label,
            best[0].probability
        );
    }
    // 6. Export base + head as one ONNX file.
    export_onnx(
        &base,
        &reloaded.head,
        &reloaded.labels,
        &out_dir.join("recognizer.onnx"),
    )?;
    println!("wrote {}", out_dir.join("recognizer.onnx").display());
    Ok(())
}
