//! A K-nearest-neighbour classifier over embeddings: zero training, add examples at any time.
//!
//! Like TensorFlow.js's knn-classifier: cosine similarity between the query and every stored example,
//! a vote among the `k` most similar, and per-class confidences `votes / k`. Unlike it, an index is
//! saved and loaded (safetensors), and remembers which base model produced its embeddings.
//!
//! [`gpu`] computes the similarity matrix on a GPU ([`GpuSimilarity`]) for large indexes.
//!
//! An index may hold an "unknown" rule ([`Knn::calibrate_unknown`], a `neighbour-cosine`
//! [`RejectRule`]): an answer is unknown when the most similar stored example of the winning class
//! is less similar than the threshold. It is calibrated leave-one-out: each stored example (at
//! most [`CALIBRATION_QUERIES`], evenly spread) is classified by the others, and the threshold
//! keeps `accept` of those answered correctly; out-of-class examples are the unknown data when
//! given, else each example classified with every example of its own class left out (what the
//! index would answer had that class never been added). Examples added later keep the rule as it
//! was; indexes saved without a rule load and never answer unknown.

use std::path::Path;
use std::sync::Arc;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::base::BaseRef;
use crate::gpu::Gpu;
use crate::reject::{self, unit_rows, Calibration, Judged, RejectRule, ScoreKind};
use crate::tensor_file::{self, Entry, TensorFile};
use crate::{Error, Result};

pub mod gpu;

pub use self::gpu::{cosine_similarity, GpuSimilarity};

/// Stored examples: unit-length embeddings with their class.
#[derive(Clone, Debug)]
pub struct Knn {
    base: BaseRef,
    classes: Vec<String>,
    /// `[n, dim]`, each row scaled to unit length (a zero vector stays zero).
    vectors: Array2<f32>,
    labels: Vec<usize>,
    unknown: Option<RejectRule>,
}

/// Neighbours that vote unless told otherwise (`graft knn classify -k`), and in calibration.
pub const DEFAULT_K: usize = 3;

/// Most stored examples classified by the others when an index's rule is calibrated.
pub const CALIBRATION_QUERIES: usize = 2000;

/// The answer for one query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnPrediction {
    /// The winning class: most votes, ties broken by the larger summed similarity.
    pub label: String,
    /// Every class with its share of the k votes, in class order.
    pub confidences: Vec<(String, f32)>,
    /// The k nearest stored examples: (index, class, cosine similarity), most similar first.
    pub neighbours: Vec<(usize, String, f32)>,
    /// True when the index's rule says the query is like none of its classes (`label` is then
    /// the closest class, not an answer); always false without a rule.
    #[serde(default)]
    pub unknown: bool,
}

impl KnnPrediction {
    /// The rule's score: the similarity of the most similar neighbour of the winning class (NaN
    /// when none voted).
    pub fn score(&self) -> f32 {
        self.neighbours
            .iter()
            .find(|(_, class, _)| *class == self.label)
            .map_or(f32::NAN, |n| n.2)
    }
}

#[derive(Serialize, Deserialize)]
struct KnnMeta {
    format: String,
    graft_version: String,
    base: BaseRef,
    classes: Vec<String>,
    /// Absent in indexes saved before rules existed.
    #[serde(default)]
    unknown: Option<RejectRule>,
}

const FORMAT: &str = "graft-knn-1";

impl Knn {
    /// An empty index for embeddings made by `base`.
    pub fn new(base: BaseRef) -> Knn {
        let dim = base.embedding_dim;
        Knn {
            base,
            classes: Vec::new(),
            vectors: Array2::zeros((0, dim)),
            labels: Vec::new(),
            unknown: None,
        }
    }

    /// The "unknown" rule; `None`: nothing is unknown.
    pub fn unknown_rule(&self) -> Option<&RejectRule> {
        self.unknown.as_ref()
    }

    /// Calibrates and keeps the "unknown" rule (see the module docs) for votes of `k`
    /// neighbours, keeping `accept` of the correct leave-one-out answers, judged on `out`
    /// (embeddings `[m, dim]` of nothing the index knows) when given.
    pub fn calibrate_unknown(
        &mut self,
        k: usize,
        accept: f32,
        out: Option<ArrayView2<f32>>,
    ) -> Result<Calibration> {
        if k == 0 {
            return Err(Error::Invalid("k must be at least 1".into()));
        }
        if accept <= 0.0 {
            self.unknown = None;
            return Ok(Calibration::none(
                "no unknown rule (--accept 0): every answer is a class",
            ));
        }
        let n = self.len();
        let step = n.div_ceil(CALIBRATION_QUERIES).max(1);
        let queries: Vec<usize> = (0..n).step_by(step).collect();
        let similarities = self
            .vectors
            .select(Axis(0), &queries)
            .dot(&self.vectors.t());
        let k = k.min(n.saturating_sub(1)).max(1);
        let (mut correct, mut simulated) = (Vec::new(), Vec::new());
        for (row, &q) in similarities.rows().into_iter().zip(&queries) {
            let mut others = row.to_owned();
            others[q] = f32::NEG_INFINITY;
            let answer = self.vote(others.view(), k);
            if answer.label == self.classes[self.labels[q]] {
                correct.push(answer.score());
            }
            for (i, s) in others.iter_mut().enumerate() {
                if self.labels[i] == self.labels[q] {
                    *s = f32::NEG_INFINITY;
                }
            }
            let without_class = self.vote(others.view(), k);
            if !without_class.neighbours.is_empty() {
                simulated.push(without_class.score());
            }
        }
        if correct.len() < reject::MIN_CORRECT {
            self.unknown = None;
            return Ok(Calibration::none(format!(
                "no unknown rule: {} stored example(s) answered correctly by the others, fewer \
                 than the {} a threshold is set on",
                correct.len(),
                reject::MIN_CORRECT
            )));
        }
        let (out_scores, judged) = match out {
            Some(out) => {
                let scores: Vec<f32> = self
                    .classify(out, k)?
                    .iter()
                    .map(KnnPrediction::score)
                    .collect();
                let judged = Judged {
                    on: "unknown-data".into(),
                    examples: scores.len(),
                };
                (scores, judged)
            }
            None => {
                let judged = Judged {
                    on: "simulated".into(),
                    examples: simulated.len(),
                };
                (simulated, judged)
            }
        };
        let kind = ScoreKind::NeighbourCosine;
        let Some(chosen) = reject::candidate(kind, &correct, &out_scores, accept) else {
            self.unknown = None;
            return Ok(Calibration::none("no unknown rule: no finite similarity"));
        };
        let note = format!(
            "unknown below {} {:.4} (kept {:.1} % of {} correct leave-one-out answers, k = {k}; \
             rejects {} of {} {} out-of-class examples)",
            kind.name(),
            chosen.threshold,
            100.0 * chosen.kept,
            correct.len(),
            chosen
                .rejected
                .map_or("-".into(), |r| format!("{:.1} %", 100.0 * r)),
            judged.examples,
            judged.on
        );
        let rule = RejectRule {
            kind,
            threshold: chosen.threshold,
            accept,
            calibrated_on: correct.len(),
            judged,
            candidates: vec![chosen],
            centroids: None,
        };
        self.unknown = Some(rule.clone());
        Ok(Calibration {
            rule: Some(rule),
            note,
        })
    }

    /// The base model whose embeddings this index holds.
    pub fn base(&self) -> &BaseRef {
        &self.base
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.vectors.ncols()
    }

    /// Total number of stored examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Adds one example of class `label` (a new class is created on first use).
    pub fn add(&mut self, label: &str, embedding: ArrayView1<f32>) -> Result<()> {
        self.add_many(label, embedding.insert_axis(Axis(0)))
    }

    /// Adds the rows of `embeddings` `[n, dim]`, all of class `label`.
    pub fn add_many(&mut self, label: &str, embeddings: ArrayView2<f32>) -> Result<()> {
        if label.is_empty() {
            return Err(Error::Invalid("a KNN class label cannot be empty".into()));
        }
        self.check_dim(embeddings.ncols())?;
        if embeddings.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid("embedding holds NaN or infinity".into()));
        }
        let class = match self.classes.iter().position(|c| c == label) {
            Some(i) => i,
            None => {
                self.classes.push(label.to_string());
                self.classes.len() - 1
            }
        };
        let normalised = unit_rows(embeddings);
        self.vectors
            .append(Axis(0), normalised.view())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.labels
            .extend(std::iter::repeat_n(class, embeddings.nrows()));
        Ok(())
    }

    /// Number of stored examples per class, in the order classes were first added.
    pub fn class_counts(&self) -> Vec<(String, usize)> {
        let counts = crate::dataset::count_labels(self.labels.iter().copied(), self.classes.len());
        self.classes.iter().cloned().zip(counts).collect()
    }

    /// Removes every example of class `label`, and the class. Unknown labels are an error.
    pub fn clear_class(&mut self, label: &str) -> Result<()> {
        let class = self
            .classes
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no class '{label}' in the index (classes: {})",
                    self.classes.join(", ")
                ))
            })?;
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| self.labels[i] != class)
            .collect();
        self.vectors = self.vectors.select(Axis(0), &keep);
        self.labels = keep
            .iter()
            .map(|&i| self.labels[i] - usize::from(self.labels[i] > class))
            .collect();
        self.classes.remove(class);
        Ok(())
    }

    /// Classifies each row of `queries` `[m, dim]` by its `k` most similar stored examples
    /// (`k` is capped at the number stored).
    pub fn classify(&self, queries: ArrayView2<f32>, k: usize) -> Result<Vec<KnnPrediction>> {
        self.classify_with(queries, k, None)
    }

    /// Like [`Knn::classify`], with the similarity matrix computed on `gpu` when given (worth it for
    /// large indexes on a hardware GPU).
    pub fn classify_with(
        &self,
        queries: ArrayView2<f32>,
        k: usize,
        gpu: Option<Arc<Gpu>>,
    ) -> Result<Vec<KnnPrediction>> {
        if self.is_empty() {
            return Err(Error::Invalid(
                "the KNN index is empty: add examples first".into(),
            ));
        }
        if k == 0 {
            return Err(Error::Invalid("k must be at least 1".into()));
        }
        self.check_dim(queries.ncols())?;
        let queries = unit_rows(queries);
        let k = k.min(self.len());
        match gpu {
            Some(gpu) => {
                let similarities = cosine_similarity(gpu, queries.view(), self.vectors.view())?;
                Ok(self.vote_rows(similarities.view(), k))
            }
            None => Ok(self.classify_on_cpu(queries.view(), k)),
        }
    }

    /// Similarities and votes for unit-length `queries`, in chunks of rows spread over the cores
    /// (one matrix product per chunk).
    fn classify_on_cpu(&self, queries: ArrayView2<f32>, k: usize) -> Vec<KnnPrediction> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rows = queries.nrows().div_ceil(cores).max(1);
        std::thread::scope(|scope| {
            let chunks: Vec<_> = queries
                .axis_chunks_iter(Axis(0), rows)
                .map(|chunk| {
                    scope.spawn(move || self.vote_rows(chunk.dot(&self.vectors.t()).view(), k))
                })
                .collect();
            chunks
                .into_iter()
                .flat_map(|chunk| {
                    chunk
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e))
                })
                .collect()
        })
    }

    /// One prediction per row of a `[queries, stored]` similarity matrix.
    fn vote_rows(&self, similarities: ArrayView2<f32>, k: usize) -> Vec<KnnPrediction> {
        similarities
            .axis_iter(Axis(0))
            .map(|row| self.vote(row, k))
            .collect()
    }

    fn vote(&self, similarities: ArrayView1<f32>, k: usize) -> KnnPrediction {
        let mut order: Vec<usize> = (0..similarities.len()).collect();
        let by_similarity =
            |a: &usize, b: &usize| similarities[*b].total_cmp(&similarities[*a]).then(a.cmp(b));
        let k = k.min(order.len()).max(1);
        order.select_nth_unstable_by(k - 1, by_similarity);
        order.truncate(k);
        order.sort_by(by_similarity);
        // Examples left out (calibration) do not vote.
        order.retain(|&i| similarities[i] > f32::NEG_INFINITY);
        let mut votes = vec![0usize; self.classes.len()];
        let mut mass = vec![0f32; self.classes.len()];
        for &i in &order {
            votes[self.labels[i]] += 1;
            mass[self.labels[i]] += similarities[i];
        }
        let winner = (0..self.classes.len())
            .max_by(|&a, &b| {
                votes[a]
                    .cmp(&votes[b])
                    .then(mass[a].total_cmp(&mass[b]))
                    .then(b.cmp(&a))
            })
            .unwrap_or(0);
        let mut prediction = KnnPrediction {
            label: self.classes[winner].clone(),
            confidences: self
                .classes
                .iter()
                .zip(&votes)
                .map(|(c, &v)| (c.clone(), v as f32 / k as f32))
                .collect(),
            neighbours: order
                .iter()
                .map(|&i| (i, self.classes[self.labels[i]].clone(), similarities[i]))
                .collect(),
            unknown: false,
        };
        if let Some(rule) = &self.unknown {
            prediction.unknown = reject::is_unknown(prediction.score(), rule.threshold);
        }
        prediction
    }

    /// Saves the index atomically as safetensors (`vectors`, `labels`) with JSON metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = KnnMeta {
            format: FORMAT.into(),
            graft_version: env!("CARGO_PKG_VERSION").into(),
            base: self.base.clone(),
            classes: self.classes.clone(),
            unknown: self.unknown.clone(),
        };
        let labels: Vec<u32> = self.labels.iter().map(|&l| l as u32).collect();
        let vectors = self.vectors.as_standard_layout();
        let entries = [
            Entry::f32(
                "vectors",
                vec![self.len(), self.dim()],
                vectors.as_slice().unwrap_or(&[]),
            ),
            Entry::u32("labels", vec![self.len()], &labels),
        ];
        let json = serde_json::to_string(&meta).map_err(|e| Error::Invalid(e.to_string()))?;
        tensor_file::save(path, &entries, &json)
    }

    /// Loads an index saved by [`Knn::save`], checking that every part agrees with the others.
    pub fn load(path: &Path) -> Result<Knn> {
        let file = TensorFile::read(path)?;
        let meta: KnnMeta = file.document(FORMAT, "KNN index")?;
        meta.base.check().map_err(|e| file.error(e))?;
        crate::dataset::check_labels(&meta.classes).map_err(|e| file.error(e))?;
        let (shape, data) = file.f32("vectors", 2)?;
        let (lshape, labels) = file.u32("labels", 1)?;
        if shape[1] != meta.base.embedding_dim || lshape[0] != shape[0] {
            return Err(file.error(format!(
                "vectors {shape:?} and labels {lshape:?} do not match embedding size {}",
                meta.base.embedding_dim
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= meta.classes.len()) {
            return Err(file.error(format!(
                "label {bad} but only {} classes",
                meta.classes.len()
            )));
        }
        let vectors =
            Array2::from_shape_vec((shape[0], shape[1]), data).map_err(|e| file.error(e))?;
        if let Some(rule) = &meta.unknown {
            if rule.kind != ScoreKind::NeighbourCosine || !rule.threshold.is_finite() {
                return Err(file.error(format!(
                    "a KNN index with a {} unknown rule, threshold {}",
                    rule.kind.name(),
                    rule.threshold
                )));
            }
        }
        Ok(Knn {
            base: meta.base,
            classes: meta.classes,
            vectors: unit_rows(vectors.view()),
            labels: labels.into_iter().map(|l| l as usize).collect(),
            unknown: meta.unknown,
        })
    }

    fn check_dim(&self, got: usize) -> Result<()> {
        if got != self.dim() {
            return Err(Error::Invalid(format!(
                "embedding size mismatch: the index holds vectors of size {}, got {got}",
                self.dim()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout};
    use ndarray::array;

    fn base(dim: usize) -> BaseRef {
        BaseRef {
            name: "test-base".into(),
            sha256: "00".into(),
            cut: "features".into(),
            embedding_dim: dim,
            input: InputSpec::Image(ImageSpec {
                width: 8,
                height: 8,
                layout: Layout::Nchw,
                channels: ChannelOrder::Rgb,
                mean: [0.0; 3],
                std: [1.0; 3],
                center_crop: None,
                letterbox: false,
            }),
        }
    }

    fn index() -> Knn {
        let mut knn = Knn::new(base(2));
        knn.add_many("east", array![[1.0, 0.0], [2.0, 0.1], [5.0, -0.2]].view())
            .unwrap();
        knn.add_many("north", array![[0.0, 1.0], [0.1, 3.0]].view())
            .unwrap();
        knn
    }

    #[test]
    fn votes_by_cosine_similarity_and_reports_confidences() {
        let knn = index();
        let p = &knn
            .classify(array![[10.0, 1.0], [-0.1, 0.7]].view(), 3)
            .unwrap();
        assert_eq!(p[0].label, "east");
        assert_eq!(
            p[0].confidences,
            vec![("east".into(), 1.0), ("north".into(), 0.0)]
        );
        assert_eq!(p[1].label, "north");
        assert_eq!(p[1].confidences[1], ("north".into(), 2.0 / 3.0));
        assert_eq!(p[1].neighbours[0].1, "north");
        assert!(p[1].neighbours[0].2 >= p[1].neighbours[1].2);
        // k larger than the index is capped.
        assert_eq!(
            knn.classify(array![[1.0, 0.0]].view(), 50).unwrap()[0]
                .neighbours
                .len(),
            5
        );
    }

    #[test]
    fn many_queries_get_the_answers_each_would_get_alone() {
        let mut knn = Knn::new(base(3));
        let stored = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        for (i, row) in stored.outer_iter().enumerate() {
            knn.add(&format!("c{}", i % 4), row).unwrap();
        }
        let queries = Array2::from_shape_fn((25, 3), |(i, j)| ((i * 5 + j) % 7) as f32 - 3.0);
        let together = knn.classify(queries.view(), 3).unwrap();
        assert_eq!(together.len(), 25);
        for (query, answer) in queries.outer_iter().zip(&together) {
            let alone = knn.classify(query.insert_axis(Axis(0)), 3).unwrap();
            assert_eq!(&alone[0], answer);
        }
    }

    #[test]
    fn ties_go_to_the_more_similar_class() {
        let mut knn = Knn::new(base(2));
        knn.add("a", array![1.0, 0.0].view()).unwrap();
        knn.add("b", array![0.6, 0.8].view()).unwrap();
        let p = knn.classify(array![[0.5, 0.8]].view(), 2).unwrap();
        assert_eq!(p[0].label, "b");
    }

    #[test]
    fn clear_class_counts_and_errors() {
        let mut knn = index();
        assert_eq!(
            knn.class_counts(),
            vec![("east".into(), 3), ("north".into(), 2)]
        );
        knn.clear_class("east").unwrap();
        assert_eq!(knn.class_counts(), vec![("north".into(), 2)]);
        assert_eq!(
            knn.classify(array![[1.0, 0.0]].view(), 1).unwrap()[0].label,
            "north"
        );
        assert!(knn
            .clear_class("east")
            .unwrap_err()
            .to_string()
            .contains("no class 'east'"));
        knn.clear_class("north").unwrap();
        assert!(knn.classify(array![[1.0, 0.0]].view(), 1).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut knn = index();
        let err = knn
            .add("x", array![1.0, 2.0, 3.0].view())
            .unwrap_err()
            .to_string();
        assert!(err.contains("size mismatch"), "{err}");
        assert!(knn.add("x", array![f32::NAN, 0.0].view()).is_err());
        assert!(knn.add("", array![1.0, 0.0].view()).is_err());
        assert!(knn.classify(array![[1.0, 0.0]].view(), 0).is_err());
        assert!(knn.classify(array![[1.0, 0.0, 0.0]].view(), 1).is_err());
    }

    #[test]
    fn save_load_round_trip_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.safetensors");
        let knn = index();
        knn.save(&path).unwrap();
        let back = Knn::load(&path).unwrap();
        assert_eq!(back.base(), knn.base());
        assert_eq!(back.class_counts(), knn.class_counts());
        let q = array![[0.3, 0.9], [4.0, 0.0]];
        assert_eq!(
            back.classify(q.view(), 3).unwrap(),
            knn.classify(q.view(), 3).unwrap()
        );

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(Knn::load(&path).is_err());
        std::fs::write(&path, b"not a safetensors file at all").unwrap();
        assert!(Knn::load(&path).is_err());
        assert!(Knn::load(&dir.path().join("missing")).is_err());
    }
}
