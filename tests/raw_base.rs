//! Raw bases (`raw:vector:N`, `raw:image:WxH[:gray]`): the example itself is the embedding, and a
//! head trained from scratch on it trains, saves, loads, predicts and exports end to end; bad
//! specs and bad example files are clear errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft::base::{Backend, BaseModel, BaseOptions, EngineOptions, RAW_CUT, RAW_SYNTAX};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::embeddings::embed_files;
use graft::export::{ExportOptions, InputForm};
use graft::gpu::DeviceChoice;
use graft::input::image::{load_image, preprocess};
use graft::input::InputSpec;
use graft::recognizer::Recognizer;
use graft::task::{create, Classifier, CreateOptions, ExportedClassifier, Silent};
use graft::train::TrainOptions;
use graft::Error;

mod common;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn shipped_images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/tuxpaint-dev")
}

fn tract() -> EngineOptions {
    EngineOptions {
        backend: Backend::Tract,
        ort_library: None,
    }
}

/// CPU training for `epochs` epochs without early stopping, no embedding cache.
fn options(epochs: usize, hidden: Vec<usize>) -> CreateOptions {
    CreateOptions {
        train: TrainOptions {
            epochs,
            patience: None,
            hidden,
            ..TrainOptions::default()
        },
        device: Some(DeviceChoice::Cpu),
        cache: CacheOptions { no_cache: true },
        ..CreateOptions::default()
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() {
            true => out.extend(walk(&path)),
            false => out.push(path),
        }
    }
    out
}

/// Each file's expected class: the name of the folder it lies in.
fn folder_labels(data: &Dataset) -> Vec<(PathBuf, String)> {
    data.examples
        .iter()
        .map(|e| (e.path.clone(), data.classes[e.label].clone()))
        .collect()
}

#[test]
fn a_vector_base_trains_saves_loads_predicts_and_exports_on_csv_and_npy_files() {
    let base = Arc::new(BaseModel::open("raw:vector:6", &BaseOptions::default()).unwrap());
    assert_eq!(base.name(), "raw:vector:6");
    assert_eq!(base.embedding_dim(), 6);
    assert_eq!(base.cut(), RAW_CUT);
    // `auto` does not fetch ONNX Runtime to flatten a tensor.
    assert_eq!(base.backend(), Backend::Tract);

    let data = Dataset::from_folder(fixture("vectors")).unwrap();
    assert_eq!(data.classes, ["falling", "flat", "rising"]);
    assert_eq!(
        data.examples.len(),
        24,
        "make.py beside the classes is not an example"
    );

    // The embedding is the file's numbers, as they are: CSV one a line, CSV in a row, float32,
    // float64 and int16 .npy arrays.
    let files: Vec<PathBuf> = [
        "rising/rising_0.csv",
        "flat/flat_2.csv",
        "falling/falling_1.npy",
        "falling/falling_3.npy",
        "rising/rising_5.npy",
    ]
    .iter()
    .map(|f| fixture("vectors").join(f))
    .collect();
    let embedded: Vec<Vec<f32>> = embed_files(&base, &files, None, &|_| {})
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().to_vec())
        .collect();
    assert_eq!(embedded[0], [2.596, 3.302, 3.624, 4.27, 5.031, 5.235]);
    assert_eq!(embedded[1], [2.383, 2.365, 2.523, 2.6, 2.873, 2.518]);
    let values = |path: &Path| -> Vec<f32> {
        // Reading the .npy data by hand: after the 10-byte preamble and the header.
        let bytes = std::fs::read(path).unwrap();
        let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let data = &bytes[10 + header..];
        let descr = std::str::from_utf8(&bytes[10..10 + header]).unwrap();
        if descr.contains("<f8") {
            data.chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect()
        } else if descr.contains("<i2") {
            data.chunks(2)
                .map(|c| f32::from(i16::from_le_bytes(c.try_into().unwrap())))
                .collect()
        } else {
            data.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        }
    };
    for (file, got) in files.iter().zip(&embedded).skip(2) {
        assert_eq!(*got, values(file), "{}", file.display());
    }
    // Numbers are not cached: the cache would hold the same numbers again.
    let cache_root = tempfile::tempdir().unwrap();
    embed_files(&base, &files, Some(cache_root.path()), &|_| {}).unwrap();
    let written: Vec<_> = walk(cache_root.path());
    assert!(written.is_empty(), "{written:?}");

    // Trained from scratch (softmax regression; 18 training examples: small batches and a
    // larger step than the default so that 100 epochs are enough), the three shapes are told
    // apart.
    let mut opts = options(100, vec![]);
    opts.train.batch_size = 4;
    opts.train.learning_rate = 0.02;
    let created = create(&base, &data, &opts, &Silent).unwrap();
    let recognizer = &created.recognizer;
    assert_eq!(recognizer.base().name, "raw:vector:6");
    assert_eq!(
        recognizer.base().input,
        InputSpec::Vector(graft::input::VectorSpec { length: 6 })
    );
    let validation = recognizer.training().unwrap().validation.as_ref().unwrap();
    assert_eq!(validation.accuracy, 1.0, "{validation:?}");

    // Saved and loaded, it reopens its raw base and answers every file with its folder's class.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("shapes.graft");
    recognizer.save(&saved).unwrap();
    let classifier = Classifier::load(&saved, &EngineOptions::default(), &Silent).unwrap();
    assert_eq!(classifier.base().sha256(), base.sha256());
    assert_eq!(classifier.recognizer().head(), recognizer.head());
    let expected = folder_labels(&data);
    let paths: Vec<PathBuf> = expected.iter().map(|(p, _)| p.clone()).collect();
    let answers = classifier
        .predict_files(&paths, 1, &CacheOptions { no_cache: true }, &Silent)
        .unwrap();
    for (answer, (path, label)) in answers.iter().zip(&expected) {
        let got = &answer.answer.as_ref().unwrap().label;
        assert_eq!(got, label, "{}", path.display());
    }
    // One example's bytes, as a server gets them.
    let bytes = std::fs::read(&files[0]).unwrap();
    let answer = classifier.predict_bytes(&bytes, "upload.csv", 1).unwrap();
    assert_eq!(answer.label, "rising");

    // Exported: the numbers in ([N, 6] float), the Flatten and the head in one ONNX file that
    // gives the recognizer's probabilities.
    let onnx = dir.path().join("shapes.onnx");
    let exported = classifier.export(&onnx, &ExportOptions::default()).unwrap();
    assert_eq!(exported.form, InputForm::Tensor);
    assert!(
        exported
            .tensor_because
            .as_deref()
            .unwrap()
            .contains("numbers"),
        "{:?}",
        exported.tensor_because
    );
    assert_eq!(
        exported.input_dims,
        [serde_json::json!("N"), serde_json::json!(6)]
    );
    let card = std::fs::read_to_string(&exported.model_card).unwrap();
    assert!(card.contains("trained from scratch"), "{card}");
    let from_file = ExportedClassifier::load(&onnx, &tract()).unwrap();
    let direct = classifier
        .predict_files(&paths, 3, &CacheOptions { no_cache: true }, &Silent)
        .unwrap();
    let via_onnx = from_file
        .predict_files(&paths, 3, &CacheOptions { no_cache: true }, &Silent)
        .unwrap();
    for (a, b) in direct.iter().zip(&via_onnx) {
        let (a, b) = (a.answer.as_ref().unwrap(), b.answer.as_ref().unwrap());
        assert_eq!(a.label, b.label);
        for ((xl, xp), (yl, yp)) in a.top.iter().zip(&b.top) {
            assert_eq!(xl, yl);
            assert!((xp - yp).abs() < 1e-5, "{a:?} {b:?}");
        }
    }
}

#[test]
fn a_grey_image_base_trains_from_scratch_and_exports_its_preprocessing() {
    let base = Arc::new(BaseModel::open("raw:image:24x24:grey", &BaseOptions::default()).unwrap());
    assert_eq!(base.name(), "raw:image:24x24:gray");
    assert_eq!(base.input_shape(), [24, 24, 1]);
    assert_eq!(base.embedding_dim(), 576);

    // The embedding is the prepared image flattened: a colour photo's luma, in 0..1.
    let photo = fixture("images/astronaut.png");
    let spec = base.image_spec().unwrap().clone();
    let prepared = load_image(&photo, &spec).unwrap();
    let embedded = embed_files(&base, std::slice::from_ref(&photo), None, &|_| {}).unwrap();
    let embedded = embedded[0].as_ref().unwrap();
    assert_eq!(
        embedded.to_vec(),
        prepared.iter().copied().collect::<Vec<_>>()
    );
    assert!(embedded.iter().all(|v| (0.0..=1.0).contains(v)));
    let rgb = graft::input::ImageSpec {
        channels: graft::input::ChannelOrder::Rgb,
        ..spec.clone()
    };
    let colour = load_image(&photo, &rgb).unwrap();
    for (i, grey) in prepared.iter().enumerate().step_by(37) {
        let (y, x) = (i / 24, i % 24);
        let luma =
            0.299 * colour[[y, x, 0]] + 0.587 * colour[[y, x, 1]] + 0.114 * colour[[y, x, 2]];
        assert!((grey - luma).abs() < 1e-6, "pixel {i}: {grey} vs {luma}");
    }

    // A hidden-layer head on 576 raw pixels learns the 86 shipped drawings (training accuracy),
    // and saved, loaded and exported it answers as it did.
    let data = Dataset::from_folder(shipped_images()).unwrap();
    let created = create(&base, &data, &options(40, vec![32]), &Silent).unwrap();
    let record = created.recognizer.training().unwrap();
    let last = record.report.history.last().unwrap();
    assert!(last.train_acc > 0.9, "training accuracy {}", last.train_acc);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("drawings.graft");
    created.recognizer.save(&saved).unwrap();
    let loaded = Recognizer::load(&saved).unwrap();
    assert_eq!(loaded.base(), created.recognizer.base());
    let classifier = Classifier::load(&saved, &EngineOptions::default(), &Silent).unwrap();
    let paths: Vec<PathBuf> = data.examples.iter().map(|e| e.path.clone()).collect();
    let answers = classifier
        .predict_files(&paths, 3, &CacheOptions { no_cache: true }, &Silent)
        .unwrap();
    let correct = answers
        .iter()
        .zip(&data.examples)
        .filter(|(a, e)| a.answer.as_ref().unwrap().label == data.classes[e.label])
        .count();
    assert!(
        correct as f32 / paths.len() as f32 > 0.8,
        "{correct} of {}",
        paths.len()
    );

    // Image-in export: uint8 RGB of any size, resized, turned grey, scaled, flattened and
    // classified inside the graph, as graft does it (within float rounding).
    let onnx = dir.path().join("drawings.onnx");
    let exported = classifier.export(&onnx, &ExportOptions::default()).unwrap();
    assert_eq!(exported.form, InputForm::Image);
    let card = std::fs::read_to_string(&exported.model_card).unwrap();
    assert!(card.contains("converts to grey"), "{card}");
    let from_file = ExportedClassifier::load(&onnx, &tract()).unwrap();
    let via_onnx = from_file
        .predict_files(&paths, 3, &CacheOptions { no_cache: true }, &Silent)
        .unwrap();
    for (a, b) in answers.iter().zip(&via_onnx) {
        let (a, b) = (a.answer.as_ref().unwrap(), b.answer.as_ref().unwrap());
        assert_eq!(a.label, b.label);
        assert!((a.probability - b.probability).abs() < 1e-4, "{a:?} {b:?}");
    }
    // The graph's own image front, run by tract on a decoded image of another size, agrees with
    // graft's preprocessing followed by the head.
    let rgb = image::open(&photo).unwrap().to_rgb8();
    let (w, h) = rgb.dimensions();
    let batch =
        ndarray::Array4::from_shape_vec((1, h as usize, w as usize, 3), rgb.as_raw().clone())
            .unwrap();
    let front = run_image_in(&onnx, batch);
    let tensor = preprocess(&image::DynamicImage::ImageRgb8(rgb), &spec).unwrap();
    let direct = classifier
        .probabilities(tensor.insert_axis(ndarray::Axis(0)).into_dyn().view())
        .unwrap();
    let diff = common::max_abs_diff(&front, direct.as_slice().unwrap());
    assert!(diff < 1e-3, "{front:?} vs {direct:?}");
}

/// The probabilities of an image-in export for one uint8 image `[1, H, W, 3]`, run by tract.
fn run_image_in(path: &Path, batch: ndarray::Array4<u8>) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let typed = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_typed()
        .unwrap();
    let n = typed.symbols.sym("N");
    let plan = typed
        .set_symbols(&std::collections::HashMap::from([(n, TDim::Val(1))]))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = plan.run(tvec!(Tensor::from(batch).into_tvalue())).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn an_rgb_image_base_flattens_pixels_in_reading_order() {
    let base = BaseModel::open("raw:image:5x3", &BaseOptions::default()).unwrap();
    assert_eq!(base.input_shape(), [3, 5, 3]);
    let prepared =
        load_image(&fixture("images/astronaut.png"), base.image_spec().unwrap()).unwrap();
    let flat = base
        .embed(
            prepared
                .clone()
                .insert_axis(ndarray::Axis(0))
                .into_dyn()
                .view(),
        )
        .unwrap();
    assert_eq!(flat.shape(), [1, 45]);
    // Row 1, column 2, green: (1 * 5 + 2) * 3 + 1.
    assert_eq!(flat[[0, 22]], prepared[[1, 2, 1]]);
    assert_eq!(
        flat.row(0).to_vec(),
        prepared.iter().copied().collect::<Vec<_>>()
    );
}

#[test]
fn bad_specs_and_options_are_errors_that_show_the_syntax() {
    for spec in [
        "raw:csv",
        "raw:image:28",
        "raw:image:28x28:purple",
        "raw:vector:0",
        "raw:",
    ] {
        let err = BaseModel::open(spec, &BaseOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{spec}: {err:?}");
        assert!(err.to_string().contains(RAW_SYNTAX), "{spec}: {err}");
    }
    let with_mean = BaseOptions {
        mean: Some([1.0; 3]),
        ..BaseOptions::default()
    };
    let err = BaseModel::open("raw:image:8x8", &with_mean)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has its own preprocessing"), "{err}");
    let with_cut = BaseOptions {
        cut: Some("features".into()),
        ..BaseOptions::default()
    };
    let err = BaseModel::open("raw:vector:4", &with_cut)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tensor 'features'"), "{err}");
    let with_shape = BaseOptions {
        input_shape: Some(vec![5]),
        ..BaseOptions::default()
    };
    let err = BaseModel::open("raw:vector:4", &with_shape)
        .unwrap_err()
        .to_string();
    assert!(err.contains("takes input [4], not Some([5])"), "{err}");
}

#[test]
fn bad_example_files_are_skipped_with_their_reason_and_huge_ones_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let files = [
        write("short.csv", b"1,2,3\n"),
        write("header.csv", b"a,b,c,d\n1,2,3,4\n"),
        write(
            "photo.csv",
            &std::fs::read(fixture("images/astronaut.png")).unwrap(),
        ),
        write("huge_shape.npy", &npy_header("(4000000000000,)")),
        write("good.csv", b"1;2;3;4\n"),
    ];
    // Over the size limit for a numbers file: refused from its size, before reading.
    let sparse = dir.path().join("sparse.csv");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(graft::limits::Limits::DEFAULT.vector_bytes + 1)
        .unwrap();
    let base = BaseModel::open("raw:vector:4", &BaseOptions::default()).unwrap();
    let mut all = files.to_vec();
    all.push(sparse);
    let results = embed_files(&base, &all, None, &|_| {}).unwrap();
    let errors: Vec<String> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect();
    let wants = [
        "3 numbers; the base takes 4",
        "line 1: 'a' is not a number",
        "neither an .npy array nor numbers as text",
        "the array has shape [4000000000000]",
        "",
        "larger than the limit of 268435456 bytes for a numbers file",
    ];
    for ((error, want), file) in errors.iter().zip(wants).zip(&all) {
        match want {
            "" => assert!(error.is_empty(), "{error}"),
            want => {
                assert!(error.contains(want), "{}: {error}", file.display());
                let name = file.file_name().unwrap().to_str().unwrap();
                assert!(error.contains(name), "{error}");
            }
        }
    }
    assert_eq!(results[4].as_ref().unwrap().to_vec(), [1.0, 2.0, 3.0, 4.0]);
}

/// An `.npy` file of float32 with `shape` and no data.
fn npy_header(shape: &str) -> Vec<u8> {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

#[test]
fn a_recognizer_whose_raw_base_was_edited_does_not_load() {
    let base = Arc::new(BaseModel::open("raw:vector:6", &BaseOptions::default()).unwrap());
    let data = Dataset::from_folder(fixture("vectors")).unwrap();
    let created = create(&base, &data, &options(5, vec![]), &Silent).unwrap();
    let mut reference = created.recognizer.base().clone();
    // Another length under the same name: the graph's sha256 differs.
    reference.name = "raw:vector:7".into();
    let err = BaseModel::from_ref(&reference, &BaseOptions::default()).unwrap_err();
    assert!(matches!(err, Error::BaseMismatch(_)), "{err:?}");
    // The same name, but preprocessing that is not the raw base's.
    let mut reference = created.recognizer.base().clone();
    reference.input = InputSpec::Vector(graft::input::VectorSpec { length: 6 });
    reference.name = "raw:image:6x1:gray".into();
    let err = BaseModel::from_ref(&reference, &BaseOptions::default()).unwrap_err();
    assert!(matches!(err, Error::BaseMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("prepares examples as"), "{err}");
    // A spec that is not one.
    let mut reference = created.recognizer.base().clone();
    reference.name = "raw:table:6".into();
    let err = BaseModel::from_ref(&reference, &BaseOptions::default()).unwrap_err();
    assert!(matches!(err, Error::BaseMismatch(_)), "{err:?}");
}
