//! JPEG pixels as libjpeg-turbo decodes them: its accurate integer IDCT, its "fancy" (triangle)
//! chroma upsampling and its YCbCr -> RGB tables, through the `mozjpeg` crate's build of that
//! decoder (compiled from C by `cc`; no SIMD assembler is needed, and the SIMD and C paths of
//! libjpeg-turbo give the same bytes).
//!
//! Why this decoder: the pixels an app hands a recognizer come from libjpeg-turbo almost
//! everywhere (PIL/Pillow, OpenCV, `tf.io.decode_jpeg`, TF.js in Chromium and Firefox). Other
//! decoders differ from it by a few levels per pixel (the `image` crate's `zune-jpeg` by up to 7
//! on re-encoded photos), which moved a recognizer's probabilities by up to 0.035 against the same
//! file decoded by PIL. Decoding as libjpeg-turbo does makes graft's answers the answers an export
//! gives on an app's pixels.
//!
//! libjpeg reports a fatal error by unwinding out of the C code (the `mozjpeg` crate's error
//! manager); every call here runs under `catch_unwind` and such an error comes back as `Err`.
//! CMYK and YCCK JPEGs (rare; libjpeg does not convert them to RGB) are left to the caller.

use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, DctMethod, Decompress};

/// A JPEG whose header has been read.
pub(super) struct Jpeg<'a> {
    decompress: Decompress<&'a [u8]>,
    gray: bool,
    progressive: bool,
}

/// Reads the header of `bytes`: `Ok(None)` for a CMYK or YCCK JPEG.
pub(super) fn open(bytes: &[u8]) -> Result<Option<Jpeg<'_>>, String> {
    guarded(|| {
        let decompress = Decompress::new_mem(bytes).map_err(|e| e.to_string())?;
        let gray = match decompress.color_space() {
            ColorSpace::JCS_GRAYSCALE => true,
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => return Ok(None),
            _ => false,
        };
        Ok(Some(Jpeg {
            decompress,
            gray,
            progressive: is_progressive(bytes),
        }))
    })
}

impl Jpeg<'_> {
    /// Width and height in pixels, as the header states them.
    pub(super) fn dimensions(&self) -> (u32, u32) {
        let (w, h) = self.decompress.size();
        (
            u32::try_from(w).unwrap_or(u32::MAX),
            u32::try_from(h).unwrap_or(u32::MAX),
        )
    }

    /// Bytes the decoding holds: the decoded pixels (one per pixel for grey, three for RGB) and,
    /// for a progressive JPEG, the whole image's DCT coefficients (64 `i16` per block of each
    /// component), which libjpeg keeps until the last scan.
    pub(super) fn decoded_bytes(&self) -> u64 {
        let (w, h) = self.dimensions();
        let pixels = u64::from(w) * u64::from(h) * if self.gray { 1 } else { 3 };
        let coefficients: u64 = if self.progressive {
            self.decompress
                .components()
                .iter()
                .map(|c| u64::from(c.width_in_blocks) * u64::from(c.height_in_blocks) * 128)
                .sum()
        } else {
            0
        };
        pixels.saturating_add(coefficients)
    }

    /// `"grey"` or `"RGB"`, for messages.
    pub(super) fn colour(&self) -> &'static str {
        if self.gray {
            "grey"
        } else {
            "RGB"
        }
    }

    /// Decodes the pixels: 8-bit grey for a greyscale JPEG, else 8-bit RGB.
    pub(super) fn decode(self) -> Result<DynamicImage, String> {
        let (w, h) = self.dimensions();
        let Jpeg {
            mut decompress,
            gray,
            ..
        } = self;
        guarded(move || {
            decompress.dct_method(DctMethod::IntegerSlow);
            decompress.do_fancy_upsampling(true);
            let mut started = if gray {
                decompress.grayscale()
            } else {
                decompress.rgb()
            }
            .map_err(|e| e.to_string())?;
            let pixels: Vec<u8> = started
                .read_scanlines::<u8>()
                .map_err(|e| format!("the image data ends early ({e})"))?;
            started.finish().map_err(|e| e.to_string())?;
            let image = if gray {
                GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
            } else {
                RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
            };
            image.ok_or_else(|| "the decoder returned fewer pixels than the header states".into())
        })
    }
}

/// Whether the first frame header of `bytes` is a progressive one (SOF2, SOF6, SOF10, SOF14).
fn is_progressive(bytes: &[u8]) -> bool {
    let mut i = 2;
    while let Some(&[0xFF, marker, hi, lo]) = bytes.get(i..i + 4) {
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE)
            }
            0xDA | 0xD9 => return false,
            _ => i += 2 + usize::from(u16::from_be_bytes([hi, lo])),
        }
    }
    false
}

/// Runs `f`, turning libjpeg's fatal errors (unwinding with their message) into `Err`.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libjpeg failed".to_string());
        Err(msg.trim_start_matches("libjpeg fatal error: ").to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small RGB (4:2:0 chroma) or grey JPEG made by `image`'s encoder, and the image encoded.
    fn sample(gray: bool) -> (Vec<u8>, DynamicImage) {
        let (w, h) = (37u32, 21u32);
        let rgb = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, ((x + y) * 5) as u8])
        });
        let image = if gray {
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb).to_luma8())
        } else {
            DynamicImage::ImageRgb8(rgb)
        };
        let mut out = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encode");
        (out.into_inner(), image)
    }

    fn sample_jpeg(gray: bool) -> Vec<u8> {
        sample(gray).0
    }

    #[test]
    fn decodes_rgb_and_grey_at_their_sizes() {
        for gray in [false, true] {
            let (bytes, original) = sample(gray);
            let jpeg = open(&bytes).expect("header").expect("not CMYK");
            assert_eq!(jpeg.dimensions(), (37, 21));
            assert_eq!(jpeg.decoded_bytes(), 37 * 21 * if gray { 1 } else { 3 });
            let image = jpeg.decode().expect("decode");
            assert_eq!((image.width(), image.height()), (37, 21));
            assert_eq!(image.color().channel_count(), if gray { 1 } else { 3 });
            // A lossy round trip of a smooth gradient stays close to it.
            let (got, want) = (image.to_rgb8(), original.to_rgb8());
            for (x, y) in [(10, 10), (0, 0), (20, 12)] {
                let (a, b) = (got.get_pixel(x, y).0, want.get_pixel(x, y).0);
                assert!(
                    a.iter().zip(b).all(|(a, b)| a.abs_diff(b) < 12),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn progressive_frames_are_told_from_sequential_ones() {
        // SOI, an APP0 segment of 6 bytes, a DHT (not a frame), then the frame header.
        let with = |sof: u8| {
            let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 6, 1, 2, 3, 4, 0xFF, 0xC4, 0, 2];
            b.extend([0xFF, sof, 0, 11]);
            b
        };
        assert!(is_progressive(&with(0xC2)));
        assert!(!is_progressive(&with(0xC0)));
        assert!(!is_progressive(&with(0xC1)));
        assert!(!is_progressive(&sample_jpeg(false)));
        assert!(!is_progressive(&[0xFF, 0xD8]));
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let bytes = sample_jpeg(false);
        // A header cut short, and a quantisation-table marker with a nonsense length.
        assert!(open(&bytes[..40]).is_err());
        let mut broken = bytes.clone();
        if let Some(i) = broken.windows(2).position(|w| w == [0xFF, 0xDB]) {
            broken[i + 2] = 0xFF;
            broken[i + 3] = 0xFF;
        }
        let result = open(&broken).and_then(|j| j.map(Jpeg::decode).transpose());
        assert!(
            result.is_err(),
            "{:?}",
            result.map(|i| i.map(|i| i.width()))
        );
    }
}
