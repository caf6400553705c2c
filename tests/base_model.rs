//! The frozen base on a real model (PaddleOCR's text-orientation classifier, ppocr-cls).

use std::path::{Path, PathBuf};
use std::time::Instant;

use graft::base::{inspect, BaseModel, BaseOptions};
use graft::Error;
use ndarray::{s, Array4, ArrayD};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// ppocr-cls input after the batch (the file leaves height and width open).
const INPUT: [usize; 3] = [3, 48, 192];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

fn options(cut: Option<&str>) -> BaseOptions {
    BaseOptions {
        cut: cut.map(str::to_string),
        input_shape: Some(INPUT.to_vec()),
        ..BaseOptions::default()
    }
}

fn load(cut: Option<&str>) -> BaseModel {
    BaseModel::open(fixture(), &options(cut)).unwrap()
}

fn random_batch(n: usize, seed: u64) -> Array4<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_simple_fn((n, INPUT[0], INPUT[1], INPUT[2]), || {
        rng.random_range(-1.0f32..1.0)
    })
}

/// Rows of the weight of the model's only MatMul (its classifier), read from the file itself.
fn classifier_inputs(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    let matmul = graph.node.iter().find(|n| n.op_type == "MatMul").unwrap();
    // Paddle2ONNX stores the weight as a Constant node rather than an initializer.
    let weight = graph
        .initializer
        .iter()
        .find(|t| t.name == matmul.input[1])
        .or_else(|| {
            let node = graph.node.iter().find(|n| n.output[0] == matmul.input[1])?;
            node.attribute.iter().find_map(|a| a.t.as_ref())
        })
        .unwrap();
    weight.dims[0] as usize
}

#[test]
fn auto_cut_is_the_pooled_tensor_before_the_classifier() {
    let base = load(None);
    assert_eq!(base.cut(), "reshape2_0.tmp_0");
    assert_eq!(base.embedding_dim(), classifier_inputs(&fixture()));
    assert_eq!(base.input_shape(), &INPUT);
    let emb = base.embed(random_batch(2, 1).into_dyn().view()).unwrap();
    assert_eq!(emb.dim(), (2, base.embedding_dim()));
    assert!(emb.iter().all(|v| v.is_finite()));
}

#[test]
fn named_cut_at_pooling_gives_the_same_values_flattened() {
    let auto = load(None);
    let pooled = load(Some("pool2d_10.tmp_0"));
    assert_eq!(pooled.cut_shape(), &[auto.embedding_dim(), 1, 1]);
    assert_eq!(pooled.embedding_dim(), auto.embedding_dim());
    let x = random_batch(3, 2).into_dyn();
    let a = auto.embed(x.view()).unwrap();
    let b = pooled.embed(x.view()).unwrap();
    for (u, v) in a.iter().zip(b.iter()) {
        assert!((u - v).abs() < 1e-5, "{u} vs {v}");
    }
}

#[test]
fn cut_at_the_output_gives_probabilities() {
    let base = load(Some("save_infer_model/scale_0.tmp_1"));
    assert_eq!(base.embedding_dim(), 2);
    let p = base.embed(random_batch(3, 3).into_dyn().view()).unwrap();
    for row in p.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-5, "{row}");
    }
}

#[test]
fn unknown_cut_lists_candidates() {
    let err = BaseModel::open(fixture(), &options(Some("no_such_tensor"))).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Model { .. }), "{err:?}");
    assert!(msg.contains("no_such_tensor"), "{msg}");
    assert!(msg.contains("reshape2_0.tmp_0"), "{msg}");
    assert!(msg.contains("pool2d_10.tmp_0"), "{msg}");
}

#[test]
fn open_input_size_must_be_given_and_must_fit() {
    let err = BaseModel::open(fixture(), &graft::base::BaseOptions::default()).unwrap_err();
    assert!(err.to_string().contains("input shape"), "{err}");
    let wrong_channels = BaseOptions {
        cut: None,
        input_shape: Some(vec![1, 48, 192]),
        ..BaseOptions::default()
    };
    let err = BaseModel::open(fixture(), &wrong_channels).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn batch_rows_match_single_examples() {
    let base = load(None);
    let x = random_batch(4, 4);
    let batch = base.embed(x.view().into_dyn()).unwrap();
    for i in 0..4 {
        let one = x.slice(s![i..i + 1, .., .., ..]).into_dyn();
        let single = base.embed(one).unwrap();
        for (u, v) in single.row(0).iter().zip(batch.row(i).iter()) {
            assert!((u - v).abs() < 1e-5, "row {i}: {u} vs {v}");
        }
    }
    let empty = base
        .embed(ArrayD::zeros(vec![0, 3, 48, 192]).view())
        .unwrap();
    assert_eq!(empty.dim(), (0, base.embedding_dim()));
}

#[test]
fn wrong_input_shape_is_invalid() {
    let base = load(None);
    for shape in [
        vec![2, 3, 48, 191],
        vec![3, 48, 192],
        vec![1, 1, 3, 48, 192],
    ] {
        let err = base.embed(ArrayD::zeros(shape.clone()).view()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{shape:?}: {err:?}");
        assert!(err.to_string().contains("48, 192"), "{err}");
    }
}

fn load_bytes(bytes: Vec<u8>) -> Error {
    BaseModel::from_bytes(bytes, "broken.onnx", &options(None)).unwrap_err()
}

#[test]
fn corrupt_truncated_and_empty_files_are_model_errors() {
    let good = std::fs::read(fixture()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let random: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
    let cases = [
        ("empty", Vec::new()),
        ("random", random),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("text", b"this is not a model\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let err = load_bytes(bytes);
        assert!(
            matches!(&err, Error::Model { path, .. } if path == Path::new("broken.onnx")),
            "{what}: {err:?}"
        );
    }
    let missing = BaseModel::open(
        Path::new("/nonexistent/model.onnx"),
        &graft::base::BaseOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}

#[test]
fn sha256_is_stable_and_matches_the_file() {
    let a = load(None);
    let b = load(Some("pool2d_10.tmp_0"));
    assert_eq!(a.sha256(), b.sha256());
    assert_eq!(
        a.sha256(),
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
    );
    let bytes = std::fs::read(fixture()).unwrap();
    let c = BaseModel::from_bytes(bytes, "in-memory", &options(None)).unwrap();
    assert_eq!(c.sha256(), a.sha256());
    assert_eq!(c.name(), "in-memory");
    assert_eq!(a.name(), fixture().display().to_string());
}

#[test]
fn inspect_lists_ops_and_candidates() {
    let info = inspect(&fixture()).unwrap();
    assert_eq!(info.opset, 11);
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].name, "x");
    assert_eq!(info.ops.get("MatMul"), Some(&1));
    assert_eq!(info.ops.get("Softmax"), Some(&1));
    assert!(info.ops.get("Conv").is_some_and(|&n| n > 10));
    assert_eq!(info.auto_cut.as_deref(), Ok("reshape2_0.tmp_0"));
    let names: Vec<&str> = info.candidates.iter().map(|c| c.tensor.as_str()).collect();
    assert_eq!(names[0], "reshape2_0.tmp_0");
    assert!(names.contains(&"pool2d_10.tmp_0"), "{names:?}");
    let text = info.to_string();
    assert!(text.contains("GlobalAveragePool"), "{text}");
    assert!(text.contains("automatic cut: reshape2_0.tmp_0"), "{text}");
    println!("{text}");
}

/// Prints embedding time per image at batch 1 and 8 (no assertion: machines differ).
#[test]
fn embedding_timing() {
    let base = load(None);
    for n in [1usize, 8] {
        let x = random_batch(n, 6).into_dyn();
        base.embed(x.view()).unwrap();
        let runs = 5;
        let start = Instant::now();
        for _ in 0..runs {
            base.embed(x.view()).unwrap();
        }
        let per_image = start.elapsed().as_secs_f64() * 1e3 / (runs * n) as f64;
        println!("ppocr-cls embed batch {n}: {per_image:.3} ms/image");
    }
}

/// The fixture's protobuf, changed by `edit`, re-encoded.
fn mutated(edit: impl FnOnce(&mut tract_onnx::pb::GraphProto)) -> Vec<u8> {
    let bytes = std::fs::read(fixture()).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    edit(proto.graph.as_mut().unwrap());
    proto.encode_to_vec()
}

#[test]
fn malformed_graphs_are_model_errors_not_panics() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown op",
            mutated(|g| {
                let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
                conv.op_type = "NoSuchOp".into();
            }),
        ),
        (
            "dangling input",
            mutated(|g| {
                let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
                conv.input[1] = "missing_weight".into();
            }),
        ),
        (
            "weight dims that do not match its data",
            mutated(|g| {
                // Paddle2ONNX keeps weights in Constant nodes.
                let w = g
                    .node
                    .iter_mut()
                    .filter(|n| n.op_type == "Constant")
                    .filter_map(|n| n.attribute.iter_mut().find_map(|a| a.t.as_mut()))
                    .find(|t| t.dims.len() == 4)
                    .unwrap();
                w.dims[1] += 5;
            }),
        ),
        ("no nodes", mutated(|g| g.node.clear())),
    ];
    for (what, bytes) in cases {
        let err = BaseModel::from_bytes(bytes, "broken.onnx", &options(None)).unwrap_err();
        assert!(matches!(err, Error::Model { .. }), "{what}: {err:?}");
        println!("{what}: {err}");
    }
}

#[test]
fn base_model_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BaseModel>();
    let base = load(None);
    let x = random_batch(1, 7).into_dyn();
    let alone = base.embed(x.view()).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| base.embed(x.view()).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), alone);
        }
    });
}

#[test]
fn inspect_says_when_a_readable_model_cannot_be_run() {
    let good = graft::base::inspect(&fixture()).unwrap();
    assert_eq!(good.problem, None);
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("unknown-op.onnx");
    std::fs::write(
        &broken,
        mutated(|g| {
            let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
            conv.op_type = "NoSuchOp".into();
        }),
    )
    .unwrap();
    // What can be read is still there; the problem says why it cannot run.
    let inspection = graft::base::inspect(&broken).unwrap();
    assert!(inspection.ops.contains_key("NoSuchOp"));
    let problem = inspection.problem.expect("a problem");
    assert!(problem.contains("cannot prepare"), "{problem}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["inspect", broken.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NoSuchOp"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used"));
}
