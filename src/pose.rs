//! Human pose keypoints from a single-person pose model (MoveNet): the 17 COCO keypoints of one
//! person, in pixels of the original image, and a skeleton drawing.
//!
//! Any image size and aspect ratio is accepted: the image is letterboxed into the model's square
//! input (scaled to fit keeping its aspect ratio with the existing resizer, centred, padded with
//! black), and the keypoints are mapped back through the same transform.
//!
//! **Pose features** ([`normalise`]): to describe a pose independently of where the person stands
//! and how large they appear, each keypoint's (x, y) becomes its offset from the hip midpoint
//! (the mean of `left_hip` and `right_hip`) divided by the torso length (the distance between
//! the shoulder midpoint and the hip midpoint); the scores are kept as they are, as confidences.
//! y still points down, so a standing person's nose lies near (0, -1.5). [`mirror`] turns such a
//! pose into that of the horizontally flipped image: x negated and left/right keypoints swapped.

use image::{DynamicImage, Rgb, RgbImage};
use ndarray::{s, Array3, Axis};
use serde::Serialize;

use crate::base::BaseModel;
use crate::input::image::preprocess;
use crate::input::{ImageSpec, Layout};
use crate::{Error, Result};

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

/// Where the image lies in the model's square input: scaled to `width` x `height` pixels at
/// offset (`left`, `top`) of an `input_size`-pixel square.
#[derive(Clone, Copy, Debug)]
struct Letterbox {
    input_size: u32,
    width: u32,
    height: u32,
    left: u32,
    top: u32,
}

impl Letterbox {
    /// The largest centred fit of `image_w` x `image_h` in a square of `input_size`.
    fn fit(image_w: u32, image_h: u32, input_size: u32) -> Letterbox {
        let scale = f64::from(input_size) / f64::from(image_w.max(image_h));
        // Rounded sizes are clamped to 1..=input_size, so the casts cannot overflow.
        let size = |d: u32| {
            (f64::from(d) * scale)
                .round()
                .clamp(1.0, f64::from(input_size)) as u32
        };
        let (width, height) = (size(image_w), size(image_h));
        Letterbox {
            input_size,
            width,
            height,
            left: (input_size - width) / 2,
            top: (input_size - height) / 2,
        }
    }

    /// Maps a model position (`x`, `y` in 0..1 of the square input) back to pixels of the
    /// original `image_w` x `image_h` image, clamped to the image.
    fn image_position(&self, x: f32, y: f32, image_w: u32, image_h: u32) -> (f32, f32) {
        let axis = |v: f32, offset: u32, scaled: u32, original: u32| {
            let input_px = f64::from(v) * f64::from(self.input_size) - f64::from(offset);
            let px = input_px * f64::from(original) / f64::from(scaled);
            px.clamp(0.0, f64::from(original)) as f32
        };
        (
            axis(x, self.left, self.width, image_w),
            axis(y, self.top, self.height, image_h),
        )
    }
}

/// Finds the 17 keypoints of the person in `image` with a pose base such as `movenet-lightning`
/// (output `[1, 1, 17, 3]` = (y, x, score), y and x in 0..1 of its square input). Low-score
/// keypoints are returned too; see [`Keypoint::is_confident`].
pub fn detect(base: &BaseModel, image: &DynamicImage) -> Result<Vec<Keypoint>> {
    let spec = base.image_spec()?;
    if spec.width != spec.height {
        return Err(Error::Invalid(format!(
            "base {} takes {}x{} images; pose models take a square input",
            base.name(),
            spec.width,
            spec.height
        )));
    }
    if base.embedding_dim() != KEYPOINT_NAMES.len() * 3 {
        return Err(Error::Invalid(format!(
            "base {} gives {} numbers; a pose model gives 17 keypoints x (y, x, score) = 51",
            base.name(),
            base.embedding_dim()
        )));
    }
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!("the image is empty ({w}x{h})")));
    }
    let fit = Letterbox::fit(w, h, spec.width);
    let input = letterbox_input(image, spec, &fit)?;
    let output = base.embed(input.insert_axis(Axis(0)).into_dyn().view())?;
    let keypoints = KEYPOINT_NAMES
        .iter()
        .zip(output.row(0).as_slice().unwrap_or(&[]).chunks_exact(3))
        .map(|(&name, yxs)| {
            let (x, y) = fit.image_position(yxs[1], yxs[0], w, h);
            Keypoint {
                name,
                x,
                y,
                score: yxs[2],
            }
        })
        .collect::<Vec<_>>();
    if keypoints.len() != KEYPOINT_NAMES.len() {
        return Err(Error::Inference(format!(
            "base {} gave a non-contiguous output",
            base.name()
        )));
    }
    Ok(keypoints)
}

/// The model input for `image` letterboxed as `fit` says: the scaled image (resized and
/// normalised by [`preprocess`]) in a square of normalised black.
fn letterbox_input(image: &DynamicImage, spec: &ImageSpec, fit: &Letterbox) -> Result<Array3<f32>> {
    let scaled_spec = ImageSpec {
        width: fit.width,
        height: fit.height,
        center_crop: None,
        ..spec.clone()
    };
    let scaled = preprocess(image, &scaled_spec)?;
    let n = fit.input_size as usize;
    let (top, left) = (fit.top as usize, fit.left as usize);
    let (sh, sw) = (fit.height as usize, fit.width as usize);
    let black = |c: usize| (0.0 - spec.mean[c]) / spec.std[c];
    let mut out = match spec.layout {
        Layout::Nhwc => Array3::from_shape_fn((n, n, 3), |(_, _, c)| black(c)),
        Layout::Nchw => Array3::from_shape_fn((3, n, n), |(c, _, _)| black(c)),
    };
    match spec.layout {
        Layout::Nhwc => out
            .slice_mut(s![top..top + sh, left..left + sw, ..])
            .assign(&scaled),
        Layout::Nchw => out
            .slice_mut(s![.., top..top + sh, left..left + sw])
            .assign(&scaled),
    }
    Ok(out)
}

/// Draws the skeleton on a copy of `image`: a line for each bone whose two ends are confident and
/// a dot on each confident keypoint (left side orange, right side cyan, face white).
pub fn draw(image: &DynamicImage, keypoints: &[Keypoint]) -> RgbImage {
    let mut canvas = image.to_rgb8();
    let thickness = (canvas.width().min(canvas.height()) as f32 / 150.0).max(1.5);
    for &(a, b) in &SKELETON {
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
/// units of the torso length, scores unchanged. An error if the keypoints are not the 17 COCO
/// keypoints in order or the torso length is zero or not finite.
pub fn normalise(keypoints: &[Keypoint]) -> Result<Vec<Keypoint>> {
    check_order(keypoints)?;
    const LEFT_SHOULDER: usize = 5;
    const LEFT_HIP: usize = 11;
    let (sx, sy) = midpoint(keypoints, LEFT_SHOULDER, LEFT_SHOULDER + 1);
    let (hx, hy) = midpoint(keypoints, LEFT_HIP, LEFT_HIP + 1);
    let torso = (sx - hx).hypot(sy - hy);
    if !(torso.is_finite() && torso > f32::EPSILON) {
        return Err(Error::Invalid(format!(
            "cannot normalise a pose whose torso length is {torso} (shoulder midpoint \
             ({sx}, {sy}), hip midpoint ({hx}, {hy}))"
        )));
    }
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
/// swapped with its `right_*` twin (names stay in COCO order). Its own inverse.
pub fn mirror(normalised: &[Keypoint]) -> Result<Vec<Keypoint>> {
    check_order(normalised)?;
    Ok(KEYPOINT_NAMES
        .iter()
        .zip(normalised)
        .map(|(&name, k)| {
            let twin_name = match (name.strip_prefix("left_"), name.strip_prefix("right_")) {
                (Some(part), _) => format!("right_{part}"),
                (_, Some(part)) => format!("left_{part}"),
                _ => name.to_string(),
            };
            let twin = normalised.iter().find(|t| t.name == twin_name).unwrap_or(k);
            Keypoint {
                name,
                x: -twin.x,
                y: twin.y,
                score: twin.score,
            }
        })
        .collect())
}

/// A pose as 51 numbers (x, y, score per keypoint, COCO order), e.g. to train a head on
/// [`normalise`]d poses.
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
    fn normalise_rejects_a_zero_torso_and_wrong_keypoints() {
        let mut p = person((0.0, 0.0), 1.0);
        for i in [5, 6] {
            p[i].y = 200.0;
            p[i].x = p[i + 6].x;
        }
        assert!(normalise(&p).unwrap_err().to_string().contains("torso"));
        assert!(normalise(&person((0.0, 0.0), 1.0)[..16]).is_err());
        let mut p = person((0.0, 0.0), 1.0);
        p.swap(1, 2);
        assert!(normalise(&p).is_err());
        assert!(mirror(&p).is_err());
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
