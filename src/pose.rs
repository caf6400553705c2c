//! Human pose keypoints from a single-person pose model (MoveNet): the 17 COCO keypoints of one
//! person, in pixels of the original image, and a skeleton drawing.
//!
//! Any image size and aspect ratio is accepted: the image is letterboxed into the model's square
//! input (scaled to fit keeping its aspect ratio with the existing resizer, centred, padded with
//! black), and the keypoints are mapped back through the same transform.

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
