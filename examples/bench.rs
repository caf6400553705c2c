//! graft's benchmark: EfficientNet-Lite0 embedding time per image (batch 1, 8, 32, and the threaded
//! folder pipeline), head training time on 1,000 x 1280 embeddings (10 classes, 50 epochs) and
//! throughput for N = 1,000 / 10,000 / 100,000 on the CPU and on the GPU, and KNN queries per second
//! for a 10,000 x 1280 index. Prints its figures; the README quotes them.
//!
//! `cargo run --release --example bench [-- --quick] [--backend tract|ort] [--embed-only]`
//! (`--quick` skips N = 100,000; `--backend ort` embeds through ONNX Runtime, which needs
//! `--features onnxruntime`; `--embed-only` stops after the embedding rows). The GPU rows use a
//! hardware adapter if there is one, else a software one (named in the output), else are skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use graft::base::Backend;
use graft::embeddings::embed_files;
use graft::gpu::{AdapterPolicy, Gpu};
use graft::head::{CpuBackend, Examples, GpuBackend, HeadBackend};
use graft::train::{train, TrainOptions};

mod common;
use common::{blobs, efficientnet_lite0, image_batch, knn_benchmark, shipped_images};

fn main() -> graft::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "graft {} benchmark, {cores} core(s)",
        env!("CARGO_PKG_VERSION")
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let embed_only = args.iter().any(|a| a == "--embed-only");
    let backend: Backend = match args.iter().position(|a| a == "--backend") {
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| graft::Error::Invalid("--backend needs auto, tract or ort".into()))?
            .parse()?,
        None => Backend::Auto,
    };
    let base = efficientnet_lite0(backend)?;
    let backend = base.backend();
    let data = shipped_images()?;
    let files: Vec<PathBuf> = data.examples.iter().map(|e| e.path.clone()).collect();
    let spec = base.image_spec()?.clone();

    let engine = match backend {
        Backend::Ort => "ONNX Runtime, its intra-op threads",
        _ => "tract, one thread",
    };
    println!("\nEfficientNet-Lite0 embedding ({engine}, preprocessed input), ms per image:");
    for batch in [1usize, 8, 32] {
        let input = image_batch(&data, &spec, batch)?;
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

    if embed_only {
        return Ok(());
    }
    let gpu = Gpu::open(AdapterPolicy::AllowSoftware)?.map(Arc::new);
    match &gpu {
        Some(g) => println!("\nGPU adapter: {}", g.name()),
        None => println!("\nGPU adapter: none (GPU rows skipped)"),
    }
    println!("\nHead training, D = 1280, 10 classes, batch 32, Adam; samples x epochs per second:");
    println!(
        "  {:>7} {:>6} {:>6} {:>12} {:>12} {:>9}",
        "N", "hidden", "epochs", "cpu", "gpu", "val acc"
    );
    let (vx, vy) = blobs(200, 1280, 10, 2);
    for n in [1_000usize, 10_000, 100_000] {
        if quick && n > 10_000 {
            continue;
        }
        let (x, y) = blobs(n, 1280, 10, 1);
        let epochs = (50_000 / n).clamp(1, 50);
        for hidden in [vec![], vec![256]] {
            let opts = TrainOptions {
                epochs,
                patience: None,
                hidden: hidden.clone(),
                ..TrainOptions::default()
            };
            let run = |backend: &mut dyn HeadBackend| -> graft::Result<(f64, f32)> {
                let (_, report) = train(
                    10,
                    Examples::new(x.view(), &y),
                    Examples::new(vx.view(), &vy),
                    &opts,
                    backend,
                    &mut |_| {},
                )?;
                let acc = report.history.last().and_then(|r| r.val_acc).unwrap_or(0.0);
                Ok(((n * epochs) as f64 / report.seconds, acc))
            };
            let (cpu_rate, acc) = run(&mut CpuBackend::new())?;
            let gpu_rate = match &gpu {
                Some(g) => format!("{:12.0}", run(&mut GpuBackend::new(g.clone()))?.0),
                None => format!("{:>12}", "-"),
            };
            let h = hidden.first().copied().unwrap_or(0);
            println!("  {n:>7} {h:>6} {epochs:>6} {cpu_rate:12.0} {gpu_rate} {acc:9.3}");
            if n == 1_000 {
                println!(
                    "          (1,000 x 50 epochs on the CPU: {:.2} s)",
                    (n * epochs) as f64 / cpu_rate
                );
            }
        }
    }

    println!("\nKNN (cosine, k = 3): 10,000 x 1280 index, 1,000 queries:");
    let common::KnnBenchmark { knn, queries, .. } = knn_benchmark(base.input_spec()?)?;
    let start = Instant::now();
    knn.classify(queries.view(), 3)?;
    let secs = start.elapsed().as_secs_f64();
    println!("  cpu: {:.0} queries / s", 1000.0 / secs);
    if let Some(g) = &gpu {
        let start = Instant::now();
        knn.classify_with(queries.view(), 3, Some(g.clone()))?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "  gpu: {:.0} queries / s (index upload included)",
            1000.0 / secs
        );
    }
    Ok(())
}
