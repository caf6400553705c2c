//! The calibrated "unknown" answer, measured: a recognizer and a KNN index are made from some
//! classes of a folder, the other classes stand for "nothing the model knows", and the example
//! prints, at 95 % acceptance of the correct validation answers, the share of those untaught
//! examples each rule rejects.
//!
//! `cargo run --release --example unknown -- [SPEECH_DIR]`
//!
//! Images: the 7 shipped Tux Paint classes, the first 5 (by name) taught, `roadsign` and `tool`
//! unknown (efficientnet-lite0). Speech: SPEECH_DIR (default `../shared/data/audio/synth-commands`
//! when it is there, else the test fixture words), the first 70 % of its word folders taught and
//! the rest unknown (speech-embedding). Both on the default seeded 70/30 split and default head.

use std::path::{Path, PathBuf};

use graft::base::{BaseModel, BaseOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::embeddings::Embeddings;
use graft::knn::DEFAULT_K;
use graft::reject::DEFAULT_ACCEPT;
use graft::task::{self, CreateOptions, Silent};
use ndarray::Array2;

fn main() -> graft::Result<()> {
    let speech = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shared =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/audio/synth-commands");
            match shared.is_dir() {
                true => shared,
                false => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/words"),
            }
        });
    let images = task::demo::demo_data()?;
    println!("| set | taught / unknown classes | rule chosen | threshold | correct validation answers kept | out-of-class rejected | the other rule | chosen without unknown data |");
    println!("|---|---|---|---|---|---|---|---|");
    measure("images (tuxpaint-dev)", "efficientnet-lite0", &images, 5)?;
    let words = Dataset::from_folder(&speech)?.classes.len();
    let name = speech
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    measure(
        &format!("speech ({name})"),
        "speech-embedding",
        &speech,
        (words * 7).div_ceil(10).min(words - 1),
    )
}

/// Trains on the first `taught` classes of `dir` with `base_name`, the others unknown, and prints
/// one table row for the recognizer and one for the KNN index.
fn measure(set: &str, base_name: &str, dir: &Path, taught: usize) -> graft::Result<()> {
    let base = BaseModel::open(base_name, &BaseOptions::default())?;
    let data = Dataset::from_folder(dir)?;
    let embedded = task::embed_folder(&base, &data, &CacheOptions::default(), &Silent)?;
    let all = &embedded.embeddings;
    let known = restrict(all, 0..taught)?;
    let out = rows_of(all, taught..all.classes().len());
    let classes = format!("{} / {}", taught, all.classes().len() - taught);

    // As `graft train` does without --unknown-data: the rule is judged on simulated unknowns.
    let options = CreateOptions::default();
    let created = task::create_from_embeddings(&base, &known, &[], &options, &Silent)?;
    let simulated = created.recognizer.unknown_rule().map(|r| r.kind.name());
    // As `graft train --unknown-data`: judged on the untaught classes.
    let mut recognizer = created.recognizer;
    let (train, val) = known.split(options.val_split, options.train.seed)?;
    let calibration =
        recognizer.calibrate_unknown(&train, &val, Some(out.view()), DEFAULT_ACCEPT)?;
    let Some(rule) = calibration.rule else {
        println!(
            "| {set} | {classes} | none: {} | | | | | |",
            calibration.note
        );
        return Ok(());
    };
    let report = recognizer.evaluate_unknown(&val, out.view())?;
    let other = rule
        .candidates
        .iter()
        .filter(|c| c.kind != rule.kind)
        .map(|c| format!("{} {}", c.kind.name(), pct(c.rejected.map(f64::from))))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "| {set}, head | {classes} | {} | {:.4} | {}/{} ({}) | {}/{} ({}) | {other} | {} |",
        rule.kind.name(),
        rule.threshold,
        report.correct_accepted,
        report.correct,
        pct(report.correct_acceptance()),
        report.out_of_class_rejected,
        report.out_of_class,
        pct(report.rejection()),
        simulated.unwrap_or("none"),
    );

    let mut knn = task::knn_index(&known)?;
    let calibration = knn.calibrate_unknown(DEFAULT_K, DEFAULT_ACCEPT, Some(out.view()))?;
    match calibration.rule {
        Some(rule) => {
            let c = &rule.candidates[0];
            println!(
                "| {set}, KNN k = {DEFAULT_K} | {classes} | {} | {:.4} | {} of {} leave-one-out ({}) | {} of {} ({}) | | |",
                rule.kind.name(),
                rule.threshold,
                (f64::from(c.kept) * rule.calibrated_on as f64).round(),
                rule.calibrated_on,
                pct(Some(f64::from(c.kept))),
                (f64::from(c.rejected.unwrap_or(0.0)) * out.nrows() as f64).round(),
                out.nrows(),
                pct(c.rejected.map(f64::from))
            );
        }
        None => println!(
            "| {set}, KNN | {classes} | none: {} | | | | | |",
            calibration.note
        ),
    }
    Ok(())
}

/// The examples of classes `range`, as their own labelled set.
fn restrict(all: &Embeddings, range: std::ops::Range<usize>) -> graft::Result<Embeddings> {
    let picked = all.subset(&rows_in(all, &range));
    Embeddings::new(
        all.base().clone(),
        all.classes()[range.clone()].to_vec(),
        picked.vectors().to_owned(),
        picked.labels().iter().map(|l| l - range.start).collect(),
        picked.sources().to_vec(),
    )
}

/// The embeddings of classes `range`, unlabelled.
fn rows_of(all: &Embeddings, range: std::ops::Range<usize>) -> Array2<f32> {
    all.subset(&rows_in(all, &range)).vectors().to_owned()
}

/// The rows of classes `range`.
fn rows_in(all: &Embeddings, range: &std::ops::Range<usize>) -> Vec<usize> {
    (0..all.len())
        .filter(|&i| range.contains(&all.labels()[i]))
        .collect()
}

fn pct(share: Option<f64>) -> String {
    share.map_or_else(|| "-".into(), |s| format!("{:.1} %", 100.0 * s))
}
