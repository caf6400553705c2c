//! BlazePose landmark lite converted from TFLite by graft against reference outputs
//! (tests/fixtures/golden/blazepose_lite: tf2onnx's conversion run in onnxruntime, which agrees
//! with the LiteRT interpreter to about 2e-3 on landmarks). The original comes through the zoo
//! (mirror or cache), is converted and run with tract; the committed zoo model is checked the same
//! way and must be byte-identical to a fresh conversion.

mod common;

use std::path::{Path, PathBuf};

use common::{fresh_conversion_equals_committed, max_abs_diff};
use graft::zoo;
use tract_onnx::prelude::*;

/// (golden file, ONNX output, shape, absolute and relative tolerance): an element passes when
/// `|got - want| <= abs + rel * |want|`. The segmentation logits reach about 1000 in magnitude
/// (intermediate activations too), so float32 summation order alone moves them by a few 1e-2:
/// 5e-2 there is 5e-5 of their range.
const OUTPUTS: [(&str, &str, &[usize], f32, f32); 4] = [
    ("astronaut_out0.f32", "Identity", &[1, 195], 2e-3, 0.0),
    ("astronaut_out1.f32", "Identity_1", &[1, 1], 1e-4, 0.0),
    (
        "astronaut_out2.f32",
        "Identity_2",
        &[1, 256, 256, 1],
        5e-2,
        1e-4,
    ),
    ("astronaut_out4.f32", "Identity_4", &[1, 117], 2e-3, 0.0),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/blazepose_lite")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(golden_dir().join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs `model` on a batch of `batch` copies of the golden input; returns every output in order.
fn run(model: &[u8], batch: usize) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut proto = tract_onnx::onnx().model_for_read(&mut &model[..]).unwrap();
    if batch != 1 {
        proto
            .set_input_fact(0, f32::fact([batch, 256, 256, 3]).into())
            .unwrap();
    }
    let plan = proto.into_optimized().unwrap().into_runnable().unwrap();
    let one = read_f32("astronaut_input.f32");
    let input: Vec<f32> = (0..batch).flat_map(|_| one.iter().copied()).collect();
    let x = tract_ndarray::Array4::from_shape_vec((batch, 256, 256, 3), input).unwrap();
    let out = plan.run(tvec!(x.into_tensor().into())).unwrap();
    let names = plan.model().output_outlets().unwrap().iter().map(|o| {
        plan.model()
            .outlet_label(*o)
            .map(str::to_string)
            .unwrap_or_else(|| plan.model().node(o.node).name.clone())
    });
    names
        .zip(out.iter())
        .map(|(name, t)| {
            let view = t.to_plain_array_view::<f32>().unwrap();
            (name, view.shape().to_vec(), view.iter().copied().collect())
        })
        .collect()
}

fn check_against_golden(model: &[u8], what: &str) {
    let outputs = run(model, 1);
    let names: Vec<&str> = outputs.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "Identity",
            "Identity_1",
            "Identity_2",
            "Identity_3",
            "Identity_4"
        ],
        "{what}: outputs keep the TFLite names and order"
    );
    assert_eq!(outputs[3].1, [1, 64, 64, 39], "{what}: heatmaps stay NHWC");
    let mut failures = Vec::new();
    for (file, name, shape, abs, rel) in OUTPUTS {
        let (_, got_shape, got) = outputs.iter().find(|o| o.0 == name).unwrap();
        assert_eq!(got_shape, shape, "{what}: {name} shape");
        let want = read_f32(file);
        let diff = max_abs_diff(got, &want);
        let outside = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| (*g - *w).abs() > abs + rel * w.abs())
            .count();
        eprintln!("{what}: {name} max |diff| {diff:.2e}, {outside} outside the tolerance");
        // No sign flips: the mask's decision is sigmoid(x) > 0.5, i.e. x > 0.
        let flipped = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| w.abs() > abs && g.signum() != w.signum())
            .count();
        assert_eq!(
            flipped, 0,
            "{what}: {name} changes sign at {flipped} places"
        );
        if outside > 0 {
            failures.push(name);
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {failures:?} differ from the golden outputs"
    );
}

#[test]
fn converted_tflite_matches_golden_outputs() {
    // The committed zoo model is exactly what the converter produces today.
    let model = fresh_conversion_equals_committed("blazepose-lite");
    check_against_golden(&model, "fresh conversion");
}

#[test]
fn committed_zoo_model_matches_manifest_and_runs_batches() {
    let m = zoo::manifest("blazepose-lite").unwrap();
    assert_eq!(
        zoo::sha256_file(&common::committed_model(&m)).unwrap(),
        m.model.sha256
    );
    assert_eq!(m.task, zoo::Task::Pose);
    assert_eq!(
        (m.embedding.tensor.as_str(), m.embedding.size),
        ("Identity", 195)
    );
    let model = std::fs::read(common::committed_model(&m)).unwrap();
    // Two copies of the input in one batch give the single-image landmarks twice.
    let outputs = run(&model, 2);
    let (_, shape, landmarks) = &outputs[0];
    assert_eq!(shape, &[2, 195]);
    let golden = read_f32("astronaut_out0.f32");
    for half in landmarks.chunks(195) {
        let diff = max_abs_diff(half, &golden);
        assert!(diff <= 2e-3, "batch of 2: landmarks differ by {diff}");
    }
}

/// The original TFLite file, through the zoo (mirror or cache).
fn original() -> Vec<u8> {
    let m = zoo::manifest("blazepose-lite").unwrap();
    std::fs::read(zoo::fetch_original(&m, None, &graft::progress::Silent).unwrap()).unwrap()
}

/// Reads (and when `convert`, converts) `bytes`; `Err` says which input panicked.
fn read_without_panic(bytes: &[u8], convert: bool, what: &str) -> Result<bool, String> {
    use graft_converters::tflite::{schema, to_onnx};
    std::panic::catch_unwind(|| {
        if convert {
            to_onnx(bytes).is_ok()
        } else {
            schema::read(bytes).is_ok()
        }
    })
    .map_err(|_| format!("reading {what} panicked"))
}

/// Truncated files are refused with an error, wherever they are cut.
#[test]
fn truncated_tflite_files_are_errors() {
    let file = original();
    let step = file.len() / 150;
    let cuts = (0..file.len())
        .step_by(step)
        .chain(file.len() - 64..file.len());
    for (k, len) in cuts.enumerate() {
        let what = format!("the first {len} bytes");
        let read = read_without_panic(&file[..len], k % 10 == 0, &what).unwrap();
        assert!(!read, "{what} read without error");
    }
}

/// Flipped bits in the flatbuffer's structure (the first 1472 bytes and everything after the
/// last weight buffer, where tables, vtables, shapes and names live) never panic: every such file
/// is read, and one in 40 is also converted (a conversion costs about 0.1 s in debug builds).
#[test]
fn corrupt_tflite_structure_never_panics() {
    let mut file = original();
    let tail = 2_734_048;
    assert!(file.len() > tail);
    let positions = (0..1472).step_by(7).chain((tail..file.len()).step_by(331));
    let (mut refused, mut total) = (0, 0);
    for pos in positions {
        for mask in [0x01u8, 0x80, 0xff] {
            file[pos] ^= mask;
            let what = format!("the file with byte {pos} xor {mask:#x}");
            if !read_without_panic(&file, total % 40 == 0, &what).unwrap() {
                refused += 1;
            }
            file[pos] ^= mask;
            total += 1;
        }
    }
    eprintln!("{refused} of {total} corrupted files refused");
    assert!(refused > total / 10, "only {refused} of {total} refused");
}

/// BlazePose full (the larger landmark model, in the mirror beside the lite one; skipped when the
/// original came from elsewhere) converts, and on the same crop puts the landmarks close to
/// where lite puts them (for the keypoints lite sees clearly: visibility logit above 8; the legs
/// are outside this crop and the two models guess them differently). There is no reference
/// output for full, so this only shows that it runs and is sane.
#[test]
fn full_model_agrees_with_lite_landmarks() {
    let m = zoo::manifest("blazepose-lite").unwrap();
    let lite = zoo::fetch_original(&m, None, &graft::progress::Silent).unwrap();
    let full = lite.with_file_name("pose_landmark_full.tflite");
    if !full.is_file() {
        eprintln!("skipped: no {} beside the lite original", full.display());
        return;
    }
    let model = graft_converters::tflite::convert(&full).unwrap();
    let outputs = run(&model, 1);
    let (name, shape, landmarks) = &outputs[0];
    assert_eq!(
        (name.as_str(), shape.as_slice()),
        ("Identity", &[1, 195][..])
    );
    let golden = read_f32("astronaut_out0.f32");
    // x, y of the clearly visible body keypoints (pixels of the 256x256 crop).
    let visible: Vec<usize> = (0..33).filter(|k| golden[k * 5 + 3] > 8.0).collect();
    assert!(visible.len() >= 10, "lite sees {} keypoints", visible.len());
    let mut worst = 0f32;
    for &k in &visible {
        for axis in 0..2 {
            worst = worst.max((landmarks[k * 5 + axis] - golden[k * 5 + axis]).abs());
        }
    }
    eprintln!(
        "full vs lite: {} visible keypoints differ by at most {worst:.1} px",
        visible.len()
    );
    assert!(worst < 16.0, "full and lite disagree by {worst} px");
}
