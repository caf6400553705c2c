//! graft's benchmark: EfficientNet-Lite0 embedding time per image (batch 1, 8, 32, and the threaded
//! folder pipeline), CPU head training time on 1,000 x 1280 embeddings (10 classes, 50 epochs), and
//! KNN queries per second. Prints a table; the README quotes it.
//!
//! `cargo run --release --example bench`

use std::path::PathBuf;
use std::time::Instant;

use graft::base::BaseModel;
use graft::dataset::Dataset;
use graft::embeddings::{embed_files, BaseRef};
use graft::head::{CpuBackend, Examples};
use graft::input::image::{load_image, stack_batch};
use graft::knn::Knn;
use graft::train::{train, TrainOptions};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> graft::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "graft {} benchmark, {cores} core(s)",
        env!("CARGO_PKG_VERSION")
    );
    let base = BaseModel::open("efficientnet-lite0", None, None, None)?;
    let data = Dataset::from_folder(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev"),
    )?;
    let files: Vec<PathBuf> = data.examples.iter().map(|e| e.path.clone()).collect();
    let spec = base.image_spec()?.clone();

    println!(
        "\nEfficientNet-Lite0 embedding (tract, one thread, preprocessed input), ms per image:"
    );
    for batch in [1usize, 8, 32] {
        let images = files
            .iter()
            .cycle()
            .take(batch)
            .map(|f| load_image(f, &spec))
            .collect::<graft::Result<Vec<_>>>()?;
        let input = stack_batch(&images)?;
        base.embed(input.view())?; // prepares the plan for this batch size
        let runs = (64 / batch).max(2);
        let start = Instant::now();
        for _ in 0..runs {
            base.embed(input.view())?;
        }
        let per_image = start.elapsed().as_secs_f64() * 1e3 / (runs * batch) as f64;
        println!("  batch {batch:>2}: {per_image:8.2}");
    }
    let start = Instant::now();
    let results = embed_files(&base, &files, None, &|_| {})?;
    let n_ok = results.iter().filter(|r| r.is_ok()).count();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  folder pipeline (decode + resize + embed, {cores} threads, no cache): {} images in {secs:.2} s = {:.2} ms per image",
        n_ok,
        secs * 1e3 / n_ok.max(1) as f64
    );

    println!("\nHead training on the CPU (ndarray): 1,000 x 1280 embeddings, 10 classes, 50 epochs, batch 32, Adam:");
    let (x, y) = blobs(1000, 1280, 10, 1);
    let (vx, vy) = blobs(200, 1280, 10, 2);
    for hidden in [vec![], vec![256]] {
        let opts = TrainOptions {
            epochs: 50,
            patience: None,
            hidden: hidden.clone(),
            ..TrainOptions::default()
        };
        let (_, report) = train(
            10,
            Examples::new(x.view(), &y),
            Examples::new(vx.view(), &vy),
            &opts,
            &mut CpuBackend::new(),
            &mut |_| {},
        )?;
        let acc = report.history.last().and_then(|r| r.val_acc).unwrap_or(0.0);
        println!(
            "  hidden {:>3}: {:6.2} s ({:.0} samples x epochs / s), validation accuracy {acc:.3}",
            hidden.first().copied().unwrap_or(0),
            report.seconds,
            50_000.0 / report.seconds
        );
    }

    println!("\nKNN (cosine, k = 3): 10,000 x 1280 index, 1,000 queries:");
    let (index, labels) = blobs(10_000, 1280, 10, 3);
    let mut knn = Knn::new(BaseRef {
        name: "bench".into(),
        sha256: String::new(),
        cut: "features".into(),
        embedding_dim: 1280,
        input: spec,
    });
    for class in 0..10 {
        let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        knn.add_many(
            &format!("c{class}"),
            index.select(ndarray::Axis(0), &rows).view(),
        )?;
    }
    let (queries, _) = blobs(1000, 1280, 10, 4);
    let start = Instant::now();
    knn.classify(queries.view(), 3)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  {:.0} queries / s ({:.2} ms per query)",
        1000.0 / secs,
        secs
    );
    Ok(())
}

/// `n` seeded Gaussian-ish blobs in `d` dimensions around `classes` random centres.
fn blobs(n: usize, d: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
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
