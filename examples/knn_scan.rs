//! The KNN flat scan measured on the KNN benchmark's data (1,000 queries against 10,000 x 1280
//! seeded blobs in 10 classes, k = 3):
//!
//! - the similarity product's matmul, one thread, `[1000 x 1280] x [1280 x 10000]` into one
//!   output: ndarray's matrixmultiply (what the KNN used before) against faer (what it uses now);
//! - `Knn::classify` with the default `ScanOptions`, on one thread and on every core, and other
//!   block sizes;
//! - `f16` storage: memory, time, and how its answers differ from `f32`'s (labels, neighbours,
//!   similarities, accuracy against the blobs' classes).
//!
//! Prints one line per figure and, last, one JSON object.
//! `cargo run --release --example knn_scan [-- --quick]`

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use graft::input::{ImageSpec, InputSpec, Layout};
use graft::knn::{Knn, KnnPrediction, ScanOptions, Storage};
use ndarray::Array2;
use serde_json::json;

mod common;
use common::{blobs, knn_benchmark};

const K: usize = 3;

/// The best of `reps` timings of `f`, in seconds.
fn best<T>(reps: usize, mut f: impl FnMut() -> graft::Result<T>) -> graft::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        std::hint::black_box(f()?);
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> graft::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 2 } else { 5 };
    let input = InputSpec::Image(ImageSpec::unnormalised(8, 8, Layout::Nchw));
    let common::KnnBenchmark {
        mut knn,
        vectors,
        queries,
        ..
    } = knn_benchmark(&input)?;
    let (_, query_classes) = blobs(1000, 1280, 10, 4);
    let (m, n, d) = (queries.nrows(), vectors.nrows(), vectors.ncols());
    let flop = 2.0 * (m * n * d) as f64;
    let unit = |a: &Array2<f32>| {
        let norms = a.map_axis(ndarray::Axis(1), |r| {
            r.dot(&r).sqrt().max(f32::MIN_POSITIVE)
        });
        a / &norms.insert_axis(ndarray::Axis(1))
    };
    let (q, x) = (unit(&queries), unit(&vectors));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("machine: {cores} core(s); [{m} x {d}] x [{d} x {n}], k = {K}");

    println!("\nmatmul, one thread, into one reused output:");
    let mut out = Array2::<f32>::zeros((m, n));
    let ndarray_s = best(reps, || {
        ndarray::linalg::general_mat_mul(1.0, &q, &x.t(), 0.0, &mut out);
        Ok(())
    })?;
    println!(
        "  ndarray (matrixmultiply)  {ndarray_s:.3} s  {:.1} GFLOP/s",
        flop / ndarray_s / 1e9
    );
    let (qs, xs) = (q.as_slice().unwrap_or(&[]), x.as_slice().unwrap_or(&[]));
    let faer_s = best(reps, || {
        let dst = MatMut::from_row_major_slice_mut(out.as_slice_mut().unwrap_or(&mut []), m, n);
        let lhs = MatRef::from_row_major_slice(qs, m, d);
        let rhs = MatRef::from_column_major_slice(xs, d, n);
        matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
        Ok(())
    })?;
    println!(
        "  faer                      {faer_s:.3} s  {:.1} GFLOP/s",
        flop / faer_s / 1e9
    );

    println!("\nKnn::classify (unit-length queries, votes included):");
    let defaults = ScanOptions::default();
    let timed = |knn: &mut Knn, options: ScanOptions| -> graft::Result<f64> {
        knn.set_scan_options(options)?;
        best(reps, || knn.classify(queries.view(), K))
    };
    let one = timed(
        &mut knn,
        ScanOptions {
            threads: 1,
            ..defaults.clone()
        },
    )?;
    let all = timed(&mut knn, defaults.clone())?;
    println!(
        "  defaults {defaults:?}: 1 thread {one:.3} s ({:.1} GFLOP/s), {cores} threads {all:.3} s \
         ({:.0} queries/s)",
        flop / one / 1e9,
        m as f64 / all
    );
    let mut sweep = Vec::new();
    let blocks: &[(usize, usize)] = if quick {
        &[(256, 1024), (1000, 1024), (512, 2048)]
    } else {
        &[
            (128, 1024),
            (256, 512),
            (256, 1024),
            (256, 2048),
            (512, 512),
            (512, 2048),
            (512, 4096),
            (1000, 512),
            (1000, 1024),
            (1000, 2048),
        ]
    };
    for &(query_block, index_block) in blocks {
        let options = ScanOptions {
            query_block,
            index_block,
            threads: 0,
        };
        let s = timed(&mut knn, options)?;
        println!("  query block {query_block:>4}, index block {index_block:>4}: {s:.3} s");
        sweep.push(json!({"query_block": query_block, "index_block": index_block, "seconds": s}));
    }
    knn.set_scan_options(defaults)?;

    println!("\nf16 storage:");
    let exact = knn.classify(queries.view(), K)?;
    let mut half = knn.clone();
    half.set_storage(Storage::F16);
    let half_s = best(reps, || half.classify(queries.view(), K))?;
    let rounded = half.classify(queries.view(), K)?;
    let same_label = agree(&exact, &rounded, |a, b| a.label == b.label);
    let same_neighbours = agree(&exact, &rounded, |a, b| {
        a.neighbours
            .iter()
            .map(|n| n.0)
            .eq(b.neighbours.iter().map(|n| n.0))
    });
    let max_diff = exact
        .iter()
        .zip(&rounded)
        .flat_map(|(a, b)| a.neighbours.iter().zip(&b.neighbours))
        .filter(|(a, b)| a.0 == b.0)
        .map(|(a, b)| (a.2 - b.2).abs())
        .fold(0f32, f32::max);
    let accuracy = |answers: &[KnnPrediction]| {
        let right = answers
            .iter()
            .zip(&query_classes)
            .filter(|(p, c)| p.label == format!("c{c}"))
            .count();
        right as f64 / answers.len() as f64
    };
    println!(
        "  memory {} MB (f32 {} MB); {half_s:.3} s (f32 {all:.3} s)",
        half.vector_bytes() / 1_000_000,
        knn.vector_bytes() / 1_000_000
    );
    println!(
        "  same label {:.2} %, same {K} neighbours in order {:.2} %, largest similarity \
         difference {max_diff:.2e}; accuracy f16 {:.2} %, f32 {:.2} %",
        100.0 * same_label,
        100.0 * same_neighbours,
        100.0 * accuracy(&rounded),
        100.0 * accuracy(&exact)
    );
    println!(
        "{}",
        json!({
            "cores": cores,
            "matmul_gflops": {"ndarray": flop / ndarray_s / 1e9, "faer": flop / faer_s / 1e9},
            "classify_seconds": {"one_thread": one, "all_threads": all, "f16": half_s},
            "sweep": sweep,
            "f16": {
                "bytes": half.vector_bytes(), "f32_bytes": knn.vector_bytes(),
                "same_label": same_label, "same_neighbours": same_neighbours,
                "max_similarity_diff": max_diff,
                "accuracy": accuracy(&rounded), "f32_accuracy": accuracy(&exact),
            },
        })
    );
    Ok(())
}

/// The share of queries whose answers `same` says agree.
fn agree(
    a: &[KnnPrediction],
    b: &[KnnPrediction],
    same: impl Fn(&KnnPrediction, &KnnPrediction) -> bool,
) -> f64 {
    a.iter().zip(b).filter(|(x, y)| same(x, y)).count() as f64 / a.len().max(1) as f64
}
