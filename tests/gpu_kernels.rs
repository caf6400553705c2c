//! Each GPU kernel against the CPU reference function it reproduces, on odd shapes (one row, one
//! feature, sizes one past a tile), plus device choice and the KNN similarity under lowered limits.
//!
//! Without a GPU adapter these tests print that they were skipped, unless `GRAFT_REQUIRE_GPU=1`,
//! which makes them fail (CI sets it, with Mesa's lavapipe installed).

mod common;

use std::sync::Arc;

use common::gpu;
use graft::gpu::{AdapterPolicy, DeviceChoice, Gpu};
use graft::head::cpu::{self, DropoutStep};
use graft::head::gpu::ops;
use graft::head::random::seed32;
use graft::head::{Dense, Optimizer};
use graft::knn::{cosine_similarity, GpuSimilarity};
use ndarray::{Array1, Array2, ArrayView2};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in `[-scale, scale)` from a seeded generator.
fn random(rows: usize, cols: usize, scale: f32, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| {
        ((rng.next_u32() >> 8) as f32 / 16_777_216.0 * 2.0 - 1.0) * scale
    })
}

fn layer(inputs: usize, outputs: usize, seed: u64) -> Dense {
    Dense {
        weight: random(inputs, outputs, 1.0, seed),
        bias: random(1, outputs, 1.0, seed + 1).row(0).to_owned(),
    }
}

/// Largest `|got - want| / (|want| + 1)` (relative for large values, absolute near zero).
fn max_error<'a>(
    got: impl IntoIterator<Item = &'a f32>,
    want: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    got.into_iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (w.abs() + 1.0))
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, got: ArrayView2<f32>, want: ArrayView2<f32>, tol: f32) {
    assert_eq!(got.dim(), want.dim(), "{what}: shape");
    let err = max_error(got.iter(), want.iter());
    assert!(err <= tol, "{what}: error {err:e} above {tol:e}");
}

/// (rows, inputs, outputs): one row, one feature, two/three classes, one past a 32-tile and 4-block;
/// the last three have the multiples of 4 that select the vectorised matmul kernels.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 2),
    (1, 7, 3),
    (3, 1, 3),
    (65, 33, 17),
    (33, 65, 3),
    (5, 300, 10),
    (65, 36, 20),
    (1, 4, 4),
    (33, 132, 68),
];

#[test]
fn dense_forward_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    for (i, &(rows, inputs, outputs)) in SHAPES.iter().enumerate() {
        let x = random(rows, inputs, 1.0, 10 + i as u64);
        let l = layer(inputs, outputs, 20 + i as u64);
        let got = ops::dense_forward(&gpu, x.view(), &l).unwrap();
        let want = cpu::dense_forward(x.view(), &l);
        assert_close(
            &format!("{rows}x{inputs}x{outputs}"),
            got.view(),
            want.view(),
            1e-5,
        );
    }
}

#[test]
fn dense_backward_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    for (i, &(rows, inputs, outputs)) in SHAPES.iter().enumerate() {
        let a = random(rows, inputs, 1.0, 30 + i as u64);
        let dz = random(rows, outputs, 1.0, 40 + i as u64);
        let l = layer(inputs, outputs, 50 + i as u64);
        let (got, got_da) = ops::dense_backward(&gpu, a.view(), dz.view(), &l, true).unwrap();
        let (want, want_da) = cpu::dense_backward(a.view(), dz.view(), &l, true);
        let what = format!("{rows}x{inputs}x{outputs}");
        assert_close(&what, got.weight.view(), want.weight.view(), 1e-5);
        let bias_err = max_error(got.bias.iter(), want.bias.iter());
        assert!(bias_err <= 1e-5, "{what} bias: {bias_err:e}");
        let (got_da, want_da) = (got_da.unwrap(), want_da.unwrap());
        assert_close(&what, got_da.view(), want_da.view(), 1e-5);
        let (_, none) = ops::dense_backward(&gpu, a.view(), dz.view(), &l, false).unwrap();
        assert!(none.is_none());
    }
}

#[test]
fn bias_gradient_is_the_column_sum() {
    let Some(gpu) = gpu() else { return };
    let x = random(129, 5, 3.0, 7);
    let got = ops::column_sums(&gpu, x.view()).unwrap();
    let want = x.sum_axis(ndarray::Axis(0));
    assert!(max_error(got.iter(), want.iter()) <= 1e-5);
}

#[test]
fn relu_and_dropout_match_cpu_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 1), (65, 33), (3, 300)] {
        let z = random(rows, cols, 2.0, rows as u64);
        for (seed, epoch, step, layer, rate) in [
            (42u64, 0, 0, 0, 0.5f32),
            (7, 3, 11, 1, 0.2),
            (u64::MAX, 100, 7, 2, 0.9),
            (1, 0, 0, 0, 0.0),
        ] {
            let d = DropoutStep {
                seed: seed32(seed),
                epoch,
                step,
                rate,
            };
            for dropout in [Some(&d), None] {
                let (got, got_scale) = ops::relu_dropout(&gpu, z.view(), dropout, layer).unwrap();
                let mut want = z.clone();
                let want_scale = cpu::relu_dropout(&mut want, dropout, layer);
                assert_eq!(got, want, "{rows}x{cols} {dropout:?} layer {layer}");
                assert_eq!(got_scale, want_scale);
            }
        }
    }
    // The mask is really random: about half the units of a positive input survive p = 0.5.
    let ones = Array2::<f32>::ones((64, 64));
    let d = DropoutStep {
        seed: 3,
        epoch: 0,
        step: 0,
        rate: 0.5,
    };
    let (kept, _) = ops::relu_dropout(&gpu, ones.view(), Some(&d), 0).unwrap();
    let fraction = kept.iter().filter(|&&v| v > 0.0).count() as f32 / 4096.0;
    assert!((fraction - 0.5).abs() < 0.05, "kept {fraction}");
}

#[test]
fn relu_backward_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 1), (65, 33)] {
        let da = random(rows, cols, 1.0, 1);
        let a = random(rows, cols, 1.0, 2).mapv(|v| v.max(0.0));
        for scale in [1.0, 1.0 / 0.7] {
            let got = ops::relu_dropout_backward(&gpu, da.view(), a.view(), scale).unwrap();
            let mut want = da.clone();
            cpu::relu_dropout_backward(&mut want, a.view(), scale);
            assert_eq!(got, want);
        }
    }
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    for (rows, classes, spread) in [(1, 2, 1.0), (7, 3, 5.0), (65, 17, 3.0), (4, 3, 200.0)] {
        let logits = random(rows, classes, spread, rows as u64 * 31);
        let labels: Vec<usize> = (0..rows).map(|i| (i * 7 + 1) % classes).collect();
        let weights: Vec<f32> = (0..classes).map(|c| 0.5 + c as f32 * 0.25).collect();
        for smoothing in [0.0, 0.1] {
            let got = ops::softmax_cross_entropy(&gpu, logits.view(), &labels, &weights, smoothing)
                .unwrap();
            let want =
                cpu::softmax_cross_entropy(logits.view(), &labels, &weights, smoothing).unwrap();
            let what = format!("{rows}x{classes} spread {spread} smoothing {smoothing}");
            assert!(got.weighted_sum.is_finite(), "{what}: not finite");
            let err =
                (got.weighted_sum - want.weighted_sum).abs() / (want.weighted_sum.abs() + 1.0);
            assert!(
                err <= 1e-5,
                "{what}: loss {} vs {}",
                got.weighted_sum,
                want.weighted_sum
            );
            assert_eq!(got.correct, want.correct, "{what}");
            assert_close(&what, got.dlogits.view(), want.dlogits.view(), 1e-5);
        }
    }
    // Ties go to the lowest index, as on the CPU.
    let tied = Array2::<f32>::zeros((2, 3));
    let got = ops::softmax_cross_entropy(&gpu, tied.view(), &[0, 1], &[1.0; 3], 0.0).unwrap();
    assert_eq!(got.correct, 1);
    assert!(ops::softmax_cross_entropy(&gpu, tied.view(), &[0, 3], &[1.0; 3], 0.0).is_err());
}

#[test]
fn optimizer_steps_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let n = 257;
    let w0 = random(1, n, 1.0, 5).row(0).to_owned();
    let optimizers = [
        Optimizer::sgd(),
        Optimizer::Sgd { momentum: 0.0 },
        Optimizer::adam(),
        Optimizer::rmsprop(),
    ];
    for opt in optimizers {
        for decay in [0.0, 0.01] {
            let (mut w, mut s1, mut s2) = (w0.clone(), Array1::zeros(n), Array1::zeros(n));
            let (mut cw, mut c1, mut c2) = (w0.clone(), Array1::zeros(n), Array1::zeros(n));
            for t in 1..=3 {
                let g = random(1, n, 0.5, 100 + t).row(0).to_owned();
                let k = opt.step_scalars(0.01, t);
                (w, s1, s2) = ops::optimizer_step(
                    &gpu,
                    &opt,
                    &k,
                    decay,
                    w.view(),
                    g.view(),
                    (s1.view(), s2.view()),
                )
                .unwrap();
                for i in 0..n {
                    opt.update(&k, decay, &mut cw[i], g[i], &mut c1[i], &mut c2[i]);
                }
            }
            let what = format!("{opt:?} decay {decay}");
            assert!(max_error(w.iter(), cw.iter()) <= 1e-5, "{what}: weights");
            assert!(max_error(s1.iter(), c1.iter()) <= 1e-5, "{what}: s1");
            assert!(max_error(s2.iter(), c2.iter()) <= 1e-5, "{what}: s2");
        }
    }
}

/// Rows scaled to unit length.
fn unit_rows(x: Array2<f32>) -> Array2<f32> {
    let mut x = x;
    for mut row in x.rows_mut() {
        let norm = row.dot(&row).sqrt().max(1e-12);
        row.mapv_inplace(|v| v / norm);
    }
    x
}

#[test]
fn cosine_similarity_matches_cpu_also_in_chunks() {
    let Some(gpu) = gpu() else { return };
    // A size that is a multiple of 4 uses the vectorised kernel, 129 the general one.
    let queries = unit_rows(random(37, 128, 1.0, 4));
    let index = unit_rows(random(1001, 128, 1.0, 5));
    let want = queries.dot(&index.t());
    let got = cosine_similarity(Arc::clone(&gpu), queries.view(), index.view()).unwrap();
    assert_close("similarity", got.view(), want.view(), 1e-5);
    let queries = unit_rows(random(37, 129, 1.0, 1));
    let index = unit_rows(random(1100, 129, 1.0, 2));
    let want = queries.dot(&index.t());
    let got = cosine_similarity(Arc::clone(&gpu), queries.view(), index.view()).unwrap();
    assert_close("similarity", got.view(), want.view(), 1e-5);

    // 64 KiB bindings hold 124 index rows (a multiple of 4): the index and the output are split
    // into chunks.
    let small = Gpu::open_with(AdapterPolicy::AllowSoftware, |l| {
        l.max_storage_buffer_binding_size = 64 << 10;
        l.max_compute_workgroups_per_dimension = 4;
    })
    .unwrap()
    .unwrap();
    let similarity = GpuSimilarity::new(Arc::new(small), index.view()).unwrap();
    assert_eq!(similarity.len(), 1100);
    let got = similarity.similarities(queries.view()).unwrap();
    assert_close("chunked similarity", got.view(), want.view(), 1e-5);
    assert!(similarity
        .similarities(random(2, 5, 1.0, 3).view())
        .is_err());
}

#[test]
fn device_choice_parses_and_selects() {
    assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
    assert_eq!(" GPU ".parse::<DeviceChoice>().unwrap(), DeviceChoice::Gpu);
    assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
    assert!("cuda".parse::<DeviceChoice>().is_err());
    assert_eq!(
        DeviceChoice::resolve(Some(DeviceChoice::Cpu)).unwrap(),
        DeviceChoice::Cpu
    );
    let resolve = DeviceChoice::resolve_from;
    assert_eq!(resolve(None, Some("gpu")).unwrap(), DeviceChoice::Gpu);
    assert_eq!(
        resolve(Some(DeviceChoice::Cpu), Some("gpu")).unwrap(),
        DeviceChoice::Cpu
    );
    assert_eq!(resolve(None, Some(" ")).unwrap(), DeviceChoice::Auto);
    assert_eq!(resolve(None, None).unwrap(), DeviceChoice::Auto);
    assert!(resolve(None, Some("tpu")).is_err());
    assert_eq!(
        graft::head::backend_for(DeviceChoice::Cpu).unwrap().name(),
        "cpu (ndarray)"
    );
    let hardware = Gpu::open(AdapterPolicy::HardwareOnly).unwrap();
    let auto = graft::head::backend_for(DeviceChoice::Auto).unwrap().name();
    match hardware {
        Some(gpu) => {
            assert!(!gpu.is_software());
            assert_eq!(auto, gpu.name());
        }
        // A software adapter (lavapipe) is never picked automatically.
        None => assert_eq!(auto, "cpu (ndarray)"),
    }
    match gpu() {
        Some(gpu) => {
            let explicit = graft::head::backend_for(DeviceChoice::Gpu).unwrap().name();
            assert!(explicit.starts_with("gpu: "), "{explicit}");
            assert_eq!(explicit, gpu.name());
        }
        None => assert!(matches!(
            graft::head::backend_for(DeviceChoice::Gpu),
            Err(graft::Error::Gpu(_))
        )),
    }
}

#[test]
fn knn_votes_the_same_with_gpu_similarities() {
    let Some(gpu) = gpu() else { return };
    use graft::base::BaseRef;
    use graft::input::{ImageSpec, InputSpec, Layout};
    let mut knn = graft::knn::Knn::new(BaseRef {
        name: "synthetic".into(),
        sha256: String::new(),
        cut: "x".into(),
        embedding_dim: 37,
        input: InputSpec::Image(ImageSpec::unnormalised(1, 1, Layout::Nchw)),
    });
    for class in 0..4 {
        knn.add_many(&format!("c{class}"), random(50, 37, 1.0, class).view())
            .unwrap();
    }
    let queries = random(30, 37, 1.0, 99);
    let on_cpu = knn.classify(queries.view(), 5).unwrap();
    let on_gpu = knn.classify_with(queries.view(), 5, Some(gpu)).unwrap();
    for (c, g) in on_cpu.iter().zip(&on_gpu) {
        assert_eq!(c.label, g.label);
        assert_eq!(c.confidences, g.confidences);
        let neighbours =
            |p: &graft::knn::KnnPrediction| p.neighbours.iter().map(|n| n.0).collect::<Vec<_>>();
        assert_eq!(neighbours(c), neighbours(g));
    }
}
