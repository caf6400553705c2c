//! Evaluation numbers: accuracy, per-class accuracy and the confusion matrix, with a text rendering
//! for the terminal.

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
                let correct = confusion[c][c];
                ClassMetrics {
                    label: name.clone(),
                    support,
                    correct,
                    accuracy: (support > 0).then(|| correct as f64 / support as f64),
                }
            })
            .collect();
        let correct: usize = per_class.iter().map(|c| c.correct).sum();
        Ok(Metrics {
            accuracy: correct as f64 / truth.len() as f64,
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
        for c in &self.per_class {
            match c.accuracy {
                Some(a) => writeln!(
                    f,
                    "  {}: {:.2}% ({}/{})",
                    c.label,
                    a * 100.0,
                    c.correct,
                    c.support
                )?,
                None => writeln!(f, "  {}: no examples", c.label)?,
            }
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
