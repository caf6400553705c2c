//! Smaller exports (issue 13, item 3): a recognizer trained on the shipped images, exported as
//! int8 (calibrated on its training split) and as fp16, against its float export: the int8 file
//! is at most 0.3x the float one, both agree with float on the shipped images (≥ 98 % top-1),
//! tract runs the whole image-in file and ONNX Runtime (when its library can be had) the graph,
//! the comparison is stored in the model card and the metadata; a missing base, a missing
//! calibration folder and asking for both forms are clear errors.

mod common;

use std::path::{Path, PathBuf};

use graft::base::{Backend, BaseRef, EngineOptions};
use graft::cache::CacheOptions;
use graft::export::{ExportOptions, Exported, Precision, Quantize};
use graft::recognizer::Recognizer;
use graft::task::{ExportedClassifier, Silent};
use prost::Message;
use tract_onnx::prelude::*;

fn no_cache() -> CacheOptions {
    CacheOptions { no_cache: true }
}

fn trained() -> &'static common::ShippedRecognizer {
    common::shipped_recognizer()
}

fn export(dir: &Path, name: &str, options: &ExportOptions) -> Exported {
    trained()
        .classifier
        .export(&dir.join(name).join("model.onnx"), options)
        .unwrap()
}

fn smaller(quantize: Option<Quantize>, precision: Precision) -> ExportOptions {
    ExportOptions {
        quantize,
        precision,
        data: Some(trained().data.clone()),
        ..ExportOptions::default()
    }
}

/// Top-1 labels of an exported file on every shipped image, run by `backend`.
fn answers(path: &Path, backend: Backend) -> Vec<String> {
    let engine = EngineOptions {
        backend,
        ..EngineOptions::default()
    };
    let file = ExportedClassifier::load(path, &engine).unwrap();
    file.predict_files(&trained().files, 1, &no_cache(), &Silent)
        .unwrap()
        .into_iter()
        .map(|a| a.answer.unwrap().label)
        .collect()
}

fn agreeing(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// The labels the whole image-in file gives (tract, its own resize) for the first images.
fn tract_image_in(path: &Path, files: &[PathBuf]) -> Vec<String> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let labels = trained().classifier.recognizer().labels();
    files
        .iter()
        .map(|f| {
            let rgb = image::open(f).unwrap().to_rgb8();
            let (w, h) = rgb.dimensions();
            let batch = tract_ndarray::Array4::from_shape_vec(
                (1, h as usize, w as usize, 3),
                rgb.into_raw(),
            )
            .unwrap();
            let out = model.run(tvec!(Tensor::from(batch).into_tvalue())).unwrap();
            let label = out[1].to_plain_array_view::<i64>().unwrap()[[0]];
            labels[label as usize].clone()
        })
        .collect()
}

fn metadata(path: &Path, key: &str) -> serde_json::Value {
    let proto =
        tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let value = proto
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .value
        .clone();
    serde_json::from_str(&value).unwrap()
}

#[test]
fn an_int8_export_is_under_a_third_of_float_and_agrees_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let float = export(dir.path(), "float", &ExportOptions::default());
    let int8 = export(
        dir.path(),
        "int8",
        &smaller(Some(Quantize::Int8), Precision::Fp32),
    );
    let s = int8.smaller.as_ref().unwrap();
    assert_eq!((s.form, s.weight_scales), ("int8", Some("per-channel")));
    assert!(s.weights > 20 && s.activations > 20, "{s:?}");
    assert!(s.calibration_examples > 40, "{s:?}");

    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&int8.onnx) / size(&float.onnx);
    assert!(ratio <= 0.3, "int8 is {ratio:.3}x the float file");

    let expected = answers(&float.onnx, Backend::Tract);
    let got = answers(&int8.onnx, Backend::Tract);
    let same = agreeing(&expected, &got);
    eprintln!(
        "int8 vs float (tract): {same}/{} top-1 agree, size {ratio:.3}x",
        got.len()
    );
    assert!(
        same * 100 >= got.len() * 98,
        "top-1 agrees on {same}/{}",
        got.len()
    );

    // The comparison graft made on the validation split says the same, and is stored.
    let c = int8.comparison.as_ref().unwrap();
    assert!(c.same_split_as_training);
    assert_eq!(c.float.bytes as f64, size(&float.onnx));
    assert_eq!(c.smaller.bytes as f64, size(&int8.onnx));
    // On the 25 validation images one answer is 4 points: the accuracies must be within 1 point
    // but for answers that were near ties in float (checked on every shipped image).
    let flips = disagreements_are_near_ties(&float.onnx, &int8.onnx);
    assert_eq!(flips, got.len() - same);
    let tie_points = flips as f64 / c.examples as f64;
    assert!(
        (c.smaller.accuracy - c.float.accuracy).abs() <= 0.01 + tie_points + 1e-9,
        "validation accuracy {} (int8) vs {} (float)",
        c.smaller.accuracy,
        c.float.accuracy
    );
    assert!(c.agreement + tie_points >= 0.98 - 1e-9, "{c:?}");
    let validation = trained().classifier.recognizer().training().unwrap();
    let float_accuracy = validation.validation.as_ref().unwrap().accuracy;
    assert!((c.float.accuracy - float_accuracy).abs() < 1e-6);
    assert!(c.float.ms_tract > 0.0 && c.smaller.ms_tract > 0.0);
    if graft::base::find_library(None).ok().flatten().is_some() {
        assert!(c.smaller.ms_onnxruntime.is_some(), "{c:?}");
        assert!(
            c.agreement_onnxruntime.unwrap() + tie_points >= 0.98 - 1e-9,
            "{c:?}"
        );
    }
    let card = std::fs::read_to_string(&int8.model_card).unwrap();
    for needle in [
        "**int8.**",
        "Smaller export against float",
        "agreement with float",
    ] {
        assert!(card.contains(needle), "the card lacks {needle}:\n{card}");
    }
    assert_eq!(metadata(&int8.onnx, "graft.weights")["form"], "int8");

    // tract runs the whole file, its own resize included, as the app would.
    let first = &trained().files[..8];
    let whole = tract_image_in(&int8.onnx, first);
    assert!(
        agreeing(&whole, &got[..8]) >= 7,
        "{whole:?} vs {:?}",
        &got[..8]
    );
}

/// The top-1 labels and the margin between the two most probable classes of an exported file
/// on `files`, run by tract.
fn top_two(path: &Path, files: &[PathBuf]) -> Vec<(String, f32)> {
    let engine = EngineOptions {
        backend: Backend::Tract,
        ..EngineOptions::default()
    };
    let file = ExportedClassifier::load(path, &engine).unwrap();
    file.predict_files(files, 2, &no_cache(), &Silent)
        .unwrap()
        .into_iter()
        .map(|a| {
            let p = a.answer.unwrap();
            (p.label, p.top[0].1 - p.top[1].1)
        })
        .collect()
}

/// Where an int8 file answers otherwise than float, float's own answer must be a near tie: its
/// two best classes within `NEAR_TIE` (such an answer flips under any change of the weights).
const NEAR_TIE: f32 = 0.05;

fn disagreements_are_near_ties(float: &Path, small: &Path) -> usize {
    let files = &trained().files;
    let (f, s) = (top_two(float, files), top_two(small, files));
    let mut flips = 0;
    for ((file, a), b) in files.iter().zip(&f).zip(&s) {
        if a.0 != b.0 {
            eprintln!(
                "{} answers {} (float, margin {:.4}), {} ({})",
                file.display(),
                a.0,
                a.1,
                b.0,
                small.display()
            );
            assert!(
                a.1 < NEAR_TIE,
                "{} flipped with float margin {}",
                file.display(),
                a.1
            );
            flips += 1;
        }
    }
    flips
}

#[test]
fn weight_only_int8_is_as_small_and_agrees_with_float() {
    let dir = tempfile::tempdir().unwrap();
    let float = export(dir.path(), "float", &ExportOptions::default());
    let bare = ExportOptions {
        quantize: Some(Quantize::Int8Weights),
        ..ExportOptions::default()
    };
    let w = export(dir.path(), "w", &bare);
    let s = w.smaller.as_ref().unwrap();
    assert_eq!(
        (s.form, s.activations, s.calibration_examples),
        ("int8-weights", 0, 0)
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&w.onnx) / size(&float.onnx);
    assert!(ratio <= 0.3, "int8-weights is {ratio:.3}x the float file");
    let flips = disagreements_are_near_ties(&float.onnx, &w.onnx);
    let n = trained().files.len();
    assert!(
        (n - flips) * 100 >= n * 98,
        "top-1 agrees on {}/{n}",
        n - flips
    );
    assert!(w.comparison.is_none());
}

#[test]
fn an_fp16_export_is_about_half_of_float_and_agrees_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let float = export(dir.path(), "float", &ExportOptions::default());
    let fp16 = export(dir.path(), "fp16", &smaller(None, Precision::Fp16));
    let s = fp16.smaller.as_ref().unwrap();
    assert_eq!(s.form, "fp16");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&fp16.onnx) / size(&float.onnx);
    assert!(
        (0.4..=0.55).contains(&ratio),
        "fp16 is {ratio:.3}x the float file"
    );
    let expected = answers(&float.onnx, Backend::Tract);
    let got = answers(&fp16.onnx, Backend::Tract);
    let same = agreeing(&expected, &got);
    assert!(
        same * 100 >= got.len() * 98,
        "top-1 agrees on {same}/{}",
        got.len()
    );
    let c = fp16.comparison.as_ref().unwrap();
    assert_eq!(c.smaller.form, "fp16");
    assert!(c.agreement >= 0.98, "{c:?}");
    assert!(
        (c.smaller.accuracy - c.float.accuracy).abs() <= 0.01 + 1e-9,
        "{c:?}"
    );
    let first = &trained().files[..4];
    assert_eq!(tract_image_in(&fp16.onnx, first), got[..4].to_vec());
    // Without a folder it is exported, not compared.
    let bare = ExportOptions {
        precision: Precision::Fp16,
        ..ExportOptions::default()
    };
    let r = export(dir.path(), "bare", &bare);
    assert!(r.smaller.is_some() && r.comparison.is_none());
}

#[test]
fn smaller_exports_say_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let classifier = &trained().classifier;
    let no_data = ExportOptions {
        quantize: Some(Quantize::Int8),
        ..ExportOptions::default()
    };
    let err = classifier.export(&out, &no_data).unwrap_err().to_string();
    assert!(err.contains("give --data"), "{err}");
    let both = ExportOptions {
        precision: Precision::Fp16,
        ..smaller(Some(Quantize::Int8), Precision::Fp32)
    };
    let err = classifier.export(&out, &both).unwrap_err().to_string();
    assert!(err.contains("not both"), "{err}");
    assert!(!out.exists());

    // A recognizer whose base file is gone: `graft export --quantize int8` says so.
    let r = classifier.recognizer();
    let gone = dir.path().join("gone.onnx");
    let base = BaseRef {
        name: gone.display().to_string(),
        ..r.base().clone()
    };
    let orphan = Recognizer::new(r.head().clone(), r.labels().to_vec(), base).unwrap();
    let rec = dir.path().join("orphan.safetensors");
    orphan.save(&rec).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .arg("export")
        .arg(&rec)
        .arg("-o")
        .arg(&out)
        .args(["--quantize", "int8", "--data"])
        .arg(&trained().data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("needs the recognizer's base") && stderr.contains("gone.onnx"),
        "{stderr}"
    );
    assert!(!out.exists());
}
