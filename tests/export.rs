//! Export of base + head as one ONNX file, checked by running the exported file with tract.

use std::path::PathBuf;

use graft::base::{BaseModel, BaseOptions};
use graft::export::{export_onnx, ExportOptions, InputForm};
use graft::{Dense, Error, Head};
use ndarray::{Array1, Array2, Array4, ArrayD};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const INPUT: [usize; 3] = [3, 48, 192];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

fn base(cut: Option<&str>) -> BaseModel {
    let options = BaseOptions {
        cut: cut.map(str::to_string),
        input_shape: Some(INPUT.to_vec()),
        ..BaseOptions::default()
    };
    BaseModel::open(fixture(), &options).unwrap()
}

fn dense(rng: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Dense {
    Dense {
        weight: Array2::from_shape_simple_fn((inputs, outputs), || rng.random_range(-0.5..0.5)),
        bias: Array1::from_shape_simple_fn(outputs, || rng.random_range(-0.5..0.5)),
    }
}

fn random_head(sizes: &[usize], seed: u64) -> Head {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Head {
        layers: sizes
            .windows(2)
            .map(|w| dense(&mut rng, w[0], w[1]))
            .collect(),
    }
}

fn batch(n: usize, seed: u64) -> ArrayD<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_simple_fn((n, INPUT[0], INPUT[1], INPUT[2]), || {
        rng.random_range(-1.0f32..1.0)
    })
    .into_dyn()
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}

fn assert_close(a: &Array2<f32>, b: &Array2<f32>, tol: f32) {
    assert_eq!(a.dim(), b.dim());
    for (u, v) in a.iter().zip(b.iter()) {
        assert!((u - v).abs() <= tol, "{u} vs {v}");
    }
}

/// Exports, reloads both outputs with tract and compares them with graft's own forward pass.
fn check_roundtrip(base: &BaseModel, head: &Head) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recognizer.onnx");
    let names = labels(head.classes());
    let r = export_onnx(
        base,
        head,
        &names,
        None,
        None,
        &ExportOptions::default(),
        &out,
        None,
    )
    .unwrap();
    // The fixture's opset (11) cannot take the image-in front: the default is the tensor form,
    // and asking for images is a clear error.
    assert_eq!(r.form, InputForm::Tensor);
    assert!(r.tensor_because.as_deref().unwrap().contains("opset is 11"));
    let image = ExportOptions {
        input: Some(InputForm::Image),
        ..ExportOptions::default()
    };
    let err = export_onnx(base, head, &names, None, None, &image, &out, None).unwrap_err();
    assert!(
        err.to_string().contains("export with input tensor"),
        "{err}"
    );
    assert!(out.with_file_name("labels.txt").is_file());
    let card = std::fs::read_to_string(out.with_file_name("MODEL_CARD.md")).unwrap();
    assert!(card.contains("not a graft zoo model"), "{card}");

    let x = batch(3, 11);
    let embedding = base.embed(x.view()).unwrap();
    let expected = head.probabilities(embedding.view()).unwrap();
    let options = |cut: &str| BaseOptions {
        cut: Some(cut.to_string()),
        input_shape: Some(INPUT.to_vec()),
        ..BaseOptions::default()
    };
    let probs = BaseModel::open(&out, &options("probabilities")).unwrap();
    assert_close(&probs.embed(x.view()).unwrap(), &expected, 1e-5);
    let emb = BaseModel::open(&out, &options("embedding")).unwrap();
    assert_close(&emb.embed(x.view()).unwrap(), &embedding, 1e-5);

    let proto =
        tract_onnx::pb::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["probabilities", "label", "embedding"]);
    assert_eq!(proto.producer_name, "graft");
    assert_eq!(proto.opset_import[0].version, 11);
    let meta = |key: &str| {
        proto
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    let stored: Vec<String> = serde_json::from_str(&meta("labels").unwrap()).unwrap();
    assert_eq!(stored, names);
    assert_eq!(meta("producer").as_deref(), Some("graft"));
    // Pruned: the base's own classifier and softmax are gone.
    assert!(!graph.node.iter().any(|n| n.op_type == "MatMul"));
    assert_eq!(
        graph.node.iter().filter(|n| n.op_type == "Softmax").count(),
        1
    );
    assert!(!graph.initializer.iter().any(|t| t.name == "fc_0.w_0"));
}

#[test]
fn softmax_regression_on_the_auto_cut_matches_graft() {
    let base = base(None);
    let head = random_head(&[base.embedding_dim(), 3], 1);
    check_roundtrip(&base, &head);
}

#[test]
fn mlp_on_a_4d_cut_is_flattened_and_matches_graft() {
    let base = base(Some("pool2d_10.tmp_0"));
    assert_eq!(base.cut_shape().len(), 3);
    let head = random_head(&[base.embedding_dim(), 16, 8, 4], 2);
    check_roundtrip(&base, &head);
}

#[test]
fn mismatched_head_or_labels_are_refused() {
    let base = base(None);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.onnx");
    let opts = ExportOptions::default();
    let wrong_dim = random_head(&[base.embedding_dim() + 1, 2], 3);
    let err =
        export_onnx(&base, &wrong_dim, &labels(2), None, None, &opts, &out, None).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let head = random_head(&[base.embedding_dim(), 2], 3);
    let err = export_onnx(&base, &head, &labels(3), None, None, &opts, &out, None).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let empty = Head { layers: vec![] };
    assert!(export_onnx(&base, &empty, &[], None, None, &opts, &out, None).is_err());
    assert!(!out.exists());
}
