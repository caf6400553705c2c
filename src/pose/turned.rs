//! A labelled photo set made from real photos of people by geometric transforms that the
//! keypoints must reveal: each example is a random crop of a source photo, padded with a random
//! grey on each side, scaled to a random size, then turned by its class's angle. Seeded.
//!
//! Classes ([`CLASSES`], sorted as class folders are): `rotated_left` (turned 90° anticlockwise:
//! the head points left), `rotated_right` (90° clockwise: the head points right), `upright`,
//! `upside_down` (180°). A mirror turns `rotated_left` into `rotated_right`: no mirror
//! augmentation on the full set.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// The classes, in the order of their labels.
pub const CLASSES: [&str; 4] = ["rotated_left", "rotated_right", "upright", "upside_down"];

/// Least fraction of a source photo's width and height a crop keeps.
pub const MIN_CROP: f32 = 0.75;
/// Most padding added on each side, as a fraction of the crop's size.
pub const MAX_PADDING: f32 = 0.3;
/// Range of the longer side of an example, in pixels.
pub const SIZES: (u32, u32) = (96, 480);

/// One example of class `class` (an index into [`CLASSES`]) made from `source` (see the module
/// docs).
pub fn example(source: &DynamicImage, class: usize, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
    let (w, h) = (source.width(), source.height());
    if w < 4 || h < 4 {
        return Err(Error::Invalid(format!(
            "a source photo of {w}x{h} is too small to crop"
        )));
    }
    let name = CLASSES
        .get(class)
        .ok_or_else(|| Error::Invalid(format!("no class {class}; classes: {CLASSES:?}")))?;
    // Crop sizes are within 1..=the photo's, so the casts cannot overflow.
    let keep = |d: u32, rng: &mut ChaCha8Rng| {
        (d as f32 * rng.random_range(MIN_CROP..=1.0))
            .round()
            .clamp(1.0, d as f32) as u32
    };
    let (cw, ch) = (keep(w, rng), keep(h, rng));
    let (cx, cy) = (rng.random_range(0..=w - cw), rng.random_range(0..=h - ch));
    let crop = source.crop_imm(cx, cy, cw, ch).to_rgb8();
    let pad =
        |d: u32, rng: &mut ChaCha8Rng| (d as f32 * rng.random_range(0.0..=MAX_PADDING)) as u32;
    let (left, right, top, bottom) = (pad(cw, rng), pad(cw, rng), pad(ch, rng), pad(ch, rng));
    let grey = rng.random_range(0..=255u8);
    let mut canvas = RgbImage::from_pixel(cw + left + right, ch + top + bottom, Rgb([grey; 3]));
    image::imageops::replace(&mut canvas, &crop, i64::from(left), i64::from(top));
    let longer = rng.random_range(SIZES.0..=SIZES.1);
    let scale = longer as f32 / canvas.width().max(canvas.height()) as f32;
    let size = |d: u32| ((d as f32 * scale).round() as u32).max(1);
    let scaled = DynamicImage::ImageRgb8(canvas).resize_exact(
        size(cw + left + right),
        size(ch + top + bottom),
        FilterType::Triangle,
    );
    Ok(match *name {
        "rotated_left" => scaled.rotate270(),
        "rotated_right" => scaled.rotate90(),
        "upside_down" => scaled.rotate180(),
        _ => scaled,
    })
}

/// Writes `per_class` examples of every class (seeded), made from `sources` in turn, as PNG files
/// `out/<class>/<i>.png`: a folder `graft train` reads. Returns the number of files.
pub fn write_set(
    sources: &[DynamicImage],
    out: &Path,
    per_class: usize,
    seed: u64,
) -> Result<usize> {
    if sources.is_empty() {
        return Err(Error::Invalid("no source photos".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut written = 0;
    for (class, name) in CLASSES.iter().enumerate() {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for i in 0..per_class {
            let image = example(&sources[i % sources.len()], class, &mut rng)?;
            let mut bytes = std::io::Cursor::new(Vec::new());
            image
                .write_to(&mut bytes, ImageFormat::Png)
                .map_err(|e| Error::Invalid(format!("encoding a PNG: {e}")))?;
            crate::atomic::write_atomic(&dir.join(format!("{i:04}.png")), bytes.get_ref())?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_turned_and_sized_as_their_class_says() {
        // A tall photo whose green channel grows downwards.
        let source = DynamicImage::ImageRgb8(RgbImage::from_fn(60, 100, |x, y| {
            Rgb([x as u8, y as u8, 0])
        }));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (class, name) in CLASSES.iter().enumerate() {
            for _ in 0..5 {
                let e = example(&source, class, &mut rng).unwrap().to_rgb8();
                let (w, h) = e.dimensions();
                assert!((SIZES.0..=SIZES.1).contains(&w.max(h)), "{w}x{h}");
                // Padding may change the aspect ratio, but not by 60/100 -> 100/60.
                let aspect = w as f32 / h as f32;
                match name.starts_with("rotated") {
                    true => assert!(aspect > 0.75, "{name} {aspect}"),
                    false => assert!(aspect < 1.3, "{name} {aspect}"),
                }
                // Green grows down the source: which way does it grow here? Pixels 5 % off the
                // centre are inside the photo whatever the crop and padding.
                let green = |dx: f32, dy: f32| {
                    let x = (w as f32 * (0.5 + dx)) as u32;
                    let y = (h as f32 * (0.5 + dy)) as u32;
                    i32::from(e.get_pixel(x, y).0[1])
                };
                let (down, right) = (
                    green(0.0, 0.05) - green(0.0, -0.05),
                    green(0.05, 0.0) - green(-0.05, 0.0),
                );
                let ok = match *name {
                    "upright" => down > 0,
                    "upside_down" => down < 0,
                    // Turned anticlockwise, the source's top is on the left.
                    "rotated_left" => right > 0,
                    _ => right < 0,
                };
                assert!(ok, "{name}: down {down}, right {right}");
            }
        }
        assert!(example(&source, 4, &mut rng).is_err());
        let tiny = DynamicImage::ImageRgb8(RgbImage::new(2, 2));
        assert!(example(&tiny, 0, &mut rng).is_err());
    }

    #[test]
    fn write_set_writes_class_folders() {
        let dir = tempfile::tempdir().unwrap();
        let source = DynamicImage::ImageRgb8(RgbImage::new(40, 50));
        assert_eq!(write_set(&[source], dir.path(), 2, 1).unwrap(), 8);
        for class in CLASSES {
            assert!(dir.path().join(class).join("0001.png").is_file());
        }
        assert!(write_set(&[], dir.path(), 2, 1).is_err());
    }
}
