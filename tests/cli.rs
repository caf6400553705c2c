//! The `graft` command line end to end on the committed EfficientNet-Lite0 and the demo image set:
//! every verb, `--json` output, and clear errors (never a panic) on bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use graft::recognizer::Recognizer;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `--json` result: the last line of stdout.
    fn json(&self) -> Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "graft failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a clean failure: exit code 1, an `error:` line containing `needle`, no panic.
    fn fails_with(&self, needle: &str) {
        assert_eq!(
            self.code, 1,
            "expected failure:\n{}\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        assert!(
            self.stderr.contains("error:") && self.stderr.contains(needle),
            "stderr lacks '{needle}':\n{}",
            self.stderr
        );
    }
}

fn graft(cache: &Path, args: &[&str]) -> Run {
    let (code, stdout, stderr) = common::run_graft(cache, args);
    Run {
        code,
        stdout,
        stderr,
    }
}

fn demo_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A small labelled folder: `per_class` demo images from each of `classes`.
fn subset(dir: &Path, classes: &[&str], per_class: usize) -> PathBuf {
    let root = dir.join("subset");
    for class in classes {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(demo_data().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().take(per_class) {
            std::fs::copy(f, root.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    root
}

#[test]
fn demo_trains_evaluates_exports_and_builds_a_knn_index() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let run = graft(
        &tmp.path().join("cache"),
        &["demo", "--json", "--out-dir", s(&out)],
    )
    .ok();
    let result = run.json();
    let accuracy = result["validation"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.7, "demo validation accuracy {accuracy}");
    assert!(result["export_max_abs_diff"].as_f64().unwrap() < 1e-5);
    assert!(result["knn_accuracy"].as_f64().unwrap() >= 0.5);
    assert_eq!(result["predictions"].as_array().unwrap().len(), 7);
    for f in [
        "recognizer.safetensors",
        "recognizer.onnx",
        "knn-index.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Progress bars and tables stay off stdout with --json: one line only.
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
}

#[test]
fn train_predict_eval_export_and_knn_verbs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = subset(tmp.path(), &["fish", "planet", "roadsign"], 6);
    let rec = tmp.path().join("rec.safetensors");
    let trained = graft(
        &cache,
        &[
            "train",
            "--data",
            s(&data),
            "--epochs",
            "40",
            "-o",
            s(&rec),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(
        trained["labels"],
        serde_json::json!(["fish", "planet", "roadsign"])
    );
    assert_eq!(
        trained["training"]["train_counts"],
        serde_json::json!([4, 4, 4])
    );

    let fish = data
        .join("fish")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let planet = data
        .join("planet")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let predicted = graft(
        &cache,
        &[
            "predict",
            s(&rec),
            s(&fish),
            s(&planet),
            "-k",
            "2",
            "--json",
        ],
    )
    .ok()
    .json();
    let preds = predicted["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    for p in preds {
        assert_eq!(p["top"].as_array().unwrap().len(), 2);
        let prob = p["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&prob));
    }

    let evaluated = graft(&cache, &["eval", s(&rec), "--data", s(&data), "--json"])
        .ok()
        .json();
    let accuracy = evaluated["metrics"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracy >= 0.8,
        "accuracy on mostly-training data: {accuracy}"
    );
    assert_eq!(
        evaluated["metrics"]["confusion"].as_array().unwrap().len(),
        3
    );

    let onnx = tmp.path().join("model.onnx");
    let exported = graft(&cache, &["export", s(&rec), "-o", s(&onnx), "--json"])
        .ok()
        .json();
    assert_eq!(exported["input_form"], "image");
    assert_eq!(exported["input_type"], "uint8");
    assert!(tmp.path().join("MODEL_CARD.md").is_file());
    // `graft predict` takes the exported file and answers as the recognizer does.
    let from_onnx = graft(
        &cache,
        &[
            "predict",
            s(&onnx),
            s(&fish),
            s(&planet),
            "-k",
            "2",
            "--json",
        ],
    )
    .ok()
    .json();
    for (a, b) in from_onnx["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(preds)
    {
        assert_eq!(a["label"], b["label"]);
        assert_eq!(a["unknown"], b["unknown"]);
        let (p, q) = (
            a["probability"].as_f64().unwrap(),
            b["probability"].as_f64().unwrap(),
        );
        assert!((p - q).abs() < 1e-4, "{p} vs {q}");
    }
    let tensor = tmp.path().join("tensor").join("model.onnx");
    let exported = graft(
        &cache,
        &[
            "export",
            s(&rec),
            "-o",
            s(&tensor),
            "--input",
            "tensor",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(exported["input_form"], "tensor");
    assert_eq!(
        exported["input_dims"],
        serde_json::json!(["N", 3, 224, 224])
    );
    // The tensor form is a float-input model graft can inspect (and use as a base).
    let inspected = graft(&cache, &["inspect", s(&tensor), "--json"])
        .ok()
        .json();
    let outputs: Vec<&str> = inspected["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(outputs.contains(&"probabilities"), "{outputs:?}");

    let index = tmp.path().join("index.safetensors");
    graft(
        &cache,
        &[
            "knn",
            "build",
            "--data",
            s(&data),
            "-o",
            s(&index),
            "--quiet",
        ],
    )
    .ok();
    let classified = graft(
        &cache,
        &["knn", "classify", s(&index), s(&fish), "-k", "1", "--json"],
    )
    .ok()
    .json();
    // k = 1 and the file is in the index: its own label, with full confidence.
    assert_eq!(classified["predictions"][0]["prediction"]["label"], "fish");
}

#[test]
fn the_same_seed_gives_bit_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = subset(tmp.path(), &["insect", "tool"], 5);
    let train = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        let args = [
            "train",
            "--data",
            s(&data),
            "--epochs",
            "15",
            "--hidden",
            "16",
            "--dropout",
            "0.2",
        ];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--seed", seed, "-o", s(&out), "--quiet"]);
        graft(&cache, &args).ok();
        Recognizer::load(&out).unwrap().head().clone()
    };
    let a = train("a.safetensors", "7");
    let b = train("b.safetensors", "7");
    let c = train("c.safetensors", "8");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bad_input_gives_clear_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = tmp.path();

    // One class only.
    let one = subset(&dir.join("one"), &["fish"], 3);
    graft(&cache, &["train", "--data", s(&one)]).fails_with("at least two classes");

    // An empty class folder.
    let empty = subset(&dir.join("empty"), &["fish", "tool"], 3);
    std::fs::create_dir_all(empty.join("nothing")).unwrap();
    graft(&cache, &["train", "--data", s(&empty)]).fails_with("'nothing'");

    // A class whose only files are not images: skipped with a warning, then an error naming it.
    let junk = subset(&dir.join("junk"), &["fish", "tool"], 3);
    std::fs::create_dir_all(junk.join("notes")).unwrap();
    std::fs::write(junk.join("notes/a.png"), b"this is not a PNG").unwrap();
    std::fs::write(junk.join("notes/b.jpg"), b"GIF89a........").unwrap();
    let run = graft(&cache, &["train", "--data", s(&junk)]);
    run.fails_with("no usable example in class(es) notes");
    assert!(
        run.stderr.contains("2 file(s) skipped") && run.stderr.contains("b.jpg"),
        "{}",
        run.stderr
    );

    // A missing data folder, an unknown base, a corrupt ONNX base.
    graft(&cache, &["train", "--data", s(&dir.join("missing"))]).fails_with("missing");
    let fish = subset(&dir.join("ok"), &["fish", "tool"], 3);
    graft(
        &cache,
        &["train", "--data", s(&fish), "--base", "no-such-model"],
    )
    .fails_with("no-such-model");
    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, [0x08u8, 0x07, 0xff, 0xff, 0xff, 0x12, 0x99]).unwrap();
    graft(
        &cache,
        &["train", "--data", s(&fish), "--base", s(&corrupt)],
    )
    .fails_with("corrupt.onnx");
    graft(&cache, &["inspect", s(&corrupt)]).fails_with("corrupt.onnx");

    // Out-of-range options.
    graft(&cache, &["train", "--data", s(&fish), "--val-split", "1.5"])
        .fails_with("validation split");
    graft(&cache, &["train", "--data", s(&fish), "--dropout", "1"]).fails_with("dropout");

    // A recognizer file that is not one, and a truncated one.
    let rec = dir.join("rec.safetensors");
    graft(
        &cache,
        &[
            "train",
            "--data",
            s(&fish),
            "--epochs",
            "3",
            "-o",
            s(&rec),
            "--quiet",
        ],
    )
    .ok();
    let image = fish
        .join("fish")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&rec).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    graft(&cache, &["predict", s(&truncated), s(&image)]).fails_with("truncated.safetensors");
    graft(&cache, &["predict", s(&corrupt), s(&image)]).fails_with("corrupt.onnx");
    // A KNN index is not a recognizer, and the other way round.
    graft(&cache, &["knn", "classify", s(&rec), s(&image)]).fails_with("not a KNN index");

    // Files that are not images: reported per file, the others still classified.
    let text = dir.join("note.jpg");
    std::fs::write(&text, b"plain text").unwrap();
    let run = graft(&cache, &["predict", s(&rec), s(&image), s(&text), "--json"]);
    run.fails_with("note.jpg");
    let preds = run.json()["predictions"].as_array().unwrap().clone();
    assert!(preds[0]["label"].is_string() && preds[1]["error"].is_string());

    // A pickle that would run os.system is refused by name.
    let evil =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/os_system_global.pkl");
    graft(
        &cache,
        &[
            "convert",
            "torch",
            s(&evil),
            "-o",
            s(&dir.join("x.safetensors")),
        ],
    )
    .fails_with("os.system");
}

#[test]
fn training_on_the_gpu_is_recorded_in_the_recognizer() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = subset(tmp.path(), &["fish", "tool"], 4);
    let rec = tmp.path().join("rec.safetensors");
    let run = graft(
        &cache,
        &[
            "train",
            "--data",
            s(&data),
            "--epochs",
            "5",
            "--device",
            "gpu",
            "-o",
            s(&rec),
            "--json",
        ],
    );
    if run.code != 0
        && run.stderr.contains("no GPU adapter")
        && std::env::var("GRAFT_REQUIRE_GPU").as_deref() != Ok("1")
    {
        eprintln!("skipped: no GPU adapter (set GRAFT_REQUIRE_GPU=1 to make this a failure)");
        return;
    }
    let backend = run.ok().json()["training"]["report"]["backend"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(backend.starts_with("gpu: "), "{backend}");
    let loaded = Recognizer::load(&rec).unwrap();
    assert_eq!(loaded.training().unwrap().report.backend, backend);
    // An unknown device is a clear error.
    graft(&cache, &["train", "--data", s(&data), "--device", "tpu"]).fails_with("tpu");
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    // `graft zoo list | head -0`: the reader is gone before graft writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["zoo", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn outputs_never_overwrite_their_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rec = tmp.path().join("r.safetensors");
    std::fs::copy(fixtures.join("compat/image-recognizer.safetensors"), &rec).unwrap();
    let before = std::fs::read(&rec).unwrap();
    // The same file under another spelling is still the same file.
    let again = tmp.path().join("sub/../r.safetensors");
    std::fs::create_dir_all(tmp.path().join("sub")).unwrap();
    graft(&cache, &["export", s(&rec), "-o", s(&again)]).fails_with("input file itself");
    assert_eq!(std::fs::read(&rec).unwrap(), before);
    let pth = tmp.path().join("m.pth");
    std::fs::copy(fixtures.join("torch/zip.pth"), &pth).unwrap();
    let before = std::fs::read(&pth).unwrap();
    graft(&cache, &["convert", "torch", s(&pth), "-o", s(&pth)]).fails_with("input file itself");
    assert_eq!(std::fs::read(&pth).unwrap(), before);
    // Another output path works.
    graft(
        &cache,
        &[
            "convert",
            "torch",
            s(&pth),
            "-o",
            s(&tmp.path().join("m.safetensors")),
        ],
    )
    .ok();
}

#[test]
fn convert_lists_the_operators_each_converter_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let run = graft(tmp.path(), &["convert", "--list-ops", "--json"]).ok();
    let listed: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    for (format, ops) in graft_converters::supported_ops() {
        assert_eq!(listed["ops"][format], serde_json::json!(ops), "{format}");
    }
    let text = graft(tmp.path(), &["convert", "--list-ops"]).ok();
    assert!(
        text.stdout.contains("DepthwiseConv2dNative"),
        "{}",
        text.stdout
    );
}

/// `graft predict` takes folders (their files, sub-folders included) and `-` (a file on standard
/// input), answering each as it answers the files themselves.
#[test]
fn predict_takes_a_knn_index_and_answers_as_knn_classify_does() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let index =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compat/knn-index.safetensors");
    let folder = subset(tmp.path(), &["fish", "planet", "tool"], 2);
    let predicted = graft(
        &cache,
        &["predict", s(&index), s(&folder), "-k", "2", "--json"],
    )
    .ok()
    .json();
    // The same files, in the order predict takes a folder's (sorted, class by class).
    let mut files: Vec<PathBuf> = Vec::new();
    for class in ["fish", "planet", "tool"] {
        let mut these: Vec<PathBuf> = std::fs::read_dir(folder.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        these.sort();
        files.extend(these);
    }
    let mut args = vec!["knn", "classify", s(&index)];
    args.extend(files.iter().map(|f| s(f)));
    args.push("--json");
    let classified = graft(&cache, &args).ok().json();
    let predicted = predicted["predictions"].as_array().unwrap();
    let classified = classified["predictions"].as_array().unwrap();
    assert_eq!(predicted.len(), 6);
    assert_eq!(predicted.len(), classified.len());
    for (p, c) in predicted.iter().zip(classified) {
        let c = &c["prediction"];
        assert_eq!(p["label"], c["label"]);
        assert_eq!(p["unknown"], c["unknown"]);
        // Its probability is the winner's share of the 3 votes; the top 2 by share.
        let share = c["confidences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v[0] == c["label"])
            .unwrap()[1]
            .as_f64()
            .unwrap();
        assert!(
            (p["probability"].as_f64().unwrap() - share).abs() < 1e-6,
            "{p} {c}"
        );
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert!(top[0][1].as_f64() >= top[1][1].as_f64());
    }
}

#[test]
fn predict_takes_folders_and_standard_input() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let rec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compat/image-recognizer.safetensors");
    let folder = subset(tmp.path(), &["fish", "planet"], 2);
    let one = |run: Run| run.ok().json()["predictions"].as_array().unwrap().clone();
    let from_folder = one(graft(&cache, &["predict", s(&rec), s(&folder), "--json"]));
    assert_eq!(from_folder.len(), 4);
    let first = PathBuf::from(from_folder[0]["file"].as_str().unwrap());
    assert!(first.starts_with(folder.join("fish")), "{first:?}");
    let by_file = one(graft(&cache, &["predict", s(&rec), s(&first), "--json"]));
    assert_eq!(by_file[0]["label"], from_folder[0]["label"]);

    let (engine_var, engine_value) = common::engine_env();
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["predict", s(&rec), "-", s(&first), "--json"])
        .env("GRAFT_CACHE", &cache)
        .env(engine_var, engine_value)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&first).unwrap()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let preds = json["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0]["file"], "-");
    assert_eq!(preds[0]["label"], preds[1]["label"]);
    let (p, q) = (
        preds[0]["probability"].as_f64().unwrap(),
        preds[1]["probability"].as_f64().unwrap(),
    );
    assert!((p - q).abs() < 1e-5, "{p} vs {q}");
}

/// A Teachable Machine image export (TF.js layers: a Sequential of Sequentials, as Teachable
/// Machine writes it, here global pooling then a softmax Dense; `metadata.json` with the labels)
/// predicts through `graft predict`, with Teachable Machine's preprocessing (centred square,
/// 224x224, RGB in [-1, 1]): the probabilities are those computed here from the image.
#[test]
fn predict_reads_a_teachable_machine_export() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let tm = tmp.path().join("tm-my-image-model");
    std::fs::create_dir_all(&tm).unwrap();
    let topology = serde_json::json!({
        "class_name": "Sequential",
        "config": {"name": "sequential_4", "layers": [
            {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [
                {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap",
                    "batch_input_shape": [null, 224, 224, 3], "dtype": "float32"}}
            ]}},
            {"class_name": "Sequential", "config": {"name": "sequential_3", "layers": [
                {"class_name": "Dense", "config": {"name": "dense_Dense1", "units": 2,
                    "activation": "softmax", "use_bias": true}}
            ]}}
        ]},
        "keras_version": "tfjs-layers 1.3.1",
        "backend": "tensor_flow.js"
    });
    let kernel: [f32; 6] = [2.0, -1.0, -0.5, 1.5, 1.0, -2.0];
    let bias: [f32; 2] = [0.1, -0.1];
    let model = serde_json::json!({
        "modelTopology": topology,
        "format": "layers-model",
        "weightsManifest": [{"paths": ["weights.bin"], "weights": [
            {"name": "dense_Dense1/kernel", "shape": [3, 2], "dtype": "float32"},
            {"name": "dense_Dense1/bias", "shape": [2], "dtype": "float32"}
        ]}]
    });
    std::fs::write(tm.join("model.json"), model.to_string()).unwrap();
    let weights: Vec<u8> = kernel
        .iter()
        .chain(&bias)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(tm.join("weights.bin"), weights).unwrap();
    let metadata = serde_json::json!({
        "tfjsVersion": "1.3.1", "tmVersion": "2.4.7", "packageVersion": "0.8.4",
        "packageName": "@teachablemachine/image", "modelName": "tm-my-image-model",
        "labels": ["warm", "cool"], "imageSize": 224
    });
    std::fs::write(tm.join("metadata.json"), metadata.to_string()).unwrap();

    // A wide image whose centred square is red on the left half, blue on the right; the
    // borders outside the square (green) are cropped away.
    let image = image::RgbImage::from_fn(400, 200, |x, _| match x {
        0..100 | 300.. => image::Rgb([0, 255, 0]),
        100..200 => image::Rgb([255, 0, 0]),
        _ => image::Rgb([0, 0, 255]),
    });
    let file = tmp.path().join("square.png");
    image.save(&file).unwrap();
    let run = graft(&cache, &["predict", s(&tm), s(&file), "-k", "2", "--json"]).ok();
    let pred = &run.json()["predictions"][0];
    // After the crop, the mean of each channel in [-1, 1]: red and blue half on, green off
    // (resizing keeps the means of two flat halves).
    let mean = [0.0f32, -1.0, 0.0];
    let logits: Vec<f32> = (0..2)
        .map(|o| bias[o] + (0..3).map(|c| mean[c] * kernel[c * 2 + o]).sum::<f32>())
        .collect();
    let e: Vec<f32> = logits.iter().map(|l| l.exp()).collect();
    let expected = [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])];
    let best = if expected[0] >= expected[1] {
        "warm"
    } else {
        "cool"
    };
    assert_eq!(pred["label"], best, "{pred}");
    let p = pred["probability"].as_f64().unwrap() as f32;
    assert!(
        (p - expected[0].max(expected[1])).abs() < 1e-3,
        "{p} vs {expected:?}"
    );

    // Another kind of project is a clear error.
    let pose = serde_json::json!({"packageName": "@teachablemachine/pose", "labels": ["a", "b"]});
    std::fs::write(tm.join("metadata.json"), pose.to_string()).unwrap();
    graft(&cache, &["predict", s(&tm), s(&file)]).fails_with("image projects");
}

#[test]
fn a_raw_base_trains_predicts_and_exports_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vectors");
    let rec = tmp.path().join("shapes.safetensors");
    let trained = graft(
        &cache,
        &[
            "train",
            "--base",
            "raw:vector:6",
            "--data",
            s(&data),
            "--epochs",
            "100",
            "--batch-size",
            "4",
            "--lr",
            "0.02",
            "--patience",
            "0",
            "--device",
            "cpu",
            "-o",
            s(&rec),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(trained["base"]["name"], "raw:vector:6");
    assert_eq!(trained["base"]["input"], serde_json::json!({ "length": 6 }));
    assert_eq!(trained["training"]["validation"]["accuracy"], 1.0);
    let rising = data.join("rising/rising_0.csv");
    let falling = data.join("falling/falling_1.npy");
    let predicted = graft(
        &cache,
        &["predict", s(&rec), s(&rising), s(&falling), "--json"],
    )
    .ok()
    .json();
    let labels: Vec<&str> = predicted["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["rising", "falling"]);
    let onnx = tmp.path().join("shapes.onnx");
    let exported = graft(&cache, &["export", s(&rec), "-o", s(&onnx), "--json"])
        .ok()
        .json();
    assert_eq!(exported["input_form"], "tensor");
    graft(
        &cache,
        &["train", "--base", "raw:table:6", "--data", s(&data)],
    )
    .fails_with("give raw:image:WxH (RGB), raw:image:WxH:gray or raw:vector:N");
}
