//! The calibrated "unknown" answer: a rule that rejects an answer whose score is below a
//! threshold, chosen on the validation split so that a given fraction of the correct in-class
//! answers is kept.
//!
//! **Scores** (higher = more like the class answered), one per kind of rule ([`ScoreKind`]):
//! - `max-probability`: the head's probability of the class it answers;
//! - `centroid-cosine`: the cosine similarity between the example's embedding and the centroid of
//!   the training examples of the class answered, both centred on the training mean (centring
//!   matters: speech-embedding's raw features sit far from zero, where every pair of vectors is
//!   almost parallel) — a distance-to-class score that does not depend on how sure the head is;
//! - `neighbour-cosine` (KNN indexes): the cosine similarity of the nearest stored example of the
//!   class answered.
//!
//! **Calibration** ([`threshold_keeping`]): with `n` correct validation answers, the threshold is
//! the score of the `floor((1 - accept) n)`-th lowest of them (counting from 0), so at least
//! `accept` of them score at or above it and are kept; an answer is unknown when its score is
//! below the threshold (or not a number). Fewer than [`MIN_CORRECT`] correct validation answers
//! give no rule, with a message saying so: a threshold set on one or two examples says nothing.
//!
//! **Choice** ([`calibrate`]): both head rules are calibrated, then judged by the share of
//! out-of-class examples each rejects at its threshold, and the one rejecting more is kept (ties:
//! `max-probability`, the simpler one). The out-of-class examples are the `--unknown-data` folder
//! when given. Without one they are *simulated*: each validation example is answered as if its own
//! class had not been taught — the head's softmax over the other classes' logits (exactly what a
//! softmax head without that class would give, its weights unchanged), and the centroid of that
//! answer. A score that separates wrong from right answers (AUROC) was the other proxy
//! considered; it was not taken because validation splits of a few examples per class are often
//! answered without a single mistake, leaving nothing to measure, while the simulation always has
//! one example per validation example and asks the question the rule is for.
//!
//! A recognizer or index without a rule (saved before rules existed, or calibrated with
//! `accept` 0) never answers unknown.

use std::path::PathBuf;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::head::{argmax_rows, softmax_rows};
use crate::{Error, Result};

/// Fraction of correct validation answers a rule keeps unless told otherwise.
pub const DEFAULT_ACCEPT: f32 = 0.95;

/// Fewest correct validation answers a threshold is set on; fewer give no rule.
pub const MIN_CORRECT: usize = 5;

/// How the "unknown" rule is calibrated when a recognizer or an index is made.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct UnknownOptions {
    /// Fraction of the correct validation answers (KNN: of the stored examples answered correctly
    /// by the others) that the "unknown" rule keeps, in [0, 1]; 0 makes no rule (never unknown).
    /// Default 0.95.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT_ACCEPT))]
    pub accept: f32,
    /// Folder of examples of nothing the model knows (files at any depth): the rule that rejects
    /// more of them is chosen, and the share rejected is reported. Default: none (out-of-class
    /// examples are simulated from the validation split, see `graft::reject`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub unknown_data: Option<PathBuf>,
}

impl Default for UnknownOptions {
    fn default() -> Self {
        UnknownOptions {
            accept: DEFAULT_ACCEPT,
            unknown_data: None,
        }
    }
}

impl UnknownOptions {
    /// Checks that `accept` is in [0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.accept) {
            return Err(Error::Invalid(format!(
                "accept {} is not in [0, 1] (the fraction of correct answers the unknown rule keeps)",
                self.accept
            )));
        }
        Ok(())
    }
}

/// What a rule scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// The probability of the class answered.
    MaxProbability,
    /// Cosine similarity to the answered class's centroid, centred on the training mean.
    CentroidCosine,
    /// Cosine similarity of the nearest stored example of the answered class (KNN).
    NeighbourCosine,
}

impl ScoreKind {
    /// `max-probability`, `centroid-cosine` or `neighbour-cosine`.
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::MaxProbability => "max-probability",
            ScoreKind::CentroidCosine => "centroid-cosine",
            ScoreKind::NeighbourCosine => "neighbour-cosine",
        }
    }
}

/// One rule as calibrated and judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub kind: ScoreKind,
    /// Answers scoring below it are unknown.
    pub threshold: f32,
    /// Share of the correct validation answers it keeps.
    pub kept: f32,
    /// Share of the out-of-class examples it rejects (`None` when there were none).
    pub rejected: Option<f32>,
}

/// The out-of-class examples rules were judged on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    /// `unknown-data` (examples given) or `simulated` (validation examples answered without
    /// their own class).
    pub on: String,
    pub examples: usize,
}

/// A calibrated rejection rule: an answer whose score is below `threshold` is unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectRule {
    pub kind: ScoreKind,
    pub threshold: f32,
    /// The fraction of correct validation answers it was set to keep.
    pub accept: f32,
    /// Correct validation answers the threshold was set on.
    pub calibrated_on: usize,
    pub judged: Judged,
    /// Every rule calibrated, this one among them.
    pub candidates: Vec<Candidate>,
    /// For `centroid-cosine`: the class centroids (stored as tensors beside the head, not in
    /// the JSON).
    #[serde(skip)]
    pub centroids: Option<Centroids>,
}

/// Class centroids of centred embeddings, scaled to unit length.
#[derive(Clone, Debug, PartialEq)]
pub struct Centroids {
    /// The training mean `[dim]`, subtracted from every embedding first.
    pub mean: Array1<f32>,
    /// `[classes, dim]`, unit rows (a class whose centred mean is zero keeps a zero row).
    pub unit: Array2<f32>,
}

impl Centroids {
    /// The centroids of `x`'s rows by class (`labels` index `0..classes`); every class needs a row.
    pub fn fit(x: ArrayView2<f32>, labels: &[usize], classes: usize) -> Result<Centroids> {
        if x.nrows() != labels.len() || x.nrows() == 0 {
            return Err(Error::Invalid(format!(
                "{} embeddings with {} labels for class centroids",
                x.nrows(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(Error::Invalid(format!(
                "label {bad} but only {classes} classes"
            )));
        }
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let mut sums = Array2::<f32>::zeros((classes, x.ncols()));
        let mut counts = vec![0usize; classes];
        for (row, &label) in x.rows().into_iter().zip(labels) {
            let mut sum = sums.row_mut(label);
            sum += &(&row - &mean);
            counts[label] += 1;
        }
        if let Some(empty) = counts.iter().position(|&c| c == 0) {
            return Err(Error::Invalid(format!(
                "class {empty} has no training example for its centroid"
            )));
        }
        Ok(Centroids {
            mean,
            unit: unit_rows(sums.view()),
        })
    }

    /// Checks the centroids against `classes` and `dim` and that every number is finite.
    pub fn check(&self, classes: usize, dim: usize) -> std::result::Result<(), String> {
        if self.mean.len() != dim || self.unit.dim() != (classes, dim) {
            return Err(format!(
                "unknown-rule centroids {:?} with a mean of {} for {classes} classes of {dim}-d \
                 embeddings",
                self.unit.dim(),
                self.mean.len()
            ));
        }
        if !self.mean.iter().chain(&self.unit).all(|v| v.is_finite()) {
            return Err("unknown-rule centroids hold a non-finite value".into());
        }
        Ok(())
    }

    /// Cosine similarities `[n, classes]` of each centred embedding with each centroid.
    pub fn similarities(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let centred = &x - &self.mean;
        unit_rows(centred.view()).dot(&self.unit.t())
    }
}

/// Rows scaled to unit length; all-zero rows stay zero.
pub fn unit_rows(x: ArrayView2<f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let n = row.dot(&row).sqrt();
        if n > 0.0 {
            row /= n;
        }
    }
    out
}

/// The threshold that keeps at least `accept` of `correct` scores (those at or above it): the
/// `floor((1 - accept) * n)`-th lowest. `None` when there are no scores; non-finite scores are
/// left out.
pub fn threshold_keeping(correct: &[f32], accept: f32) -> Option<f32> {
    let mut sorted: Vec<f32> = correct.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let drop = ((1.0 - f64::from(accept.clamp(0.0, 1.0))) * n as f64 + 1e-9).floor() as usize;
    Some(sorted[drop.min(n - 1)])
}

/// Whether an answer scoring `score` is unknown under `threshold` (a score that is not a number
/// is unknown).
pub fn is_unknown(score: f32, threshold: f32) -> bool {
    score.is_nan() || threshold.is_nan() || score < threshold
}

/// Share of `scores` below `threshold`; `None` for no scores.
pub fn share_rejected(scores: &[f32], threshold: f32) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let rejected = scores.iter().filter(|&&s| is_unknown(s, threshold)).count();
    Some(rejected as f64 / scores.len() as f64)
}

/// The candidate of `kind` set on the correct answers' scores and judged on the out-of-class
/// ones; `None` when there are no finite correct scores.
pub fn candidate(kind: ScoreKind, correct: &[f32], out: &[f32], accept: f32) -> Option<Candidate> {
    let threshold = threshold_keeping(correct, accept)?;
    Some(Candidate {
        kind,
        threshold,
        kept: (1.0 - share_rejected(correct, threshold).unwrap_or(0.0)) as f32,
        rejected: share_rejected(out, threshold).map(|r| r as f32),
    })
}

/// The candidate that rejects most out-of-class examples (ties: the first).
pub fn best(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().reduce(|best, c| {
        if c.rejected.unwrap_or(0.0) > best.rejected.unwrap_or(0.0) {
            c
        } else {
            best
        }
    })
}

/// A rule, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub rule: Option<RejectRule>,
    /// One line for people: the rule chosen and why, or why there is none.
    pub note: String,
}

impl Calibration {
    /// No rule, because of `why`.
    pub fn none(why: impl Into<String>) -> Calibration {
        Calibration {
            rule: None,
            note: why.into(),
        }
    }
}

/// What a head's rules are calibrated on.
pub struct Evidence<'a> {
    /// Validation logits `[n, classes]`, embeddings `[n, dim]` and true classes.
    pub val_logits: ArrayView2<'a, f32>,
    pub val_embeddings: ArrayView2<'a, f32>,
    pub val_labels: &'a [usize],
    /// Logits and embeddings of examples of nothing the model knows, when given.
    pub out: Option<(ArrayView2<'a, f32>, ArrayView2<'a, f32>)>,
}

/// Scores of each row under `kind` (the head's rules): `probs` `[n, classes]`, `embeddings`
/// `[n, dim]`; the answered class is each row's most probable one.
pub fn head_scores(
    kind: ScoreKind,
    probs: ArrayView2<f32>,
    embeddings: ArrayView2<f32>,
    centroids: Option<&Centroids>,
) -> Result<Vec<f32>> {
    let answered = argmax_rows(probs);
    match (kind, centroids) {
        (ScoreKind::MaxProbability, _) => Ok(answered
            .iter()
            .zip(probs.rows())
            .map(|(&c, row)| row[c])
            .collect()),
        (ScoreKind::CentroidCosine, Some(centroids)) => {
            let sims = centroids.similarities(embeddings);
            Ok(answered
                .iter()
                .zip(sims.rows())
                .map(|(&c, row)| row.get(c).copied().unwrap_or(f32::NAN))
                .collect())
        }
        (kind, _) => Err(Error::Internal(format!(
            "a {} rule without what it scores against",
            kind.name()
        ))),
    }
}

/// Calibrates both head rules on `evidence` to keep `accept` of the correct validation answers
/// and keeps the one that rejects more out-of-class examples (see the module docs).
pub fn calibrate(evidence: &Evidence, centroids: Centroids, accept: f32) -> Result<Calibration> {
    if accept <= 0.0 {
        return Ok(Calibration::none(
            "no unknown rule (--accept 0): every answer is a class",
        ));
    }
    let n = evidence.val_labels.len();
    if n == 0 {
        return Ok(Calibration::none(
            "no unknown rule: there is no validation split to calibrate it on",
        ));
    }
    let mut probs = evidence.val_logits.to_owned();
    softmax_rows(&mut probs);
    let answered = argmax_rows(probs.view());
    let correct: Vec<usize> = (0..n)
        .filter(|&i| answered[i] == evidence.val_labels[i])
        .collect();
    if correct.len() < MIN_CORRECT {
        return Ok(Calibration::none(format!(
            "no unknown rule: {} correct validation answer(s), fewer than the {MIN_CORRECT} a \
             threshold is set on (more examples per class, or a larger --val-split)",
            correct.len()
        )));
    }
    let (out_probs, out_embeddings, judged) = match evidence.out {
        Some((logits, embeddings)) => {
            let mut p = logits.to_owned();
            softmax_rows(&mut p);
            let judged = Judged {
                on: "unknown-data".into(),
                examples: logits.nrows(),
            };
            (p, embeddings, judged)
        }
        None => {
            let simulated = without_own_class(evidence.val_logits, evidence.val_labels);
            let judged = Judged {
                on: "simulated".into(),
                examples: n,
            };
            (simulated, evidence.val_embeddings, judged)
        }
    };
    let mut candidates = Vec::new();
    for kind in [ScoreKind::MaxProbability, ScoreKind::CentroidCosine] {
        let val = head_scores(
            kind,
            probs.view(),
            evidence.val_embeddings,
            Some(&centroids),
        )?;
        let correct_scores: Vec<f32> = correct.iter().map(|&i| val[i]).collect();
        let out = head_scores(kind, out_probs.view(), out_embeddings, Some(&centroids))?;
        candidates.extend(candidate(kind, &correct_scores, &out, accept));
    }
    let Some(chosen) = best(&candidates).cloned() else {
        return Ok(Calibration::none(
            "no unknown rule: no finite score on the validation split",
        ));
    };
    let others: Vec<String> = candidates
        .iter()
        .filter(|c| c.kind != chosen.kind)
        .map(|c| format!("{} {}", c.kind.name(), percent(c.rejected.map(f64::from))))
        .collect();
    let note = format!(
        "unknown below {} {:.4} (kept {:.1} % of {} correct validation answers; rejects {} of {} \
         {} out-of-class examples{})",
        chosen.kind.name(),
        chosen.threshold,
        100.0 * chosen.kept,
        correct.len(),
        percent(chosen.rejected.map(f64::from)),
        judged.examples,
        judged.on,
        if others.is_empty() {
            String::new()
        } else {
            format!("; {}", others.join(", "))
        }
    );
    let rule = RejectRule {
        kind: chosen.kind,
        threshold: chosen.threshold,
        accept,
        calibrated_on: correct.len(),
        judged,
        candidates,
        centroids: (chosen.kind == ScoreKind::CentroidCosine).then_some(centroids),
    };
    Ok(Calibration {
        rule: Some(rule),
        note,
    })
}

/// `12.5 %`, or `-` for none.
fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".into(), |s| format!("{:.1} %", 100.0 * s))
}

/// Each row's probabilities with its own class `labels[i]` removed: the softmax over the other
/// logits, the own class's column 0.
pub fn without_own_class(logits: ArrayView2<f32>, labels: &[usize]) -> Array2<f32> {
    let mut out = logits.to_owned();
    for (mut row, &label) in out.axis_iter_mut(Axis(0)).zip(labels) {
        if let Some(own) = row.get_mut(label) {
            *own = f32::NEG_INFINITY;
        }
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| {
            if v == f32::NEG_INFINITY {
                0.0
            } else {
                (v - max).exp()
            }
        });
        let sum = row.sum();
        if sum > 0.0 {
            row.mapv_inplace(|v| v / sum);
        }
    }
    out
}

/// In-class acceptance and out-of-class rejection of a rule on labelled examples and on
/// examples of nothing the model knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnknownReport {
    /// The rule's kind and threshold; `None` when the model has none (nothing is unknown).
    pub kind: Option<ScoreKind>,
    pub threshold: Option<f32>,
    /// Labelled examples, and those not answered unknown.
    pub in_class: usize,
    pub in_class_accepted: usize,
    /// Labelled examples answered correctly, and those of them not answered unknown (the share
    /// the rule was calibrated to keep).
    pub correct: usize,
    pub correct_accepted: usize,
    /// Examples of nothing the model knows, and those answered unknown.
    pub out_of_class: usize,
    pub out_of_class_rejected: usize,
}

impl UnknownReport {
    /// Counts from each labelled example's (correct, unknown) and each out-of-class example's
    /// unknown flag.
    pub fn count(
        rule: Option<&RejectRule>,
        in_class: &[(bool, bool)],
        out_of_class: &[bool],
    ) -> UnknownReport {
        UnknownReport {
            kind: rule.map(|r| r.kind),
            threshold: rule.map(|r| r.threshold),
            in_class: in_class.len(),
            in_class_accepted: in_class.iter().filter(|(_, u)| !u).count(),
            correct: in_class.iter().filter(|(c, _)| *c).count(),
            correct_accepted: in_class.iter().filter(|(c, u)| *c && !u).count(),
            out_of_class: out_of_class.len(),
            out_of_class_rejected: out_of_class.iter().filter(|u| **u).count(),
        }
    }

    /// Share of the labelled examples not answered unknown.
    pub fn acceptance(&self) -> Option<f64> {
        ratio(self.in_class_accepted, self.in_class)
    }

    /// Share of the correct answers not answered unknown.
    pub fn correct_acceptance(&self) -> Option<f64> {
        ratio(self.correct_accepted, self.correct)
    }

    /// Share of the out-of-class examples answered unknown.
    pub fn rejection(&self) -> Option<f64> {
        ratio(self.out_of_class_rejected, self.out_of_class)
    }
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl std::fmt::Display for UnknownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, self.threshold) {
            (Some(kind), Some(t)) => write!(f, "unknown below {} {t:.4}: ", kind.name())?,
            _ => write!(f, "no unknown rule (nothing is answered unknown): ")?,
        }
        write!(
            f,
            "in-class acceptance {} ({}/{}; of correct answers {}/{})",
            percent(self.acceptance()),
            self.in_class_accepted,
            self.in_class,
            self.correct_accepted,
            self.correct
        )?;
        if self.out_of_class > 0 {
            write!(
                f,
                ", out-of-class rejection {} ({}/{})",
                percent(self.rejection()),
                self.out_of_class_rejected,
                self.out_of_class
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_threshold_keeps_at_least_accept_of_the_scores() {
        let scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        // 5 of 100 dropped: the 6th lowest is the threshold.
        assert_eq!(threshold_keeping(&scores, 0.95), Some(0.05));
        assert_eq!(share_rejected(&scores, 0.05), Some(0.05));
        assert_eq!(threshold_keeping(&scores, 1.0), Some(0.0));
        assert_eq!(threshold_keeping(&scores, 0.5), Some(0.5));
        for n in 1..60 {
            let s: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32).collect();
            for accept in [0.5f32, 0.8, 0.9, 0.95, 0.99, 1.0] {
                let t = threshold_keeping(&s, accept).unwrap();
                let kept = 1.0 - share_rejected(&s, t).unwrap();
                assert!(
                    kept + 1e-9 >= f64::from(accept),
                    "n {n} accept {accept}: {kept}"
                );
            }
        }
    }

    #[test]
    fn edge_cases_give_no_threshold_or_a_sane_one() {
        assert_eq!(threshold_keeping(&[], 0.95), None);
        assert_eq!(threshold_keeping(&[f32::NAN], 0.95), None);
        assert_eq!(threshold_keeping(&[0.7], 0.95), Some(0.7));
        assert_eq!(threshold_keeping(&[0.7, f32::NAN, 0.2], 0.95), Some(0.2));
        // Ties keep every tied score.
        assert_eq!(threshold_keeping(&[0.5; 10], 0.6), Some(0.5));
        assert!(is_unknown(f32::NAN, 0.1));
        assert!(!is_unknown(0.1, 0.1));
        assert_eq!(share_rejected(&[], 0.5), None);
    }

    #[test]
    fn removing_the_own_class_renormalises_the_rest() {
        let logits = array![[3.0f32, 1.0, 1.0], [0.0, 0.0, 10.0]];
        let p = without_own_class(logits.view(), &[0, 1]);
        assert_eq!(p[[0, 0]], 0.0);
        assert!((p[[0, 1]] - 0.5).abs() < 1e-6 && (p[[0, 2]] - 0.5).abs() < 1e-6);
        assert_eq!(p[[1, 1]], 0.0);
        assert!(p[[1, 2]] > 0.99);
    }

    #[test]
    fn centroids_score_the_answered_class() {
        let x = array![[1.0f32, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]];
        let c = Centroids::fit(x.view(), &[0, 0, 1, 1], 2).unwrap();
        assert!(c.check(2, 2).is_ok());
        assert!(c.check(3, 2).is_err());
        let probs = array![[0.9f32, 0.1], [0.2, 0.8]];
        let q = array![[4.0f32, 0.0], [4.0, 0.0]];
        let s = head_scores(ScoreKind::CentroidCosine, probs.view(), q.view(), Some(&c)).unwrap();
        assert!(s[0] > 0.5 && s[1] < s[0], "{s:?}");
        assert!(head_scores(ScoreKind::CentroidCosine, probs.view(), q.view(), None).is_err());
        assert!(Centroids::fit(x.view(), &[0, 0, 0, 0], 2).is_err());
    }

    /// Two well separated classes in 4-d, validated on their own examples.
    fn evidence_parts() -> (Array2<f32>, Array2<f32>, Vec<usize>) {
        let mut emb = Vec::new();
        let mut labels = Vec::new();
        for i in 0..20 {
            let class = i % 2;
            let wobble = (i as f32 * 0.37).sin() * 0.2;
            let mut row = [wobble, -wobble, 0.1, 0.0];
            row[class] += 2.0;
            emb.extend(row);
            labels.push(class);
        }
        let emb = Array2::from_shape_vec((20, 4), emb).unwrap();
        // Logits: a linear head that reads the first two dimensions.
        let logits = emb.slice(ndarray::s![.., 0..2]).to_owned() * 3.0;
        (emb, logits, labels)
    }

    #[test]
    fn calibration_keeps_accept_and_rejects_what_lies_elsewhere() {
        let (emb, logits, labels) = evidence_parts();
        let centroids = Centroids::fit(emb.view(), &labels, 2).unwrap();
        // Out-of-class examples along the other two dimensions.
        let out_emb = array![
            [0.0f32, 0.0, 3.0, 0.0],
            [0.0, 0.0, 0.0, 3.0],
            [0.1, 0.0, -3.0, 0.0]
        ];
        let out_logits = out_emb.slice(ndarray::s![.., 0..2]).to_owned() * 3.0;
        let evidence = Evidence {
            val_logits: logits.view(),
            val_embeddings: emb.view(),
            val_labels: &labels,
            out: Some((out_logits.view(), out_emb.view())),
        };
        let cal = calibrate(&evidence, centroids.clone(), 0.95).unwrap();
        let rule = cal.rule.expect(&cal.note);
        assert_eq!(rule.calibrated_on, 20);
        assert_eq!(rule.judged.on, "unknown-data");
        assert_eq!(rule.candidates.len(), 2);
        let chosen = rule
            .candidates
            .iter()
            .find(|c| c.kind == rule.kind)
            .unwrap();
        assert!(chosen.kept >= 0.95);
        assert!(rule
            .candidates
            .iter()
            .all(|c| c.rejected <= chosen.rejected));
        assert!(chosen.rejected.unwrap() > 0.5, "{:?}", rule.candidates);

        // Without unknown data the simulation judges them.
        let simulated = Evidence {
            out: None,
            ..evidence
        };
        let cal = calibrate(&simulated, centroids.clone(), 0.95).unwrap();
        let rule = cal.rule.expect(&cal.note);
        assert_eq!(rule.judged.on, "simulated");
        assert_eq!(rule.judged.examples, 20);
        assert_eq!(
            rule.centroids.is_some(),
            rule.kind == ScoreKind::CentroidCosine
        );
        // accept 0: no rule.
        assert!(calibrate(&simulated, centroids, 0.0)
            .unwrap()
            .rule
            .is_none());
    }

    #[test]
    fn tiny_or_wrong_validation_splits_give_no_rule_and_say_why() {
        let (emb, logits, labels) = evidence_parts();
        let centroids = Centroids::fit(emb.view(), &labels, 2).unwrap();
        let few = Evidence {
            val_logits: logits.slice(ndarray::s![0..3, ..]),
            val_embeddings: emb.slice(ndarray::s![0..3, ..]),
            val_labels: &labels[0..3],
            out: None,
        };
        let cal = calibrate(&few, centroids.clone(), 0.95).unwrap();
        assert!(
            cal.rule.is_none() && cal.note.contains("3 correct"),
            "{}",
            cal.note
        );
        // Every answer wrong: 0 correct, no panic.
        let wrong: Vec<usize> = labels.iter().map(|l| 1 - l).collect();
        let all_wrong = Evidence {
            val_labels: &wrong,
            ..few
        };
        let all_wrong = Evidence {
            val_logits: logits.view(),
            val_embeddings: emb.view(),
            ..all_wrong
        };
        let cal = calibrate(&all_wrong, centroids.clone(), 0.95).unwrap();
        assert!(
            cal.rule.is_none() && cal.note.contains("0 correct"),
            "{}",
            cal.note
        );
        let empty = Evidence {
            val_logits: logits.slice(ndarray::s![0..0, ..]),
            val_embeddings: emb.slice(ndarray::s![0..0, ..]),
            val_labels: &[],
            out: None,
        };
        assert!(calibrate(&empty, centroids, 0.95).unwrap().rule.is_none());
        assert!(UnknownOptions {
            accept: 1.5,
            unknown_data: None
        }
        .validate()
        .is_err());
    }

    #[test]
    fn reports_count_acceptance_and_rejection() {
        let r = UnknownReport::count(
            None,
            &[(true, false), (true, true), (false, false), (false, true)],
            &[true, false, true],
        );
        assert_eq!(r.acceptance(), Some(0.5));
        assert_eq!(r.correct_acceptance(), Some(0.5));
        assert_eq!(r.rejection(), Some(2.0 / 3.0));
        assert!(
            r.to_string().contains("out-of-class rejection 66.7 %"),
            "{r}"
        );
        let none = UnknownReport::count(None, &[], &[]);
        assert_eq!(none.acceptance(), None);
    }
}
