//! The pictures in the README: a recognizer trained on the shipped Tux Paint images (graft's
//! defaults), its four charts as PNG, and its HTML report on the same folder, with the Rust API
//! that `graft train --plots`, `graft eval --plots` and `graft report` run.
//!
//! `cargo run --release --example plots -- [PLOTS_DIR] [REPORT]` (defaults `doc/plots` and
//! `target/plots/report.html`): writes `training-curves.png`, `confusion-matrix.png`,
//! `per-class.png` and `embedding-map.png` to PLOTS_DIR and the report to REPORT.
//! `scripts/readme-pictures.sh` runs it and takes the report's screenshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::plots::{write_charts, Format};
use graft::report::ReportOptions;
use graft::task::{self, Classifier, CreateOptions, Silent};

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "doc/plots".into()));
    let report = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/plots/report.html".into()),
    );
    // Relative when run from the repository's root (as the script does), so the report names it so.
    let shipped = Path::new("examples/data/tuxpaint-dev");
    let data_dir = match shipped.is_dir() {
        true => shipped.to_path_buf(),
        false => Path::new(env!("CARGO_MANIFEST_DIR")).join(shipped),
    };
    let base = Arc::new(BaseModel::open(
        "efficientnet-lite0",
        &BaseOptions::default(),
    )?);
    let data = Dataset::from_folder(&data_dir)?;
    let embedded = task::embed_folder(&base, &data, &CacheOptions::default(), &Silent)?;
    let created = task::create_from_embeddings(
        &base,
        &embedded.embeddings,
        &[],
        &CreateOptions::default(),
        &Silent,
    )?;
    // The training run's charts: curves, validation confusion and per-class figures, and the map
    // of all examples (validation ones large, their mistakes circled).
    let recognizer = &created.recognizer;
    let embeddings = &embedded.embeddings;
    let defaults = CreateOptions::default();
    let (train, val) = embeddings.split(defaults.val_split, defaults.train.seed)?;
    let map = task::embedding_map(recognizer, &[(&train, false), (&val, true)])?;
    let charts = task::training_charts(recognizer.training(), map.as_ref());
    for file in write_charts(&out, &charts, &[Format::Png])? {
        println!("wrote {}", file.display());
    }
    // The report on the whole folder, from the saved recognizer.
    let dir = report.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| graft::Error::io(dir, e))?;
    let saved = dir.join("tuxpaint-dev.safetensors");
    recognizer.save(&saved)?;
    let classifier = Classifier::load(&saved, &Default::default(), &Silent)?;
    let written = task::write_report(
        &classifier,
        &data,
        &report,
        &ReportOptions::default(),
        &CacheOptions::default(),
        &Silent,
    )?;
    println!(
        "wrote {} ({} kB, {} examples, {} wrong)",
        report.display(),
        written.bytes.div_ceil(1024),
        written.examples,
        written.mistakes
    );
    Ok(())
}
