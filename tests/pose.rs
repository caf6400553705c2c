//! Pose keypoints with the committed MoveNet Lightning: astronaut.png against the reference run
//! (tests/fixtures/golden/movenet_lightning), letterboxing of non-square images, images without a
//! person, tiny and huge images, `graft pose --json --draw`, and BlazePose's landmarks against
//! their reference run (tests/fixtures/golden/blazepose_lite). The pose recognizer: the ONNX
//! pose features against the Rust ones, a head on stick-figure poses (>= 95 %) and on turned
//! photos (>= 90 %), its ONNX export against graft, mirror augmentation, and `graft train
//! --base movenet-lightning --augment-mirror` + `graft export`.
// Without the `synthetic` feature the tests on generated poses are left out, and with them what
// only they use.
#![cfg_attr(not(feature = "synthetic"), allow(unused_imports, dead_code))]

mod common;
use common::max_abs_diff;

use std::path::{Path, PathBuf};
use std::process::Command;

use graft::base::{BaseModel, BaseOptions};
use graft::dataset::Dataset;
use graft::embeddings::Embeddings;
use graft::export::{export_onnx, ExportOptions, InputForm, PROBABILITIES};
use graft::head::CpuBackend;
use graft::input::image::{decode_image, preprocess};
use graft::pose::{
    detect, draw, features, keypoint_model, mirror, normalise, with_mirrored, Keypoint,
    BLAZEPOSE_NAMES, FEATURES_TENSOR, KEYPOINT_NAMES, LOW_SCORE,
};
// The generated pose data (stick figures, turned photos) is behind the `synthetic` feature, which
// the README's test command (`--all-features`) enables.
#[cfg(feature = "synthetic")]
use graft::pose::{stick, turned};
use graft::progress::Silent;
use graft::recognizer::Recognizer;
use graft::train::TrainOptions;
use image::{DynamicImage, GenericImageView, Rgb, RgbImage};
use ndarray::Axis;

/// Largest distance in pixels accepted between graft's keypoints on the 512x512 astronaut and the
/// reference keypoints (computed on the same image resized to 192x192 by another resizer) mapped
/// to 512x512. One input pixel is 2.7 image pixels; measured: 0.24 px at most.
const GOLDEN_TOLERANCE_PX: f32 = 2.0;
/// Largest distance in pixels between the face keypoints (nose, eyes) of a crop, padded or
/// scaled copy and those of the full image, in the full image's coordinates. The model sees the
/// person at another scale, so it answers slightly differently; a mapping mistake (stretching, a
/// forgotten padding offset of 140 px) would be far larger. Measured: 6.6 px at most.
const FACE_TOLERANCE_PX: f32 = 10.0;
/// The same for the shoulders, which the bulky space suit makes vague: MoveNet places them up to
/// 29 px apart (6% of the image) on the same picture seen at 2/3 of the scale. Measured: 29.0 px.
const SHOULDER_TOLERANCE_PX: f32 = 40.0;
/// Largest distance, in torso lengths, between the mirrored pose features of astronaut.png and
/// those of the flipped photo (nose, eyes, shoulders); without mirroring the shoulders alone
/// differ by about 1. Measured: 0.049.
const MIRROR_TOLERANCE: f32 = 0.1;
/// Largest difference between the ONNX pose features and the Rust ones on astronaut.png (square:
/// the letterbox changes nothing, so only float rounding differs). Measured: 1.2e-7.
const FEATURE_TOLERANCE: f32 = 1e-4;
/// The same on a padded, non-square copy: the letterboxed size is rounded (123 of 122.88 pixels
/// across), so the Rust keypoints, mapped back to the image, are scaled 0.1 % differently across
/// than down, and keypoints in the padding are clamped to the image. Measured: 5.3e-4.
const LETTERBOX_FEATURE_TOLERANCE: f32 = 2e-3;
/// Validation accuracy the head must reach on stick-figure poses (the target).
const STICK_TARGET: f64 = 0.95;
/// Validation accuracy the head must reach on the turned photos (the target).
const TURNED_TARGET: f64 = 0.90;
/// Turned photos per class made for the recognizer test.
#[cfg(feature = "synthetic")]
const TURNED_PER_CLASS: usize = 30;
/// Largest difference between the exported ONNX recognizer's probabilities and graft's.
/// Measured: 1.2e-7.
const EXPORT_TOLERANCE: f32 = 1e-5;
const FACE: [&str; 3] = ["nose", "left_eye", "right_eye"];
const SHOULDERS: [&str; 2] = ["left_shoulder", "right_shoulder"];
/// The keypoints compared with the reference: nose, both eyes, both shoulders.
const CHECKED: [&str; 5] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_shoulder",
    "right_shoulder",
];

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn movenet() -> BaseModel {
    keypoint_model("movenet-lightning", &BaseOptions::default(), &Silent).unwrap()
}

fn astronaut() -> DynamicImage {
    let path = fixture("images/astronaut.png");
    decode_image(&std::fs::read(&path).unwrap(), &path).unwrap()
}

/// The reference keypoints as (y, x, score) in 0..1.
fn golden() -> Vec<[f32; 3]> {
    let bytes = std::fs::read(fixture("golden/movenet_lightning/astronaut_keypoints.f32")).unwrap();
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

fn find<'a>(keypoints: &'a [Keypoint], name: &str) -> &'a Keypoint {
    keypoints.iter().find(|k| k.name == name).unwrap()
}

/// Largest distance over the keypoints `names` between `a` and `b` scaled by `scale` then shifted
/// by (`dx`, `dy`), divided by `scale` (in `b`'s pixels).
fn max_distance(
    names: &[&str],
    a: &[Keypoint],
    b: &[Keypoint],
    scale: f32,
    (dx, dy): (f32, f32),
) -> f32 {
    names
        .iter()
        .map(|n| {
            let (p, q) = (find(a, n), find(b, n));
            let d = (p.x - (q.x * scale + dx)).hypot(p.y - (q.y * scale + dy)) / scale;
            eprintln!("  {n}: {d:.2} px");
            d
        })
        .fold(0.0, f32::max)
}

#[test]
fn astronaut_keypoints_match_the_reference_in_image_pixels() {
    let image = astronaut();
    assert_eq!(image.dimensions(), (512, 512));
    let keypoints = detect(&movenet(), &image).unwrap();
    let names: Vec<&str> = keypoints.iter().map(|k| k.name).collect();
    assert_eq!(names, KEYPOINT_NAMES);
    let golden = golden();
    let mut worst = 0.0f32;
    for name in CHECKED {
        let i = KEYPOINT_NAMES.iter().position(|n| *n == name).unwrap();
        let [gy, gx, gs] = golden[i];
        let k = &keypoints[i];
        let d = (k.x - gx * 512.0).hypot(k.y - gy * 512.0);
        worst = worst.max(d);
        assert!(
            d <= GOLDEN_TOLERANCE_PX,
            "{name}: {k:?} vs golden ({}, {})",
            gx * 512.0,
            gy * 512.0
        );
        assert!(
            (k.score - gs).abs() < 0.1,
            "{name}: score {} vs {gs}",
            k.score
        );
        assert!(k.is_confident(), "{name}: {k:?}");
    }
    eprintln!("astronaut: worst distance to the reference {worst:.2} px");
}

#[test]
fn non_square_images_are_letterboxed_and_mapped_back() {
    let base = movenet();
    let image = astronaut();
    let full = detect(&base, &image).unwrap();
    // The left 360 columns (the astronaut's shoulders are at x ~109 and ~318).
    let crop = image.crop_imm(0, 0, 360, 512);
    let cropped = detect(&base, &crop).unwrap();
    // The whole image padded to 512 wide x 800 high, 144 grey rows above.
    let mut tall = RgbImage::from_pixel(512, 800, Rgb([90, 90, 90]));
    image::imageops::replace(&mut tall, &image.to_rgb8(), 0, 144);
    let padded = detect(&base, &DynamicImage::ImageRgb8(tall)).unwrap();
    for (what, keypoints, shift) in [
        ("crop", &cropped, (0.0, 0.0)),
        ("padded", &padded, (0.0, 144.0)),
    ] {
        let face = max_distance(&FACE, keypoints, &full, 1.0, shift);
        let shoulders = max_distance(&SHOULDERS, keypoints, &full, 1.0, shift);
        eprintln!("{what}: face {face:.2} px, shoulders {shoulders:.2} px");
        assert!(face <= FACE_TOLERANCE_PX, "{what}: {keypoints:?}");
        assert!(shoulders <= SHOULDER_TOLERANCE_PX, "{what}: {keypoints:?}");
    }
    // Coordinates are in the original image, not the 192x192 input.
    assert!(cropped.iter().all(|k| k.x <= 360.0 && k.y <= 512.0));
    assert!(find(&padded, "nose").y > 192.0);
}

#[test]
fn images_without_a_person_give_low_scores() {
    let base = movenet();
    for (w, h) in [(640, 480), (16, 16)] {
        let grey = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([128, 128, 128])));
        let keypoints = detect(&base, &grey).unwrap();
        assert_eq!(keypoints.len(), 17);
        let best = keypoints.iter().map(|k| k.score).fold(0.0, f32::max);
        eprintln!("flat grey {w}x{h}: best score {best:.3}");
        assert!(best < LOW_SCORE, "{w}x{h}: {keypoints:?}");
        for k in &keypoints {
            assert!(
                k.x >= 0.0 && k.x <= w as f32 && k.y >= 0.0 && k.y <= h as f32,
                "{k:?}"
            );
        }
    }
}

#[test]
fn tiny_and_huge_images_work() {
    let base = movenet();
    let tiny = astronaut().resize_exact(16, 16, image::imageops::FilterType::Triangle);
    let keypoints = detect(&base, &tiny).unwrap();
    assert!(keypoints.iter().all(|k| k.x <= 16.0 && k.y <= 16.0));
    // 4000x3000: the astronaut scaled to 3000x3000 on the left of a black canvas.
    let mut huge = RgbImage::new(4000, 3000);
    let big = astronaut().resize_exact(3000, 3000, image::imageops::FilterType::Nearest);
    image::imageops::replace(&mut huge, &big.to_rgb8(), 0, 0);
    let keypoints = detect(&base, &DynamicImage::ImageRgb8(huge)).unwrap();
    let full = detect(&base, &astronaut()).unwrap();
    let scale = 3000.0 / 512.0;
    let face = max_distance(&FACE, &keypoints, &full, scale, (0.0, 0.0));
    let shoulders = max_distance(&SHOULDERS, &keypoints, &full, scale, (0.0, 0.0));
    eprintln!("huge: face {face:.2} px, shoulders {shoulders:.2} px (of 512)");
    assert!(face <= FACE_TOLERANCE_PX, "{keypoints:?}");
    assert!(shoulders <= SHOULDER_TOLERANCE_PX, "{keypoints:?}");
}

#[test]
fn mirrored_features_match_the_flipped_photo() {
    let base = movenet();
    let image = astronaut();
    let straight = normalise(&detect(&base, &image).unwrap()).unwrap();
    let flipped = normalise(&detect(&base, &image.fliph()).unwrap()).unwrap();
    let mirrored = mirror(&straight).unwrap();
    let worst = FACE
        .iter()
        .chain(&SHOULDERS)
        .map(|n| {
            let (a, b) = (find(&mirrored, n), find(&flipped, n));
            (a.x - b.x).hypot(a.y - b.y)
        })
        .fold(0.0, f32::max);
    eprintln!("mirror vs flipped photo: {worst:.3} torso lengths");
    assert!(worst <= MIRROR_TOLERANCE, "{mirrored:?}\n{flipped:?}");
}

#[test]
fn a_base_that_is_not_a_pose_model_is_an_error() {
    let base = BaseModel::open("efficientnet-lite0", &graft::base::BaseOptions::default()).unwrap();
    let err = detect(&base, &astronaut()).unwrap_err();
    assert!(err.to_string().contains("pose"), "{err}");
    // The pose features base gives 51 numbers too, but not keypoints.
    let err = detect(&pose_features_base(), &astronaut()).unwrap_err();
    assert!(err.to_string().contains("keypoint_model"), "{err}");
}

/// MoveNet with graft's pose features, as `graft train --base movenet-lightning` opens it.
fn pose_features_base() -> BaseModel {
    BaseModel::open("movenet-lightning", &graft::base::BaseOptions::default()).unwrap()
}

/// The features base's embedding of `image` (letterboxed as its spec says).
fn onnx_features(base: &BaseModel, image: &DynamicImage) -> Vec<f32> {
    let input = preprocess(image, base.image_spec().unwrap()).unwrap();
    let out = base
        .embed(input.insert_axis(Axis(0)).into_dyn().view())
        .unwrap();
    out.row(0).to_vec()
}

#[test]
fn onnx_pose_features_equal_the_rust_features() {
    let base = pose_features_base();
    assert_eq!(base.cut(), FEATURES_TENSOR);
    assert_eq!(base.embedding_dim(), 51);
    assert!(base.image_spec().unwrap().letterbox);
    let keypoints = movenet();
    let image = astronaut();
    let rust = features(&normalise(&detect(&keypoints, &image).unwrap()).unwrap());
    let onnx = onnx_features(&base, &image);
    let worst = max_abs_diff(&onnx, &rust);
    eprintln!("astronaut: ONNX vs Rust features differ by {worst:.2e} at most");
    assert!(worst <= FEATURE_TOLERANCE, "{onnx:?}\n{rust:?}");
    // Not a trivial agreement: the features are the normalised pose (nose above the hips).
    assert!(onnx[1] < -0.5, "nose y {}", onnx[1]);
    // A non-square image: 144 grey rows above, 144 below.
    let mut tall = RgbImage::from_pixel(512, 800, Rgb([90, 90, 90]));
    image::imageops::replace(&mut tall, &image.to_rgb8(), 0, 144);
    let tall = DynamicImage::ImageRgb8(tall);
    let rust = features(&normalise(&detect(&keypoints, &tall).unwrap()).unwrap());
    let onnx = onnx_features(&base, &tall);
    let worst = max_abs_diff(&onnx, &rust);
    eprintln!("padded astronaut: ONNX vs Rust features differ by {worst:.2e} at most");
    assert!(worst <= LETTERBOX_FEATURE_TOLERANCE, "{onnx:?}\n{rust:?}");
}

/// A head with the default options trained on a seeded 70/30 split of `data` (training part
/// through `augment`): the recognizer and its validation part.
#[cfg(feature = "synthetic")]
fn train(
    data: &Embeddings,
    augment: impl Fn(Embeddings) -> Embeddings,
) -> (Recognizer, Embeddings) {
    let (train, val) = data.split(0.3, 42).unwrap();
    let train = augment(train);
    let opts = TrainOptions::default();
    let r = Recognizer::train(&train, &val, &opts, &mut CpuBackend::new(), &mut |_| {}).unwrap();
    (r, val)
}

#[cfg(feature = "synthetic")]
#[test]
fn stick_figure_poses_are_recognised() {
    let base = pose_features_base();
    let data = stick::embeddings(100, 42, base.reference().unwrap()).unwrap();
    let (recognizer, val) = train(&data, |t| t);
    let metrics = recognizer.evaluate(&val).unwrap();
    eprintln!("stick figures: {metrics}");
    assert!(metrics.accuracy >= STICK_TARGET, "{metrics}");
    // With mirrored copies (one_arm_raised is either arm, so mirroring keeps the labels right).
    let (mirrored, val) = train(&data, |t| {
        let m = with_mirrored(&t).unwrap();
        assert_eq!(m.len(), 2 * t.len());
        assert_eq!(
            m.counts(),
            t.counts().iter().map(|c| 2 * c).collect::<Vec<_>>()
        );
        m
    });
    let metrics = mirrored.evaluate(&val).unwrap();
    eprintln!("stick figures, mirrored copies: {metrics}");
    assert!(metrics.accuracy >= STICK_TARGET, "{metrics}");
}

#[cfg(feature = "synthetic")]
#[test]
fn mirroring_needs_pose_features() {
    let data = stick::embeddings(2, 1, pose_features_base().reference().unwrap()).unwrap();
    let m = with_mirrored(&data).unwrap();
    // Left wrist (keypoint 9) of the copy = right wrist (10) of the original, x negated.
    assert_eq!(m.vectors()[[10, 27]], -data.vectors()[[0, 30]]);
    assert_eq!(m.vectors()[[10, 28]], data.vectors()[[0, 31]]);
    // The same numbers, said to come from a base cut elsewhere.
    let other = graft::base::BaseRef {
        cut: "features".into(),
        ..data.base().clone()
    };
    let data = graft::embeddings::Embeddings::new(
        other,
        data.classes().to_vec(),
        data.vectors().to_owned(),
        data.labels().to_vec(),
        data.sources().to_vec(),
    )
    .unwrap();
    let err = with_mirrored(&data).unwrap_err();
    assert!(err.to_string().contains("pose features"), "{err}");
}

#[cfg(feature = "synthetic")]
#[test]
fn turned_photos_are_recognised_and_the_export_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("turned");
    turned::write_set(&[astronaut()], &folder, TURNED_PER_CLASS, 42).unwrap();
    let base = pose_features_base();
    let dataset = Dataset::from_folder(&folder).unwrap();
    let (data, skipped) = Embeddings::from_dataset(&base, &dataset, None, &|_| {}).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(data.len(), 4 * TURNED_PER_CLASS);
    let (recognizer, val) = train(&data, |t| t);
    let metrics = recognizer.evaluate(&val).unwrap();
    eprintln!("turned photos: {metrics}");
    assert!(metrics.accuracy >= TURNED_TARGET, "{metrics}");

    // Export: image in, probabilities out, run by tract as a plain ONNX file.
    let onnx = dir.path().join("pose.onnx");
    let options = ExportOptions::default();
    let head = recognizer.head();
    let r = export_onnx(
        &base,
        head,
        recognizer.labels(),
        None,
        None,
        &options,
        &onnx,
        None,
    )
    .unwrap();
    // Letterboxed: the default keeps the prepared (letterboxed) image as the input.
    assert_eq!(r.form, InputForm::Tensor);
    assert!(r.tensor_because.unwrap().contains("letterbox"));
    let options = BaseOptions {
        cut: Some(PROBABILITIES.into()),
        ..BaseOptions::default()
    };
    let exported = BaseModel::open(&onnx, &options).unwrap();
    let want = recognizer.probabilities(val.vectors().view()).unwrap();
    let mut worst = 0.0f32;
    for (source, want) in val.sources().iter().take(8).zip(want.rows()) {
        let path = source.file();
        let image = decode_image(&std::fs::read(path).unwrap(), path).unwrap();
        let input = preprocess(&image, base.image_spec().unwrap()).unwrap();
        let got = exported
            .embed(input.insert_axis(Axis(0)).into_dyn().view())
            .unwrap();
        worst = worst.max(max_abs_diff(
            got.row(0).as_slice().unwrap(),
            want.as_slice().unwrap(),
        ));
    }
    eprintln!("export vs graft: {worst:.2e}");
    assert!(worst <= EXPORT_TOLERANCE, "{worst}");
}

#[cfg(feature = "synthetic")]
#[test]
fn cli_trains_and_exports_a_pose_recognizer_with_mirrored_copies() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("turned");
    turned::write_set(&[astronaut()], &folder, 5, 9).unwrap();
    // A mirror turns a photo rotated left into one rotated right: only the classes a mirror
    // keeps are used with --augment-mirror.
    for class in ["rotated_left", "rotated_right"] {
        std::fs::remove_dir_all(folder.join(class)).unwrap();
    }
    let recognizer = dir.path().join("pose.safetensors");
    let onnx = dir.path().join("pose.onnx");
    let graft = |args: &[&std::ffi::OsStr]| {
        let (engine_var, engine_value) = common::engine_env();
        let run = Command::new(env!("CARGO_BIN_EXE_graft"))
            .env("GRAFT_CACHE", dir.path().join("cache"))
            .env(engine_var, engine_value)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        stdout
    };
    let out = graft(&[
        "train".as_ref(),
        "--base".as_ref(),
        "movenet-lightning".as_ref(),
        "--data".as_ref(),
        folder.as_os_str(),
        "--augment-mirror".as_ref(),
        "-o".as_ref(),
        recognizer.as_os_str(),
    ]);
    // 5 per class, 30 % held out: 2 x 3 training photos, each mirrored once.
    assert!(out.contains("6 mirrored training copies"), "{out}");
    let loaded = Recognizer::load(&recognizer).unwrap();
    assert_eq!(loaded.base().cut, FEATURES_TENSOR);
    assert_eq!(loaded.training().unwrap().train_counts, vec![6; 2]);
    graft(&[
        "export".as_ref(),
        recognizer.as_os_str(),
        "-o".as_ref(),
        onnx.as_os_str(),
    ]);
    assert!(onnx.is_file());
    let out = graft(&[
        "--json".as_ref(),
        "predict".as_ref(),
        recognizer.as_os_str(),
        fixture("images/astronaut.png").as_os_str(),
    ]);
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["predictions"][0]["label"], "upright", "{json}");
}

#[test]
fn cli_pose_writes_json_and_a_drawing_of_the_same_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("drawn.png");
    let input = fixture("images/astronaut.png");
    let run = Command::new(env!("CARGO_BIN_EXE_graft"))
        .arg("--json")
        .arg("pose")
        .arg(&input)
        .arg("--draw")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let keypoints = json["images"][0]["keypoints"].as_array().unwrap();
    assert_eq!(keypoints.len(), 17);
    assert_eq!(keypoints[0]["name"], "nose");
    let nose_x = keypoints[0]["x"].as_f64().unwrap();
    assert!(
        (nose_x - 512.0 * f64::from(golden()[0][1])).abs() < 4.0,
        "{nose_x}"
    );
    assert!(
        keypoints.iter().any(|k| k["low"] == true),
        "ankles are off-image: {json}"
    );
    let drawn = image::open(&out).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), (512, 512));
    assert_ne!(drawn, astronaut().to_rgb8(), "nothing was drawn");

    // --draw with several images is refused, not silently overwritten.
    let run = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["pose", "--draw"])
        .arg(&out)
        .arg(&input)
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("one image") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Largest distance in pixels between graft's BlazePose landmarks on the 512x512 astronaut and the
/// reference landmarks (the model run on the image resized to 256x256 by another resizer) mapped
/// to 512x512. Measured: 0.30 px.
const BLAZEPOSE_TOLERANCE_PX: f32 = 3.0;

#[test]
fn blazepose_landmarks_match_the_reference_in_image_pixels() {
    let base = keypoint_model("blazepose-lite", &BaseOptions::default(), &Silent).unwrap();
    let image = astronaut();
    let landmarks = detect(&base, &image).unwrap();
    let names: Vec<&str> = landmarks.iter().map(|k| k.name).collect();
    assert_eq!(names, BLAZEPOSE_NAMES);
    let bytes = std::fs::read(fixture("golden/blazepose_lite/astronaut_out0.f32")).unwrap();
    let golden: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut worst = 0.0f32;
    for name in [
        "nose",
        "left_eye",
        "right_eye",
        "left_shoulder",
        "right_shoulder",
    ] {
        let i = BLAZEPOSE_NAMES.iter().position(|n| *n == name).unwrap();
        let (gx, gy) = (golden[5 * i] * 2.0, golden[5 * i + 1] * 2.0);
        let k = &landmarks[i];
        let d = (k.x - gx).hypot(k.y - gy);
        eprintln!("  {name}: {d:.2} px, visibility {:.3}", k.score);
        worst = worst.max(d);
        assert!(d <= BLAZEPOSE_TOLERANCE_PX, "{name}: {k:?} vs ({gx}, {gy})");
        assert!(k.is_confident(), "{k:?}");
    }
    eprintln!("blazepose astronaut: worst distance to the reference {worst:.2} px");
    // The face landmarks agree with MoveNet's keypoints on the same photo.
    let movenet = detect(&movenet(), &image).unwrap();
    for name in FACE {
        let d = (find(&landmarks, name).x - find(&movenet, name).x)
            .hypot(find(&landmarks, name).y - find(&movenet, name).y);
        assert!(d <= 20.0, "{name}: BlazePose and MoveNet {d:.1} px apart");
    }
    // Letterboxed: padded with 144 grey rows above and below, the face stays on the face.
    // BlazePose expects a tight person crop, so it answers less alike than MoveNet does on a
    // padded copy (measured: 16.3 px); a mapping mistake would be off by the 144 px padding.
    let mut tall = RgbImage::from_pixel(512, 800, Rgb([90, 90, 90]));
    image::imageops::replace(&mut tall, &image.to_rgb8(), 0, 144);
    let padded = detect(&base, &DynamicImage::ImageRgb8(tall)).unwrap();
    let face = max_distance(&FACE, &padded, &landmarks, 1.0, (0.0, 144.0));
    eprintln!("blazepose padded: face {face:.2} px");
    assert!(face <= 25.0, "{padded:?}");
    // Drawn with its own skeleton, on an image of the same size.
    let drawn = draw(&image, &landmarks);
    assert_eq!(drawn.dimensions(), (512, 512));
    assert_ne!(drawn, image.to_rgb8());
}

#[test]
fn cli_pose_with_blazepose_gives_33_landmarks() {
    let run = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["--json", "pose", "--base", "blazepose-lite"])
        .arg(fixture("images/astronaut.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let landmarks = json["images"][0]["keypoints"].as_array().unwrap();
    assert_eq!(landmarks.len(), 33);
    assert_eq!(landmarks[32]["name"], "right_foot_index");
}

/// MoveNet's graph is batch-1 only (an unstack of the batch): graft embeds folders one image per
/// call, and a larger batch is a clear error, not a panic.
#[test]
fn the_pose_base_runs_one_image_per_call() {
    let base = pose_features_base();
    let one = ndarray::ArrayD::<f32>::zeros(vec![1, 192, 192, 3]);
    assert_eq!(base.embed(one.view()).unwrap().dim(), (1, 51));
    let two = ndarray::ArrayD::<f32>::zeros(vec![2, 192, 192, 3]);
    let err = base.embed(two.view()).unwrap_err();
    assert!(matches!(err, graft::Error::Inference(_)), "{err:?}");
}
