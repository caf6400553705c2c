//! Image examples: decode a PNG or JPEG, composite alpha on white, centre crop, resize (bilinear,
//! antialiased when shrinking) or letterbox, reorder channels and normalise, as an [`ImageSpec`]
//! says.

use std::io::Cursor;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Pixel};
use ndarray::{Array, Array3, ArrayD, Dimension, IxDyn};

use super::{ChannelOrder, ImageSpec, Layout};
use crate::{Error, Result};

/// Reads, decodes and preprocesses one image file into `[C, H, W]` or `[H, W, C]` (per
/// `spec.layout`), without the batch dimension.
pub fn load_image(path: &Path, spec: &ImageSpec) -> Result<Array3<f32>> {
    let bytes = crate::limits::read(path, crate::limits::FileKind::Image)?;
    image_tensor(&bytes, path, spec)
}

/// Decodes PNG or JPEG bytes and preprocesses them into one example's tensor, as
/// [`load_image`] does for a file. Threads doing this at once share one working set: an image
/// whose decoded pixels would take the bytes in flight past
/// [`crate::limits::Limits::images_in_flight_bytes`] waits until the others are done, so that
/// many large photos embedded in parallel never hold more than one budget of pixels.
pub fn image_tensor(bytes: &[u8], path: &Path, spec: &ImageSpec) -> Result<Array3<f32>> {
    let (image, _share) = decode_within_budget(bytes, path)?;
    preprocess(&image, spec)
}

/// Decoded pixels held by images being decoded and preprocessed right now, across threads.
static IN_FLIGHT: Mutex<u64> = Mutex::new(0);
/// Signalled when an image's pixels are released.
static RELEASED: Condvar = Condvar::new();

/// A share of the in-flight pixel budget, given back when dropped.
struct Share(u64);

impl Share {
    /// Waits until `bytes` fit in the budget beside the images in flight (an image alone always
    /// fits: its size was checked against the decoded-size limit).
    fn take(bytes: u64) -> Share {
        let budget = crate::limits::get().images_in_flight_bytes;
        let mut used = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && used.saturating_add(bytes) > budget {
            used = RELEASED.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Share(bytes)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut used = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.0);
        RELEASED.notify_all();
    }
}

/// Decodes PNG or JPEG bytes, recognised by their content (not the file name); `path` names the
/// example in errors.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    decode_within_budget(bytes, path).map(|(image, _)| image)
}

/// [`decode_image`], with the image's share of the in-flight budget, taken before decoding.
fn decode_within_budget(bytes: &[u8], path: &Path) -> Result<(DynamicImage, Share)> {
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
    if format == ImageFormat::Jpeg {
        let jpeg_err = |e: String| input_err(format!("cannot decode this JPEG image: {e}"));
        if let Some(jpeg) = super::jpeg::open(bytes).map_err(jpeg_err)? {
            let (w, h) = jpeg.dimensions();
            let share = within_limits(name, w, h, jpeg.decoded_bytes(), jpeg.colour())
                .map_err(input_err)?;
            let image = jpeg.decode().map_err(jpeg_err)?;
            return Ok((image, share));
        }
        // CMYK and YCCK JPEGs go through the `image` crate's decoder, which converts them.
    }
    let decode_err =
        |e: image::ImageError| input_err(format!("cannot decode this {name} image: {e}"));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(
        crate::limits::get()
            .image_decoded_bytes
            .saturating_add(DECODER_SLACK),
    );
    reader.limits(decoder_limits);
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    let colour = format!("{:?}", decoder.color_type());
    let share = within_limits(name, w, h, decoder.total_bytes(), &colour).map_err(input_err)?;
    let image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    Ok((image, share))
}

/// Checks a header's size against the pixel and decoded-size limits, then takes the decoded
/// bytes' share of the in-flight budget.
fn within_limits(
    name: &str,
    w: u32,
    h: u32,
    decoded: u64,
    colour: &str,
) -> std::result::Result<Share, String> {
    let limits = crate::limits::get();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.image_pixels {
        return Err(format!(
            "the {name} header claims {w}x{h} = {pixels} pixels, more than the limit of {} pixels \
             (a decompression bomb, or a photo larger than graft decodes)",
            limits.image_pixels
        ));
    }
    if decoded > limits.image_decoded_bytes {
        return Err(format!(
            "the {name} header claims {w}x{h} pixels of {colour}, {decoded} bytes decoded, more \
             than the limit of {} bytes",
            limits.image_decoded_bytes
        ));
    }
    Ok(Share::take(decoded))
}

/// What a decoder may allocate beyond the decoded pixels (its own tables and buffers).
const DECODER_SLACK: u64 = 64 << 20;

/// PNG or JPEG from the leading bytes, or what the content looks like instead.
fn sniff_format(bytes: &[u8]) -> std::result::Result<ImageFormat, String> {
    match super::FileFormat::sniff(bytes) {
        Some(super::FileFormat::Png) => return Ok(ImageFormat::Png),
        Some(super::FileFormat::Jpeg) => return Ok(ImageFormat::Jpeg),
        Some(super::FileFormat::Wav | super::FileFormat::Npy) | None => {}
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

/// Writes pixels `x0..x0 + out.len() / 3` of row `y` of `image` into `out` as RGB floats
/// composited on white, in 0..=1; `norm` maps a channel value to 0..=1.
fn composite_row<P: Pixel>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    y: u32,
    x0: u32,
    out: &mut [f32],
    norm: fn(P::Subpixel) -> f32,
) {
    for (x, px) in (x0..).zip(out.chunks_exact_mut(3)) {
        let [r, g, b, a] = image.get_pixel(x, y).to_rgba().0.map(norm);
        let a = a.clamp(0.0, 1.0);
        for (o, c) in px.iter_mut().zip([r, g, b]) {
            *o = c.clamp(0.0, 1.0) * a + (1.0 - a);
        }
    }
}

/// Reads one row of an image as interleaved RGB floats, one row at a time, so that no
/// full-size converted copy of a large image is ever made: 8-bit RGB and grey as they are
/// (0..=255), anything else (alpha, 16-bit, float) composited on white in 0..=1.
struct Rows<'a> {
    image: &'a DynamicImage,
}

impl Rows<'_> {
    /// The factor that brings this image's row values to the 0..=255 scale.
    fn scale(&self) -> f32 {
        match self.image {
            DynamicImage::ImageRgb8(_) | DynamicImage::ImageLuma8(_) => 1.0,
            _ => 255.0,
        }
    }

    /// Pixels `x0..x0 + out.len() / 3` of row `y`.
    fn read(&self, y: u32, x0: u32, out: &mut [f32]) {
        let u8n = |v: u8| f32::from(v) / 255.0;
        let u16n = |v: u16| f32::from(v) / 65535.0;
        let f32n = |v: f32| v;
        match self.image {
            DynamicImage::ImageRgb8(img) => {
                for (x, px) in (x0..).zip(out.chunks_exact_mut(3)) {
                    let p = img.get_pixel(x, y).0;
                    px.copy_from_slice(&p.map(f32::from));
                }
            }
            DynamicImage::ImageLuma8(img) => {
                for (x, px) in (x0..).zip(out.chunks_exact_mut(3)) {
                    px.fill(f32::from(img.get_pixel(x, y).0[0]));
                }
            }
            DynamicImage::ImageLumaA8(img) => composite_row(img, y, x0, out, u8n),
            DynamicImage::ImageRgba8(img) => composite_row(img, y, x0, out, u8n),
            DynamicImage::ImageLuma16(img) => composite_row(img, y, x0, out, u16n),
            DynamicImage::ImageLumaA16(img) => composite_row(img, y, x0, out, u16n),
            DynamicImage::ImageRgb16(img) => composite_row(img, y, x0, out, u16n),
            DynamicImage::ImageRgba16(img) => composite_row(img, y, x0, out, u16n),
            DynamicImage::ImageRgb32F(img) => composite_row(img, y, x0, out, f32n),
            DynamicImage::ImageRgba32F(img) => composite_row(img, y, x0, out, f32n),
            other => {
                for (x, px) in (x0..).zip(out.chunks_exact_mut(3)) {
                    let [r, g, b, a] = image::GenericImageView::get_pixel(other, x, y).0.map(u8n);
                    for (o, c) in px.iter_mut().zip([r, g, b]) {
                        *o = c * a + (1.0 - a);
                    }
                }
            }
        }
    }
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

/// Resamples `region` of an image, read a row at a time from `rows`, to `out_w` x `out_h`:
/// interleaved RGB floats, rows first, in the rows' value scale. Only one source row is held
/// converted at a time.
fn resample(rows: &Rows<'_>, region: Region, out_w: usize, out_h: usize) -> Vec<f32> {
    let across = taps(region.width, out_w);
    let down = taps(region.height, out_h);
    // Horizontal pass over the rows of the region, then vertical.
    let mut source = vec![0.0f32; region.width * 3];
    let mut narrowed = vec![0.0f32; region.height * out_w * 3];
    for (y, row_out) in narrowed.chunks_exact_mut(out_w * 3).enumerate() {
        // Region coordinates lie within the image (u32 sizes), so the casts cannot truncate.
        rows.read((region.y + y) as u32, region.x as u32, &mut source);
        for (tap, px) in across.iter().zip(row_out.chunks_exact_mut(3)) {
            let first = tap.start * 3;
            for (k, &w) in tap.weights.iter().enumerate() {
                let p = &source[first + 3 * k..][..3];
                px[0] += w * p[0];
                px[1] += w * p[1];
                px[2] += w * p[2];
            }
        }
    }
    let mut out = vec![0.0f32; out_h * out_w * 3];
    for (tap, row_out) in down.iter().zip(out.chunks_exact_mut(out_w * 3)) {
        for (k, &w) in tap.weights.iter().enumerate() {
            let row = &narrowed[(tap.start + k) * out_w * 3..][..out_w * 3];
            for (o, &v) in row_out.iter_mut().zip(row) {
                *o += w * v;
            }
        }
    }
    out
}

/// Turns a decoded image into the model's tensor for one example: `[C, H, W]` or `[H, W, C]`.
pub fn preprocess(image: &DynamicImage, spec: &ImageSpec) -> Result<Array3<f32>> {
    spec.check().map_err(Error::Invalid)?;
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
    let rows = Rows { image };
    let (rgb, scale) = (resample(&rows, region, ow, oh), rows.scale());
    // The source channel of each tensor channel (grey sums all three).
    let order: &[usize] = match spec.channels {
        ChannelOrder::Rgb => &[0, 1, 2],
        ChannelOrder::Bgr => &[2, 1, 0],
        ChannelOrder::Gray => &[],
    };
    let channels = spec.channels.count();
    // Letterbox padding is black: pixel value 0, normalised.
    let black = |c: usize| (0.0 - spec.mean[c]) / spec.std[c];
    let (iw, ih) = (spec.width as usize, spec.height as usize);
    let mut out = match spec.layout {
        Layout::Nchw => Array3::from_shape_fn((channels, ih, iw), |(c, _, _)| black(c)),
        Layout::Nhwc => Array3::from_shape_fn((ih, iw, channels), |(_, _, c)| black(c)),
    };
    let (left, top) = (placed.left as usize, placed.top as usize);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        let (yy, xx) = (top + i / ow, left + i % ow);
        for c in 0..channels {
            let value = match order.get(c) {
                Some(&src) => px[src],
                // A grey pixel keeps its value exactly.
                None if px[0] == px[1] && px[1] == px[2] => px[0],
                None => super::LUMA.iter().zip(px).map(|(w, p)| w * p).sum(),
            };
            let v = (value * scale - spec.mean[c]) / spec.std[c];
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
