//! Pictures and the HTML report of a recognizer: each example's top answers, the embedding map of
//! a training run or an evaluation, and `write_report` (what `graft report` runs).

use std::path::{Path, PathBuf};

use ndarray::{concatenate, Array2, Axis};
use serde::Serialize;

use super::classify::{Classifier, Evaluation};
use super::embed::EmbedReport;
use super::Progress;
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::embeddings::Embeddings;
use crate::metrics::Metrics;
use crate::plots::{self, Chart, EmbeddingMap, Format};
use crate::recognizer::{Recognizer, TrainingRecord};
use crate::report::{self, ExampleAnswer, Report, ReportOptions, TOP_K};
use crate::{Error, Result};

/// Both formats, as `--plots DIR` writes them.
pub const PLOT_FORMATS: [Format; 2] = [Format::Svg, Format::Png];

/// The top-[`TOP_K`] answers of `recognizer` to each example of `data` (whose classes are matched
/// to the recognizer's labels by name), in order; ties go to the earlier class.
pub fn example_answers(recognizer: &Recognizer, data: &Embeddings) -> Result<Vec<ExampleAnswer>> {
    let truth = truth(recognizer, data)?;
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let probs = recognizer.probabilities(data.vectors())?;
    Ok(probs
        .rows()
        .into_iter()
        .zip(truth)
        .zip(data.sources())
        .map(|((row, label), source)| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            ExampleAnswer {
                file: source.file().to_path_buf(),
                label,
                top: order.iter().take(TOP_K).map(|&c| (c, row[c])).collect(),
            }
        })
        .collect())
}

/// Each example's class as an index into the recognizer's labels.
fn truth(recognizer: &Recognizer, data: &Embeddings) -> Result<Vec<usize>> {
    recognizer.check_base(data.base())?;
    let mapping: Vec<Option<usize>> = data
        .classes()
        .iter()
        .map(|c| recognizer.labels().iter().position(|l| l == c))
        .collect();
    data.labels()
        .iter()
        .map(|&l| {
            mapping.get(l).copied().flatten().ok_or_else(|| {
                Error::Dataset(format!(
                    "class {} is not among the recognizer's labels ({})",
                    data.classes().get(l).map_or("?", String::as_str),
                    recognizer.labels().join(", ")
                ))
            })
        })
        .collect()
}

/// The map of `sets` (each with whether it is held out) projected together; the held-out
/// examples the recognizer gets wrong are its mistakes.
pub fn embedding_map(
    recognizer: &Recognizer,
    sets: &[(&Embeddings, bool)],
) -> Result<Option<EmbeddingMap>> {
    let sets: Vec<&(&Embeddings, bool)> = sets.iter().filter(|(e, _)| !e.is_empty()).collect();
    if sets.is_empty() {
        return Ok(None);
    }
    let mut labels = Vec::new();
    let mut held_out = Vec::new();
    let mut mistakes = Vec::new();
    for (set, held) in &sets {
        let truth = truth(recognizer, set)?;
        let predicted = match held {
            true => recognizer.head().predict(set.vectors())?,
            false => truth.clone(),
        };
        mistakes.extend(truth.iter().zip(&predicted).map(|(t, p)| t != p));
        held_out.extend(std::iter::repeat_n(*held, truth.len()));
        labels.extend(truth);
    }
    let views: Vec<_> = sets.iter().map(|(e, _)| e.vectors()).collect();
    let vectors: Array2<f32> = concatenate(Axis(0), &views)
        .map_err(|e| Error::Internal(format!("joining embeddings for the map: {e}")))?;
    EmbeddingMap::project(
        vectors.view(),
        &labels,
        &held_out,
        &mistakes,
        recognizer.labels(),
    )
    .map(Some)
}

/// The charts of a training run: its curves, its validation metrics, and `map`.
pub fn training_charts<'a>(
    training: Option<&'a TrainingRecord>,
    map: Option<&'a EmbeddingMap>,
) -> Vec<Chart<'a>> {
    let history = training.map(|t| (t.report.history.as_slice(), t.report.best_epoch));
    plots::charts(history, training.and_then(|t| t.validation.as_ref()), map)
}

impl Evaluation {
    /// The charts of this evaluation: the recognizer's training curves (from `training`), then
    /// the confusion matrix, per-class bars and embedding map of the evaluated folder.
    pub fn charts<'a>(&'a self, training: Option<&'a TrainingRecord>) -> Vec<Chart<'a>> {
        let history = training.map(|t| (t.report.history.as_slice(), t.report.best_epoch));
        plots::charts(history, Some(&self.metrics), self.map.as_ref())
    }
}

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
    let evaluation = classifier.evaluate(data, None, cache, progress)?;
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
        let validation = t
            .validation
            .as_ref()
            .map_or("none".to_string(), |m| format!("{:.1}%", m.accuracy * 100.0));
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
            doctor: None,
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
