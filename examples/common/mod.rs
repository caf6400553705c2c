//! What the `bench` and `compare` examples share: the shipped images, a batch of them, and the
//! seeded synthetic embeddings (and KNN index) both measure on.

// Each example uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;

use graft::base::BaseRef;
use graft::base::{Backend, BaseModel, BaseOptions};
use graft::dataset::Dataset;
use graft::input::image::{load_image, stack_batch};
use graft::input::{ImageSpec, InputSpec};
use graft::knn::Knn;
use ndarray::{Array2, ArrayD, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// EfficientNet-Lite0 from the zoo, run by `backend`.
pub fn efficientnet_lite0(backend: Backend) -> graft::Result<BaseModel> {
    BaseModel::open("efficientnet-lite0", &BaseOptions::on(backend))
}

/// The 86 Tux Paint photos in 7 classes that the repository ships.
pub fn shipped_images() -> graft::Result<Dataset> {
    Dataset::from_folder(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev"),
    )
}

/// The first `n` of `data`'s images (cycling when there are fewer), preprocessed and stacked.
pub fn image_batch(data: &Dataset, spec: &ImageSpec, n: usize) -> graft::Result<ArrayD<f32>> {
    let images = data
        .examples
        .iter()
        .cycle()
        .take(n)
        .map(|e| load_image(&e.path, spec))
        .collect::<graft::Result<Vec<_>>>()?;
    stack_batch(&images)
}

/// `n` seeded Gaussian-ish blobs in `d` dimensions around `classes` random centres.
pub fn blobs(n: usize, d: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut centres = ChaCha8Rng::seed_from_u64(99);
    let c: Vec<f32> = (0..classes * d)
        .map(|_| centres.random_range(-1.0..1.0))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        c[labels[i] * d + j] + rng.random_range(-2.0f32..2.0)
    });
    (x, labels)
}

/// The KNN benchmark's data.
pub struct KnnBenchmark {
    /// The index, classes `c0`..`c9`.
    pub knn: Knn,
    /// Its vectors `[10000, 1280]` (before normalisation), in blob order.
    pub vectors: Array2<f32>,
    /// The class of each of those vectors.
    pub labels: Vec<usize>,
    /// 1,000 query blobs around the same centres.
    pub queries: Array2<f32>,
}

/// The KNN benchmark: an index of 10,000 seeded blobs in 10 classes, 1280-d, and 1,000 queries.
pub fn knn_benchmark(input: &InputSpec) -> graft::Result<KnnBenchmark> {
    let (index, labels) = blobs(10_000, 1280, 10, 3);
    let mut knn = Knn::new(BaseRef {
        name: "bench".into(),
        sha256: String::new(),
        cut: "features".into(),
        embedding_dim: 1280,
        input: input.clone(),
    });
    for class in 0..10 {
        let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        knn.add_many(&format!("c{class}"), index.select(Axis(0), &rows).view())?;
    }
    let (queries, _) = blobs(1000, 1280, 10, 4);
    Ok(KnnBenchmark {
        knn,
        vectors: index,
        labels,
        queries,
    })
}
