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
//!   `movenet-lightning`'s does) makes [`crate::base::BaseModel::open`] append the same normalisation as ONNX
//!   nodes after the keypoint tensor, in memory ([`crate::base::pose_features::feature_model`]); the base's embedding is then
//!   the [`FEATURES_TENSOR`] `[N, 51]`, so `graft train --base movenet-lightning`, KNN, predict
//!   and `graft export` (image in, probabilities out) work as for images. The ONNX graph
//!   normalises the keypoints in the model's input square (0..1), [`detect`] + [`normalise`] in
//!   image pixels: the same numbers, since the normalisation ignores position and scale (up to
//!   the rounding of the letterboxed size, and keypoints that [`detect`] clamps to the image).
//!   [`keypoint_model`] opens such a base cut at its keypoints instead, for [`detect`].
//!
//! Test data without labelled pose photos (cargo feature `synthetic`): `stick` generates
//! keypoints of a stick figure in known poses, `turned` makes photos of people turned by known
//! angles.
//!
//! Modules: `keypoints` (the models' keypoint layouts, [`keypoint_model`], [`detect`]), `features`
//! ([`normalise`], [`features`], [`mirror`]), `draw` (the skeleton drawn on the image).

mod draw;
mod features;
mod keypoints;
#[cfg(feature = "synthetic")]
pub mod stick;
#[cfg(feature = "synthetic")]
pub mod turned;

pub use crate::base::pose_features::{FEATURES_TENSOR, FEATURE_DIM, KEYPOINT_NAMES, MIN_TORSO};
pub use draw::{draw, save_drawing, BLAZEPOSE_SKELETON, SKELETON};
pub use features::{features, mirror, mirror_features, normalise, with_mirrored, TWINS};
pub use keypoints::{detect, detect_file, keypoint_model, Detected, Keypoint};
pub use keypoints::{BLAZEPOSE_NAMES, LOW_SCORE};

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
