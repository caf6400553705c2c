//! Pose keypoints with the committed MoveNet Lightning: astronaut.png against the reference run
//! (tests/fixtures/golden/movenet_lightning), letterboxing of non-square images, images without a
//! person, tiny and huge images, and `graft pose --json --draw`.

use std::path::{Path, PathBuf};
use std::process::Command;

use graft::base::BaseModel;
use graft::input::image::decode_image;
use graft::pose::{detect, mirror, normalise, Keypoint, KEYPOINT_NAMES, LOW_SCORE};
use image::{DynamicImage, GenericImageView, Rgb, RgbImage};

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
    BaseModel::open("movenet-lightning", None, None, None).unwrap()
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
    let base = BaseModel::open("efficientnet-lite0", None, None, None).unwrap();
    let err = detect(&base, &astronaut()).unwrap_err();
    assert!(err.to_string().contains("pose"), "{err}");
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
