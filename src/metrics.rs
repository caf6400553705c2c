//! Evaluation numbers: accuracy, per-class recall, precision and F1 (with their macro and
//! weighted means) and the confusion matrix, with a text rendering for the terminal.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How one class fared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class name.
    pub label: String,
    /// Examples whose true class this is.
    pub support: usize,
    /// Of those, how many were predicted as this class.
    pub correct: usize,
    /// `correct / support` (recall); `None` when `support` is 0.
    pub accuracy: Option<f64>,
    /// Examples predicted as this class (the confusion matrix's column sum). Files written before
    /// graft recorded it read as 0, with no precision and F1.
    #[serde(default)]
    pub predicted: usize,
    /// `correct / predicted`; `None` when nothing was predicted as this class.
    #[serde(default)]
    pub precision: Option<f64>,
    /// The harmonic mean of precision and recall; 0 when either is 0, `None` when either is
    /// undefined.
    #[serde(default)]
    pub f1: Option<f64>,
}

/// Unweighted (`macro`) and support-weighted (`weighted`) means of the per-class numbers, over
/// the classes where each is defined (as scikit-learn's `classification_report`, except that
/// undefined values are left out rather than counted as 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Means {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

/// Accuracy, per-class results and the confusion matrix of a set of predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Fraction of examples predicted correctly.
    pub accuracy: f64,
    /// One entry per class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` = number of examples.
    pub confusion: Vec<Vec<usize>>,
    /// Means of the per-class numbers, each class counted once.
    #[serde(default, rename = "macro")]
    pub macro_mean: Means,
    /// Means of the per-class numbers, each class weighted by its support.
    #[serde(default)]
    pub weighted: Means,
}

/// The mean of the defined `values`, each with its weight; `None` when none is defined.
fn mean(values: impl Iterator<Item = (Option<f64>, f64)>) -> Option<f64> {
    let (sum, weight) = values
        .filter_map(|(v, w)| v.map(|v| (v * w, w)))
        .fold((0.0, 0.0), |(s, t), (v, w)| (s + v, t + w));
    (weight > 0.0).then(|| sum / weight)
}

impl Means {
    fn of(classes: &[ClassMetrics], weight: impl Fn(&ClassMetrics) -> f64) -> Means {
        let field = |get: fn(&ClassMetrics) -> Option<f64>| {
            mean(classes.iter().map(|c| (get(c), weight(c))))
        };
        Means {
            precision: field(|c| c.precision),
            recall: field(|c| c.accuracy),
            f1: field(|c| c.f1),
        }
    }
}

/// Longest class name shown in a confusion table header before it is cut with `…`.
const MAX_NAME: usize = 12;

impl Metrics {
    /// Computes the metrics of `predicted` against `truth` (class indices into `class_names`).
    pub fn compute(
        truth: &[usize],
        predicted: &[usize],
        class_names: &[String],
    ) -> Result<Metrics> {
        let classes = class_names.len();
        if truth.len() != predicted.len() {
            return Err(Error::Invalid(format!(
                "{} true labels but {} predictions",
                truth.len(),
                predicted.len()
            )));
        }
        if truth.is_empty() {
            return Err(Error::Invalid("there are no examples to evaluate".into()));
        }
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            let cell = confusion
                .get_mut(t)
                .and_then(|row| row.get_mut(p))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "label pair (true {t}, predicted {p}) is out of range for {classes} classes"
                    ))
                })?;
            *cell += 1;
        }
        let per_class: Vec<ClassMetrics> = class_names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                let correct = confusion[c][c];
                let recall = (support > 0).then(|| correct as f64 / support as f64);
                let precision = (predicted > 0).then(|| correct as f64 / predicted as f64);
                let f1 = recall.zip(precision).map(|(r, p)| match r + p {
                    0.0 => 0.0,
                    sum => 2.0 * r * p / sum,
                });
                ClassMetrics {
                    label: name.clone(),
                    support,
                    correct,
                    accuracy: recall,
                    predicted,
                    precision,
                    f1,
                }
            })
            .collect();
        let correct: usize = per_class.iter().map(|c| c.correct).sum();
        Ok(Metrics {
            accuracy: correct as f64 / truth.len() as f64,
            macro_mean: Means::of(&per_class, |_| 1.0),
            weighted: Means::of(&per_class, |c| c.support as f64),
            per_class,
            confusion,
        })
    }

    /// The confusion matrix as an aligned text table: one row per true class, one column per
    /// predicted class, names cut to 12 characters.
    pub fn confusion_table(&self) -> String {
        let names: Vec<String> = self.per_class.iter().map(|c| shorten(&c.label)).collect();
        let count_width = self
            .confusion
            .iter()
            .flatten()
            .map(|n| n.to_string().len())
            .max()
            .unwrap_or(1);
        let col = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(count_width);
        let head = "true \\ predicted";
        let first = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(head.len());
        let mut out = format!("{head:<first$}");
        for name in &names {
            out.push_str(&format!("  {name:>col$}"));
        }
        out.push('\n');
        for (name, row) in names.iter().zip(&self.confusion) {
            out.push_str(&format!("{name:<first$}"));
            for n in row {
                out.push_str(&format!("  {n:>col$}"));
            }
            out.push('\n');
        }
        out
    }
}

/// `name` cut to [`MAX_NAME`] characters, ending in `…` when cut.
fn shorten(name: &str) -> String {
    if name.chars().count() <= MAX_NAME {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(MAX_NAME - 1).collect();
        s.push('…');
        s
    }
}

impl fmt::Display for Metrics {
    /// Overall accuracy, per-class accuracy and the confusion table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.per_class.iter().map(|c| c.support).sum();
        let correct: usize = self.per_class.iter().map(|c| c.correct).sum();
        writeln!(
            f,
            "accuracy: {:.2}% ({correct}/{total})",
            self.accuracy * 100.0
        )?;
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        let name = self
            .per_class
            .iter()
            .map(|c| shorten(&c.label).chars().count())
            .max()
            .unwrap_or(0)
            .max("weighted".len());
        writeln!(
            f,
            "  {:<name$}  {:>8}  {:>9}  {:>7}  {:>7}",
            "", "recall", "precision", "F1", "support"
        )?;
        for c in &self.per_class {
            writeln!(
                f,
                "  {:<name$}  {:>8}  {:>9}  {:>7}  {:>7}",
                shorten(&c.label),
                pct(c.accuracy),
                pct(c.precision),
                pct(c.f1),
                c.support
            )?;
        }
        for (label, m) in [("macro", &self.macro_mean), ("weighted", &self.weighted)] {
            writeln!(
                f,
                "  {label:<name$}  {:>8}  {:>9}  {:>7}  {total:>7}",
                pct(m.recall),
                pct(m.precision),
                pct(m.f1)
            )?;
        }
        write!(f, "{}", self.confusion_table())
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss of the epoch's batches (with dropout, before each batch's update).
    pub train_loss: f32,
    /// Training accuracy of the same forward passes.
    pub train_acc: f32,
    /// Validation loss after the epoch; `None` without validation data.
    pub val_loss: Option<f32>,
    /// Validation accuracy after the epoch; `None` without validation data.
    pub val_acc: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_long_names_on_characters() {
        assert_eq!(shorten("cat"), "cat");
        assert_eq!(shorten("ééééééééééééééé"), "ééééééééééé…");
        assert_eq!(shorten("ééééééééééééééé").chars().count(), 12);
    }
}
