//! `write_report`: a recognizer on a labelled folder -> one HTML file (what `graft report` runs).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::classify::Classifier;
use super::doctor::diagnose_embedded;
use super::embed::{embed_folder, EmbedReport};
use super::Progress;
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::metrics::Metrics;
use crate::plots;
use crate::report::{self, Report, ReportOptions};
use crate::Result;

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WrittenReport {
    pub path: PathBuf,
    /// Size of the HTML file.
    pub bytes: usize,
    /// The metrics it shows (from the answers it lists).
    pub metrics: Metrics,
    /// Examples answered, and how many of them wrong.
    pub examples: usize,
    pub mistakes: usize,
    /// The folder's embedding (files skipped, time).
    pub embedded: EmbedReport,
}

/// Evaluates `classifier` on the labelled folder `data` and writes the HTML report to `out`
/// (atomically): metrics, charts, and the examples (see [`crate::report`]).
pub fn write_report(
    classifier: &Classifier,
    data: &Dataset,
    out: &Path,
    options: &ReportOptions,
    cache: &CacheOptions,
    progress: &dyn Progress,
) -> Result<WrittenReport> {
    options.validate()?;
    // One embedding of the folder serves the doctor and the evaluation.
    let embedded = embed_folder(classifier.base(), data, cache, progress)?;
    let seed = classifier
        .recognizer()
        .training()
        .map_or(crate::train::TrainOptions::default().seed, |t| {
            t.options.seed
        });
    let diagnosis = diagnose_embedded(&embedded, seed, &crate::doctor::DoctorOptions::default())?;
    let evaluation = classifier.evaluate_embedded(embedded, None, cache, progress)?;
    let recognizer = classifier.recognizer();
    let examples = &evaluation.answers;
    let truth: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let answered: Vec<usize> = examples.iter().map(|e| e.predicted()).collect();
    let metrics = Metrics::compute(&truth, &answered, recognizer.labels())?;
    let training = recognizer.training();
    let history = training.map(|t| (t.report.history.as_slice(), t.report.best_epoch));
    let charts = plots::charts(history, Some(&metrics), evaluation.map.as_ref());
    let base = recognizer.base();
    let mut facts = vec![
        (
            "recognizer".to_string(),
            classifier
                .source()
                .map_or("(not from a file)".to_string(), |p| p.display().to_string()),
        ),
        ("classes".to_string(), recognizer.labels().join(", ")),
        (
            "base".to_string(),
            format!("{} ({}-d embedding)", base.name, base.embedding_dim),
        ),
        (
            "data".to_string(),
            format!(
                "{} ({} examples in {} classes)",
                data.root.display(),
                evaluation.embedded.examples,
                evaluation.embedded.classes
            ),
        ),
    ];
    if !evaluation.embedded.skipped.is_empty() {
        facts.push((
            "skipped".to_string(),
            format!("{} unreadable file(s)", evaluation.embedded.skipped.len()),
        ));
    }
    if let Some(t) = training {
        let validation = t.validation.as_ref().map_or("none".to_string(), |m| {
            format!("{:.1}%", m.accuracy * 100.0)
        });
        facts.push((
            "training".to_string(),
            format!(
                "{} epoch(s) on {}, weights of epoch {}, validation accuracy {validation}",
                t.report.history.len(),
                t.report.backend,
                t.report.weights_epoch
            ),
        ));
    }
    let title = classifier
        .source()
        .and_then(Path::file_name)
        .map_or("graft report".to_string(), |s| {
            format!("graft report: {}", s.to_string_lossy())
        });
    let page = report::render(
        &Report {
            title,
            facts,
            metrics: &metrics,
            charts,
            examples,
            doctor: Some(report::doctor_html(&diagnosis)),
        },
        options,
    )?;
    crate::atomic::write_atomic(out, page.as_bytes())?;
    Ok(WrittenReport {
        path: out.to_path_buf(),
        bytes: page.len(),
        mistakes: truth.iter().zip(&answered).filter(|(t, p)| t != p).count(),
        examples: examples.len(),
        metrics,
        embedded: evaluation.embedded.clone(),
    })
}
