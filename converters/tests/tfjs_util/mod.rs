//! Helpers for the TF.js converter tests: small models written to a temporary folder, and a tract
//! runner for the ONNX they convert to.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{json, Value};
use tract_onnx::prelude::*;

/// A weight: name, shape, float32 values.
pub type Weight<'a> = (&'a str, Vec<usize>, Vec<f32>);

/// Writes model.json (with `format`, `topology`, and one weight group `w.bin` holding `weights`
/// as float32) into a fresh folder; returns the folder (keep it alive) and model.json's path.
pub fn write_model(
    format: Option<&str>,
    topology: Value,
    weights: &[Weight],
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    let mut entries = Vec::new();
    for (name, shape, values) in weights {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        entries.push(json!({"name": name, "shape": shape, "dtype": "float32"}));
    }
    std::fs::write(dir.path().join("w.bin"), bytes).unwrap();
    let mut model = json!({
        "modelTopology": topology,
        "weightsManifest": [{"paths": ["w.bin"], "weights": entries}],
    });
    if let Some(f) = format {
        model["format"] = json!(f);
    }
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
    (dir, path)
}

/// Runs ONNX bytes on one float input; returns the named outputs as (shape, values).
pub fn run(
    onnx: &[u8],
    outputs: &[&str],
    shape: &[usize],
    input: Vec<f32>,
) -> Vec<(Vec<usize>, Vec<f32>)> {
    run_outputs(onnx, Some(outputs), shape, input)
}

/// Runs ONNX bytes on one float input; returns every graph output as (shape, values).
pub fn run_all(onnx: &[u8], shape: &[usize], input: Vec<f32>) -> Vec<(Vec<usize>, Vec<f32>)> {
    run_outputs(onnx, None, shape, input)
}

/// Runs ONNX bytes (with tract, optimised) on one float input; returns the outputs named, or
/// the graph's own outputs, as (shape, values).
pub fn run_outputs(
    onnx: &[u8],
    outputs: Option<&[&str]>,
    shape: &[usize],
    input: Vec<f32>,
) -> Vec<(Vec<usize>, Vec<f32>)> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &onnx[..]).unwrap();
    if let Some(names) = outputs {
        model = model.with_outputs_by_name(names).unwrap();
    }
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let x = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), input)
        .unwrap()
        .into_tensor();
    plan.run(tvec!(x.into()))
        .unwrap()
        .iter()
        .map(|t| {
            let v = t.to_plain_array_view::<f32>().unwrap();
            (v.shape().to_vec(), v.iter().copied().collect())
        })
        .collect()
}

/// Asserts two float slices agree within `tol`.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

/// A Keras layer entry of a functional model.
pub fn layer(class: &str, name: &str, config: Value, inbound: &[&str]) -> Value {
    let mut config = config;
    config["name"] = json!(name);
    let nodes: Vec<Value> = if inbound.is_empty() {
        vec![]
    } else {
        vec![Value::Array(
            inbound.iter().map(|i| json!([i, 0, 0, {}])).collect(),
        )]
    };
    json!({"name": name, "class_name": class, "config": config, "inbound_nodes": nodes})
}

/// A functional Keras topology (as tfjs-converter writes it).
pub fn functional(layers: Vec<Value>, inputs: &[&str], outputs: &[&str]) -> Value {
    let refs = |names: &[&str]| -> Vec<Value> { names.iter().map(|n| json!([n, 0, 0])).collect() };
    json!({
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "model_config": {
            "class_name": "Model",
            "config": {"name": "m", "layers": layers, "input_layers": refs(inputs), "output_layers": refs(outputs)}
        }
    })
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

// ---------- graph models ----------

/// A constant: name, shape, and float32 or int32 values.
pub enum Konst<'a> {
    F32(&'a str, Vec<usize>, Vec<f32>),
    I32(&'a str, Vec<usize>, Vec<i32>),
}

/// Writes a graph model (nodes plus constants in one shard); returns folder and model.json path.
pub fn write_graph(nodes: Vec<Value>, consts: &[Konst]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    let mut entries = Vec::new();
    let mut all = nodes;
    for k in consts {
        let (name, shape, dtype) = match k {
            Konst::F32(n, s, v) => {
                bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
                (n, s, "float32")
            }
            Konst::I32(n, s, v) => {
                bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
                (n, s, "int32")
            }
        };
        entries.push(json!({"name": name, "shape": shape, "dtype": dtype}));
        all.push(json!({"name": name, "op": "Const", "attr": {}}));
    }
    std::fs::write(dir.path().join("g.bin"), bytes).unwrap();
    let model = json!({
        "format": "graph-model",
        "modelTopology": {"node": all, "library": {}, "versions": {}},
        "weightsManifest": [{"paths": ["g.bin"], "weights": entries}],
    });
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
    (dir, path)
}

pub fn node(name: &str, op: &str, inputs: &[&str], attr: Value) -> Value {
    json!({"name": name, "op": op, "input": inputs, "attr": attr})
}

pub fn placeholder(name: &str, dims: &[i64], dtype: &str) -> Value {
    let dim: Vec<Value> = dims
        .iter()
        .map(|d| json!({"size": d.to_string()}))
        .collect();
    node(
        name,
        "Placeholder",
        &[],
        json!({"dtype": {"type": dtype}, "shape": {"shape": {"dim": dim}}}),
    )
}
