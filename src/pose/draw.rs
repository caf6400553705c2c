//! The skeleton drawn on the image.

use image::{DynamicImage, Rgb, RgbImage};

use super::{Keypoint, BLAZEPOSE_NAMES};

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

/// Writes `image` with `keypoints` drawn on it to `out` as a PNG (atomically).
pub fn save_drawing(
    image: &DynamicImage,
    keypoints: &[Keypoint],
    out: &std::path::Path,
) -> crate::Result<()> {
    let mut png = std::io::Cursor::new(Vec::new());
    draw(image, keypoints)
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| crate::Error::Invalid(format!("encoding {}: {e}", out.display())))?;
    crate::atomic::write_atomic(out, png.get_ref())
}
