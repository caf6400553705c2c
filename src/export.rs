//! Export of the whole recognizer (the base up to its cut, then the head and a softmax) as one ONNX
//! file, runnable by any ONNX runtime without graft.

use std::collections::HashSet;
use std::path::Path;

use graft_converters::onnx_builder::attr_int;
use tract_onnx::pb;

use crate::base::{batch_value_info, prune_to, BaseModel};
use crate::{Error, Head, Result};

/// Name of the exported graph's class-probability output, `[N, classes]`.
pub const PROBABILITIES: &str = "probabilities";
/// Name of the exported graph's embedding output, `[N, embedding_dim]`.
pub const EMBEDDING: &str = "embedding";

/// Writes `base` (pruned to what computes its cut) followed by `head` and a softmax as one ONNX
/// file at `out` (atomically), with outputs `probabilities` and `embedding`, the base's opset, and
/// the labels (JSON) and producer in the metadata.
pub fn export_onnx(base: &BaseModel, head: &Head, labels: &[String], out: &Path) -> Result<()> {
    if head.layers.is_empty() {
        return Err(Error::Invalid("the head has no layers".into()));
    }
    if head.input_dim() != base.embedding_dim() {
        return Err(Error::Invalid(format!(
            "the head takes embeddings of size {}, the base gives {}",
            head.input_dim(),
            base.embedding_dim()
        )));
    }
    if labels.len() != head.classes() {
        return Err(Error::Invalid(format!(
            "{} labels for a head with {} classes",
            labels.len(),
            head.classes()
        )));
    }
    for (i, pair) in head.layers.windows(2).enumerate() {
        if pair[0].weight.ncols() != pair[1].weight.nrows() {
            return Err(Error::Invalid(format!(
                "head layer {i} gives {} values, layer {} takes {}",
                pair[0].weight.ncols(),
                i + 1,
                pair[1].weight.nrows()
            )));
        }
    }
    let mut model = base.model_proto()?;
    let graph = model.graph.as_mut().ok_or_else(|| Error::Model {
        path: base.path().to_path_buf(),
        msg: "no graph".into(),
    })?;
    prune_to(graph, base.cut());
    for name in [PROBABILITIES, EMBEDDING] {
        if name != base.cut() && tensor_names(graph).contains(name) {
            return Err(Error::Model {
                path: base.path().to_path_buf(),
                msg: format!(
                    "the base already has a tensor named `{name}`, an exported output name"
                ),
            });
        }
    }
    append_head(graph, base, head)?;

    model.producer_name = "graft".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let labels_json =
        serde_json::to_string(labels).map_err(|e| Error::Invalid(format!("labels: {e}")))?;
    let props = [
        ("labels", labels_json),
        ("producer", "graft".to_string()),
        ("graft.base_sha256", base.sha256().to_string()),
        ("graft.base_cut", base.cut().to_string()),
    ];
    model
        .metadata_props
        .retain(|p| !props.iter().any(|(k, _)| *k == p.key));
    model.metadata_props.extend(
        props
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto {
                key: key.to_string(),
                value,
            }),
    );
    // As the reference `onnx` package writes it (repeated ints unpacked), for strict readers.
    let bytes = graft_converters::onnx_builder::encode_unpacked(&model)?;
    crate::atomic::write_atomic(out, &bytes)
}

/// Every tensor name a graph's nodes, inputs and initializers mention.
fn tensor_names(graph: &pb::GraphProto) -> HashSet<&str> {
    let nodes = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output));
    nodes
        .chain(graph.input.iter().map(|i| &i.name))
        .chain(graph.initializer.iter().map(|t| &t.name))
        .map(String::as_str)
        .collect()
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn float_initializer(
    name: &str,
    dims: &[usize],
    values: impl Iterator<Item = f32>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.flat_map(f32::to_le_bytes).collect(),
        ..Default::default()
    }
}

/// Appends a flatten (or identity) giving `embedding`, the head's Gemm/Relu layers and a softmax after the cut, and
/// declares the `probabilities` and `embedding` outputs.
fn append_head(graph: &mut pb::GraphProto, base: &BaseModel, head: &Head) -> Result<()> {
    let taken = tensor_names(graph)
        .into_iter()
        .map(str::to_string)
        .collect::<HashSet<_>>();
    let fresh = |stem: String| {
        let mut name = stem.clone();
        let mut k = 1;
        while taken.contains(&name) {
            name = format!("{stem}_{k}");
            k += 1;
        }
        name
    };
    let cut = base.cut();
    let flat = base.cut_shape().len() == 1;
    match (cut == EMBEDDING, flat) {
        (true, true) => {}
        (true, false) => {
            return Err(Error::Model {
                path: base.path().to_path_buf(),
                msg: format!("the cut tensor is named `{EMBEDDING}` but is not [N, D]"),
            })
        }
        (false, true) => {
            let identity = node(
                "Identity",
                &fresh("graft_embedding".into()),
                &[cut],
                EMBEDDING,
            );
            graph.node.push(identity);
        }
        (false, false) => {
            let mut flatten = node("Flatten", &fresh("graft_flatten".into()), &[cut], EMBEDDING);
            flatten.attribute.push(attr_int("axis", 1));
            graph.node.push(flatten);
        }
    }
    let mut h = EMBEDDING.to_string();
    let last = head.layers.len() - 1;
    for (i, layer) in head.layers.iter().enumerate() {
        let (rows, cols) = layer.weight.dim();
        if layer.bias.len() != cols {
            return Err(Error::Invalid(format!(
                "head layer {i}: {} biases for {cols} outputs",
                layer.bias.len()
            )));
        }
        let w = fresh(format!("graft_head_{i}_weight"));
        let b = fresh(format!("graft_head_{i}_bias"));
        graph.initializer.push(float_initializer(
            &w,
            &[rows, cols],
            layer.weight.iter().copied(),
        ));
        graph
            .initializer
            .push(float_initializer(&b, &[cols], layer.bias.iter().copied()));
        let z = fresh(if i == last {
            "logits".into()
        } else {
            format!("graft_head_{i}_out")
        });
        graph.node.push(node(
            "Gemm",
            &fresh(format!("graft_head_{i}_gemm")),
            &[&h, &w, &b],
            &z,
        ));
        h = z;
        if i < last {
            let r = fresh(format!("graft_head_{i}_relu"));
            graph.node.push(node("Relu", &r, &[&h], &r));
            h = r;
        }
    }
    let mut softmax = node(
        "Softmax",
        &fresh("graft_softmax".into()),
        &[&h],
        PROBABILITIES,
    );
    softmax.attribute.push(attr_int("axis", 1));
    graph.node.push(softmax);
    graph.output = vec![
        batch_value_info(PROBABILITIES, &[head.classes()]),
        batch_value_info(EMBEDDING, &[base.embedding_dim()]),
    ];
    Ok(())
}
