//! The graft side of `bench/compare.sh` (graft vs onnxruntime + scikit-learn / Keras / faiss):
//! measures EfficientNet-Lite0 embedding time at batch 1 and 32, head training on the shipped
//! images' embeddings (graft's default options, seeded 70/30 split; CPU, and GPU when there is an
//! adapter), and KNN classification of 1,000 queries against a 10,000 x 1280 index. Prints one
//! JSON object, and writes what the Python side needs to measure on the same data into `--out` as
//! `.npy` files: the preprocessed images, the embeddings, labels and split, the KNN vectors, and
//! graft's KNN answers, and the training options (`train_options.json`).
//!
//! With `--photos DIR`, also embeds that folder and writes its file list, split and embeddings
//! into `DIR/e2e` for the folder -> recognizer rows.
//!
//! `cargo run --release --example compare -- --out DIR [--backend tract|ort] [--embed-only]
//! [--photos DIR]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use graft::base::{Backend, BaseModel};
use graft::dataset::{stratified_split, DEFAULT_VAL_SPLIT};
use graft::embeddings::Embeddings;
use graft::gpu::{AdapterPolicy, Gpu};
use graft::head::{CpuBackend, Examples, GpuBackend, HeadBackend};
use graft::train::{train, TrainOptions};
use graft::{Error, Result};
use ndarray::{ArrayD, Axis, Slice};
use serde_json::{json, Value};

mod common;
use common::{efficientnet_lite0, image_batch, knn_benchmark, shipped_images};

#[derive(Parser)]
struct Args {
    /// Folder for the .npy files the Python side reads.
    #[arg(long)]
    out: PathBuf,
    /// Inference backend of the base model.
    #[arg(long, default_value_t = Backend::Tract)]
    backend: Backend,
    /// Measure the embedding only.
    #[arg(long)]
    embed_only: bool,
    /// Measure the KNN only (no base model: `bench/reference.py knn OUT` is its Python side).
    #[arg(long)]
    knn_only: bool,
    /// A labelled folder for the folder -> recognizer rows (its split and embeddings go to
    /// `OUT/e2e`).
    #[arg(long)]
    photos: Option<PathBuf>,
}

/// Images in the timed embedding batches (the first 32 shipped images).
const IMAGES: usize = 32;
/// Neighbours that vote in the KNN benchmark.
const K: usize = 3;

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    if args.knn_only {
        let input = graft::input::InputSpec::Image(graft::input::ImageSpec::unnormalised(
            224,
            224,
            graft::input::Layout::Nhwc,
        ));
        println!("{}", json!({ "knn": knn_run(&input, &args.out)? }));
        return Ok(());
    }
    let base = efficientnet_lite0(args.backend)?;
    let data = shipped_images()?;
    let inputs = image_batch(&data, base.image_spec()?, IMAGES)?;
    write_f32(&args.out.join("inputs.npy"), inputs.shape(), inputs.iter())?;
    let mut report = json!({
        "backend": args.backend.name(),
        "embed_ms_per_image": {
            "1": ms_per_image(&base, &inputs, 1)?,
            "32": ms_per_image(&base, &inputs, 32)?,
        },
    });
    if !args.embed_only {
        report["head"] = head_benchmark(&base, &data, &args.out)?;
        report["knn"] = knn_run(base.input_spec()?, &args.out)?;
    }
    if let Some(photos) = &args.photos {
        let e2e = args.out.join("e2e");
        std::fs::create_dir_all(&e2e).map_err(|e| Error::io(&e2e, e))?;
        let photos = graft::dataset::Dataset::from_folder(photos)?;
        let (embeddings, _, _) = write_split(&base, &photos, &e2e)?;
        report["e2e_examples"] = json!(embeddings.len());
    }
    println!("{report}");
    Ok(())
}

/// Milliseconds per image embedding all of `inputs` in batches of `batch`, after one untimed
/// batch (which also prepares tract's plan for that batch size).
fn ms_per_image(base: &BaseModel, inputs: &ArrayD<f32>, batch: usize) -> Result<f64> {
    let batches: Vec<_> = (0..inputs.shape()[0])
        .step_by(batch)
        .map(|i| inputs.slice_axis(Axis(0), Slice::from(i..(i + batch).min(inputs.shape()[0]))))
        .collect();
    base.embed(batches[0].view())?;
    let start = Instant::now();
    for b in &batches {
        base.embed(b.view())?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / inputs.shape()[0] as f64)
}

/// Embeds `data`, splits it as `graft train` does, and writes the file list, embeddings, labels
/// and split into `out`; gives the embeddings and the split.
fn write_split(
    base: &BaseModel,
    data: &graft::dataset::Dataset,
    out: &Path,
) -> Result<(Embeddings, Vec<usize>, Vec<usize>)> {
    let (embeddings, skipped) = Embeddings::from_dataset(base, data, None, &|_| {})?;
    if let Some((path, e)) = skipped.first() {
        return Err(Error::Dataset(format!("{}: {e}", path.display())));
    }
    let seed = TrainOptions::default().seed;
    let (train_idx, val_idx) = stratified_split(embeddings.labels(), DEFAULT_VAL_SPLIT, seed)?;
    let files: Vec<String> = embeddings
        .sources()
        .iter()
        .map(|s| s.file())
        .map(|p| {
            p.strip_prefix(&data.root)
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .collect();
    let files_txt = out.join("files.txt");
    std::fs::write(&files_txt, files.join("\n") + "\n").map_err(|e| Error::io(&files_txt, e))?;
    let vectors = embeddings.vectors();
    write_f32(&out.join("embeddings.npy"), vectors.shape(), vectors.iter())?;
    write_i64(&out.join("labels.npy"), embeddings.labels())?;
    write_i64(&out.join("train.npy"), &train_idx)?;
    write_i64(&out.join("val.npy"), &val_idx)?;
    Ok((embeddings, train_idx, val_idx))
}

/// Embeds the shipped images, splits them as `graft train` does, writes both, and trains a head
/// with the default options on the CPU and on the GPU (if any).
fn head_benchmark(base: &BaseModel, data: &graft::dataset::Dataset, out: &Path) -> Result<Value> {
    let (embeddings, train_idx, val_idx) = write_split(base, data, out)?;
    let opts = TrainOptions::default();
    let options_json = out.join("train_options.json");
    let options = serde_json::to_string(&opts).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&options_json, options).map_err(|e| Error::io(&options_json, e))?;
    let (train_set, val_set) = (embeddings.subset(&train_idx), embeddings.subset(&val_idx));
    let fit = |backend: &mut dyn HeadBackend| -> Result<Value> {
        let start = Instant::now();
        let (head, report) = train(
            embeddings.classes().len(),
            Examples::new(train_set.vectors().view(), train_set.labels()),
            Examples::new(val_set.vectors().view(), val_set.labels()),
            &opts,
            backend,
            &mut |_| {},
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let predicted = head.predict(val_set.vectors().view())?;
        let right = predicted
            .iter()
            .zip(val_set.labels())
            .filter(|(p, y)| p == y)
            .count();
        Ok(json!({
            "seconds": seconds,
            "epochs": report.history.len(),
            "val_acc": right as f64 / val_set.len() as f64,
        }))
    };
    let gpu = match Gpu::open(AdapterPolicy::AllowSoftware)? {
        Some(gpu) => {
            let (name, software) = (gpu.name(), gpu.is_software());
            let mut result = fit(&mut GpuBackend::new(Arc::new(gpu)))?;
            result["adapter"] = json!(name);
            result["software"] = json!(software);
            result
        }
        None => Value::Null,
    };
    Ok(json!({
        "train": train_idx.len(),
        "val": val_idx.len(),
        "cpu": fit(&mut CpuBackend::new())?,
        "gpu": gpu,
    }))
}

/// Times classifying the KNN benchmark's queries; writes its vectors and graft's answers.
fn knn_run(input: &graft::input::InputSpec, out: &Path) -> Result<Value> {
    let common::KnnBenchmark {
        knn,
        vectors,
        labels,
        queries,
    } = knn_benchmark(input)?;
    write_f32(&out.join("knn_index.npy"), vectors.shape(), vectors.iter())?;
    write_i64(&out.join("knn_labels.npy"), &labels)?;
    write_f32(
        &out.join("knn_queries.npy"),
        queries.shape(),
        queries.iter(),
    )?;
    let start = Instant::now();
    let predictions = knn.classify(queries.view(), K)?;
    let seconds = start.elapsed().as_secs_f64();
    let classes: Vec<String> = knn.class_counts().into_iter().map(|(c, _)| c).collect();
    let answers = predictions
        .iter()
        .map(|p| {
            let class = classes.iter().position(|c| *c == p.label);
            class.ok_or_else(|| Error::Invalid(format!("unknown class {}", p.label)))
        })
        .collect::<Result<Vec<usize>>>()?;
    write_i64(&out.join("knn_graft.npy"), &answers)?;
    Ok(json!({
        "seconds": seconds,
        "index": knn.len(),
        "queries": queries.nrows(),
        "k": K,
    }))
}

/// Writes a `.npy` file (format 1.0, little-endian) of `descr` (`<f4`, `<i8`) and `shape`.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: Vec<u8>) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let trailing = if shape.len() == 1 { "," } else { "" };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}{trailing}), }}",
        dims.join(", ")
    );
    // Magic (6) + version (2) + length (2) + header, padded with spaces and ended by a newline,
    // is a multiple of 64 bytes.
    let padded = (10 + header.len() + 1).div_ceil(64) * 64 - 10;
    header.extend(std::iter::repeat_n(' ', padded - header.len() - 1));
    header.push('\n');
    let length = u16::try_from(header.len())
        .map_err(|_| Error::Invalid(format!("npy header of {} bytes", header.len())))?;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend(length.to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn write_f32<'a>(
    path: &Path,
    shape: &[usize],
    values: impl Iterator<Item = &'a f32>,
) -> Result<()> {
    write_npy(
        path,
        "<f4",
        shape,
        values.flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn write_i64(path: &Path, values: &[usize]) -> Result<()> {
    let bytes = values
        .iter()
        .flat_map(|&v| (v as i64).to_le_bytes())
        .collect();
    write_npy(path, "<i8", &[values.len()], bytes)
}
