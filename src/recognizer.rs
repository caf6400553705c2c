//! The transfer recognizer: a trained head, its labels and the frozen base it was grafted on; trained,
//! evaluated, saved and loaded as one safetensors file.
//!
//! File layout: tensors `layers.<i>.weight` `[in, out]` and `layers.<i>.bias` `[out]`, and under the
//! `graft` key of `__metadata__` a JSON document ([`RecognizerMeta`]): format, graft version, labels,
//! the base reference (name, sha256, cut, embedding size, preprocessing), the training record and
//! the "unknown" rule ([`RejectRule`]); a `centroid-cosine` rule's centroids are the tensors
//! `unknown.mean` `[dim]` and `unknown.centroids` `[classes, dim]`. Files without a rule (saved
//! before rules existed) load, and never answer unknown.

use std::path::Path;

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::base::BaseRef;
use crate::embeddings::Embeddings;
use crate::head::{Dense, Examples, Head, HeadBackend};
use crate::metrics::Metrics;
use crate::reject::{self, Calibration, Centroids, Evidence, RejectRule, ScoreKind, UnknownReport};
use crate::tensor_file::{self, Entry, TensorFile};
use crate::train::{train, EpochRecord, TrainOptions, TrainReport};
use crate::{Error, Result};

const FORMAT: &str = "graft-recognizer-1";

/// A head trained on embeddings of one frozen base, with its class labels; checked when made
/// ([`Recognizer::new`], [`Recognizer::train`], [`Recognizer::load`]).
#[derive(Clone, Debug)]
pub struct Recognizer {
    head: Head,
    labels: Vec<String>,
    base: BaseRef,
    training: Option<TrainingRecord>,
    unknown: Option<RejectRule>,
}

/// The settings and results of the training run that made a recognizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub options: TrainOptions,
    pub report: TrainReport,
    /// Metrics on the validation split; `None` when there was none.
    pub validation: Option<Metrics>,
    /// Training examples per class.
    pub train_counts: Vec<usize>,
    /// Validation examples per class.
    pub val_counts: Vec<usize>,
}

/// One example's answer: the most likely class, then the top classes with their probabilities,
/// and whether the model's "unknown" rule rejects it (`label` is then the closest class, not an
/// answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub label: String,
    pub probability: f32,
    /// The `top_k` most probable classes, most probable first.
    pub top: Vec<(String, f32)>,
    /// True when the example is like none of the classes (see [`crate::reject`]); always false
    /// for a model without a rule.
    #[serde(default)]
    pub unknown: bool,
}

/// The JSON document stored with the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecognizerMeta {
    pub format: String,
    pub graft_version: String,
    pub labels: Vec<String>,
    pub base: BaseRef,
    pub hidden: Vec<usize>,
    pub training: Option<TrainingRecord>,
    /// The "unknown" rule; absent in files saved before rules existed.
    #[serde(default)]
    pub unknown: Option<RejectRule>,
}

/// The most likely class and the `top_k` best classes (at least one) of each row of class
/// probabilities `[n, labels]`; ties go to the earlier class.
pub fn answers(probs: ArrayView2<f32>, labels: &[String], top_k: usize) -> Result<Vec<Prediction>> {
    if probs.ncols() != labels.len() || labels.is_empty() {
        return Err(Error::Invalid(format!(
            "{} probabilities a row for {} labels",
            probs.ncols(),
            labels.len()
        )));
    }
    Ok(probs
        .rows()
        .into_iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top: Vec<(String, f32)> = order
                .iter()
                .take(top_k.max(1))
                .map(|&i| (labels[i].clone(), row[i]))
                .collect();
            Prediction {
                label: top[0].0.clone(),
                probability: top[0].1,
                top,
                unknown: false,
            }
        })
        .collect())
}

impl Recognizer {
    /// A recognizer of `head` (made otherwise than by [`Recognizer::train`]) for embeddings of
    /// `base`: its layers must chain, take the base's embedding and give one logit per label;
    /// labels must be distinct.
    pub fn new(head: Head, labels: Vec<String>, base: BaseRef) -> Result<Recognizer> {
        head.check()?;
        fits(&head, &labels, &base).map_err(Error::Invalid)?;
        Ok(Recognizer {
            head,
            labels,
            base,
            training: None,
            unknown: None,
        })
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Class names, in the head's output order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The base it takes embeddings of.
    pub fn base(&self) -> &BaseRef {
        &self.base
    }

    /// How it was trained; `None` for a head made otherwise.
    pub fn training(&self) -> Option<&TrainingRecord> {
        self.training.as_ref()
    }

    /// Trains a head on `train` (and validates on `val`, which may be empty) with `backend`.
    /// `on_epoch` sees each epoch's numbers as they come.
    pub fn train(
        train_set: &Embeddings,
        val_set: &Embeddings,
        opts: &TrainOptions,
        backend: &mut dyn HeadBackend,
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> Result<Recognizer> {
        if train_set.classes() != val_set.classes() || train_set.base() != val_set.base() {
            return Err(Error::Invalid(
                "training and validation embeddings come from different data sets or bases".into(),
            ));
        }
        crate::dataset::check_classes(train_set.classes(), &train_set.counts())?;
        let (head, report) = train(
            train_set.classes().len(),
            Examples::new(train_set.vectors().view(), train_set.labels()),
            Examples::new(val_set.vectors().view(), val_set.labels()),
            opts,
            backend,
            on_epoch,
        )?;
        let mut recognizer = Recognizer {
            head,
            labels: train_set.classes().to_vec(),
            base: train_set.base().clone(),
            training: None,
            unknown: None,
        };
        let validation = if val_set.is_empty() {
            None
        } else {
            Some(recognizer.evaluate(val_set)?)
        };
        recognizer.training = Some(TrainingRecord {
            options: opts.clone(),
            report,
            validation,
            train_counts: train_set.counts(),
            val_counts: val_set.counts(),
        });
        Ok(recognizer)
    }

    /// Class probabilities `[n, classes]` for embeddings `[n, dim]`.
    pub fn probabilities(&self, embeddings: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.head.probabilities(embeddings)
    }

    /// The most likely class and the `top_k` best classes of each embedding, flagged unknown
    /// where the rule rejects it.
    pub fn predict(&self, embeddings: ArrayView2<f32>, top_k: usize) -> Result<Vec<Prediction>> {
        let probs = self.probabilities(embeddings)?;
        let unknown = self.unknown(embeddings, probs.view())?;
        let mut out = answers(probs.view(), &self.labels, top_k)?;
        for (p, u) in out.iter_mut().zip(unknown) {
            p.unknown = u;
        }
        Ok(out)
    }

    /// The "unknown" rule; `None`: nothing is unknown.
    pub fn unknown_rule(&self) -> Option<&RejectRule> {
        self.unknown.as_ref()
    }

    /// Replaces the "unknown" rule (a `centroid-cosine` one must hold centroids of this
    /// recognizer's classes and embedding size).
    pub fn set_unknown_rule(&mut self, rule: Option<RejectRule>) -> Result<()> {
        if let Some(rule) = &rule {
            check_rule(rule, self.labels.len(), self.base.embedding_dim).map_err(Error::Invalid)?;
        }
        self.unknown = rule;
        Ok(())
    }

    /// Whether the rule rejects each row's answer, given its embedding and the probabilities
    /// computed from it (all false without a rule).
    pub fn unknown(
        &self,
        embeddings: ArrayView2<f32>,
        probs: ArrayView2<f32>,
    ) -> Result<Vec<bool>> {
        let Some(rule) = &self.unknown else {
            return Ok(vec![false; probs.nrows()]);
        };
        let scores = reject::head_scores(rule.kind, probs, embeddings, rule.centroids.as_ref())?;
        Ok(scores
            .into_iter()
            .map(|s| reject::is_unknown(s, rule.threshold))
            .collect())
    }

    /// Calibrates the "unknown" rule (see [`crate::reject`]) to keep `accept` of the correct
    /// answers on `val`, with centroids from `train`, judged on `out` (embeddings `[m, dim]` of
    /// nothing the recognizer knows) when given, and keeps it; the calibration's note says what
    /// was chosen, or why there is no rule.
    pub fn calibrate_unknown(
        &mut self,
        train: &Embeddings,
        val: &Embeddings,
        out: Option<ArrayView2<f32>>,
        accept: f32,
    ) -> Result<Calibration> {
        self.check_base(train.base())?;
        self.check_base(val.base())?;
        let classes = self.labels.len();
        let centroids = Centroids::fit(train.vectors(), train.labels(), classes)?;
        let val_logits = self.head.logits(val.vectors())?;
        let out_logits = out.map(|o| self.head.logits(o)).transpose()?;
        let evidence = Evidence {
            val_logits: val_logits.view(),
            val_embeddings: val.vectors(),
            val_labels: val.labels(),
            out: out.zip(out_logits.as_ref()).map(|(e, l)| (l.view(), e)),
        };
        let calibration = reject::calibrate(&evidence, centroids, accept)?;
        self.set_unknown_rule(calibration.rule.clone())?;
        Ok(calibration)
    }

    /// In-class acceptance on labelled embeddings (classes matched by name, as
    /// [`Recognizer::evaluate`] does) and out-of-class rejection on `out` (`[m, dim]`, examples
    /// of nothing the recognizer knows; may be empty).
    pub fn evaluate_unknown(
        &self,
        data: &Embeddings,
        out: ArrayView2<f32>,
    ) -> Result<UnknownReport> {
        let truth = self.truth(data)?;
        let probs = self.probabilities(data.vectors())?;
        let unknown = self.unknown(data.vectors(), probs.view())?;
        let predicted = crate::head::argmax_rows(probs.view());
        let in_class: Vec<(bool, bool)> = truth
            .iter()
            .zip(predicted)
            .zip(unknown)
            .map(|((t, p), u)| (*t == p, u))
            .collect();
        let out_unknown = if out.nrows() == 0 {
            Vec::new()
        } else {
            let out_probs = self.probabilities(out)?;
            self.unknown(out, out_probs.view())?
        };
        Ok(UnknownReport::count(
            self.unknown.as_ref(),
            &in_class,
            &out_unknown,
        ))
    }

    /// Accuracy, per-class accuracy and confusion matrix on labelled embeddings. Their classes are
    /// matched to the recognizer's by name (a subset in any order is fine); a class the recognizer
    /// does not know is an error, as are embeddings from another base.
    pub fn evaluate(&self, data: &Embeddings) -> Result<Metrics> {
        let truth = self.truth(data)?;
        let predicted = self.head.predict(data.vectors().view())?;
        Metrics::compute(&truth, &predicted, &self.labels)
    }

    /// Each example's class as an index into this recognizer's labels (matched by name).
    fn truth(&self, data: &Embeddings) -> Result<Vec<usize>> {
        self.check_base(data.base())?;
        let mapping = data
            .classes()
            .iter()
            .map(|c| self.labels.iter().position(|l| l == c))
            .collect::<Vec<_>>();
        let unknown: Vec<&str> = data
            .classes()
            .iter()
            .zip(&mapping)
            .filter(|(_, m)| m.is_none())
            .map(|(c, _)| c.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Dataset(format!(
                "class(es) {} are not among the recognizer's labels ({})",
                unknown.join(", "),
                self.labels.join(", ")
            )));
        }
        Ok(data
            .labels()
            .iter()
            .map(|&l| mapping[l].unwrap_or_default())
            .collect())
    }

    /// A [`Error::BaseMismatch`] unless `other` is the base this recognizer was trained on.
    pub fn check_base(&self, other: &BaseRef) -> Result<()> {
        self.base.check_same(other, "the recognizer")
    }

    /// The metadata document stored with the weights.
    pub fn meta(&self) -> RecognizerMeta {
        RecognizerMeta {
            format: FORMAT.into(),
            graft_version: env!("CARGO_PKG_VERSION").into(),
            labels: self.labels.clone(),
            base: self.base.clone(),
            hidden: self.head.spec().hidden,
            training: self.training.clone(),
            unknown: self.unknown.clone(),
        }
    }

    /// Saves atomically as one safetensors file (see the module docs for the layout).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut entries = Vec::new();
        for (i, layer) in self.head.layers.iter().enumerate() {
            let w = layer.weight.as_standard_layout();
            entries.push(Entry::f32(
                format!("layers.{i}.weight"),
                w.shape().to_vec(),
                w.as_slice().unwrap_or(&[]),
            ));
            entries.push(Entry::f32(
                format!("layers.{i}.bias"),
                vec![layer.bias.len()],
                &layer.bias.to_vec(),
            ));
        }
        if let Some(c) = self.unknown.as_ref().and_then(|r| r.centroids.as_ref()) {
            let unit = c.unit.as_standard_layout();
            entries.push(Entry::f32(
                UNKNOWN_MEAN,
                vec![c.mean.len()],
                &c.mean.to_vec(),
            ));
            entries.push(Entry::f32(
                UNKNOWN_CENTROIDS,
                unit.shape().to_vec(),
                unit.as_slice().unwrap_or(&[]),
            ));
        }
        let json =
            serde_json::to_string(&self.meta()).map_err(|e| Error::Invalid(e.to_string()))?;
        tensor_file::save(path, &entries, &json)
    }

    /// Loads a recognizer saved by [`Recognizer::save`], checking that the layers chain, that the first
    /// takes the base's embedding and that the last gives one logit per label.
    pub fn load(path: &Path) -> Result<Recognizer> {
        let file = TensorFile::read(path)?;
        let meta: RecognizerMeta = file.document(FORMAT, "graft recognizer")?;
        meta.base.check().map_err(|e| file.error(e))?;
        if meta.hidden.len() > MAX_HIDDEN_LAYERS {
            return Err(file.error(format!(
                "{} hidden layers, more than the {MAX_HIDDEN_LAYERS} graft trains",
                meta.hidden.len()
            )));
        }
        let mut layers = Vec::with_capacity(meta.hidden.len() + 1);
        for i in 0..=meta.hidden.len() {
            let (ws, w) = file.f32(&format!("layers.{i}.weight"), 2)?;
            let (bs, b) = file.f32(&format!("layers.{i}.bias"), 1)?;
            let weight = Array2::from_shape_vec((ws[0], ws[1]), w).map_err(|e| file.error(e))?;
            let bias = Array1::from_shape_vec(bs[0], b).map_err(|e| file.error(e))?;
            layers.push(Dense { weight, bias });
        }
        let head = Head { layers };
        head.check().map_err(|e| file.error(e))?;
        fits(&head, &meta.labels, &meta.base).map_err(|e| file.error(e))?;
        let mut unknown = meta.unknown;
        if let Some(rule) = unknown.as_mut() {
            if rule.kind == ScoreKind::CentroidCosine || file.has(UNKNOWN_CENTROIDS) {
                let (ms, mean) = file.f32(UNKNOWN_MEAN, 1)?;
                let (cs, unit) = file.f32(UNKNOWN_CENTROIDS, 2)?;
                rule.centroids = Some(Centroids {
                    mean: Array1::from_shape_vec(ms[0], mean).map_err(|e| file.error(e))?,
                    unit: Array2::from_shape_vec((cs[0], cs[1]), unit)
                        .map_err(|e| file.error(e))?,
                });
            }
            check_rule(rule, meta.labels.len(), meta.base.embedding_dim)
                .map_err(|e| file.error(e))?;
        }
        Ok(Recognizer {
            head,
            labels: meta.labels,
            base: meta.base,
            training: meta.training,
            unknown,
        })
    }
}

/// Tensors of a `centroid-cosine` rule: the training mean and the unit class centroids.
const UNKNOWN_MEAN: &str = "unknown.mean";
const UNKNOWN_CENTROIDS: &str = "unknown.centroids";

/// Why `rule` cannot be a recognizer's of `classes` classes of `dim`-d embeddings, if so.
fn check_rule(rule: &RejectRule, classes: usize, dim: usize) -> std::result::Result<(), String> {
    if !rule.threshold.is_finite() || !(0.0..=1.0).contains(&rule.accept) {
        return Err(format!(
            "unknown rule with threshold {} and accept {}",
            rule.threshold, rule.accept
        ));
    }
    match (rule.kind, &rule.centroids) {
        (ScoreKind::MaxProbability, None) => Ok(()),
        (ScoreKind::CentroidCosine, Some(c)) => c.check(classes, dim),
        (kind, _) => Err(format!(
            "a {} unknown rule {} centroids",
            kind.name(),
            if rule.centroids.is_some() {
                "with"
            } else {
                "without"
            }
        )),
    }
}

/// The most hidden layers a saved recognizer may declare.
const MAX_HIDDEN_LAYERS: usize = 64;

/// Why `head` does not take `base`'s embedding or give one logit per label, or why the labels
/// cannot name its classes (empty or repeated), if so.
fn fits(head: &Head, labels: &[String], base: &BaseRef) -> std::result::Result<(), String> {
    crate::dataset::check_labels(labels)?;
    if head.input_dim() != base.embedding_dim || head.classes() != labels.len() {
        return Err(format!(
            "the head maps {} -> {} but the base gives {} and there are {} labels",
            head.input_dim(),
            head.classes(),
            base.embedding_dim,
            labels.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::CpuBackend;
    use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout};
    use rand::{Rng, SeedableRng};

    fn base_ref(dim: usize) -> BaseRef {
        BaseRef {
            name: "synthetic".into(),
            sha256: "ab".repeat(32),
            cut: "features".into(),
            embedding_dim: dim,
            input: InputSpec::Image(ImageSpec {
                width: 4,
                height: 4,
                layout: Layout::Nhwc,
                channels: ChannelOrder::Rgb,
                mean: [0.0; 3],
                std: [255.0; 3],
                center_crop: None,
                letterbox: false,
            }),
        }
    }

    /// Three Gaussian blobs in 8 dimensions.
    fn blobs(n_per_class: usize, seed: u64) -> Embeddings {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let classes = ["ant", "bee", "cat"];
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (c, _) in classes.iter().enumerate() {
            for _ in 0..n_per_class {
                for d in 0..8 {
                    let centre = if d == c { 3.0 } else { 0.0 };
                    rows.push(centre + rng.random_range(-1.0f32..1.0));
                }
                labels.push(c);
            }
        }
        let n = labels.len();
        Embeddings {
            base: base_ref(8),
            classes: classes.iter().map(|s| s.to_string()).collect(),
            vectors: Array2::from_shape_vec((n, 8), rows).unwrap(),
            labels,
            sources: (0..n)
                .map(|i| crate::embeddings::Source::File(format!("{i}.png").into()))
                .collect(),
        }
    }

    fn trained() -> (Recognizer, Embeddings) {
        let data = blobs(20, 1);
        let (train_set, val_set) = data.split(0.3, 42).unwrap();
        let opts = TrainOptions {
            epochs: 40,
            hidden: vec![6],
            learning_rate: 1e-2,
            ..TrainOptions::default()
        };
        let rec = Recognizer::train(
            &train_set,
            &val_set,
            &opts,
            &mut CpuBackend::new(),
            &mut |_| {},
        )
        .unwrap();
        (rec, val_set)
    }

    #[test]
    fn trains_records_and_predicts() {
        let (rec, val) = trained();
        let record = rec.training.as_ref().unwrap();
        assert_eq!(record.train_counts, vec![14, 14, 14]);
        assert_eq!(record.val_counts, vec![6, 6, 6]);
        let metrics = record.validation.as_ref().unwrap();
        assert!(metrics.accuracy > 0.9, "{}", metrics.accuracy);
        let preds = rec.predict(val.vectors.view(), 2).unwrap();
        assert_eq!(preds.len(), val.len());
        for p in &preds {
            assert_eq!(p.top.len(), 2);
            assert!(p.top[0].1 >= p.top[1].1 && p.probability == p.top[0].1);
        }
    }

    #[test]
    fn save_load_gives_identical_predictions_and_metadata() {
        let (rec, val) = trained();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.safetensors");
        rec.save(&path).unwrap();
        let back = Recognizer::load(&path).unwrap();
        assert_eq!(back.head, rec.head);
        assert_eq!(back.labels, rec.labels);
        assert_eq!(back.base, rec.base);
        assert_eq!(back.training, rec.training);
        assert_eq!(
            back.probabilities(val.vectors.view()).unwrap(),
            rec.probabilities(val.vectors.view()).unwrap()
        );
    }

    #[test]
    fn corrupt_truncated_and_inconsistent_files_are_errors() {
        let (rec, _) = trained();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.safetensors");
        rec.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 7, bytes.len() / 3, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(Recognizer::load(&path).is_err(), "truncated at {cut}");
        }
        // A KNN index or labels that do not match the head are refused.
        let mut wrong = rec.clone();
        wrong.labels.pop();
        wrong.save(&path).unwrap();
        let err = Recognizer::load(&path).unwrap_err().to_string();
        assert!(err.contains("labels"), "{err}");
    }

    #[test]
    fn the_unknown_rule_is_calibrated_applied_saved_and_loaded() {
        let (mut rec, val) = trained();
        let (train_set, _) = blobs(20, 1).split(0.3, 42).unwrap();
        // Far from every blob in the dimensions no class uses.
        let far = Array2::from_shape_fn((6, 8), |(i, d)| if d >= 3 { 4.0 + i as f32 } else { 0.0 });
        let calibration = rec
            .calibrate_unknown(&train_set, &val, Some(far.view()), 0.9)
            .unwrap();
        let rule = calibration.rule.clone().expect(&calibration.note);
        assert_eq!(rec.unknown_rule(), Some(&rule));
        let report = rec.evaluate_unknown(&val, far.view()).unwrap();
        assert!(report.correct_acceptance().unwrap() >= 0.9, "{report}");
        assert!(
            report.rejection().unwrap() > 0.5,
            "{report} {}",
            calibration.note
        );
        let flagged: Vec<bool> = rec
            .predict(far.view(), 1)
            .unwrap()
            .iter()
            .map(|p| p.unknown)
            .collect();
        assert_eq!(
            flagged.iter().filter(|u| **u).count(),
            report.out_of_class_rejected
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.safetensors");
        for kind in [ScoreKind::MaxProbability, ScoreKind::CentroidCosine] {
            let candidate = rule.candidates.iter().find(|c| c.kind == kind).unwrap();
            let mut this = rule.clone();
            this.kind = kind;
            this.threshold = candidate.threshold;
            if kind == ScoreKind::CentroidCosine && this.centroids.is_none() {
                this.centroids =
                    Some(Centroids::fit(train_set.vectors(), train_set.labels(), 3).unwrap());
            }
            if kind == ScoreKind::MaxProbability {
                this.centroids = None;
            }
            rec.set_unknown_rule(Some(this.clone())).unwrap();
            rec.save(&path).unwrap();
            let back = Recognizer::load(&path).unwrap();
            assert_eq!(back.unknown_rule(), Some(&this));
            assert_eq!(
                back.predict(far.view(), 2).unwrap(),
                rec.predict(far.view(), 2).unwrap()
            );
        }
        // A max-probability rule with centroids, or a centroid one without, is refused.
        let mut wrong = rule.clone();
        wrong.kind = ScoreKind::CentroidCosine;
        wrong.centroids = None;
        assert!(rec.set_unknown_rule(Some(wrong)).is_err());

        // Without a rule (as files saved before rules existed) nothing is unknown.
        rec.set_unknown_rule(None).unwrap();
        assert!(rec
            .predict(far.view(), 1)
            .unwrap()
            .iter()
            .all(|p| !p.unknown));
        let mut meta = serde_json::to_value(rec.meta()).unwrap();
        meta.as_object_mut().unwrap().remove("unknown");
        let old: RecognizerMeta = serde_json::from_value(meta).unwrap();
        assert!(old.unknown.is_none());
    }

    #[test]
    fn evaluation_maps_classes_by_name_and_refuses_unknown_ones_or_other_bases() {
        let (rec, val) = trained();
        let full = rec.evaluate(&val).unwrap();
        // The same examples with the classes listed in another order.
        let mut shuffled = val.clone();
        shuffled.classes = vec!["cat".into(), "ant".into(), "bee".into()];
        shuffled.labels = val.labels.iter().map(|&l| [1, 2, 0][l]).collect();
        assert_eq!(rec.evaluate(&shuffled).unwrap(), full);

        let mut unknown = val.clone();
        unknown.classes[2] = "dog".into();
        let err = rec.evaluate(&unknown).unwrap_err().to_string();
        assert!(err.contains("dog"), "{err}");

        let mut other = val.clone();
        other.base.sha256 = "cd".repeat(32);
        assert!(rec.evaluate(&other).is_err());
    }
}
