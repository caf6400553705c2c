//! TF.js models converted by graft against reference outputs (tests/fixtures/golden/
//! nsfwjs_mobilenet_v2 and movenet_lightning, from TensorFlow rebuilds of the same models exported
//! to ONNX and run in onnxruntime). The originals are obtained through the zoo (mirror, cache or
//! npm), converted and run with tract; the committed zoo models must be byte-identical to a fresh
//! conversion, and graft's base-model pipeline must load them by zoo name.

mod common;
use common::{fresh_conversion_equals_committed, max_abs_diff};

use std::path::{Path, PathBuf};

use graft::base::BaseModel;
use graft::zoo;
use tract_onnx::prelude::*;

/// Largest differences accepted from the reference runs. The README allows about 1e-3 for uint8
/// and float16 weights; graft's conversions stay within 5e-6 (measured: nsfwjs 4.3e-6 on
/// `flatten_1`, MoveNet 2.1e-6 on the keypoints), so 2e-5 leaves room for other CPUs' rounding.
const NSFWJS_TOLERANCE: f32 = 2e-5;
const MOVENET_TOLERANCE: f32 = 2e-5;

fn golden(folder: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(folder)
        .join(name)
}

fn read_f32(folder: &str, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(golden(folder, name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs `model` on one NHWC float input; returns the named outputs flattened.
fn run(model: &[u8], outputs: &[&str], shape: [usize; 4], input: Vec<f32>) -> Vec<Vec<f32>> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .unwrap()
        .with_outputs_by_name(outputs)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::Array4::from_shape_vec(shape, input)
        .unwrap()
        .into_tensor();
    let out = plan.run(tvec!(x.into())).unwrap();
    out.iter()
        .map(|t| {
            t.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

/// A fresh conversion through the zoo, checked byte for byte against the committed model and its
/// manifest's sha256.
fn fresh_and_committed(name: &str) -> Vec<u8> {
    let model = fresh_conversion_equals_committed(name);
    let m = zoo::manifest(name).unwrap();
    assert_eq!(
        zoo::sha256_file(&common::committed_model(&m)).unwrap(),
        m.model.sha256
    );
    model
}

fn nsfwjs_check(model: &[u8], images: &[&str]) {
    const PIXELS: usize = 224 * 224 * 3;
    let mut batch = Vec::new();
    for image in images {
        batch.extend(read_f32(
            "nsfwjs_mobilenet_v2",
            &format!("{image}_input.f32"),
        ));
    }
    let n = batch.len() / PIXELS;
    let out = run(model, &["flatten_1", "dense_3"], [n, 224, 224, 3], batch);
    for (i, image) in images.iter().enumerate() {
        let emb = &out[0][i * 1280..(i + 1) * 1280];
        let probs = &out[1][i * 5..(i + 1) * 5];
        let de = max_abs_diff(
            emb,
            &read_f32("nsfwjs_mobilenet_v2", &format!("{image}_flatten_1.f32")),
        );
        let dp = max_abs_diff(
            probs,
            &read_f32("nsfwjs_mobilenet_v2", &format!("{image}_dense_3.f32")),
        );
        eprintln!("nsfwjs {image} (batch {n}): max |flatten_1 diff| {de:.2e}, max |dense_3 diff| {dp:.2e}");
        assert!(de <= NSFWJS_TOLERANCE, "{image}: flatten_1 differs by {de}");
        assert!(dp <= NSFWJS_TOLERANCE, "{image}: dense_3 differs by {dp}");
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn nsfwjs_mobilenet_v2_matches_golden_outputs() {
    let model = fresh_and_committed("mobilenet-v2");
    nsfwjs_check(&model, &["chelsea"]);
    nsfwjs_check(&model, &["coffee"]);
    // The batch dimension is symbolic: both images at once give the same numbers.
    nsfwjs_check(&model, &["chelsea", "coffee"]);
}

#[test]
fn movenet_lightning_matches_golden_keypoints() {
    let model = fresh_and_committed("movenet-lightning");
    let bytes = std::fs::read(golden("movenet_lightning", "astronaut_input.i32")).unwrap();
    // The int32 image input became float32: the same whole numbers as floats.
    let input: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
        .collect();
    let out = run(&model, &["Identity"], [1, 192, 192, 3], input);
    let want = read_f32("movenet_lightning", "astronaut_keypoints.f32");
    let d = max_abs_diff(&out[0], &want);
    eprintln!("movenet astronaut: max |keypoint diff| {d:.2e}");
    assert!(d <= MOVENET_TOLERANCE, "keypoints differ by {d}");
    // The nose is found confidently (score column).
    assert!(out[0][2] > 0.5, "nose score {}", out[0][2]);
}

#[test]
fn zoo_mobilenet_v2_opens_as_a_base_and_embeds() {
    let base = BaseModel::open("mobilenet-v2", &graft::base::BaseOptions::default()).unwrap();
    assert_eq!(base.cut(), "flatten_1");
    assert_eq!(base.embedding_dim(), 1280);
    assert_eq!(base.input_shape(), [224, 224, 3]);
    let input = read_f32("nsfwjs_mobilenet_v2", "chelsea_input.f32");
    let x = tract_ndarray::ArrayD::from_shape_vec(vec![1, 224, 224, 3], input).unwrap();
    let emb = base.embed(x.view()).unwrap();
    let d = max_abs_diff(
        emb.as_slice().unwrap(),
        &read_f32("nsfwjs_mobilenet_v2", "chelsea_flatten_1.f32"),
    );
    assert!(d <= NSFWJS_TOLERANCE, "pipeline embedding differs by {d}");

    // A real image through graft's image preprocessing (RGB, 224x224, x/255, NHWC).
    let spec = base.image_spec().unwrap().clone();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev/fish");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let image = graft::input::image::load_image(&files[0], &spec).unwrap();
    let batch = graft::input::image::stack_batch(&[image]).unwrap();
    let emb = base.embed(batch.view()).unwrap();
    assert_eq!(emb.dim(), (1, 1280));
    assert!(
        emb.iter().all(|v| v.is_finite() && *v >= 0.0),
        "ReLU6 features"
    );
    assert!(emb.iter().any(|v| *v > 0.0));
}

#[test]
fn zoo_movenet_opens_as_a_base_giving_keypoints() {
    // The zoo base's embedding is the pose features; cut at the keypoints they are made from.
    let base = graft::pose::keypoint_model(
        "movenet-lightning",
        &Default::default(),
        &graft::progress::Silent,
    )
    .unwrap();
    assert_eq!(base.cut(), "Identity");
    assert_eq!(base.embedding_dim(), 51);
    let bytes = std::fs::read(golden("movenet_lightning", "astronaut_input.i32")).unwrap();
    let input: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
        .collect();
    let x = tract_ndarray::ArrayD::from_shape_vec(vec![1, 192, 192, 3], input).unwrap();
    let emb = base.embed(x.view()).unwrap();
    let d = max_abs_diff(
        emb.as_slice().unwrap(),
        &read_f32("movenet_lightning", "astronaut_keypoints.f32"),
    );
    assert!(d <= MOVENET_TOLERANCE, "keypoints differ by {d}");
}
