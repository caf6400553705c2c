//! Hostile and unlucky inputs (issue 18), each generated here: files larger than their kind's
//! limit, devices and FIFOs, decompression bombs, headers claiming more than they hold, edited
//! recognizer metadata, a base with a huge declared input, and a 100-megapixel photo that must
//! train and predict within 1 GB. Each gives a clear error naming the file and the limit, never
//! an abort or a hang.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use graft::base::{BaseModel, BaseOptions};
use graft::knn::Knn;
use graft::limits::{FileKind, Limits};
use graft::recognizer::Recognizer;
use graft_converters::onnx_builder::{encode, Dim, GraphBuilder};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// CRC-32 (IEEE) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `width` x `height` pixels of colour type `color` (4: grey + alpha)
/// at 8 bits, with a token of image data: a few hundred bytes, a decompression bomb's header.
fn png_claiming(width: u32, height: u32, color: u8) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, color, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// A small real image: a colour gradient with a bright square, shifted by `seed`.
fn small_png(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        let inside = (10 + seed * 5..30 + seed * 5).contains(&x) && (10..30).contains(&y);
        if inside {
            image::Rgb([250, 240, (seed * 40) as u8])
        } else {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, (seed * 60) as u8])
        }
    });
    img.save(path).unwrap();
}

/// Rewrites graft's JSON document in the safetensors file `path` with `edit`, keeping its tensors.
fn edit_metadata(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["graft"]).unwrap();
    edit(&mut doc);
    let views: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let info = std::collections::HashMap::from([("graft".to_string(), doc.to_string())]);
    let out = safetensors::serialize(views, Some(info)).unwrap();
    std::fs::write(path, out).unwrap();
}

/// Runs the graft binary with `args`, polling its peak resident set (`VmHWM`, the kernel's own
/// accounting of the process) until it exits: (exit code, stderr, stdout, peak bytes).
fn graft_peak(cache: &Path, args: &[&str], limit: Duration) -> (i32, String, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_CACHE", cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak = 0u64;
    // Pipes are drained by threads so that a chatty child cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let code = loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("graft {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (code, err_t.join().unwrap(), out_t.join().unwrap(), peak)
}

#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_by_name_without_reading() {
    let zero = Path::new("/dev/zero");
    let errors = [
        Recognizer::load(zero).unwrap_err().to_string(),
        Knn::load(zero).unwrap_err().to_string(),
        BaseModel::open(zero, &BaseOptions::default())
            .unwrap_err()
            .to_string(),
        graft::input::image::load_image(
            zero,
            &graft::zoo::manifest("efficientnet-lite0")
                .unwrap()
                .input
                .image()
                .unwrap()
                .clone(),
        )
        .unwrap_err()
        .to_string(),
        graft::limits::read(zero, FileKind::Audio)
            .unwrap_err()
            .to_string(),
        graft_converters::torch::load_state_dict(zero)
            .unwrap_err()
            .to_string(),
        graft_converters::tflite::convert(zero)
            .unwrap_err()
            .to_string(),
    ];
    for err in &errors {
        assert!(
            err.contains("/dev/zero") && err.contains("not a regular file"),
            "{err}"
        );
    }
    // A FIFO nobody writes to would block a reader forever: refused from its metadata at once.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("rec.safetensors");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let err = Recognizer::load(&fifo).unwrap_err().to_string();
    assert!(
        err.contains("rec.safetensors") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn files_over_their_kind_s_limit_are_refused_from_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    // Sparse files: the size is claimed by the file system, nothing is written or read.
    for (name, kind, limit) in [
        (
            "rec.safetensors",
            FileKind::Recognizer,
            limits.recognizer_bytes,
        ),
        ("base.onnx", FileKind::Model, limits.model_bytes),
        ("clip.wav", FileKind::Audio, limits.audio_bytes),
        ("photo.jpg", FileKind::Image, limits.image_bytes),
        ("manifest.json", FileKind::Text, limits.text_bytes),
    ] {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(limit + 1)
            .unwrap();
        let started = Instant::now();
        let err = graft::limits::read(&path, kind).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(&format!("limit of {limit} bytes")),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{name} was read"
        );
    }
    let err = Recognizer::load(&dir.path().join("rec.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("limit of 1073741824 bytes"), "{err}");
}

#[test]
fn a_decompression_bomb_is_refused_with_its_claimed_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    let bytes = png_claiming(16000, 16000, 4);
    assert!(bytes.len() < 200);
    std::fs::write(&path, &bytes).unwrap();
    let spec = graft::zoo::manifest("efficientnet-lite0")
        .unwrap()
        .input
        .image()
        .unwrap()
        .clone();
    let err = graft::input::image::load_image(&path, &spec)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bomb.png")
            && err.contains("16000x16000 = 256000000 pixels")
            && err.contains("limit of 120000000 pixels"),
        "{err}"
    );
    // Within the pixel limit but over the decoded-bytes limit: 10000x10000 at 16-bit RGBA.
    let mut big = png_claiming(10000, 10000, 6);
    big[24] = 16; // bit depth
    let crc = crc32(&big[12..29]);
    big[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = graft::input::image::decode_image(&big, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("800000000 bytes decoded") && err.contains("limit of 536870912 bytes"),
        "{err}"
    );
}

#[test]
fn a_wav_header_claiming_more_samples_than_the_budget_is_refused() {
    let mut wav = b"RIFF".to_vec();
    wav.extend(0x7FFF_FFF0u32.to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes()); // PCM
    wav.extend(1u16.to_le_bytes()); // mono
    wav.extend(16_000u32.to_le_bytes());
    wav.extend(32_000u32.to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend(0x7FFF_FF00u32.to_le_bytes());
    wav.extend([0u8; 64]);
    let err = graft::input::audio::decode_wav(&wav, Path::new("claims.wav"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("claims.wav")
            && err.contains("declares 1073741696 samples")
            && err.contains("limit of 256000000 samples"),
        "{err}"
    );
}

#[test]
fn edited_recognizer_and_index_metadata_is_refused_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.safetensors");
    let speech = dir.path().join("speech.safetensors");
    let knn = dir.path().join("knn.safetensors");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&Path, &str, Edit, &str)> = vec![
        (
            &image,
            "image-recognizer.safetensors",
            Box::new(|d| {
                d["base"]["input"]["width"] = 100_000.into();
                d["base"]["input"]["height"] = 100_000.into();
            }),
            "more than the limit of 67108864",
        ),
        (
            &image,
            "image-recognizer.safetensors",
            Box::new(|d| d["base"]["input"]["std"][1] = 0.0.into()),
            "non-zero std",
        ),
        (
            &image,
            "image-recognizer.safetensors",
            Box::new(|d| d["base"]["embedding_dim"] = 0.into()),
            "embedding size 0",
        ),
        (
            &image,
            "image-recognizer.safetensors",
            Box::new(|d| d["labels"][1] = d["labels"][0].clone()),
            "repeats",
        ),
        (
            &speech,
            "speech-recognizer.safetensors",
            Box::new(|d| d["base"]["input"]["clip_samples"] = 100_000_000_000u64.into()),
            "more than the limit of 67108864",
        ),
        (
            &speech,
            "speech-recognizer.safetensors",
            Box::new(|d| d["base"]["input"]["sample_rate"] = 0.into()),
            "sample rate 0 Hz",
        ),
        (
            &speech,
            "speech-recognizer.safetensors",
            Box::new(|d| d["base"]["input"]["scale"] = 1e39.into()),
            "finite non-zero",
        ),
        (
            &knn,
            "knn-index.safetensors",
            Box::new(|d| d["classes"][1] = d["classes"][0].clone()),
            "repeats",
        ),
        (
            &knn,
            "knn-index.safetensors",
            Box::new(|d| d["base"]["input"]["height"] = 0.into()),
            "must be positive",
        ),
    ];
    for (path, original, edit, expected) in cases {
        std::fs::copy(fixture("compat").join(original), path).unwrap();
        edit_metadata(path, edit);
        let err = if path == knn {
            Knn::load(path).unwrap_err().to_string()
        } else {
            Recognizer::load(path).unwrap_err().to_string()
        };
        assert!(
            err.contains(s(path)) && err.contains(expected),
            "{original}: expected '{expected}' in: {err}"
        );
    }
}

#[test]
fn a_recognizer_whose_input_differs_from_its_base_s_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.safetensors");
    std::fs::copy(fixture("compat/image-recognizer.safetensors"), &path).unwrap();
    edit_metadata(&path, |d| d["base"]["input"]["width"] = 300.into());
    let rec = Recognizer::load(&path).unwrap();
    let err = BaseModel::from_ref(rec.base(), &BaseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[3, 224, 224]") && err.contains("[3, 224, 300]"),
        "{err}"
    );
}

#[test]
fn a_base_declaring_a_huge_input_is_refused_before_allocating() {
    let mut g = GraphBuilder::new("huge");
    let dims = [1, 3, 100_000, 100_000].map(Dim::Fixed);
    let x = g.input_f32("x", &dims);
    let y = g.node("GlobalAveragePool", &[&x], "y", vec![]);
    g.output_f32(&y, &[1, 3, 1, 1].map(Dim::Fixed));
    let bytes = encode(&g.finish("test", ""));
    let started = Instant::now();
    let err = BaseModel::from_bytes(bytes, "huge.onnx", &BaseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("huge.onnx")
            && err.contains("30000000000 elements")
            && err.contains("limit of 67108864"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A 10000x10000 photo-like JPEG (smooth colour fields, edges and noise), written to `path`.
fn hundred_megapixel_jpeg(path: &Path) {
    let (w, h) = (10_000u32, 10_000u32);
    let mut state = 0x1234_5678u32;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state & 15) as u8;
        let sky = y < h / 3;
        let disc = (x as i64 - 6000).pow(2) + (y as i64 - 5000).pow(2) < 2000i64.pow(2);
        let base = if disc {
            [230, 180, 40]
        } else if sky {
            [90, 140, (200 + y * 50 / h) as u8]
        } else {
            [(60 + x * 60 / w) as u8, 120, 50]
        };
        image::Rgb(base.map(|c| c.saturating_add(noise)))
    });
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 85)
        .encode_image(&img)
        .unwrap();
}

/// A 10000x10000 grey + alpha PNG (a soft vignette): 200 MB of 8-bit pixels that graft used to
/// widen to floats twice (3 GB).
fn hundred_megapixel_grey_alpha_png(path: &Path) {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let (w, h) = (10_000u32, 10_000u32);
    let img = image::GrayAlphaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x.abs_diff(w / 2), y.abs_diff(h / 2));
        image::LumaA([
            ((x ^ y) & 0xff) as u8,
            (255 - (dx + dy) * 255 / (w + h)) as u8,
        ])
    });
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    PngEncoder::new_with_quality(file, CompressionType::Fast, FilterType::NoFilter)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::La8)
        .unwrap();
}

#[test]
fn a_hundred_megapixel_photo_trains_and_predicts_within_one_gigabyte() {
    const GB: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let data = dir.path().join("data");
    for class in ["sun", "field"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
    }
    let photo = data.join("sun/photo.jpg");
    hundred_megapixel_jpeg(&photo);
    for i in 0..3 {
        small_png(&data.join(format!("sun/{i}.png")), i);
        small_png(&data.join(format!("field/{i}.png")), i + 3);
    }
    // A 5 GiB video in a class folder is skipped from its size, without being read.
    let video = data.join("field/video.png");
    std::fs::File::create(&video)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();

    let rec = dir.path().join("rec.safetensors");
    let (code, stderr, _, peak) = graft_peak(
        &cache,
        &["train", "--data", s(&data), "--epochs", "3", "-o", s(&rec)],
        Duration::from_secs(600),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("video.png") && stderr.contains("limit of 268435456 bytes"),
        "{stderr}"
    );
    eprintln!(
        "train with a 100-megapixel photo: peak RSS {} MB",
        peak >> 20
    );
    assert!(peak > 0 && peak < GB, "train peaked at {peak} bytes");

    let grey = dir.path().join("grey-alpha.png");
    hundred_megapixel_grey_alpha_png(&grey);
    let (code, stderr, stdout, peak) = graft_peak(
        &cache.join("none"),
        &["predict", s(&rec), s(&photo), s(&grey), "--json"],
        Duration::from_secs(600),
    );
    assert_eq!(code, 0, "{stderr}");
    let result: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let predictions = result["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2, "{stdout}");
    assert!(
        predictions.iter().all(|p| p["label"].is_string()),
        "{stdout}"
    );
    eprintln!(
        "predict on a 100-megapixel JPEG and a 100-megapixel grey+alpha PNG: peak RSS {} MB",
        peak >> 20
    );
    assert!(peak > 0 && peak < GB, "predict peaked at {peak} bytes");
}

#[test]
fn the_command_line_sets_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("small.png");
    small_png(&image, 1);
    let rec = fixture("compat/image-recognizer.safetensors");
    let run = |args: &[&str]| {
        let (code, stderr, _, _) = graft_peak(dir.path(), args, Duration::from_secs(120));
        (code, stderr)
    };
    let (code, stderr) = run(&["predict", s(&rec), s(&image), "--max-image-bytes", "100"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("small.png") && stderr.contains("limit of 100 bytes"),
        "{stderr}"
    );
    // A device is read only when allowed, and then only up to the limit.
    let (code, stderr) = run(&["inspect", "/dev/zero"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let (code, stderr) = run(&[
        "inspect",
        "/dev/zero",
        "--allow-special-files",
        "--max-model-bytes",
        "4096",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limit of 4096 bytes"), "{stderr}");
}
