//! Hostile and malformed TF.js models: every one is a clear error, never a panic, and no file
//! outside the model's folder is read.

mod tfjs_util;

use std::path::Path;

use graft_converters::tfjs::convert;
use serde_json::{json, Value};
use tfjs_util::*;

/// A valid one-layer model (Dense 2 -> 1) whose manifest the tests then corrupt.
fn dense_model() -> Value {
    functional(
        vec![
            layer(
                "InputLayer",
                "in",
                json!({"batch_input_shape": [null, 2]}),
                &[],
            ),
            layer(
                "Dense",
                "d",
                json!({"units": 1, "use_bias": false}),
                &["in"],
            ),
        ],
        &["in"],
        &["d"],
    )
}

/// Writes `model` as model.json (and `shard` as w.bin) in a fresh folder, converts it.
fn convert_raw(model: &Value, shard: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), shard).unwrap();
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_vec(model).unwrap()).unwrap();
    convert(&path).map_err(|e| e.to_string())
}

fn with_manifest(paths: Value, weights: Value) -> Value {
    json!({
        "modelTopology": dense_model(),
        "weightsManifest": [{"paths": paths, "weights": weights}]
    })
}

fn kernel(shape: Value, dtype: &str) -> Value {
    json!([{"name": "d/kernel", "shape": shape, "dtype": dtype}])
}

#[test]
fn the_valid_model_converts() {
    let model = with_manifest(json!(["w.bin"]), kernel(json!([2, 1]), "float32"));
    let shard: Vec<u8> = [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let onnx = convert_raw(&model, &shard).unwrap();
    let out = run(&onnx, &["d"], &[1, 2], vec![3.0, 4.0]);
    assert_eq!(out[0].1, [11.0]);
}

#[test]
fn shard_paths_cannot_leave_the_model_folder() {
    let outer = tempfile::tempdir().unwrap();
    let secret = outer.path().join("secret.bin");
    std::fs::write(&secret, [0u8; 8]).unwrap();
    let inner = outer.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, inner.join("link.bin")).unwrap();
    let cases = [
        ("../secret.bin", "leaves the model's folder (..)"),
        ("sub/../../secret.bin", "leaves the model's folder (..)"),
        (secret.to_str().unwrap(), "is absolute"),
        ("", "not a plain relative path"),
        ("C:\\secret.bin", "not a plain relative path"),
        ("link.bin", "through a symlink"),
    ];
    for (p, want) in cases {
        if p == "link.bin" && !cfg!(unix) {
            continue;
        }
        let model = with_manifest(json!([p]), kernel(json!([2, 1]), "float32"));
        let path = inner.join("model.json");
        std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
        let err = convert(&path).unwrap_err().to_string();
        assert!(err.contains(want), "{p:?}: {err}");
    }
}

#[test]
fn shards_must_hold_exactly_the_declared_bytes() {
    let model = with_manifest(json!(["w.bin"]), kernel(json!([2, 1]), "float32"));
    for len in [0, 7, 9, 64] {
        let err = convert_raw(&model, &vec![0u8; len]).unwrap_err();
        assert!(
            err.contains(&format!(
                "the shards hold {len} bytes, the manifest declares 8"
            )),
            "{len}: {err}"
        );
    }
    // uint8-quantised: one byte per value.
    let model = with_manifest(
        json!(["w.bin"]),
        json!([{"name": "d/kernel", "shape": [2, 1], "dtype": "float32",
                "quantization": {"dtype": "uint8", "min": -1.0, "scale": 0.5}}]),
    );
    assert!(convert_raw(&model, &[1, 2, 3])
        .unwrap_err()
        .contains("declares 2"));
    let onnx = convert_raw(&model, &[4, 0]).unwrap();
    assert_eq!(run(&onnx, &["d"], &[1, 2], vec![1.0, 1.0])[0].1, [0.0]);
}

#[test]
fn oversized_and_odd_shapes_and_dtypes_are_refused() {
    let cases = [
        (
            kernel(json!([1u64 << 40, 1u64 << 40]), "float32"),
            "too large",
        ),
        (kernel(json!([u64::MAX, 2]), "float32"), "too large"),
        (
            kernel(json!([2, 1]), "complex64"),
            "unsupported dtype \"complex64\"",
        ),
        (kernel(json!([2, 1]), "string"), "unsupported dtype"),
        (kernel(json!([-2, 1]), "float32"), "model.json"),
        (kernel(json!("2x1"), "float32"), "model.json"),
        (
            json!([{"name": "d/kernel", "shape": [2, 1], "dtype": "float32",
                    "quantization": {"dtype": "uint4", "min": 0, "scale": 1}}]),
            "unsupported quantization dtype",
        ),
        (
            json!([{"name": "d/kernel", "shape": [2, 1], "dtype": "float32",
                    "quantization": {"dtype": "uint8"}}]),
            "needs finite min and scale",
        ),
        (
            json!([{"name": "d/kernel", "shape": [2, 1], "dtype": "float32"},
                   {"name": "d/kernel", "shape": [2, 1], "dtype": "float32"}]),
            "declared twice",
        ),
    ];
    for (weights, want) in cases {
        let model = with_manifest(json!(["w.bin"]), weights.clone());
        let err = convert_raw(&model, &[0u8; 16]).unwrap_err();
        assert!(err.contains(want), "{weights}: {err}");
    }
}

#[test]
fn weights_must_fit_the_layers_that_use_them() {
    // Kernel of the wrong rank, missing kernel.
    let model = with_manifest(json!(["w.bin"]), kernel(json!([2]), "float32"));
    let err = convert_raw(&model, &[0u8; 8]).unwrap_err();
    assert!(err.contains("layer d: kernel has shape [2]"), "{err}");
    let model = with_manifest(json!([]), json!([]));
    let err = convert_raw(&model, &[]).unwrap_err();
    assert!(err.contains("no weight d/kernel"), "{err}");
}

#[test]
fn malformed_model_json_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    let texts = [
        "",
        "{",
        "[]",
        "{\"weightsManifest\": []}",
        "{\"modelTopology\": 5, \"weightsManifest\": []}",
        "{\"modelTopology\": {}, \"weightsManifest\": []}",
        "{\"format\": \"magic\", \"modelTopology\": {}}",
        "{\"modelTopology\": {\"class_name\": \"Model\"}}",
        "{\"modelTopology\": {\"class_name\": \"Model\", \"config\": {\"layers\": 3}}}",
        "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": {\"layers\": []}}}",
        "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": [{\"class_name\": \"Dense\", \"config\": {}}]}}",
        "{\"format\": \"graph-model\", \"modelTopology\": {\"node\": 1}}",
        "{\"format\": \"graph-model\", \"modelTopology\": {\"node\": [{\"op\": \"Relu\"}]}}",
    ];
    for text in texts {
        std::fs::write(&path, text).unwrap();
        assert!(convert(&path).is_err(), "{text}");
    }
    assert!(convert(Path::new("/nonexistent/model.json")).is_err());
}

/// A layer graph whose inputs are never computed (a cycle, or a reference to nothing).
#[test]
fn dangling_and_cyclic_layer_graphs_are_errors() {
    let topology = functional(
        vec![
            layer(
                "InputLayer",
                "in",
                json!({"batch_input_shape": [null, 2]}),
                &[],
            ),
            layer("Add", "a", json!({}), &["in", "b"]),
            layer("Add", "b", json!({}), &["in", "a"]),
        ],
        &["in"],
        &["b"],
    );
    let (_dir, path) = write_model(None, topology, &[]);
    let err = convert(&path).unwrap_err().to_string();
    assert!(err.contains("never computed"), "{err}");
}

/// Every truncation of a valid model.json is an error or a model, never a panic.
#[test]
fn truncated_model_json_never_panics() {
    let (dir, path) = write_model(
        None,
        dense_model(),
        &[("d/kernel", vec![2, 1], vec![1.0, 2.0])],
    );
    let text = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.json");
    for end in (0..text.len()).step_by(3) {
        std::fs::write(&cut, &text[..end]).unwrap();
        assert!(convert(&cut).is_err(), "truncated at {end}");
    }
}
