//! Image examples: decode a PNG or JPEG, composite alpha on white, centre crop, resize (bilinear,
//! antialiased when shrinking) or letterbox, reorder channels and normalise, as an [`ImageSpec`]
//! says.

use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, Rgb32FImage};
use ndarray::{Array, Array3, ArrayD, Dimension, IxDyn};

use super::{ChannelOrder, ImageSpec, Layout};
use crate::{Error, Result};

/// Reads, decodes and preprocesses one image file into `[C, H, W]` or `[H, W, C]` (per
/// `spec.layout`), without the batch dimension.
pub fn load_image(path: &Path, spec: &ImageSpec) -> Result<Array3<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let image = decode_image(&bytes, path)?;
    preprocess(&image, spec)
}

/// Decodes PNG or JPEG bytes, recognised by their content (not the file name); `path` names the
/// example in errors.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let input_err = |msg: String| Error::Input {
        path: path.to_path_buf(),
        msg,
    };
    let format = sniff_format(bytes).map_err(input_err)?;
    let name = if format == ImageFormat::Png {
        "PNG"
    } else {
        "JPEG"
    };
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        return Err(input_err(
            "truncated JPEG (no end-of-image marker)".to_string(),
        ));
    }
    if format == ImageFormat::Jpeg && !jpeg_scan_has_data(bytes) {
        return Err(input_err(
            "JPEG without image data (its scan is empty or missing)".to_string(),
        ));
    }
    image::load_from_memory_with_format(bytes, format)
        .map_err(|e| input_err(format!("cannot decode this {name} image: {e}")))
}

/// PNG or JPEG from the leading bytes, or what the content looks like instead.
fn sniff_format(bytes: &[u8]) -> std::result::Result<ImageFormat, String> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF];
    if bytes.starts_with(PNG) {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(JPEG) {
        return Ok(ImageFormat::Jpeg);
    }
    let seen = if bytes.is_empty() {
        "the file is empty".to_string()
    } else if bytes.starts_with(b"GIF8") {
        "it is a GIF".to_string()
    } else if bytes.starts_with(b"BM") {
        "it is a BMP".to_string()
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "it is a WebP".to_string()
    } else if bytes
        .iter()
        .take(256)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        "it looks like text".to_string()
    } else {
        format!(
            "unknown content starting with {:02x?}",
            &bytes[..bytes.len().min(8)]
        )
    };
    Err(format!("not a PNG or JPEG image: {seen}"))
}

/// Whether the first scan of a JPEG (after its start-of-scan header) holds entropy-coded bytes
/// before the next marker: decoders otherwise make up an image from headers alone.
fn jpeg_scan_has_data(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    let Some(&[hi, lo]) = bytes.get(sos + 2..sos + 4) else {
        return false;
    };
    let start = sos + 2 + usize::from(u16::from_be_bytes([hi, lo]));
    let Some(scan) = bytes.get(start..) else {
        return false;
    };
    // The data ends at the first marker that is neither a stuffed 0xFF00 nor a restart marker.
    let end = scan
        .windows(2)
        .position(|w| w[0] == 0xFF && w[1] != 0x00 && !(0xD0..=0xD7).contains(&w[1]))
        .unwrap_or(scan.len());
    end > 0
}

/// Whether a JPEG ends with its end-of-image marker (a few trailing bytes allowed).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Checks that `spec` can be applied: positive sizes, non-zero std, crop fraction in (0, 1].
fn check_spec(spec: &ImageSpec) -> Result<()> {
    if spec.width == 0 || spec.height == 0 {
        return Err(Error::Invalid(format!(
            "image size {}x{} must be positive",
            spec.width, spec.height
        )));
    }
    if spec.std.iter().any(|s| *s == 0.0 || !s.is_finite())
        || spec.mean.iter().any(|m| !m.is_finite())
    {
        return Err(Error::Invalid(format!(
            "image normalisation mean {:?} / std {:?} must be finite with non-zero std",
            spec.mean, spec.std
        )));
    }
    if let Some(f) = spec.center_crop {
        if !(f > 0.0 && f <= 1.0) {
            return Err(Error::Invalid(format!(
                "centre crop fraction {f} must be in (0, 1]"
            )));
        }
        if spec.letterbox {
            return Err(Error::Invalid(
                "an image spec cannot both centre crop and letterbox".into(),
            ));
        }
    }
    Ok(())
}

/// Where a letterboxed image lies in the model's input: the whole image scaled (aspect ratio
/// kept) to `width` x `height` pixels at offset (`left`, `top`) of the `input_width` x
/// `input_height` input, the rest black.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Letterbox {
    pub input_width: u32,
    pub input_height: u32,
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub top: u32,
}

impl Letterbox {
    /// The largest centred fit of an `image_w` x `image_h` image in an `input_w` x `input_h`
    /// input (all sizes positive).
    pub fn fit(image_w: u32, image_h: u32, input_w: u32, input_h: u32) -> Letterbox {
        let scale = (f64::from(input_w) / f64::from(image_w.max(1)))
            .min(f64::from(input_h) / f64::from(image_h.max(1)));
        // Rounded sizes are clamped to 1..=the input's size, so the casts cannot overflow.
        let size = |d: u32, limit: u32| {
            (f64::from(d) * scale)
                .round()
                .clamp(1.0, f64::from(limit.max(1))) as u32
        };
        let (width, height) = (size(image_w, input_w), size(image_h, input_h));
        Letterbox {
            input_width: input_w,
            input_height: input_h,
            width,
            height,
            left: input_w.saturating_sub(width) / 2,
            top: input_h.saturating_sub(height) / 2,
        }
    }

    /// Maps a position in the input (`x`, `y` as fractions 0..1 of its width and height) back to
    /// pixels of the original `image_w` x `image_h` image, clamped to the image.
    pub fn to_image(&self, x: f32, y: f32, image_w: u32, image_h: u32) -> (f32, f32) {
        let axis = |v: f32, input: u32, offset: u32, scaled: u32, original: u32| {
            let input_px = f64::from(v) * f64::from(input) - f64::from(offset);
            let px = input_px * f64::from(original) / f64::from(scaled.max(1));
            px.clamp(0.0, f64::from(original)) as f32
        };
        (
            axis(x, self.input_width, self.left, self.width, image_w),
            axis(y, self.input_height, self.top, self.height, image_h),
        )
    }
}

/// The centre crop box `(x, y, width, height)`: the largest box with the target's aspect ratio
/// that fits the image, scaled by `fraction` (for a square target: `fraction` of the shorter side).
fn crop_box(width: u32, height: u32, spec: &ImageSpec, fraction: f32) -> (u32, u32, u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let aspect = f64::from(spec.width) / f64::from(spec.height);
    let (fit_w, fit_h) = if w / h > aspect {
        (h * aspect, h)
    } else {
        (w, w / aspect)
    };
    let f = f64::from(fraction);
    // Rounded sizes stay within 1..=the image's sizes, so the casts cannot overflow.
    let cw = (fit_w * f).round().clamp(1.0, w) as u32;
    let ch = (fit_h * f).round().clamp(1.0, h) as u32;
    ((width - cw) / 2, (height - ch) / 2, cw, ch)
}

/// Composites an image with alpha (or more than 8 bits) on white: RGB floats in 0..=1.
fn composite_on_white(image: &DynamicImage) -> Rgb32FImage {
    let rgba = image.to_rgba32f();
    let (w, h) = rgba.dimensions();
    Rgb32FImage::from_fn(w, h, |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = a.clamp(0.0, 1.0);
        Rgb([r, g, b].map(|c| c.clamp(0.0, 1.0) * a + (1.0 - a)))
    })
}

/// A rectangle of the source image, in pixels.
#[derive(Clone, Copy, Debug)]
struct Region {
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

/// The source pixels one output pixel reads along one axis, with their weights (summing to 1).
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Bilinear (triangle) filter taps from `input` to `output` samples, widened by the scale factor
/// when shrinking so that every source pixel counts (antialiasing, as PIL's bilinear resize).
fn taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            // Clamped to 0..=input, so the casts cannot overflow.
            let lo = (center - support).floor().clamp(0.0, input as f64) as usize;
            let hi = (center + support).ceil().clamp(0.0, input as f64) as usize;
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - center) / filter_scale).abs()).max(0.0))
                .collect();
            let sum: f64 = weights.iter().sum();
            if sum > 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
            }
            Taps {
                start: lo,
                weights: weights.into_iter().map(|w| w as f32).collect(),
            }
        })
        .collect()
}

/// Resamples `region` of an interleaved RGB image (`row_len` values a row) to
/// `out_w` x `out_h`: interleaved RGB floats, rows first, in the source's value scale.
fn resample<T: Copy + Into<f32>>(
    src: &[T],
    row_len: usize,
    region: Region,
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let across = taps(region.width, out_w);
    let down = taps(region.height, out_h);
    // Horizontal pass over the rows of the region, then vertical.
    let mut rows = vec![0.0f32; region.height * out_w * 3];
    for (y, row_out) in rows.chunks_exact_mut(out_w * 3).enumerate() {
        let row = &src[(region.y + y) * row_len..][..row_len];
        for (tap, px) in across.iter().zip(row_out.chunks_exact_mut(3)) {
            let first = (region.x + tap.start) * 3;
            for (k, &w) in tap.weights.iter().enumerate() {
                let p = &row[first + 3 * k..][..3];
                px[0] += w * p[0].into();
                px[1] += w * p[1].into();
                px[2] += w * p[2].into();
            }
        }
    }
    let mut out = vec![0.0f32; out_h * out_w * 3];
    for (tap, row_out) in down.iter().zip(out.chunks_exact_mut(out_w * 3)) {
        for (k, &w) in tap.weights.iter().enumerate() {
            let row = &rows[(tap.start + k) * out_w * 3..][..out_w * 3];
            for (o, &v) in row_out.iter_mut().zip(row) {
                *o += w * v;
            }
        }
    }
    out
}

/// Turns a decoded image into the model's tensor for one example: `[C, H, W]` or `[H, W, C]`.
pub fn preprocess(image: &DynamicImage, spec: &ImageSpec) -> Result<Array3<f32>> {
    check_spec(spec)?;
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!("the image is empty ({w}x{h})")));
    }
    let aspect_differs =
        u64::from(w) * u64::from(spec.height) != u64::from(h) * u64::from(spec.width);
    let placed = match spec.letterbox {
        true => Letterbox::fit(w, h, spec.width, spec.height),
        false => Letterbox {
            input_width: spec.width,
            input_height: spec.height,
            width: spec.width,
            height: spec.height,
            left: 0,
            top: 0,
        },
    };
    let (x, y, cw, ch) = match spec.center_crop {
        Some(f) if f < 1.0 || aspect_differs => crop_box(w, h, spec, f),
        _ => (0, 0, w, h),
    };
    let region = Region {
        x: x as usize,
        y: y as usize,
        width: cw as usize,
        height: ch as usize,
    };
    let (ow, oh) = (placed.width as usize, placed.height as usize);
    let row_len = w as usize * 3;
    // 8-bit images without alpha are read as they are; others are composited on white first.
    let (rgb, scale) = match image {
        DynamicImage::ImageRgb8(img) => (resample(img.as_raw(), row_len, region, ow, oh), 1.0),
        DynamicImage::ImageLuma8(_) => {
            let img = image.to_rgb8();
            (resample(img.as_raw(), row_len, region, ow, oh), 1.0)
        }
        _ => {
            let img = composite_on_white(image);
            (resample(img.as_raw(), row_len, region, ow, oh), 255.0)
        }
    };
    let order = match spec.channels {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    // Letterbox padding is black: pixel value 0, normalised.
    let black = |c: usize| (0.0 - spec.mean[c]) / spec.std[c];
    let (iw, ih) = (spec.width as usize, spec.height as usize);
    let mut out = match spec.layout {
        Layout::Nchw => Array3::from_shape_fn((3, ih, iw), |(c, _, _)| black(c)),
        Layout::Nhwc => Array3::from_shape_fn((ih, iw, 3), |(_, _, c)| black(c)),
    };
    let (left, top) = (placed.left as usize, placed.top as usize);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        let (yy, xx) = (top + i / ow, left + i % ow);
        for (c, &src) in order.iter().enumerate() {
            let v = (px[src] * scale - spec.mean[c]) / spec.std[c];
            match spec.layout {
                Layout::Nchw => out[[c, yy, xx]] = v,
                Layout::Nhwc => out[[yy, xx, c]] = v,
            }
        }
    }
    Ok(out)
}

/// Stacks examples of one shape into a batch `[N, ...]`.
pub fn stack_batch<D: Dimension>(examples: &[Array<f32, D>]) -> Result<ArrayD<f32>> {
    let first = examples
        .first()
        .ok_or_else(|| Error::Invalid("cannot make a batch of no examples".into()))?;
    let shape = first.shape();
    let mut data = Vec::with_capacity(examples.len().saturating_mul(first.len()));
    for (i, e) in examples.iter().enumerate() {
        if e.shape() != shape {
            return Err(Error::Invalid(format!(
                "example {i} has shape {:?}, example 0 has {shape:?}",
                e.shape()
            )));
        }
        data.extend(e.iter().copied());
    }
    let mut batch_shape = vec![examples.len()];
    batch_shape.extend_from_slice(shape);
    ArrayD::from_shape_vec(IxDyn(&batch_shape), data).map_err(|e| Error::Invalid(e.to_string()))
}
