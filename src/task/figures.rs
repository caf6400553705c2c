//! The figures behind the plots and the report: each example's top answers, the embedding map of
//! a training run or an evaluation, a training run's charts.

use ndarray::{concatenate, Array2, Axis};

use crate::embeddings::Embeddings;
use crate::plots::{self, Chart, EmbeddingMap, Format};
use crate::recognizer::{Recognizer, TrainingRecord};
use crate::report::{ExampleAnswer, TOP_K};
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
