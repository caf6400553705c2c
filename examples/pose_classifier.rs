//! A pose recognizer: MoveNet Lightning plus graft's pose features as the frozen base, a head
//! trained on top, exported as one ONNX file (image in, probabilities out).
//!
//! 1. Stick-figure keypoints in five known poses (`graft::pose::stick`), as pose features: trains
//!    and validates the head on labels that are right by construction.
//! 2. Photos of a person turned by known angles (`graft::pose::turned`, made from
//!    `tests/fixtures/images/astronaut.png`): written to a folder, embedded by the base (MoveNet and
//!    the ONNX normalisation), trained, exported, and the export checked against graft.
//!
//! `cargo run --example pose_classifier -- [OUT_DIR] [PER_CLASS]` (defaults `pose-classifier-out/`,
//! 40 photos per class).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use graft::base::{BaseModel, BaseOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::embeddings::Embeddings;
use graft::input::image::{decode_image, preprocess};
use graft::pose::{stick, turned};
use graft::recognizer::Recognizer;
use graft::task::{self, Classifier, CreateOptions, Silent};
use ndarray::Axis;

/// Seed of the generated data and of the split.
const SEED: u64 = 42;

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let out_dir = PathBuf::from(args.next().unwrap_or_else(|| "pose-classifier-out".into()));
    let per_class: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(40);
    let base = Arc::new(BaseModel::open(
        "movenet-lightning",
        &BaseOptions::default(),
    )?);
    let options = CreateOptions {
        cache: CacheOptions { no_cache: true },
        ..CreateOptions::default()
    };

    // 1. Stick figures: 100 per class, seeded 70/30 split.
    let start = Instant::now();
    let poses = stick::embeddings(100, SEED, base.reference()?)?;
    let generated = start.elapsed().as_secs_f64() / poses.len() as f64;
    let created = task::create_from_embeddings(&base, &poses, &[], &options, &Silent)?;
    let (_, val) = poses.split(options.val_split, options.train.seed)?;
    let metrics = created.recognizer.evaluate(&val)?;
    println!(
        "stick figures: {} poses in {} classes ({:.1} µs each), validation {metrics}",
        poses.len(),
        poses.classes().len(),
        generated * 1e6
    );

    // 2. Turned photos.
    let data_dir = out_dir.join("turned");
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/astronaut.png");
    let bytes = std::fs::read(&fixture).map_err(|e| graft::Error::io(&fixture, e))?;
    let photo = decode_image(&bytes, &fixture)?;
    let written = turned::write_set(&[photo], &data_dir, per_class, SEED)?;
    let dataset = Dataset::from_folder(&data_dir)?;
    let start = Instant::now();
    let embedded = task::embed_folder(&base, &dataset, &options.cache, &Silent)?;
    let per_image = start.elapsed().as_secs_f64() / written as f64;
    for (path, why) in &embedded.report.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    let photos = embedded.embeddings;
    let created = task::create_from_embeddings(&base, &photos, &[], &options, &Silent)?;
    let (_, val) = photos.split(options.val_split, options.train.seed)?;
    let recognizer = created.recognizer;
    let metrics = recognizer.evaluate(&val)?;
    println!(
        "turned photos: {written} images in {} classes ({:.1} ms each to decode, letterbox and \
         embed, 2 threads), validation {metrics}",
        photos.classes().len(),
        per_image * 1e3
    );

    // Export, then run the ONNX file in tract on the validation photos and compare.
    let onnx = out_dir.join("pose-recognizer.onnx");
    recognizer.save(&out_dir.join("pose-recognizer.safetensors"))?;
    let classifier = Classifier::new(recognizer, base.clone())?;
    classifier.export(&onnx, &Default::default())?;
    let worst = compare_export(&onnx, &base, classifier.recognizer(), &val)?;
    println!(
        "wrote {}: largest difference to graft's probabilities {worst:.1e} over {} photos",
        onnx.display(),
        val.len()
    );
    Ok(())
}

/// Largest difference between the exported model's probabilities (run by tract as a plain ONNX
/// file, image in) and the recognizer's on the examples of `val`, read again from their files.
fn compare_export(
    onnx: &std::path::Path,
    base: &BaseModel,
    recognizer: &Recognizer,
    val: &Embeddings,
) -> graft::Result<f32> {
    let options = BaseOptions {
        cut: Some(graft::export::PROBABILITIES.into()),
        ..BaseOptions::default()
    };
    let exported = BaseModel::open(onnx, &options)?;
    let spec = base.image_spec()?;
    let want = recognizer.probabilities(val.vectors())?;
    let mut worst = 0.0f32;
    for (source, want) in val.sources().iter().zip(want.rows()) {
        let path = source.file();
        let bytes = std::fs::read(path).map_err(|e| graft::Error::io(path, e))?;
        let input = preprocess(&decode_image(&bytes, path)?, spec)?;
        let got = exported.embed(input.insert_axis(Axis(0)).into_dyn().view())?;
        for (a, b) in got.iter().zip(want.iter()) {
            worst = worst.max((a - b).abs());
        }
    }
    Ok(worst)
}
