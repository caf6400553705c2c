//! Image decoding and preprocessing, checked on small generated images with exact values.

use std::io::Cursor;
use std::path::Path;

use graft::input::image::{decode_image, load_image, preprocess, stack_batch, Letterbox};
use graft::input::{ChannelOrder, ImageSpec, Layout};
use graft::Error;
use image::{
    DynamicImage, GrayImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage,
};

/// A spec that keeps raw 0..=255 values (mean 0, std 1), RGB, NCHW.
fn raw_spec(width: u32, height: u32) -> ImageSpec {
    ImageSpec::unnormalised(width, height, Layout::Nchw)
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// 2x1: a red pixel then a blue one.
fn red_blue() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    }))
}

#[test]
fn nchw_and_nhwc_put_channels_where_they_belong() {
    let img = red_blue();
    let chw = preprocess(&img, &raw_spec(2, 1)).unwrap();
    assert_eq!(chw.shape(), &[3, 1, 2]);
    assert_eq!(chw[[0, 0, 0]], 255.0); // R of the red pixel
    assert_eq!(chw[[2, 0, 0]], 0.0);
    assert_eq!(chw[[0, 0, 1]], 0.0);
    assert_eq!(chw[[2, 0, 1]], 255.0); // B of the blue pixel
    let spec = ImageSpec {
        layout: Layout::Nhwc,
        ..raw_spec(2, 1)
    };
    let hwc = preprocess(&img, &spec).unwrap();
    assert_eq!(hwc.shape(), &[1, 2, 3]);
    for c in 0..3 {
        for x in 0..2 {
            assert_eq!(hwc[[0, x, c]], chw[[c, 0, x]]);
        }
    }
}

#[test]
fn bgr_swaps_red_and_blue_and_normalises_per_tensor_channel() {
    let spec = ImageSpec {
        channels: ChannelOrder::Bgr,
        mean: [10.0, 20.0, 30.0],
        std: [2.0, 4.0, 5.0],
        ..raw_spec(2, 1)
    };
    let t = preprocess(&red_blue(), &spec).unwrap();
    // Red pixel: tensor channel 0 is blue (0), channel 2 is red (255).
    assert_eq!(t[[0, 0, 0]], (0.0 - 10.0) / 2.0);
    assert_eq!(t[[1, 0, 0]], (0.0 - 20.0) / 4.0);
    assert_eq!(t[[2, 0, 0]], (255.0 - 30.0) / 5.0);
    // Blue pixel.
    assert_eq!(t[[0, 0, 1]], (255.0 - 10.0) / 2.0);
    assert_eq!(t[[2, 0, 1]], (0.0 - 30.0) / 5.0);
}

#[test]
fn transparent_pixels_become_white_and_half_alpha_blends() {
    let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([0, 0, 0, 255])
        }
    }));
    let t = preprocess(&img, &raw_spec(2, 1)).unwrap();
    for c in 0..3 {
        assert!((t[[c, 0, 0]] - 255.0).abs() < 1e-3, "{}", t[[c, 0, 0]]);
        assert!(t[[c, 0, 1]].abs() < 1e-3);
    }
    let half = DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(1, 1, LumaA([0u8, 51])));
    let t = preprocess(&half, &raw_spec(1, 1)).unwrap();
    // 20 % black over white: 255 * 0.8 = 204.
    assert!((t[[0, 0, 0]] - 204.0).abs() < 1e-3, "{}", t[[0, 0, 0]]);
}

#[test]
fn grey_gives_equal_channels_and_16_bit_is_scaled() {
    let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 1, Luma([77])));
    let t = preprocess(&grey, &raw_spec(1, 1)).unwrap();
    assert_eq!(t.iter().copied().collect::<Vec<_>>(), vec![77.0; 3]);
    let deep = DynamicImage::ImageLuma16(ImageBuffer::from_pixel(1, 1, Luma([65535u16 / 5])));
    let t = preprocess(&deep, &raw_spec(1, 1)).unwrap();
    for v in t.iter() {
        assert!((v - 51.0).abs() < 1e-2, "{v}");
    }
}

#[test]
fn center_crop_keeps_the_middle_and_resize_reaches_the_spec_size() {
    // 4x4 black with a white 2x2 centre.
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(4, 4, |x, y| {
        if (1..3).contains(&x) && (1..3).contains(&y) {
            Rgb([255, 255, 255])
        } else {
            Rgb([0, 0, 0])
        }
    }));
    let spec = ImageSpec {
        center_crop: Some(0.5),
        letterbox: false,
        ..raw_spec(2, 2)
    };
    let t = preprocess(&img, &spec).unwrap();
    assert!(t.iter().all(|&v| v == 255.0), "{t}");
    // A uniform image stays uniform (up to float rounding) through up- and down-scaling.
    let flat = DynamicImage::ImageRgb8(RgbImage::from_pixel(7, 5, Rgb([10, 20, 30])));
    for (w, h) in [(3, 2), (16, 9)] {
        let t = preprocess(&flat, &raw_spec(w, h)).unwrap();
        assert_eq!(t.shape(), &[3, h as usize, w as usize]);
        for ((c, _, _), v) in t.indexed_iter() {
            assert!((v - [10.0, 20.0, 30.0][c]).abs() < 1e-4, "{v}");
        }
    }
    // Downscaling red|blue halves keeps red on the left and blue on the right.
    let halves = DynamicImage::ImageRgb8(RgbImage::from_fn(8, 4, |x, _| {
        if x < 4 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    }));
    let t = preprocess(&halves, &raw_spec(2, 1)).unwrap();
    assert!(t[[0, 0, 0]] > 200.0 && t[[2, 0, 0]] < 55.0, "{t}");
    assert!(t[[2, 0, 1]] > 200.0 && t[[0, 0, 1]] < 55.0, "{t}");
}

#[test]
fn shrinking_is_antialiased_bilinear_like_pil() {
    // Red channel 0, 0, 255, 255 shrunk to 2 pixels: the triangle filter is widened to 2 source
    // pixels, giving weights 0.75, 0.75, 0.25 (normalised) for the first output pixel.
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(4, 1, |x, _| {
        Rgb([if x < 2 { 0 } else { 255 }, 0, 0])
    }));
    let t = preprocess(&img, &raw_spec(2, 1)).unwrap();
    let expected = 255.0 * 0.25 / 1.75;
    assert!((t[[0, 0, 0]] - expected).abs() < 1e-3, "{}", t[[0, 0, 0]]);
    assert!(
        (t[[0, 0, 1]] - (255.0 - expected)).abs() < 1e-3,
        "{}",
        t[[0, 0, 1]]
    );
}

#[test]
fn png_and_jpeg_files_are_detected_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, Rgb([200, 100, 50])));
    // Extensions deliberately wrong.
    let png = dir.path().join("photo.jpg");
    std::fs::write(&png, encode(&img, ImageFormat::Png)).unwrap();
    let jpeg = dir.path().join("drawing.png");
    std::fs::write(&jpeg, encode(&img, ImageFormat::Jpeg)).unwrap();
    let spec = raw_spec(4, 4);
    let p = load_image(&png, &spec).unwrap();
    assert_eq!(p[[0, 1, 1]], 200.0);
    assert_eq!(p[[2, 3, 3]], 50.0);
    let j = load_image(&jpeg, &spec).unwrap();
    for ((c, _, _), v) in j.indexed_iter() {
        assert!((v - [200.0, 100.0, 50.0][c]).abs() < 4.0, "{v}");
    }
}

/// JPEGs decode to exactly the pixels libjpeg-turbo gives (through Pillow, which PIL, OpenCV,
/// TensorFlow and browsers share): every form in tests/fixtures/jpeg (4:2:0, progressive 4:2:2,
/// 4:4:4, grey) against the lossless PNG of Pillow's decode made by its make.py.
#[test]
fn jpegs_decode_to_the_pixels_libjpeg_turbo_gives() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg");
    let mut checked = 0;
    for name in ["420-baseline", "422-progressive", "444-baseline", "grey"] {
        let read = |file: String| {
            let bytes = std::fs::read(dir.join(&file)).unwrap();
            decode_image(&bytes, Path::new(&file)).unwrap()
        };
        let (ours, pil) = (read(format!("{name}.jpg")), read(format!("{name}.pil.png")));
        assert_eq!(ours.color(), pil.color(), "{name}");
        assert_eq!((ours.width(), ours.height()), (pil.width(), pil.height()));
        let differing = ours
            .as_bytes()
            .iter()
            .zip(pil.as_bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} bytes differ from Pillow's"
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
}

fn input_error(bytes: &[u8]) -> String {
    let err = decode_image(bytes, Path::new("dir/example.img")).unwrap_err();
    assert!(
        matches!(&err, Error::Input { path, .. } if path == Path::new("dir/example.img")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("dir/example.img"), "{msg}");
    msg
}

#[test]
fn other_formats_and_broken_files_are_input_errors() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(16, 16, |x, y| {
        Rgb([(x * 16) as u8, (y * 16) as u8, 7])
    }));
    assert!(input_error(b"").contains("empty"));
    assert!(input_error(b"GIF89a\x01\x00\x01\x00").contains("GIF"));
    assert!(input_error(b"BM\x00\x00\x00\x00\xff\x00").contains("BMP"));
    assert!(input_error(b"label,file\ncat,1.png\n").contains("text"));
    let png = encode(&img, ImageFormat::Png);
    assert!(input_error(&png[..png.len() / 2]).contains("PNG"));
    let jpeg = encode(&img, ImageFormat::Jpeg);
    assert!(input_error(&jpeg[..jpeg.len() / 2]).contains("JPEG"));
    // Headers and an end marker but no image data (the scan cut out).
    let scan = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut hollow = jpeg[..scan].to_vec();
    hollow.extend([0xFF, 0xD9]);
    assert!(
        input_error(&hollow).contains("JPEG"),
        "{}",
        input_error(&hollow)
    );
    // The scan header kept, its entropy-coded data cut out.
    let header = usize::from(u16::from_be_bytes([jpeg[scan + 2], jpeg[scan + 3]]));
    let mut empty_scan = jpeg[..scan + 2 + header].to_vec();
    empty_scan.extend([0xFF, 0xD9]);
    assert!(
        input_error(&empty_scan).contains("JPEG"),
        "{}",
        input_error(&empty_scan)
    );
    let missing = load_image(Path::new("/nonexistent/a.png"), &raw_spec(1, 1)).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}

#[test]
fn bad_specs_are_invalid() {
    let img = red_blue();
    let zero_std = ImageSpec {
        std: [1.0, 0.0, 1.0],
        ..raw_spec(2, 1)
    };
    let no_size = raw_spec(0, 4);
    let bad_crop = ImageSpec {
        center_crop: Some(1.5),
        letterbox: false,
        ..raw_spec(2, 1)
    };
    for spec in [zero_std, no_size, bad_crop] {
        let err = preprocess(&img, &spec).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{spec:?}: {err:?}");
    }
}

#[test]
fn stacking_makes_a_batch_and_refuses_mixed_shapes() {
    let a = preprocess(&red_blue(), &raw_spec(2, 1)).unwrap();
    let b = preprocess(&red_blue(), &raw_spec(2, 1)).unwrap() * 2.0;
    let batch = stack_batch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(batch.shape(), &[2, 3, 1, 2]);
    assert_eq!(batch[[1, 0, 0, 0]], 510.0);
    assert_eq!(batch[[0, 2, 0, 1]], 255.0);
    let c = preprocess(&red_blue(), &raw_spec(1, 1)).unwrap();
    assert!(matches!(stack_batch(&[a, c]), Err(Error::Invalid(_))));
    assert!(stack_batch::<ndarray::Ix3>(&[]).is_err());
}

/// Prints decode + preprocess time for a 1920x1080 JPEG and PNG to 224x224 (no assertion).
#[test]
fn decoding_timing() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(1920, 1080, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    }));
    let spec = ImageSpec {
        center_crop: Some(0.875),
        letterbox: false,
        ..raw_spec(224, 224)
    };
    for format in [ImageFormat::Jpeg, ImageFormat::Png] {
        let bytes = encode(&img, format);
        let runs = 3;
        let (mut decoding, mut preprocessing) = (0.0, 0.0);
        for _ in 0..runs {
            let start = std::time::Instant::now();
            let decoded = decode_image(&bytes, Path::new("timing")).unwrap();
            decoding += start.elapsed().as_secs_f64() * 1e3 / f64::from(runs);
            let start = std::time::Instant::now();
            preprocess(&decoded, &spec).unwrap();
            preprocessing += start.elapsed().as_secs_f64() * 1e3 / f64::from(runs);
        }
        println!(
            "1920x1080 {format:?}: decode {decoding:.1} ms, crop + resize to 224x224 {preprocessing:.1} ms"
        );
    }
}

#[test]
fn letterbox_pads_with_black_and_keeps_the_aspect_ratio() {
    // A white 4x2 image in a 4x4 input: rows 1 and 2 white, rows 0 and 3 black, normalised.
    let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 2, Rgb([255, 255, 255])));
    let spec = ImageSpec {
        letterbox: true,
        layout: Layout::Nhwc,
        mean: [10.0; 3],
        std: [2.0; 3],
        ..raw_spec(4, 4)
    };
    let t = preprocess(&white, &spec).unwrap();
    assert_eq!(t.shape(), [4, 4, 3]);
    for ((y, _, _), &v) in t.indexed_iter() {
        let pixel = if y == 1 || y == 2 { 255.0 } else { 0.0 };
        assert_eq!(v, (pixel - 10.0) / 2.0, "row {y}");
    }
    let fit = Letterbox::fit(4, 2, 4, 4);
    assert_eq!((fit.width, fit.height, fit.left, fit.top), (4, 2, 0, 1));
    // The input's centre is the image's centre; positions in the padding clamp to the image.
    assert_eq!(fit.to_image(0.5, 0.5, 4, 2), (2.0, 1.0));
    assert_eq!(fit.to_image(0.5, 0.0, 4, 2), (2.0, 0.0));
    // A tall image: 2x8 in 4x4 becomes 1x4, one column from the left.
    let tall = Letterbox::fit(2, 8, 4, 4);
    assert_eq!((tall.width, tall.height, tall.left, tall.top), (1, 4, 1, 0));
    let both = ImageSpec {
        center_crop: Some(0.9),
        ..spec
    };
    assert!(matches!(preprocess(&white, &both), Err(Error::Invalid(_))));
}
