//! Image examples: decode a PNG or JPEG, composite alpha on white, centre crop, resize (bilinear),
//! reorder channels and normalise, as an [`ImageSpec`] says.

use std::borrow::Cow;
use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, Rgb, Rgb32FImage, RgbImage};
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
    }
    Ok(())
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

/// The image as RGB, resized to the spec, with values in 0..=255, as a closure over pixels.
enum Resized {
    /// 8-bit images without alpha: resized in 8 bits (no float copy of a large photo).
    Rgb8(RgbImage),
    /// Everything else (alpha, 16-bit, float): composited on white in floats, 0..=1.
    RgbF(Rgb32FImage),
}

impl Resized {
    fn pixel(&self, x: u32, y: u32) -> [f32; 3] {
        match self {
            Resized::Rgb8(img) => img.get_pixel(x, y).0.map(f32::from),
            Resized::RgbF(img) => img.get_pixel(x, y).0.map(|v| v * 255.0),
        }
    }
}

/// Composites an RGBA image (0..=1) on white, giving RGB.
fn composite_on_white(image: &DynamicImage) -> Rgb32FImage {
    let rgba = image.to_rgba32f();
    let (w, h) = rgba.dimensions();
    Rgb32FImage::from_fn(w, h, |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = a.clamp(0.0, 1.0);
        Rgb([r, g, b].map(|c| c.clamp(0.0, 1.0) * a + (1.0 - a)))
    })
}

/// Turns a decoded image into the model's tensor for one example: `[C, H, W]` or `[H, W, C]`.
pub fn preprocess(image: &DynamicImage, spec: &ImageSpec) -> Result<Array3<f32>> {
    check_spec(spec)?;
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!("the image is empty ({w}x{h})")));
    }
    let cropped = match spec.center_crop {
        Some(f)
            if f < 1.0
                || u64::from(w) * u64::from(spec.height)
                    != u64::from(h) * u64::from(spec.width) =>
        {
            let (x, y, cw, ch) = crop_box(w, h, spec, f);
            Cow::Owned(image.crop_imm(x, y, cw, ch))
        }
        _ => Cow::Borrowed(image),
    };
    let (tw, th) = (spec.width, spec.height);
    let resized = match cropped.as_ref() {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageLuma8(_) => {
            let rgb = cropped.to_rgb8();
            Resized::Rgb8(if rgb.dimensions() == (tw, th) {
                rgb
            } else {
                imageops::resize(&rgb, tw, th, FilterType::Triangle)
            })
        }
        other => {
            let rgb = composite_on_white(other);
            Resized::RgbF(if rgb.dimensions() == (tw, th) {
                rgb
            } else {
                imageops::resize(&rgb, tw, th, FilterType::Triangle)
            })
        }
    };
    let order = match spec.channels {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let (hh, ww) = (th as usize, tw as usize);
    let mut out = match spec.layout {
        Layout::Nchw => Array3::zeros((3, hh, ww)),
        Layout::Nhwc => Array3::zeros((hh, ww, 3)),
    };
    for y in 0..th {
        for x in 0..tw {
            let rgb = resized.pixel(x, y);
            for (c, &src) in order.iter().enumerate() {
                let v = (rgb[src] - spec.mean[c]) / spec.std[c];
                let (yu, xu) = (y as usize, x as usize);
                match spec.layout {
                    Layout::Nchw => out[[c, yu, xu]] = v,
                    Layout::Nhwc => out[[yu, xu, c]] = v,
                }
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
