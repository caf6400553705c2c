//! The task-level API (`graft::task`): one call per flow, shared by threads; the command line's
//! flags derived from the library's option structs; files written by the previous version.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions, EngineOptions};
use graft::cache::CacheOptions;
use graft::dataset::{Dataset, Example};
use graft::embeddings::Embeddings;
use graft::task::{self, Classifier, CreateOptions, KnnClassifier, Silent};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compat(name: &str) -> PathBuf {
    repo().join("tests/fixtures/compat").join(name)
}

/// The first `per_class` shipped images of `classes`, as a data set (no copies).
fn shipped(classes: &[&str], per_class: usize) -> Dataset {
    let root = task::demo::demo_data().unwrap();
    let mut examples = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        examples.extend(
            files
                .into_iter()
                .take(per_class)
                .map(|path| Example { path, label }),
        );
    }
    Dataset {
        root,
        classes: classes.iter().map(|c| c.to_string()).collect(),
        examples,
    }
}

fn no_cache() -> CacheOptions {
    CacheOptions { no_cache: true }
}

#[test]
fn a_recognizer_is_created_used_evaluated_exported_and_shared_by_threads() {
    let base = Arc::new(BaseModel::open("efficientnet-lite0", &BaseOptions::default()).unwrap());
    let data = shipped(&["fish", "planet", "roadsign"], 6);
    let options = CreateOptions {
        cache: no_cache(),
        ..CreateOptions::default()
    };
    let created = task::create(&base, &data, &options, &Silent).unwrap();
    let report = &created.report;
    assert_eq!(report.embedded.as_ref().unwrap().examples, 18);
    let split: Vec<(usize, usize)> = report.split.iter().map(|c| (c.train, c.val)).collect();
    assert_eq!(split, vec![(4, 2); 3]);
    let validation = created
        .recognizer
        .training()
        .as_ref()
        .unwrap()
        .validation
        .clone();
    let validation = validation.unwrap();
    assert!(validation.accuracy >= 0.5);
    // Each validation example's answer, cell by cell the confusion matrix, each file one of the
    // folder's, of its class.
    assert_eq!(report.validation.len(), 6);
    let mut cells = vec![vec![0; 3]; 3];
    for a in &report.validation {
        cells[a.label][a.predicted] += 1;
        let example = data.examples.iter().find(|e| e.path == a.file).unwrap();
        assert_eq!(example.label, a.label);
        assert!((0.0..=1.0).contains(&a.probability));
    }
    assert_eq!(cells, validation.confusion);

    let classifier = Arc::new(Classifier::new(created.recognizer, base.clone()).unwrap());
    let files: Vec<PathBuf> = data.examples.iter().map(|e| e.path.clone()).collect();
    let answers = classifier
        .predict_files(&files, 2, &no_cache(), &Silent)
        .unwrap();
    let labels: Vec<String> = answers
        .iter()
        .map(|a| a.answer.as_ref().unwrap().label.clone())
        .collect();
    let truth: Vec<&str> = data
        .examples
        .iter()
        .map(|e| data.classes[e.label].as_str())
        .collect();
    let right = labels.iter().zip(&truth).filter(|(a, b)| a == b).count();
    assert!(
        right >= 15,
        "{right}/18 training-set images right: {labels:?}"
    );

    // Bytes and files give the same answers, from several threads at once.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let classifier = classifier.clone();
            let files = files.clone();
            std::thread::spawn(move || {
                files
                    .iter()
                    .skip(t)
                    .step_by(4)
                    .map(|f| {
                        let bytes = std::fs::read(f).unwrap();
                        let p = classifier.predict_bytes(&bytes, "upload.png", 2).unwrap();
                        (f.clone(), p)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        for (file, p) in thread.join().unwrap() {
            let i = files.iter().position(|f| *f == file).unwrap();
            let q = answers[i].answer.as_ref().unwrap();
            assert_eq!(p.label, q.label);
            assert!((p.probability - q.probability).abs() < 1e-5);
        }
    }
    let junk = classifier.predict_bytes(b"not an image", "junk.png", 1);
    assert!(junk.unwrap_err().to_string().contains("junk.png"));

    let evaluation = classifier
        .evaluate(&data, None, &no_cache(), &Silent)
        .unwrap();
    assert_eq!(evaluation.metrics.accuracy, right as f64 / 18.0);
    let dir = tempfile::tempdir().unwrap();
    let exported = classifier
        .export(&dir.path().join("r.onnx"), &task::ExportOptions::default())
        .unwrap();
    assert_eq!(exported.classes, 3);
    assert_eq!(exported.form, task::InputForm::Image);
    assert!(exported.onnx.is_file());
}

#[test]
fn a_knn_index_is_built_grown_and_asked() {
    let base = Arc::new(BaseModel::open("efficientnet-lite0", &BaseOptions::default()).unwrap());
    let data = shipped(&["fish", "planet"], 3);
    let (mut knn, report) = KnnClassifier::build(base, &data, &no_cache(), &Silent).unwrap();
    assert_eq!((report.examples, knn.knn().len()), (6, 6));
    let tools = shipped(&["tool"], 4);
    let files: Vec<PathBuf> = tools.examples.iter().map(|e| e.path.clone()).collect();
    knn.add_files("tool", &files[..3], &no_cache()).unwrap();
    assert_eq!(
        knn.knn().class_counts().last().unwrap(),
        &("tool".to_string(), 3)
    );
    // The fourth tool is nearest to the three added ones.
    let answer = knn
        .classify_files(&files[3..], 3, &no_cache(), &Silent)
        .unwrap();
    assert_eq!(answer[0].answer.as_ref().unwrap().label, "tool");
    // A file that cannot be used adds nothing.
    let err = knn
        .add_files("tool", &[repo().join("README.md")], &no_cache())
        .unwrap_err();
    assert!(err.to_string().contains("README.md"), "{err}");
    assert_eq!(knn.knn().len(), 9);
}

/// Parses `args` into `T` as the command line does.
#[cfg(feature = "cli")]
fn parse<T: clap::Args + clap::FromArgMatches>(args: &[&str]) -> T {
    let cmd = T::augment_args(clap::Command::new("graft").no_binary_name(true));
    T::from_arg_matches(&cmd.try_get_matches_from(args).unwrap()).unwrap()
}

#[cfg(feature = "cli")]
#[test]
fn flags_without_values_give_the_library_defaults() {
    use graft::listen::ListenOptions;
    use graft::task::demo::DemoOptions;
    use graft::train::TrainOptions;

    assert_eq!(parse::<TrainOptions>(&[]), TrainOptions::default());
    assert_eq!(parse::<CreateOptions>(&[]), CreateOptions::default());
    assert_eq!(parse::<ListenOptions>(&[]), ListenOptions::default());
    assert_eq!(parse::<BaseOptions>(&[]), BaseOptions::default());
    assert_eq!(parse::<EngineOptions>(&[]), EngineOptions::default());
    assert_eq!(parse::<CacheOptions>(&[]), CacheOptions::default());
    assert_eq!(parse::<DemoOptions>(&[]), DemoOptions::default());
    assert_eq!(
        parse::<graft::report::ReportOptions>(&[]),
        graft::report::ReportOptions::default()
    );
    assert_eq!(
        parse::<graft::knn::ScanOptions>(&[]),
        graft::knn::ScanOptions::default()
    );
    assert_eq!(
        parse::<graft::doctor::DoctorOptions>(&[]),
        graft::doctor::DoctorOptions::default()
    );
    assert_eq!(
        parse::<task::ExportOptions>(&[]),
        task::ExportOptions::default()
    );
    #[cfg(feature = "serve")]
    assert_eq!(
        parse::<graft::serve::ServeOptions>(&["models/"]),
        graft::serve::ServeOptions {
            paths: vec!["models/".into()],
            ..Default::default()
        }
    );
}

#[cfg(feature = "cli")]
#[test]
fn flags_set_the_fields_they_name() {
    use graft::head::Optimizer;
    use graft::task::Augmentation;

    let o: CreateOptions = parse(&[
        "--optimizer",
        "sgd",
        "--momentum",
        "0.5",
        "--patience",
        "0",
        "--no-standardize",
        "--lr",
        "0.01",
        "--hidden",
        "8",
        "--hidden",
        "4",
        "--val-split",
        "0.2",
        "--augment-noise",
        "3",
        "--augment-snr",
        "-5,10",
        "--augment-mirror",
        "--no-cache",
        "--device",
        "cpu",
        "--plots",
        "plots-dir",
    ]);
    assert_eq!(o.train.optimizer, Optimizer::Sgd { momentum: 0.5 });
    assert_eq!(o.train.patience, None);
    assert!(!o.train.standardize);
    assert_eq!(
        (o.train.learning_rate, o.train.hidden.clone()),
        (0.01, vec![8, 4])
    );
    assert_eq!(o.val_split, 0.2);
    assert_eq!(
        o.augment.0,
        vec![
            Augmentation::Mirror,
            Augmentation::Noise {
                copies: 3,
                snr_db: (-5.0, 10.0)
            }
        ]
    );
    assert!(o.cache.no_cache);
    assert_eq!(o.device, Some(graft::gpu::DeviceChoice::Cpu));
    assert_eq!(o.plots, Some(std::path::PathBuf::from("plots-dir")));
    let r: graft::report::ReportOptions = parse(&["--thumbnail", "64", "--per-cell", "5"]);
    assert_eq!((r.thumbnail, r.per_cell, r.least_confident), (64, 5, 24));
    let b: BaseOptions = parse(&["--mean", "1,2,3", "--std", "4", "--backend", "ort"]);
    assert_eq!((b.mean, b.std), (Some([1.0, 2.0, 3.0]), Some([4.0; 3])));
    assert_eq!(b.engine.backend, graft::base::Backend::Ort);
    let e: task::ExportOptions = parse(&["--input", "tensor"]);
    assert_eq!(e.input, Some(task::InputForm::Tensor));
    let cmd =
        <CreateOptions as clap::Args>::augment_args(clap::Command::new("g").no_binary_name(true));
    assert!(cmd
        .try_get_matches_from(["--augment-noise", "2", "--augment-snr", "5"])
        .is_ok_and(|m| { <CreateOptions as clap::FromArgMatches>::from_arg_matches(&m).is_err() }));
}

/// The `predictions` of a `--json` answer of the previous version, by file.
fn previous_answers(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(compat(name)).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["predictions"].as_array().unwrap().clone()
}

fn listed(name: &str) -> Vec<PathBuf> {
    std::fs::read_to_string(compat(name))
        .unwrap()
        .lines()
        .map(|l| repo().join(l))
        .collect()
}

#[test]
fn recognizers_and_indexes_saved_by_the_previous_version_answer_as_they_did() {
    for (recognizer, files, answers) in [
        (
            "image-recognizer.safetensors",
            "images.txt",
            "image-predictions.json",
        ),
        (
            "speech-recognizer.safetensors",
            "wavs.txt",
            "speech-predictions.json",
        ),
    ] {
        let classifier =
            Classifier::load(&compat(recognizer), &EngineOptions::default(), &Silent).unwrap();
        let files = listed(files);
        let now = classifier
            .predict_files(&files, 3, &no_cache(), &Silent)
            .unwrap();
        let then = previous_answers(answers);
        assert_eq!(now.len(), then.len());
        for (now, then) in now.iter().zip(&then) {
            let now = now.answer.as_ref().unwrap();
            assert_eq!(now.label, then["label"].as_str().unwrap(), "{recognizer}");
            // Saved before unknown rules existed: never unknown.
            assert!(!now.unknown, "{recognizer}: {now:?}");
            let p = then["probability"].as_f64().unwrap() as f32;
            assert!(
                (now.probability - p).abs() < 1e-5,
                "{recognizer}: {now:?} vs {then}"
            );
        }
    }
    let knn = KnnClassifier::load(
        &compat("knn-index.safetensors"),
        &EngineOptions::default(),
        None,
        &Silent,
    )
    .unwrap();
    let now = knn
        .classify_files(&listed("images.txt"), 3, &no_cache(), &Silent)
        .unwrap();
    for (now, then) in now.iter().zip(previous_answers("knn-predictions.json")) {
        let now = now.answer.as_ref().unwrap();
        assert_eq!(now.label, then["prediction"]["label"].as_str().unwrap());
        assert!(!now.unknown);
    }
}

#[test]
fn an_embedding_cache_written_by_the_previous_version_is_read() {
    let base = BaseModel::open("efficientnet-lite0", &BaseOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&compat("cache"), tmp.path());
    let entries: Vec<PathBuf> = walk(&tmp.path().join("embeddings"));
    assert_eq!(entries.len(), 14);
    // Plant a value in one entry: reading the cache must return it.
    let planted = &entries[0];
    let mut bytes = std::fs::read(planted).unwrap();
    bytes[..4].copy_from_slice(&1234.5f32.to_le_bytes());
    std::fs::write(planted, &bytes).unwrap();
    let files = listed("images.txt");
    let data = Dataset {
        root: task::demo::demo_data().unwrap(),
        classes: vec!["any".into(), "other".into()],
        examples: files
            .iter()
            .enumerate()
            .map(|(i, path)| Example {
                path: path.clone(),
                label: i % 2,
            })
            .collect(),
    };
    let (embeddings, skipped) =
        Embeddings::from_dataset(&base, &data, Some(tmp.path()), &|_| {}).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(
        walk(&tmp.path().join("embeddings")).len(),
        14,
        "no new entries"
    );
    let hit = embeddings
        .vectors()
        .iter()
        .filter(|&&v| v == 1234.5)
        .count();
    assert_eq!(hit, 1, "the planted value is read back");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
