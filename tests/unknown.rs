//! The calibrated "unknown" answer on real images: a recognizer (and a KNN index) made from 5 of
//! the 7 shipped Tux Paint classes, with the other 2 as examples of nothing it knows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions, EngineOptions};
use graft::cache::CacheOptions;
use graft::dataset::{Dataset, Example};
use graft::export::{SCORE, UNKNOWN};
use graft::reject::UnknownOptions;
use graft::task::{self, Classifier, CreateOptions, ExportedClassifier, KnnClassifier, Silent};

/// The first five classes (by name) are taught, the last two are unknown.
const TAUGHT: [&str; 5] = ["clothing", "fish", "insect", "instrument", "planet"];
const HELD_OUT: [&str; 2] = ["roadsign", "tool"];

fn files_of(class: &str) -> Vec<PathBuf> {
    let root = task::demo::demo_data().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn taught() -> Dataset {
    let examples = TAUGHT
        .iter()
        .enumerate()
        .flat_map(|(label, class)| {
            files_of(class)
                .into_iter()
                .map(move |path| Example { path, label })
        })
        .collect();
    Dataset {
        root: task::demo::demo_data().unwrap(),
        classes: TAUGHT.iter().map(|c| c.to_string()).collect(),
        examples,
    }
}

/// The held-out classes' images copied under `dir/<class>/` (any depth is read).
fn held_out(dir: &Path) -> Vec<PathBuf> {
    let mut copied = Vec::new();
    for class in HELD_OUT {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for file in files_of(class) {
            let to = dir.join(class).join(file.file_name().unwrap());
            std::fs::copy(&file, &to).unwrap();
            copied.push(to);
        }
    }
    copied
}

fn no_cache() -> CacheOptions {
    CacheOptions { no_cache: true }
}

#[test]
fn a_recognizer_keeps_its_classes_and_rejects_the_classes_it_was_not_taught() {
    let base = Arc::new(BaseModel::open("efficientnet-lite0", &BaseOptions::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let unknown_dir = dir.path().join("unknown");
    let unknown_files = held_out(&unknown_dir);
    let options = CreateOptions {
        cache: no_cache(),
        unknown: UnknownOptions {
            unknown_data: Some(unknown_dir.clone()),
            ..UnknownOptions::default()
        },
        ..CreateOptions::default()
    };
    let data = taught();
    let created = task::create(&base, &data, &options, &Silent).unwrap();
    let note = &created.report.unknown;
    let rule = created
        .recognizer
        .unknown_rule()
        .cloned()
        .unwrap_or_else(|| panic!("no rule: {note}"));
    assert_eq!(rule.accept, 0.95);
    assert_eq!(rule.judged.on, "unknown-data");
    assert_eq!(rule.judged.examples, unknown_files.len());
    assert_eq!(rule.candidates.len(), 2, "{note}");

    // Measured again on the same validation split, apart from the calibration: at least 95 %
    // of the correct answers kept, a real share of the untaught classes rejected.
    let embedded = task::embed_folder(&base, &data, &no_cache(), &Silent).unwrap();
    let (_, val) = embedded.embeddings.split(0.3, 42).unwrap();
    let (out, skipped) = {
        let held = Dataset::from_folder(&unknown_dir).unwrap();
        let e = task::embed_folder(&base, &held, &no_cache(), &Silent).unwrap();
        (e.embeddings.vectors().to_owned(), e.report.skipped)
    };
    assert!(skipped.is_empty());
    let report = created
        .recognizer
        .evaluate_unknown(&val, out.view())
        .unwrap();
    assert!(report.correct >= 5, "{report}");
    assert!(report.correct_acceptance().unwrap() >= 0.95, "{report}");
    let rejection = report.rejection().unwrap();
    assert!(rejection >= 0.2, "{report}; {note}");
    let chosen = rule
        .candidates
        .iter()
        .find(|c| c.kind == rule.kind)
        .unwrap();
    assert_eq!(chosen.rejected, Some(rejection as f32), "{note}");
    eprintln!("{note}\n{report}");

    // The rule travels with the file, and predict flags what it rejects.
    let path = dir.path().join("five.safetensors");
    created.recognizer.save(&path).unwrap();
    let classifier = Classifier::load(&path, &EngineOptions::default(), &Silent).unwrap();
    assert_eq!(classifier.recognizer().unknown_rule(), Some(&rule));
    let answers = classifier
        .predict_files(&unknown_files, 2, &no_cache(), &Silent)
        .unwrap();
    let flagged: Vec<bool> = answers
        .iter()
        .map(|a| a.answer.as_ref().unwrap().unknown)
        .collect();
    assert_eq!(
        flagged.iter().filter(|u| **u).count(),
        report.out_of_class_rejected
    );
    // graft eval's figures: the whole taught folder and the unknown folder.
    let evaluation = classifier
        .evaluate(&data, Some(&unknown_dir), &no_cache(), &Silent)
        .unwrap();
    assert_eq!(evaluation.unknown.rejection(), Some(rejection));
    assert_eq!(evaluation.unknown.in_class, data.examples.len());

    // The export answers unknown exactly where graft does (its own `unknown` output).
    let onnx = dir.path().join("five.onnx");
    classifier
        .export(&onnx, &task::ExportOptions::default())
        .unwrap();
    let proto = std::fs::read(&onnx).unwrap();
    let text = String::from_utf8_lossy(&proto);
    assert!(text.contains("graft.unknown") && text.contains(SCORE) && text.contains(UNKNOWN));
    let card = std::fs::read_to_string(dir.path().join("MODEL_CARD.md")).unwrap();
    assert!(card.contains("`unknown`"), "{card}");
    let exported = ExportedClassifier::load(&onnx, &EngineOptions::default()).unwrap();
    assert_eq!(
        exported.unknown_rule().map(|r| r.threshold),
        Some(rule.threshold)
    );
    let mut files = unknown_files.clone();
    files.extend(data.examples.iter().map(|e| e.path.clone()));
    let ours = classifier
        .predict_files(&files, 1, &no_cache(), &Silent)
        .unwrap();
    let theirs = exported
        .predict_files(&files, 1, &no_cache(), &Silent)
        .unwrap();
    let mut disagree = Vec::new();
    for (a, b) in ours.iter().zip(&theirs) {
        let (a, b) = (a.answer.as_ref().unwrap(), b.answer.as_ref().unwrap());
        assert_eq!(a.label, b.label);
        if a.unknown != b.unknown {
            disagree.push((a.probability, b.probability));
        }
    }
    // Only an answer within float rounding of the threshold may differ.
    assert!(disagree.len() <= 1, "{disagree:?}");
    assert!(ours.iter().any(|a| a.answer.as_ref().unwrap().unknown));
}

#[test]
fn a_knn_index_calibrates_leave_one_out_and_rejects_the_untaught_classes() {
    let base = Arc::new(BaseModel::open("efficientnet-lite0", &BaseOptions::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let unknown_dir = dir.path().join("unknown");
    let unknown_files = held_out(&unknown_dir);
    let options = UnknownOptions {
        unknown_data: Some(unknown_dir),
        ..UnknownOptions::default()
    };
    let (index, _, note) =
        KnnClassifier::build_with(base.clone(), &taught(), &options, &no_cache(), &Silent).unwrap();
    let rule = index
        .knn()
        .unknown_rule()
        .cloned()
        .unwrap_or_else(|| panic!("no rule: {note}"));
    let chosen = &rule.candidates[0];
    assert!(chosen.kept >= 0.95, "{note}");
    let path = dir.path().join("index.safetensors");
    index.knn().save(&path).unwrap();
    let back = KnnClassifier::load(&path, &EngineOptions::default(), None, &Silent).unwrap();
    assert_eq!(back.knn().unknown_rule(), Some(&rule));
    let answers = back
        .classify_files(&unknown_files, 3, &no_cache(), &Silent)
        .unwrap();
    let rejected = answers
        .iter()
        .filter(|a| a.answer.as_ref().unwrap().unknown)
        .count();
    assert_eq!(
        Some((rejected as f64 / unknown_files.len() as f64) as f32),
        chosen.rejected
    );
    assert!(rejected * 5 >= unknown_files.len(), "{note}");
    // Without a rule (accept 0) nothing is unknown.
    let off = UnknownOptions {
        accept: 0.0,
        unknown_data: None,
    };
    let (plain, _, note) =
        KnnClassifier::build_with(base, &taught(), &off, &no_cache(), &Silent).unwrap();
    assert!(plain.knn().unknown_rule().is_none(), "{note}");
    let answers = plain
        .classify_files(&unknown_files, 3, &no_cache(), &Silent)
        .unwrap();
    assert!(answers.iter().all(|a| !a.answer.as_ref().unwrap().unknown));
}
