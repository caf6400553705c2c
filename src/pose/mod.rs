//! Human pose keypoints from a single-person pose model (MoveNet: the 17 COCO keypoints; or
//! BlazePose on a person crop: 33 landmarks), in pixels of the original image, and a skeleton
//! drawing; pose features (from MoveNet's keypoints) to train a recognizer on.
//!
//! Any image size and aspect ratio is accepted: the image is letterboxed into the model's square
//! input (the image spec's `letterbox`: scaled to fit keeping its aspect ratio, centred, padded
//! with black), and [`detect`] maps the keypoints back through the same [`Letterbox`].
//!
//! **Pose features** — the one definition, shared by the Rust functions and the ONNX graph:
//!
//! - [`normalise`]: each keypoint's (x, y) becomes its offset from the hip midpoint (the mean of
//!   `left_hip` and `right_hip`) divided by the torso length (the distance between the shoulder
//!   midpoint and the hip midpoint, at least [`MIN_TORSO`] so that a degenerate torso gives large
//!   but finite numbers, never NaN or infinity); the scores are kept as they are, as confidences.
//!   y still points down, so a standing person's nose lies near (0, -1.5).
//! - [`features`]: the normalised pose as [`FEATURE_DIM`] = 51 numbers, keypoint by keypoint in
//!   COCO order ([`KEYPOINT_NAMES`]): `[3 i]` = x, `[3 i + 1]` = y, `[3 i + 2]` = score of
//!   keypoint `i`.
//! - [`mirror`] (and [`mirror_features`] on the 51 numbers) turns a normalised pose into that of
//!   the horizontally flipped image: x negated and left/right keypoints swapped ([`TWINS`]);
//!   [`with_mirrored`] adds a mirrored copy of each training example (augmentation).
//! - As a frozen base: a zoo manifest whose embedding says `"features": "pose"` (as
//!   `movenet-lightning`'s does) makes [`BaseModel::open`] append the same normalisation as ONNX
//!   nodes after the keypoint tensor, in memory ([`feature_model`]); the base's embedding is then
//!   the [`FEATURES_TENSOR`] `[N, 51]`, so `graft train --base movenet-lightning`, KNN, predict
//!   and `graft export` (image in, probabilities out) work as for images. The ONNX graph
//!   normalises the keypoints in the model's input square (0..1), [`detect`] + [`normalise`] in
//!   image pixels: the same numbers, since the normalisation ignores position and scale (up to
//!   the rounding of the letterboxed size, and keypoints that [`detect`] clamps to the image).
//!   [`keypoint_model`] opens such a base cut at its keypoints instead, for [`detect`].
//!
//! Test data without labelled pose photos: [`stick`] generates keypoints of a stick figure in
//! known poses, [`turned`] makes photos of people turned by known angles.

mod graph;
pub mod stick;
pub mod turned;

use image::{DynamicImage, Rgb, RgbImage};
use ndarray::{Array2, Axis};
use serde::Serialize;

use crate::base::{BaseModel, BaseOptions};
use crate::embeddings::Embeddings;
use crate::input::image::{preprocess, Letterbox};
use crate::input::ImageSpec;
use crate::{zoo, Error, Result};

pub use graph::{feature_model, FEATURES_TENSOR};

/// The 17 COCO keypoints, in the order pose models report them.
pub const KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// The 33 body landmarks of BlazePose (MediaPipe Pose), in the order the model gives them.
pub const BLAZEPOSE_NAMES: [&str; 33] = [
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
];

/// Bones of the BlazePose skeleton: pairs of indexes into [`BLAZEPOSE_NAMES`].
pub const BLAZEPOSE_SKELETON: [(usize, usize); 35] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 7),
    (0, 4),
    (4, 5),
    (5, 6),
    (6, 8),
    (9, 10),
    (11, 12),
    (11, 13),
    (13, 15),
    (15, 17),
    (15, 19),
    (15, 21),
    (17, 19),
    (12, 14),
    (14, 16),
    (16, 18),
    (16, 20),
    (16, 22),
    (18, 20),
    (11, 23),
    (12, 24),
    (23, 24),
    (23, 25),
    (24, 26),
    (25, 27),
    (26, 28),
    (27, 29),
    (28, 30),
    (29, 31),
    (30, 32),
    (27, 31),
    (28, 32),
];

/// Numbers per landmark in BlazePose's landmark output: x, y, z, visibility, presence.
const BLAZEPOSE_STRIDE: usize = 5;
/// Landmarks in BlazePose's output: the 33 body landmarks, then 6 auxiliary ones.
const BLAZEPOSE_OUTPUT_LANDMARKS: usize = 39;

/// How a pose model's output holds its keypoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputLayout {
    /// MoveNet: `[1, 17, 3]` = (y, x, score) per COCO keypoint, y and x in 0..1 of the input.
    MoveNet,
    /// BlazePose landmark model: `[195]` = (x, y, z, visibility, presence) per landmark, 33
    /// body landmarks then 6 auxiliary ones, x and y in input pixels, visibility a logit.
    BlazePose,
}

impl OutputLayout {
    /// The layout of `base`'s cut, or an error saying what pose models give.
    fn of(base: &BaseModel) -> Result<OutputLayout> {
        match base.cut_shape() {
            [1, 17, 3] => Ok(OutputLayout::MoveNet),
            [n] if *n == BLAZEPOSE_OUTPUT_LANDMARKS * BLAZEPOSE_STRIDE => {
                Ok(OutputLayout::BlazePose)
            }
            other => Err(Error::Invalid(format!(
                "base {} cut at `{}` gives {other:?}; a pose model's keypoints are [1, 17, 3] \
                 (MoveNet: y, x, score) or [195] (BlazePose landmarks) per example (open it \
                 with pose::keypoint_model)",
                base.name(),
                base.cut(),
            ))),
        }
    }

    /// The keypoints in `output` (one example), positions mapped by `to_image` from fractions
    /// 0..1 of the `input_size`-pixel square input.
    fn decode(
        self,
        output: &[f32],
        input_size: u32,
        to_image: impl Fn(f32, f32) -> (f32, f32),
    ) -> Vec<Keypoint> {
        let keypoint = |name, x, y, score| {
            let (x, y) = to_image(x, y);
            Keypoint { name, x, y, score }
        };
        match self {
            OutputLayout::MoveNet => KEYPOINT_NAMES
                .iter()
                .zip(output.chunks_exact(3))
                .map(|(&name, yxs)| keypoint(name, yxs[1], yxs[0], yxs[2]))
                .collect(),
            OutputLayout::BlazePose => {
                let size = input_size.max(1) as f32;
                BLAZEPOSE_NAMES
                    .iter()
                    .zip(output.chunks_exact(BLAZEPOSE_STRIDE))
                    .map(|(&name, l)| {
                        let visibility = 1.0 / (1.0 + (-l[3]).exp());
                        keypoint(name, l[0] / size, l[1] / size, visibility)
                    })
                    .collect()
            }
        }
    }

    fn count(self) -> usize {
        match self {
            OutputLayout::MoveNet => KEYPOINT_NAMES.len(),
            OutputLayout::BlazePose => BLAZEPOSE_NAMES.len(),
        }
    }
}

/// For each keypoint, the index of its left/right twin in [`KEYPOINT_NAMES`] (itself for the
/// nose): what a horizontal flip swaps.
pub const TWINS: [usize; 17] = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15];

/// Numbers per pose in [`features`]: x, y and score of each of the 17 keypoints.
pub const FEATURE_DIM: usize = 51;

/// Smallest torso length [`normalise`] divides by (in the keypoints' units; the ONNX graph uses
/// the same value in units of the model's input): a degenerate pose gives finite features.
pub const MIN_TORSO: f32 = 1e-6;

const LEFT_SHOULDER: usize = 5;
const LEFT_HIP: usize = 11;

/// Bones of the skeleton: pairs of indexes into [`KEYPOINT_NAMES`].
pub const SKELETON: [(usize, usize); 18] = [
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (5, 6),
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 11),
    (6, 12),
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
    (0, 5),
    (0, 6),
];

/// Keypoints scoring below this are unreliable: kept, but flagged and not drawn.
pub const LOW_SCORE: f32 = 0.3;

/// One body keypoint: where it is in the original image (pixels, x right, y down) and the model's
/// confidence in 0..1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Keypoint {
    pub name: &'static str,
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

impl Keypoint {
    /// Whether the score reaches [`LOW_SCORE`].
    pub fn is_confident(&self) -> bool {
        self.score >= LOW_SCORE
    }
}

/// Opens pose model `name_or_path` (a zoo name or an ONNX file) cut at its keypoints, for
/// [`detect`], on the engine `options` names: a zoo model with pose features is cut before them,
/// at its manifest's tensor; an ONNX file at `options.cut`, else its automatic cut.
pub fn keypoint_model(name_or_path: &str, options: &BaseOptions) -> Result<BaseModel> {
    let cut = zoo::manifest(name_or_path)
        .ok()
        .filter(|m| m.embedding.features == Some(zoo::Features::Pose))
        .map(|m| m.embedding.tensor);
    let options = BaseOptions {
        cut: cut.or_else(|| options.cut.clone()),
        ..options.clone()
    };
    BaseModel::open_with(name_or_path, &options, None, None)
}

/// Finds the keypoints of the person in `image` with a pose model cut at its keypoints (see
/// [`keypoint_model`]): MoveNet's 17 COCO keypoints ([`KEYPOINT_NAMES`]; output `[1, 1, 17, 3]`
/// = (y, x, score), y and x in 0..1 of its square input), or BlazePose's 33 landmarks
/// ([`BLAZEPOSE_NAMES`]; output `[1, 195]`, scores the landmarks' visibility), for which `image`
/// should be a crop around one person. The image is letterboxed whatever the base's spec says;
/// positions are in its pixels. Low-score keypoints are returned too; see
/// [`Keypoint::is_confident`].
pub fn detect(base: &BaseModel, image: &DynamicImage) -> Result<Vec<Keypoint>> {
    let spec = ImageSpec {
        letterbox: true,
        center_crop: None,
        ..base.image_spec()?.clone()
    };
    if spec.width != spec.height {
        return Err(Error::Invalid(format!(
            "base {} takes {}x{} images; pose models take a square input",
            base.name(),
            spec.width,
            spec.height
        )));
    }
    let layout = OutputLayout::of(base)?;
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!("the image is empty ({w}x{h})")));
    }
    let fit = Letterbox::fit(w, h, spec.width, spec.height);
    let input = preprocess(image, &spec)?;
    let output = base.embed(input.insert_axis(Axis(0)).into_dyn().view())?;
    let keypoints = layout.decode(
        output.row(0).as_slice().unwrap_or(&[]),
        spec.width,
        |x, y| fit.to_image(x, y, w, h),
    );
    if keypoints.len() != layout.count() {
        return Err(Error::Inference(format!(
            "base {} gave a non-contiguous output",
            base.name()
        )));
    }
    Ok(keypoints)
}

/// Draws the skeleton ([`SKELETON`], or [`BLAZEPOSE_SKELETON`] for 33 landmarks) on a copy of
/// `image`: a line for each bone whose two ends are confident and
/// a dot on each confident keypoint (left side orange, right side cyan, face white).
pub fn draw(image: &DynamicImage, keypoints: &[Keypoint]) -> RgbImage {
    let mut canvas = image.to_rgb8();
    let thickness = (canvas.width().min(canvas.height()) as f32 / 150.0).max(1.5);
    let bones: &[(usize, usize)] = match keypoints.len() == BLAZEPOSE_NAMES.len() {
        true => &BLAZEPOSE_SKELETON,
        false => &SKELETON,
    };
    for &(a, b) in bones {
        if let (Some(p), Some(q)) = (keypoints.get(a), keypoints.get(b)) {
            if p.is_confident() && q.is_confident() {
                draw_line(&mut canvas, p, q, thickness, Rgb([255, 255, 0]));
            }
        }
    }
    for k in keypoints.iter().filter(|k| k.is_confident()) {
        let colour = if k.name.starts_with("left") {
            Rgb([255, 128, 0])
        } else if k.name.starts_with("right") {
            Rgb([0, 200, 255])
        } else {
            Rgb([255, 255, 255])
        };
        fill_disc(&mut canvas, k.x, k.y, thickness * 2.0, colour);
    }
    canvas
}

/// A thick line: discs of radius `thickness / 2` every half pixel from `p` to `q`.
fn draw_line(canvas: &mut RgbImage, p: &Keypoint, q: &Keypoint, thickness: f32, colour: Rgb<u8>) {
    let length = (q.x - p.x).hypot(q.y - p.y);
    let steps = (length * 2.0).ceil().max(1.0) as u32;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let (x, y) = (p.x + t * (q.x - p.x), p.y + t * (q.y - p.y));
        fill_disc(canvas, x, y, thickness / 2.0, colour);
    }
}

/// Paints the pixels within `radius` of (`cx`, `cy`) that lie in the image.
fn fill_disc(canvas: &mut RgbImage, cx: f32, cy: f32, radius: f32, colour: Rgb<u8>) {
    let (w, h) = (canvas.width() as f32, canvas.height() as f32);
    // Bounds clamped to the image, so the casts are in range.
    let x0 = (cx - radius).floor().clamp(0.0, w) as u32;
    let x1 = (cx + radius).ceil().clamp(0.0, w) as u32;
    let y0 = (cy - radius).floor().clamp(0.0, h) as u32;
    let y1 = (cy + radius).ceil().clamp(0.0, h) as u32;
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            if dx * dx + dy * dy <= radius * radius {
                canvas.put_pixel(x, y, colour);
            }
        }
    }
}

/// Checks that `keypoints` are the 17 COCO keypoints in order.
fn check_order(keypoints: &[Keypoint]) -> Result<()> {
    let names: Vec<&str> = keypoints.iter().map(|k| k.name).collect();
    if names != KEYPOINT_NAMES {
        return Err(Error::Invalid(format!(
            "expected the 17 COCO keypoints in order, got {names:?}"
        )));
    }
    Ok(())
}

/// The midpoint of the two keypoints named `left` and `right` (present in COCO order).
fn midpoint(keypoints: &[Keypoint], left: usize, right: usize) -> (f32, f32) {
    let (a, b) = (&keypoints[left], &keypoints[right]);
    ((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)
}

/// Position- and scale-free keypoints (see the module docs): centred on the hip midpoint, in
/// units of the torso length (at least [`MIN_TORSO`]), scores unchanged. An error if the
/// keypoints are not the 17 COCO keypoints in order or a coordinate is not finite.
pub fn normalise(keypoints: &[Keypoint]) -> Result<Vec<Keypoint>> {
    check_order(keypoints)?;
    if let Some(k) = keypoints
        .iter()
        .find(|k| !(k.x.is_finite() && k.y.is_finite()))
    {
        return Err(Error::Invalid(format!(
            "cannot normalise a pose with a keypoint at ({}, {}) ({})",
            k.x, k.y, k.name
        )));
    }
    let (sx, sy) = midpoint(keypoints, LEFT_SHOULDER, LEFT_SHOULDER + 1);
    let (hx, hy) = midpoint(keypoints, LEFT_HIP, LEFT_HIP + 1);
    let (dx, dy) = (sx - hx, sy - hy);
    // As the ONNX graph computes it: Sqrt(dx dx + dy dy), then Max with MIN_TORSO.
    let torso = (dx * dx + dy * dy).sqrt().max(MIN_TORSO);
    Ok(keypoints
        .iter()
        .map(|k| Keypoint {
            x: (k.x - hx) / torso,
            y: (k.y - hy) / torso,
            ..k.clone()
        })
        .collect())
}

/// The normalised pose of the horizontally flipped image: x negated, each `left_*` keypoint
/// swapped with its `right_*` twin ([`TWINS`]; names stay in COCO order). Its own inverse.
pub fn mirror(normalised: &[Keypoint]) -> Result<Vec<Keypoint>> {
    check_order(normalised)?;
    Ok(KEYPOINT_NAMES
        .iter()
        .zip(TWINS)
        .map(|(&name, twin)| {
            let twin = &normalised[twin];
            Keypoint {
                name,
                x: -twin.x,
                y: twin.y,
                score: twin.score,
            }
        })
        .collect())
}

/// [`mirror`] on [`features`]: the 51 numbers of the flipped pose.
pub fn mirror_features(features: &[f32]) -> Result<Vec<f32>> {
    if features.len() != FEATURE_DIM {
        return Err(Error::Invalid(format!(
            "pose features have {FEATURE_DIM} numbers, got {}",
            features.len()
        )));
    }
    Ok(TWINS
        .iter()
        .flat_map(|&twin| {
            let k = &features[3 * twin..3 * twin + 3];
            [-k[0], k[1], k[2]]
        })
        .collect())
}

/// `train` followed by a mirrored copy of each of its examples ([`mirror_features`]; sources
/// marked `#mirrored`): left/right augmentation for the training part of a split of pose
/// features. Only for classes that do not tell left from right.
pub fn with_mirrored(train: &Embeddings) -> Result<Embeddings> {
    if train.base.cut != FEATURES_TENSOR || train.vectors.ncols() != FEATURE_DIM {
        return Err(Error::Invalid(format!(
            "mirroring needs pose features (a pose base such as movenet-lightning, cut at \
             `{FEATURES_TENSOR}`); these embeddings are `{}` [{}]",
            train.base.cut,
            train.vectors.ncols()
        )));
    }
    let mut rows: Vec<f32> = train.vectors.iter().copied().collect();
    for row in train.vectors.rows() {
        rows.extend(mirror_features(&row.to_vec())?);
    }
    let n = train.len();
    let mut out = train.clone();
    out.vectors = Array2::from_shape_vec((2 * n, FEATURE_DIM), rows)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    out.labels.extend_from_within(..);
    out.sources.extend(
        train
            .sources
            .iter()
            .map(|p| format!("{}#mirrored", p.display()).into()),
    );
    Ok(out)
}

/// A pose as [`FEATURE_DIM`] numbers (x, y, score per keypoint, COCO order; see the module docs),
/// e.g. to train a head on [`normalise`]d poses.
pub fn features(keypoints: &[Keypoint]) -> Vec<f32> {
    keypoints.iter().flat_map(|k| [k.x, k.y, k.score]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made standing person: hips at y 200, shoulders at y 100 (torso 100 px), centred on
    /// x 100, arms out to the right side of the image only (left wrist raised).
    fn person(shift: (f32, f32), scale: f32) -> Vec<Keypoint> {
        let at = [
            (100.0, 50.0),  // nose
            (105.0, 45.0),  // left eye
            (95.0, 45.0),   // right eye
            (110.0, 50.0),  // left ear
            (90.0, 50.0),   // right ear
            (120.0, 100.0), // left shoulder
            (80.0, 100.0),  // right shoulder
            (150.0, 80.0),  // left elbow
            (70.0, 150.0),  // right elbow
            (160.0, 40.0),  // left wrist
            (70.0, 190.0),  // right wrist
            (110.0, 200.0), // left hip
            (90.0, 200.0),  // right hip
            (110.0, 260.0), // left knee
            (90.0, 260.0),  // right knee
            (110.0, 320.0), // left ankle
            (90.0, 320.0),  // right ankle
        ];
        KEYPOINT_NAMES
            .iter()
            .zip(at)
            .enumerate()
            .map(|(i, (&name, (x, y)))| Keypoint {
                name,
                x: x * scale + shift.0,
                y: y * scale + shift.1,
                score: 0.05 * i as f32,
            })
            .collect()
    }

    fn close(a: &[Keypoint], b: &[Keypoint]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(p, q)| {
                p.name == q.name
                    && (p.x - q.x).abs() < 1e-4
                    && (p.y - q.y).abs() < 1e-4
                    && p.score == q.score
            })
    }

    #[test]
    fn normalise_centres_on_the_hips_in_torso_units() {
        let p = person((0.0, 0.0), 1.0);
        let n = normalise(&p).unwrap();
        let nose = &n[0];
        assert_eq!((nose.x, nose.y), (0.0, -1.5));
        assert_eq!((n[11].x, n[11].y), (0.1, 0.0));
        assert_eq!((n[5].x, n[5].y), (0.2, -1.0));
        assert_eq!((n[9].x, n[9].y), (0.6, -1.6));
        assert_eq!(n[9].score, p[9].score, "scores are kept");
        assert_eq!(features(&n).len(), 51);
        assert_eq!(features(&n)[..3], [0.0, -1.5, 0.0]);
    }

    #[test]
    fn normalise_ignores_position_and_scale() {
        let a = normalise(&person((0.0, 0.0), 1.0)).unwrap();
        let b = normalise(&person((-37.0, 412.5), 3.25)).unwrap();
        assert!(close(&a, &b), "{a:?}\n{b:?}");
    }

    #[test]
    fn a_zero_torso_gives_finite_features_and_wrong_keypoints_are_errors() {
        let mut p = person((0.0, 0.0), 1.0);
        for i in [5, 6] {
            p[i].y = 200.0;
            p[i].x = p[i + 6].x;
        }
        let n = normalise(&p).unwrap();
        assert!(features(&n).iter().all(|v| v.is_finite()), "{n:?}");
        // The nose, 150 px above the hips, is 150 / MIN_TORSO torso lengths away.
        assert_eq!(n[0].y, -150.0 / MIN_TORSO);
        p[3].x = f32::NAN;
        assert!(normalise(&p).unwrap_err().to_string().contains("left_ear"));
        assert!(normalise(&person((0.0, 0.0), 1.0)[..16]).is_err());
        let mut p = person((0.0, 0.0), 1.0);
        p.swap(1, 2);
        assert!(normalise(&p).is_err());
        assert!(mirror(&p).is_err());
    }

    #[test]
    fn twins_swap_left_and_right_names() {
        for (i, &twin) in TWINS.iter().enumerate() {
            let name = KEYPOINT_NAMES[i];
            let want = name
                .strip_prefix("left_")
                .map(|part| format!("right_{part}"))
                .or_else(|| {
                    name.strip_prefix("right_")
                        .map(|part| format!("left_{part}"))
                })
                .unwrap_or_else(|| name.to_string());
            assert_eq!(KEYPOINT_NAMES[twin], want);
        }
    }

    #[test]
    fn mirror_features_is_mirror_on_the_numbers() {
        let n = normalise(&person((3.0, -2.0), 0.7)).unwrap();
        let m = mirror(&n).unwrap();
        assert_eq!(mirror_features(&features(&n)).unwrap(), features(&m));
        assert!(mirror_features(&[0.0; 50]).is_err());
    }

    #[test]
    fn mirror_swaps_sides_and_negates_x() {
        let n = normalise(&person((0.0, 0.0), 1.0)).unwrap();
        let m = mirror(&n).unwrap();
        let names: Vec<&str> = m.iter().map(|k| k.name).collect();
        assert_eq!(names, KEYPOINT_NAMES);
        // The raised wrist was the left one on the image's right; now it is the right one on the
        // image's left, with its score.
        assert_eq!((m[10].x, m[10].y, m[10].score), (-0.6, -1.6, n[9].score));
        assert_eq!((m[9].x, m[9].y), (-n[10].x, n[10].y));
        assert_eq!((m[0].x, m[0].y), (0.0, -1.5));
        assert!(close(&mirror(&m).unwrap(), &n), "mirror is its own inverse");
    }

    #[test]
    fn mirror_matches_normalising_the_flipped_pose() {
        let p = person((0.0, 0.0), 1.0);
        // Flip the image (width 300) and relabel left/right as a pose model would see them.
        let flipped: Vec<Keypoint> = p
            .iter()
            .map(|k| Keypoint {
                x: 300.0 - k.x,
                ..k.clone()
            })
            .collect();
        let relabelled: Vec<Keypoint> = KEYPOINT_NAMES
            .iter()
            .enumerate()
            .map(|(i, &name)| {
                let twin = if i == 0 {
                    0
                } else if i % 2 == 1 {
                    i + 1
                } else {
                    i - 1
                };
                Keypoint {
                    name,
                    ..flipped[twin].clone()
                }
            })
            .collect();
        let want = normalise(&relabelled).unwrap();
        let got = mirror(&normalise(&p).unwrap()).unwrap();
        assert!(close(&got, &want), "{got:?}\n{want:?}");
    }
}
