//! A K-nearest-neighbour classifier over embeddings: zero training, add examples at any time.
//!
//! Like TensorFlow.js's knn-classifier: cosine similarity between the query and every stored example,
//! a vote among the `k` most similar, and per-class confidences `votes / k`. Unlike it, an index is
//! saved and loaded (safetensors), and remembers which base model produced its embeddings.
//!
//! On the CPU, [`scan`] compares every query with every stored example in blocks on all cores,
//! keeping only each query's nearest ([`ScanOptions`]); [`gpu`] computes the similarity matrix on
//! a GPU ([`GpuSimilarity`]). Vectors are stored as `f32` or, for half the memory, `f16`
//! ([`Storage`], kept in the saved file).
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

use half::f16;
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use crate::base::BaseRef;
use crate::gpu::Gpu;
use crate::reject::{self, unit_rows, Calibration, Judged, RejectRule, ScoreKind};
use crate::tensor_file::{self, Entry, TensorFile};
use crate::{Error, Result};

pub mod gpu;
pub mod scan;
pub mod store;

pub use self::gpu::{cosine_similarity, GpuSimilarity};
pub use self::scan::{dot, Neighbour, ScanOptions};
pub use self::store::Storage;
use self::store::Vectors;

/// Stored examples: unit-length embeddings with their class.
#[derive(Clone, Debug)]
pub struct Knn {
    base: BaseRef,
    classes: Vec<String>,
    /// `[n, dim]`, each row scaled to unit length (a zero vector stays zero).
    vectors: Vectors,
    labels: Vec<usize>,
    unknown: Option<RejectRule>,
    /// How the CPU scans (not saved: a property of the machine).
    scan: ScanOptions,
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
    /// An empty index for embeddings made by `base`, stored as `f32`.
    pub fn new(base: BaseRef) -> Knn {
        Knn::with_storage(base, Storage::F32)
    }

    /// An empty index for embeddings made by `base`, stored as `storage`.
    pub fn with_storage(base: BaseRef, storage: Storage) -> Knn {
        let dim = base.embedding_dim;
        Knn {
            base,
            classes: Vec::new(),
            vectors: Vectors::empty(storage, dim),
            labels: Vec::new(),
            unknown: None,
            scan: ScanOptions::default(),
        }
    }

    /// How the stored vectors are held (and saved).
    pub fn storage(&self) -> Storage {
        self.vectors.storage()
    }

    /// Converts the stored vectors to `storage` (`f32` to `f16` rounds each value).
    pub fn set_storage(&mut self, storage: Storage) {
        self.vectors = self.vectors.to_storage(storage);
    }

    /// Bytes the stored vectors occupy.
    pub fn vector_bytes(&self) -> usize {
        self.vectors.bytes()
    }

    /// How the CPU scans this index.
    pub fn scan_options(&self) -> &ScanOptions {
        &self.scan
    }

    /// Sets how the CPU scans this index (blocks of 0 rows are an error).
    pub fn set_scan_options(&mut self, options: ScanOptions) -> Result<()> {
        options.validate()?;
        self.scan = options;
        Ok(())
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
        let rows = self.vectors.select(&queries).to_f32().into_owned();
        let k = k.min(n.saturating_sub(1)).max(1);
        let labels = &self.labels;
        let itself = |q: usize, j: usize| queries[q] == j;
        let own_class = |q: usize, j: usize| labels[j] == labels[queries[q]];
        let others = scan::nearest(&self.vectors, rows.view(), k, &self.scan, Some(&itself))?;
        let without = scan::nearest(&self.vectors, rows.view(), k, &self.scan, Some(&own_class))?;
        let (mut correct, mut simulated) = (Vec::new(), Vec::new());
        for ((&q, others), without) in queries.iter().zip(&others).zip(&without) {
            let answer = self.tally(others, k);
            if answer.label == self.classes[self.labels[q]] {
                correct.push(answer.score());
            }
            let without_class = self.tally(without, k);
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
        self.vectors.dim()
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
        self.vectors.append(normalised.view())?;
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
        self.vectors = self.vectors.select(&keep);
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
                let stored = self.vectors.to_f32();
                let similarities = cosine_similarity(gpu, queries.view(), stored.view())?;
                Ok(self.vote_rows(similarities.view(), k))
            }
            None => Ok(
                scan::nearest(&self.vectors, queries.view(), k, &self.scan, None)?
                    .iter()
                    .map(|neighbours| self.tally(neighbours, k))
                    .collect(),
            ),
        }
    }

    /// The `k` nearest stored examples of each row of `queries` `[m, dim]` by the flat scan,
    /// most similar first (ties to the lower row), without voting.
    pub fn nearest(&self, queries: ArrayView2<f32>, k: usize) -> Result<Vec<Vec<Neighbour>>> {
        self.check_dim(queries.ncols())?;
        scan::nearest(
            &self.vectors,
            unit_rows(queries).view(),
            k,
            &self.scan,
            None,
        )
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
        let neighbours: Vec<Neighbour> = order
            .iter()
            .map(|&index| Neighbour {
                index,
                similarity: similarities[index],
            })
            .collect();
        self.tally(&neighbours, k)
    }

    /// The vote of a query's `neighbours` (most similar first) among `k`.
    fn tally(&self, neighbours: &[Neighbour], k: usize) -> KnnPrediction {
        let mut votes = vec![0usize; self.classes.len()];
        let mut mass = vec![0f32; self.classes.len()];
        for n in neighbours {
            votes[self.labels[n.index]] += 1;
            mass[self.labels[n.index]] += n.similarity;
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
            neighbours: neighbours
                .iter()
                .map(|n| {
                    let class = self.classes[self.labels[n.index]].clone();
                    (n.index, class, n.similarity)
                })
                .collect(),
            unknown: false,
        };
        if let Some(rule) = &self.unknown {
            prediction.unknown = reject::is_unknown(prediction.score(), rule.threshold);
        }
        prediction
    }

    /// Saves the index atomically as safetensors (`vectors` as f32 or f16, `labels`) with JSON
    /// metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = KnnMeta {
            format: FORMAT.into(),
            graft_version: env!("CARGO_PKG_VERSION").into(),
            base: self.base.clone(),
            classes: self.classes.clone(),
            unknown: self.unknown.clone(),
        };
        let labels: Vec<u32> = self.labels.iter().map(|&l| l as u32).collect();
        let shape = vec![self.len(), self.dim()];
        let vectors = match &self.vectors {
            Vectors::F32(v) => Entry::f32(
                "vectors",
                shape,
                v.as_standard_layout().as_slice().unwrap_or(&[]),
            ),
            Vectors::F16(v) => Entry::f16(
                "vectors",
                shape,
                v.as_standard_layout().as_slice().unwrap_or(&[]),
            ),
        };
        let entries = [vectors, Entry::u32("labels", vec![self.len()], &labels)];
        let json = serde_json::to_string(&meta).map_err(|e| Error::Invalid(e.to_string()))?;
        tensor_file::save(path, &entries, &json)
    }

    /// Loads an index saved by [`Knn::save`], checking that every part agrees with the others.
    pub fn load(path: &Path) -> Result<Knn> {
        let file = TensorFile::read(path)?;
        let meta: KnnMeta = file.document(FORMAT, "KNN index")?;
        meta.base.check().map_err(|e| file.error(e))?;
        crate::dataset::check_labels(&meta.classes).map_err(|e| file.error(e))?;
        let (storage, (shape, data)) = match file.dtype("vectors") {
            Some(Dtype::F16) => {
                let (shape, data) = file.f16("vectors", 2)?;
                let data = data.into_iter().map(f16::to_f32).collect();
                (Storage::F16, (shape, data))
            }
            _ => (Storage::F32, file.f32("vectors", 2)?),
        };
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
        // f16 rows were unit-length before rounding: kept as saved (narrowing them again is
        // exact) unless some row is not.
        let as_saved = storage == Storage::F16
            && vectors.rows().into_iter().all(|row| {
                let norm = row.dot(&row).sqrt();
                norm == 0.0 || (norm - 1.0).abs() < 1e-2
            });
        let vectors = match as_saved {
            true => vectors,
            false => unit_rows(vectors.view()),
        };
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
            vectors: Vectors::from_f32(storage, vectors),
            labels: labels.into_iter().map(|l| l as usize).collect(),
            unknown: meta.unknown,
            scan: ScanOptions::default(),
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
    use crate::input::{ImageSpec, InputSpec, Layout};
    use ndarray::array;

    fn base(dim: usize) -> BaseRef {
        BaseRef {
            name: "test-base".into(),
            sha256: "00".into(),
            cut: "features".into(),
            embedding_dim: dim,
            input: InputSpec::Image(ImageSpec::unnormalised(8, 8, Layout::Nchw)),
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

    /// Row `i` of a set of unit vectors of size 11 with four entries of ±0.5: every dot product
    /// is a multiple of 0.25, exact in any order of additions, so ties are real ties.
    fn quarter_row(i: usize, seed: usize) -> Vec<f32> {
        let mut row = vec![0.0; 11];
        let step = 1 + (i + seed) % 3;
        for t in 0..4 {
            let sign = if (i * 37 + seed * 11 + t * 5).is_multiple_of(3) {
                -0.5
            } else {
                0.5
            };
            row[(i + seed + t * step) % 11] = sign;
        }
        row
    }

    #[test]
    fn blocked_scan_votes_exactly_as_the_plain_reference() {
        let sizes = [1, 2, 7, 13, 30];
        let mut knn = Knn::new(base(11));
        let mut i = 0;
        for (class, &size) in sizes.iter().enumerate() {
            let rows: Vec<f32> = (0..size)
                .flat_map(|_| {
                    i += 1;
                    quarter_row(i, 0)
                })
                .collect();
            let rows = Array2::from_shape_vec((size, 11), rows).unwrap();
            knn.add_many(&format!("c{class}"), rows.view()).unwrap();
        }
        let mut queries: Vec<f32> = (0..22).flat_map(|q| quarter_row(q, 5)).collect();
        // A zero query: every similarity is 0, the lowest rows win.
        queries.extend([0.0; 11]);
        let queries = Array2::from_shape_vec((23, 11), queries).unwrap();
        let stored = knn.vectors.to_f32().into_owned();
        let unit = unit_rows(queries.view());
        let similarities = Array2::from_shape_fn((23, 53), |(q, j)| {
            dot(&unit.row(q).to_vec(), &stored.row(j).to_vec())
        });
        for storage in [Storage::F32, Storage::F16] {
            knn.set_storage(storage);
            for k in [1, 2, 3, 8, 40, 53, 100] {
                let reference = knn.vote_rows(similarities.view(), k.min(53));
                let tied = |p: &KnnPrediction| p.neighbours.windows(2).any(|w| w[0].2 == w[1].2);
                assert!(k == 1 || reference.iter().any(tied));
                for (query_block, index_block, threads) in
                    [(3, 5, 3), (1, 7, 2), (512, 1024, 0), (4, 1, 1), (23, 53, 4)]
                {
                    let options = ScanOptions {
                        query_block,
                        index_block,
                        threads,
                    };
                    knn.set_scan_options(options.clone()).unwrap();
                    let got = knn.classify(queries.view(), k).unwrap();
                    assert_eq!(got, reference, "{storage} k={k} {options:?}");
                }
            }
        }
        assert_eq!(
            knn.classify(queries.view(), 3).unwrap()[22]
                .neighbours
                .iter()
                .map(|n| n.0)
                .collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(knn
            .set_scan_options(ScanOptions {
                query_block: 0,
                ..ScanOptions::default()
            })
            .is_err());
    }

    #[test]
    fn f16_storage_halves_the_vectors_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.safetensors");
        let mut knn = index();
        let full = knn.vector_bytes();
        knn.set_storage(Storage::F16);
        assert_eq!(knn.vector_bytes() * 2, full);
        knn.save(&path).unwrap();
        let back = Knn::load(&path).unwrap();
        assert_eq!(back.storage(), Storage::F16);
        let q = array![[0.3, 0.9], [4.0, 0.0], [-1.0, -0.2]];
        assert_eq!(
            back.classify(q.view(), 3).unwrap(),
            knn.classify(q.view(), 3).unwrap()
        );
        let exact = index().classify(q.view(), 3).unwrap();
        for (a, b) in exact.iter().zip(&back.classify(q.view(), 3).unwrap()) {
            assert_eq!(a.label, b.label);
            for (x, y) in a.neighbours.iter().zip(&b.neighbours) {
                assert!((x.2 - y.2).abs() < 2e-3, "{x:?} {y:?}");
            }
        }
        // Back to f32, and saved so.
        let mut wide = back.clone();
        wide.set_storage(Storage::F32);
        wide.save(&path).unwrap();
        assert_eq!(Knn::load(&path).unwrap().storage(), Storage::F32);
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
