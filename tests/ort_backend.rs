//! The ONNX Runtime backend gives the same embeddings as tract (zoo EfficientNet-Lite0, the
//! speech embedding, a named cut on the ppocr-cls fixture), says clearly when its library is
//! missing, and trains the same recognizer through the CLI.
//!
//! The library comes from `$ORT_DYLIB_PATH`, else graft's default location; when neither has it,
//! the first test fetches it there once (`graft::base::install`, from PyPI without pip).
#![cfg(feature = "onnxruntime")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use graft::base::{Backend, BaseModel, BaseOptions, INSTALL_COMMAND, ORT_DYLIB_ENV};
use graft::embeddings::prepare;
use graft::Error;
use ndarray::{concatenate, ArrayD, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Largest difference allowed between the two engines' embedding values.
const TOLERANCE: f32 = 1e-4;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, else the default location, fetched there when
/// missing.
fn library() -> PathBuf {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY
        .get_or_init(|| match std::env::var_os(ORT_DYLIB_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => graft::base::install(&graft::progress::Silent).unwrap(),
        })
        .clone()
}

fn ort_options(cut: Option<&str>, input_shape: Option<Vec<usize>>) -> BaseOptions {
    BaseOptions {
        cut: cut.map(str::to_string),
        input_shape,
        engine: graft::base::EngineOptions {
            backend: Backend::Ort,
            ort_library: Some(library()),
        },
        ..BaseOptions::default()
    }
}

/// The same base on both engines.
fn both(name: &str) -> (BaseModel, BaseModel) {
    let tract = BaseModel::open(name, &BaseOptions::on(Backend::Tract)).unwrap();
    let ort = BaseModel::open(name, &ort_options(None, None)).unwrap();
    assert_eq!(tract.backend(), Backend::Tract);
    assert_eq!(ort.backend(), Backend::Ort);
    (tract, ort)
}

/// Asserts both engines embed `batch` alike, as one batch and as its first example alone.
fn assert_same_embeddings(tract: &BaseModel, ort: &BaseModel, batch: &ArrayD<f32>) {
    assert!(batch.shape()[0] > 1);
    let first = batch.slice_axis(Axis(0), (0..1).into()).to_owned();
    for input in [&first, batch] {
        let a = tract.embed(input.view()).unwrap();
        let b = ort.embed(input.view()).unwrap();
        assert_eq!(a.dim(), (input.shape()[0], tract.embedding_dim()));
        assert_eq!(a.dim(), b.dim());
        let worst = a
            .iter()
            .zip(b.iter())
            .map(|(u, v)| (u - v).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < TOLERANCE,
            "batch {}: tract and ONNX Runtime differ by {worst}",
            input.shape()[0]
        );
        // The embeddings carry signal, so that equal values mean something.
        assert!(a.iter().any(|v| v.abs() > 1e-2), "all embeddings near 0");
    }
}

/// The first `n` files of a folder tree (sorted), prepared as `base` takes them, stacked.
fn prepared_batch(base: &BaseModel, dir: &Path, n: usize) -> ArrayD<f32> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .extension()
                .is_some_and(|e| ["png", "jpg", "jpeg", "wav"].contains(&e.to_str().unwrap()))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    // Spread over the classes rather than the first class only.
    let step = (files.len() / n).max(1);
    let examples: Vec<ArrayD<f32>> = files
        .iter()
        .step_by(step)
        .take(n)
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            prepare(&bytes, f, base.input_spec().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(examples.len(), n);
    let views: Vec<_> = examples
        .iter()
        .map(|e| e.view().insert_axis(Axis(0)))
        .collect();
    concatenate(Axis(0), &views).unwrap()
}

#[test]
fn efficientnet_lite0_embeddings_match_tract() {
    let (tract, ort) = both("efficientnet-lite0");
    let batch = prepared_batch(&tract, &repo().join("examples/data/tuxpaint-dev"), 4);
    assert_same_embeddings(&tract, &ort, &batch);
}

#[test]
fn speech_embedding_matches_tract() {
    let (tract, ort) = both("speech-embedding");
    let batch = prepared_batch(&tract, &repo().join("tests/fixtures/audio/words"), 4);
    assert_same_embeddings(&tract, &ort, &batch);
}

#[test]
fn a_cut_given_by_name_matches_tract() {
    let path = repo().join("tests/fixtures/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let shape = vec![3, 48, 192];
    let tract_options = BaseOptions {
        cut: Some("pool2d_10.tmp_0".into()),
        input_shape: Some(shape.clone()),
        ..BaseOptions::default()
    };
    let tract = BaseModel::open(&path, &tract_options).unwrap();
    let ort_options = ort_options(Some("pool2d_10.tmp_0"), Some(shape.clone()));
    let ort = BaseModel::open(&path, &ort_options).unwrap();
    // The cut is inside the graph (its outputs are the class probabilities), and not flat.
    assert_eq!(ort.cut_shape(), tract.cut_shape());
    assert_eq!(ort.cut_shape().len(), 3);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let batch =
        ArrayD::from_shape_simple_fn(vec![4, 3, 48, 192], || rng.random_range(-1.0f32..1.0));
    assert_same_embeddings(&tract, &ort, &batch);
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let bogus = std::env::temp_dir().join("graft-no-such-dir/libonnxruntime.so.1.32.0");
    let options = BaseOptions {
        engine: graft::base::EngineOptions {
            backend: Backend::Ort,
            ort_library: Some(bogus.clone()),
        },
        ..BaseOptions::default()
    };
    let err = BaseModel::open("efficientnet-lite0", &options).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    for needle in [ORT_DYLIB_ENV, INSTALL_COMMAND, bogus.to_str().unwrap()] {
        assert!(msg.contains(needle), "'{needle}' missing from: {msg}");
    }
    // The same through the CLI: a clean failure, no panic.
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["train", "--backend", "ort", "--data"])
        .arg(repo().join("examples/data/tuxpaint-dev"))
        .arg("-o")
        .arg(tmp.path().join("never.safetensors"))
        .env(ORT_DYLIB_ENV, &bogus)
        .env("GRAFT_CACHE", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(ORT_DYLIB_ENV) && stderr.contains(INSTALL_COMMAND),
        "{stderr}"
    );
}

/// `graft train --backend BACKEND` on the shipped images with `library` as ORT_DYLIB_PATH ("" for
/// none), downloads forbidden, no system library folders: exit code and stderr.
fn train_with_library(backend: &str, library: &Path) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["train", "--no-cache", "--device", "cpu", "--epochs", "5"])
        .args(["--backend", backend, "--data"])
        .arg(repo().join("examples/data/tuxpaint-dev"))
        .arg("-o")
        .arg(tmp.path().join("r.safetensors"))
        .env(ORT_DYLIB_ENV, library)
        .env("GRAFT_OFFLINE", "1")
        .env("GRAFT_CACHE", tmp.path())
        .env("LD_LIBRARY_PATH", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

/// Without the library and with downloads forbidden, the default engine is tract and one line
/// says how to get the fast one; a library cut short is refused before the system loader sees it
/// (which would fault): `auto` falls back with that line, `ort` fails with a clear error.
#[test]
fn auto_falls_back_to_tract_with_one_line_and_broken_libraries_never_crash() {
    let (code, stderr) = train_with_library("auto", Path::new(""));
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("running on tract"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(INSTALL_COMMAND) && lines[0].contains("GRAFT_OFFLINE"),
        "{stderr}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(library()).unwrap();
    let cut = tmp.path().join("libonnxruntime.so.1.32.0");
    std::fs::write(&cut, &whole[..whole.len() / 3]).unwrap();
    let (code, stderr) = train_with_library("auto", &cut);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("running on tract") && stderr.contains("cannot be loaded"),
        "{stderr}"
    );
    let (code, stderr) = train_with_library("ort", &cut);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot be loaded"), "{stderr}");
}

/// `graft train` on the demo images with `--backend NAME`: the JSON result.
fn train(backend: &str, cache: &Path, out: &Path) -> Value {
    let data = repo().join("examples/data/tuxpaint-dev");
    let run = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["train", "--json", "--no-cache", "--device", "cpu"])
        .args(["--backend", backend, "--data"])
        .arg(&data)
        .arg("-o")
        .arg(out)
        .env("GRAFT_CACHE", cache)
        .env(ORT_DYLIB_ENV, library())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "graft train --backend {backend} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

#[test]
fn training_on_either_backend_gives_the_same_validation_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let with_tract = train("tract", tmp.path(), &tmp.path().join("tract.safetensors"));
    let with_ort = train("ort", tmp.path(), &tmp.path().join("ort.safetensors"));
    let accuracy = |v: &Value| v["training"]["validation"]["accuracy"].as_f64().unwrap();
    assert!(accuracy(&with_tract) >= 0.7, "{with_tract}");
    assert_eq!(accuracy(&with_tract), accuracy(&with_ort));

    // A recognizer trained on one engine predicts on the other (each with its own embedding
    // cache, so that both engines run).
    let image = repo().join("examples/data/tuxpaint-dev/fish");
    let image = std::fs::read_dir(image)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let predictions: Vec<Value> = ["tract", "ort"]
        .iter()
        .map(|backend| {
            let out = Command::new(env!("CARGO_BIN_EXE_graft"))
                .args(["predict", "--json", "--backend", backend])
                .arg(tmp.path().join("tract.safetensors"))
                .arg(&image)
                .env("GRAFT_CACHE", tmp.path().join(backend))
                .env(ORT_DYLIB_ENV, library())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            result["predictions"][0].clone()
        })
        .collect();
    assert_eq!(predictions[0]["label"], predictions[1]["label"]);
    let p = |v: &Value| v["probability"].as_f64().unwrap();
    assert!((p(&predictions[0]) - p(&predictions[1])).abs() < 1e-4);
}
