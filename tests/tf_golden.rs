//! TensorFlow frozen graphs converted by graft against TensorFlow itself: the zoo's
//! `mobilenet-v1` (a TF1 frozen GraphDef from PyPI, obtained through the zoo: mirror, cache or
//! download) on chelsea and coffee, against `tests/fixtures/golden/mobilenet_v1` (made by its
//! `make.py` with TensorFlow 2.21 on the same 224x224 pixels).

mod common;
use common::max_abs_diff;

use std::path::{Path, PathBuf};

use graft::base::{BaseModel, BaseOptions};
use graft::progress::Silent;
use graft::zoo;
use tract_onnx::prelude::*;

/// Largest difference accepted from TensorFlow's outputs (float32 weights). Measured: see the
/// test's printout.
const TOLERANCE: f32 = 1e-4;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden/mobilenet_v1")
        .join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(golden(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The golden's 224x224 pixels as TF.js mobilenet feeds them: NHWC, `(x - 127.5) / 127.5`.
fn input(image: &str) -> Vec<f32> {
    let im = image::open(golden(&format!("{image}_224.png")))
        .unwrap()
        .to_rgb8();
    assert_eq!(im.dimensions(), (224, 224));
    im.into_raw()
        .into_iter()
        .map(|v| (f32::from(v) - 127.5) / 127.5)
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[test]
fn mobilenet_v1_frozen_graph_matches_tensorflow() {
    let m = zoo::manifest("mobilenet-v1").unwrap();
    let (_, model) = zoo::ensure_model(&m, &Silent).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .unwrap()
        .with_outputs_by_name([
            "MobilenetV1/Predictions/Reshape",
            m.embedding.tensor.as_str(),
        ])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    // ImageNet id + 1 (class 0 is background): 285 Egyptian cat, 967 espresso.
    for (image, top1) in [("chelsea", 286), ("coffee", 968)] {
        let x = tract_ndarray::Array4::from_shape_vec([1, 224, 224, 3], input(image)).unwrap();
        let out = plan.run(tvec!(x.into_tensor().into())).unwrap();
        let logits: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let pooled: Vec<f32> = out[1]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let dl = max_abs_diff(&logits, &read_f32(&format!("{image}_logits.f32")));
        let dp = max_abs_diff(&pooled, &read_f32(&format!("{image}_avgpool.f32")));
        eprintln!("mobilenet-v1 {image}: max |logits diff| {dl:.2e}, max |AvgPool diff| {dp:.2e}");
        assert!(dl <= TOLERANCE, "{image}: logits differ by {dl}");
        assert!(dp <= TOLERANCE, "{image}: pooled features differ by {dp}");
        assert_eq!(argmax(&logits), top1, "{image}: top-1 class");
    }
}

#[test]
fn mobilenet_v1_opens_as_a_base_and_embeds_like_tensorflow() {
    let base = BaseModel::open("mobilenet-v1", &BaseOptions::default()).unwrap();
    assert_eq!(base.embedding_dim(), 1024);
    assert_eq!(base.input_shape(), [224, 224, 3]);
    let x = tract_ndarray::ArrayD::from_shape_vec(vec![1, 224, 224, 3], input("coffee")).unwrap();
    let emb = base.embed(x.view()).unwrap();
    let d = max_abs_diff(emb.as_slice().unwrap(), &read_f32("coffee_avgpool.f32"));
    assert!(d <= TOLERANCE, "embedding differs from TensorFlow's by {d}");
}
