//! Reading an ONNX graph: decoding, and finding where to cut it (who produces and consumes each
//! tensor; the automatic embedding above the final classifier).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

use crate::{Error, Result};

/// Name of a graph output that graft takes as the embedding when no cut is given.
pub const FEATURES_OUTPUT: &str = "features";

/// The ONNX name of element type `elem_type` (e.g. `float`), for messages.
pub(super) fn dtype_name(elem_type: i32) -> String {
    pb::tensor_proto::DataType::try_from(elem_type)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {elem_type}"))
}

/// Ops that only reshape, copy or post-process scores, skipped when walking back from the output.
const PASS_THROUGH_OPS: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "Identity",
    "Dropout",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Cast",
];
/// Ops that reduce the spatial dimensions to one value per channel.
const POOLING_OPS: &[&str] = &[
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceMax",
    "AveragePool",
];
/// Elementwise ops (activations, arithmetic with constants as in HardSwish, batch norm) allowed
/// between the pooling and the final classifier.
const ELEMENTWISE_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Div",
    "BatchNormalization",
    "Erf",
    "Relu",
    "Clip",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Mul",
];

/// Most nodes looked through between a global pooling and the final classifier: a classifier
/// head is short; a longer walk would wander into the backbone.
const MAX_HEAD_NODES: usize = 24;

/// Decodes ONNX bytes into the protobuf model and checks it has a graph with nodes, an input and an
/// output. Shared by [`BaseModel`], [`inspect`] and the exporter.
pub fn parse_onnx(bytes: &[u8], path: &Path) -> Result<pb::ModelProto> {
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.is_empty() {
        return Err(model_err("the file is empty".into()));
    }
    let proto = pb::ModelProto::decode(bytes).map_err(|e| {
        model_err(format!(
            "not a valid ONNX file (protobuf decoding failed: {e}); is it truncated or another format?"
        ))
    })?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| model_err("not an ONNX model: it has no graph".into()))?;
    if graph.node.is_empty() {
        return Err(model_err(
            "not an ONNX model: its graph has no nodes".into(),
        ));
    }
    if graph.output.is_empty() {
        return Err(model_err("the ONNX graph declares no output".into()));
    }
    if GraphIndex::new(graph).real_inputs().next().is_none() {
        return Err(model_err("the ONNX graph declares no input".into()));
    }
    Ok(proto)
}

/// Who produces and who consumes each tensor of an ONNX graph.
pub(super) struct GraphIndex<'a> {
    graph: &'a pb::GraphProto,
    producer: HashMap<&'a str, usize>,
    constants: HashSet<&'a str>,
}

impl<'a> GraphIndex<'a> {
    pub(super) fn new(graph: &'a pb::GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut constants: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for (i, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(out.as_str(), i);
                if node.op_type == "Constant" {
                    constants.insert(out.as_str());
                }
            }
        }
        GraphIndex {
            graph,
            producer,
            constants,
        }
    }

    /// Graph inputs that are not initializers: what the caller feeds.
    pub(super) fn real_inputs(&self) -> impl Iterator<Item = &'a pb::ValueInfoProto> + '_ {
        self.graph
            .input
            .iter()
            .filter(|i| !self.constants.contains(i.name.as_str()))
    }

    pub(super) fn producer(&self, tensor: &str) -> Option<&'a pb::NodeProto> {
        self.producer.get(tensor).map(|&i| &self.graph.node[i])
    }

    pub(super) fn is_constant(&self, tensor: &str) -> bool {
        self.constants.contains(tensor)
    }

    /// Whether `tensor` is a tensor of this graph (an input or a node output).
    pub(super) fn has_tensor(&self, tensor: &str) -> bool {
        self.producer.contains_key(tensor) || self.graph.input.iter().any(|i| i.name == tensor)
    }

    /// Dims of an initializer, if `tensor` is one.
    pub(super) fn initializer_dims(&self, tensor: &str) -> Option<&'a [i64]> {
        self.graph
            .initializer
            .iter()
            .find(|t| t.name == tensor)
            .map(|t| t.dims.as_slice())
    }

    /// If `node` is a dense layer (Gemm, MatMul, MatMul + Add, 1x1 Conv) with constant weights,
    /// the tensor it takes as input.
    pub(super) fn dense_layer_input(&self, node: &'a pb::NodeProto) -> Option<&'a str> {
        let input = |i: usize| node.input.get(i).map(String::as_str);
        match node.op_type.as_str() {
            "Gemm" | "MatMul" if input(1).is_some_and(|w| self.is_constant(w)) => input(0),
            "Conv" => {
                let w = input(1)?;
                let dims = self.initializer_dims(w)?;
                (dims.len() == 4 && dims[2] == 1 && dims[3] == 1).then_some(input(0)?)
            }
            "Add" => {
                let (a, b) = (input(0)?, input(1)?);
                let other = if self.is_constant(b) {
                    a
                } else if self.is_constant(a) {
                    b
                } else {
                    return None;
                };
                let matmul = self.producer(other)?;
                (matmul.op_type == "MatMul" || matmul.op_type == "Gemm")
                    .then(|| self.dense_layer_input(matmul))
                    .flatten()
            }
            _ => None,
        }
    }

    /// Walks back from `tensor` over Dropout/Identity, which do nothing at inference.
    pub(super) fn skip_identities(&self, mut tensor: &'a str) -> &'a str {
        while let Some(node) = self.producer(tensor) {
            match (node.op_type.as_str(), node.input.first()) {
                ("Dropout" | "Identity", Some(input)) => tensor = input,
                _ => break,
            }
        }
        tensor
    }

    /// The tensors from `tensor` up to a global pooling's output, when one lies above it and is
    /// reached only through reshapes, elementwise ops and dense layers (a classifier's hidden
    /// layers).
    pub(super) fn path_to_pooling(&self, mut tensor: &'a str) -> Option<Vec<&'a str>> {
        let mut path = vec![tensor];
        for _ in 0..MAX_HEAD_NODES {
            let node = self.producer(tensor)?;
            let op = node.op_type.as_str();
            if POOLING_OPS.contains(&op) {
                return Some(path);
            }
            tensor = if let Some(x) = self.dense_layer_input(node) {
                x
            } else if PASS_THROUGH_OPS.contains(&op) || ELEMENTWISE_OPS.contains(&op) {
                node.input
                    .iter()
                    .map(String::as_str)
                    .find(|i| !self.is_constant(i))?
            } else {
                return None;
            };
            path.push(tensor);
        }
        None
    }

    /// Walks back from graph output `output` over post-processing to a dense layer; gives that
    /// layer's input (the classifier input) and the op seen last.
    pub(super) fn classifier_input(&self, output: &'a str) -> (Option<&'a str>, &'a str) {
        let mut tensor = output;
        let mut last_op = "graph input";
        for _ in 0..=self.graph.node.len() {
            let Some(node) = self.producer(tensor) else {
                break;
            };
            last_op = node.op_type.as_str();
            if let Some(input) = self.dense_layer_input(node) {
                return (Some(self.skip_identities(input)), last_op);
            }
            match (PASS_THROUGH_OPS.contains(&last_op), node.input.first()) {
                (true, Some(input)) => tensor = input,
                _ => break,
            }
        }
        (None, last_op)
    }

    /// The automatic cut: a `features` output, or the input of the final classifier.
    pub(super) fn auto_cut(&self) -> std::result::Result<String, String> {
        if self.graph.output.iter().any(|o| o.name == FEATURES_OUTPUT) {
            return Ok(FEATURES_OUTPUT.to_string());
        }
        let output = self.graph.output.first().map_or("", |o| o.name.as_str());
        match self.classifier_input(output) {
            (Some(cut), _) if self.path_to_pooling(cut).is_some() => Ok(cut.to_string()),
            (Some(_), op) => Err(format!(
                "the classifier layer before output `{output}` ({op}) does not sit on a global pooling"
            )),
            (None, op) => Err(format!(
                "no classifier layer (Gemm, MatMul, 1x1 Conv) found before output `{output}` \
                 (last op: {op})"
            )),
        }
    }

    /// Tensors that make sensible cuts, best first: for each output, the classifier input and the
    /// tensors up to the pooling above it; a `features` output; the last global pooling.
    pub(super) fn candidates(&self) -> Vec<String> {
        let mut out: Vec<&str> = Vec::new();
        for o in &self.graph.output {
            if o.name == FEATURES_OUTPUT {
                out.push(&o.name);
            } else if let (Some(cut), _) = self.classifier_input(&o.name) {
                out.extend(self.path_to_pooling(cut).unwrap_or_default());
            }
        }
        let last_pool = self
            .graph
            .node
            .iter()
            .rev()
            .find(|n| POOLING_OPS.contains(&n.op_type.as_str()) && n.op_type != "AveragePool");
        out.extend(last_pool.and_then(|n| n.output.first()).map(String::as_str));
        let mut seen = HashSet::new();
        out.into_iter()
            .filter(|t| !t.is_empty() && seen.insert(*t))
            .map(str::to_string)
            .collect()
    }

    /// Resolves a user's cut (tensor name, `node:ix` or node name) to an ONNX tensor name.
    pub(super) fn resolve_cut(&self, cut: &str) -> Option<String> {
        if self.has_tensor(cut) {
            return Some(cut.to_string());
        }
        if let Some((node, ix)) = cut.rsplit_once(':') {
            if let Ok(ix) = ix.parse::<usize>() {
                if let Some(n) = self.graph.node.iter().find(|n| n.name == node) {
                    return n.output.get(ix).filter(|o| !o.is_empty()).cloned();
                }
            }
        }
        self.graph
            .node
            .iter()
            .find(|n| n.name == cut)
            .and_then(|n| n.output.first())
            .filter(|o| !o.is_empty())
            .cloned()
    }
}

/// Tensor names a node reads, including those its subgraphs (If, Loop, Scan) read from outside.
fn node_reads(node: &pb::NodeProto) -> Vec<String> {
    let mut names = node.input.clone();
    for attr in &node.attribute {
        for g in attr.g.iter().chain(&attr.graphs) {
            for n in &g.node {
                names.extend(node_reads(n));
            }
        }
    }
    names
}

/// Keeps only the nodes, initializers, inputs and value infos needed to compute `cut`, and
/// clears the outputs (the caller declares its own).
pub(crate) fn prune_to(graph: &mut pb::GraphProto, cut: &str) {
    let mut needed: HashSet<String> = HashSet::from([cut.to_string()]);
    // ONNX graphs are topologically sorted: walking backwards sees consumers before producers.
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node_reads(node));
        }
    }
    let mut flags = keep.into_iter();
    graph.node.retain(|_| flags.next().unwrap_or(false));
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph
        .sparse_initializer
        .retain(|t| t.values.as_ref().is_some_and(|v| needed.contains(&v.name)));
    graph.input.retain(|i| needed.contains(&i.name));
    graph.value_info.retain(|v| needed.contains(&v.name));
    graph.output.clear();
}

/// A float32 tensor declaration `[N, dims...]` (`N`: any batch).
pub(crate) fn batch_value_info(name: &str, dims: &[usize]) -> pb::ValueInfoProto {
    let dim = |value| pb::tensor_shape_proto::Dimension {
        value: Some(value),
        ..Default::default()
    };
    let batch = dim(DimValue::DimParam("N".into()));
    let rest = dims
        .iter()
        .map(|&d| dim(DimValue::DimValue(i64::try_from(d).unwrap_or(i64::MAX))));
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: std::iter::once(batch).chain(rest).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `model` cut at tensor `cut`: only what computes it is kept and it is the only output, declared
/// float32 `[N, cut_shape...]`; input `input` is declared float32 `[N, input_shape...]`, the
/// sizes graft feeds. This is the graph an engine that returns only declared outputs (ONNX
/// Runtime) runs.
pub(crate) fn cut_model(
    model: &pb::ModelProto,
    input: &str,
    input_shape: &[usize],
    cut: &str,
    cut_shape: &[usize],
) -> pb::ModelProto {
    let mut model = model.clone();
    if let Some(graph) = model.graph.as_mut() {
        prune_to(graph, cut);
        for declared in graph.input.iter_mut().filter(|i| i.name == input) {
            *declared = batch_value_info(input, input_shape);
        }
        graph.output.push(batch_value_info(cut, cut_shape));
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            name: format!("{op}_{output}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn value(name: &str) -> pb::ValueInfoProto {
        pb::ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    fn weight(name: &str, dims: &[i64]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    /// conv -> pool -> [hidden 1x1 conv -> relu] -> 1x1 conv classifier -> flatten -> softmax.
    fn conv_classifier(outputs: &[&str]) -> pb::GraphProto {
        pb::GraphProto {
            node: vec![
                node("Conv", &["x", "w0"], "c0"),
                node("GlobalAveragePool", &["c0"], "pooled"),
                node("Conv", &["pooled", "w1"], "hidden"),
                node("Relu", &["hidden"], "act"),
                node("Dropout", &["act"], "dropped"),
                node("Conv", &["dropped", "w2"], "scores"),
                node("Flatten", &["scores"], "flat"),
                node("Softmax", &["flat"], "probs"),
            ],
            initializer: vec![
                weight("w0", &[8, 3, 3, 3]),
                weight("w1", &[16, 8, 1, 1]),
                weight("w2", &[5, 16, 1, 1]),
            ],
            input: vec![value("x")],
            output: outputs.iter().map(|o| value(o)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn auto_cut_finds_a_conv_classifier_input_above_hidden_layers() {
        let graph = conv_classifier(&["probs"]);
        let index = GraphIndex::new(&graph);
        assert_eq!(index.auto_cut().as_deref(), Ok("act"));
        assert_eq!(index.candidates(), ["act", "hidden", "pooled"]);
        assert_eq!(index.resolve_cut("Relu_act").as_deref(), Some("act"));
        assert_eq!(index.resolve_cut("Conv_c0:0").as_deref(), Some("c0"));
        assert_eq!(index.resolve_cut("nothing"), None);
    }

    #[test]
    fn hardswish_written_as_arithmetic_is_walked_through() {
        // pooled -> 1x1 conv -> x * clip(x + 3) / 6 -> flatten -> MatMul + Add classifier.
        let graph = pb::GraphProto {
            node: vec![
                node("GlobalAveragePool", &["x"], "pooled"),
                node("Conv", &["pooled", "w1"], "h"),
                node("Add", &["h", "three"], "h3"),
                node("Clip", &["h3"], "clipped"),
                node("Mul", &["h", "clipped"], "hm"),
                node("Div", &["hm", "six"], "hs"),
                node("Flatten", &["hs"], "flat"),
                node("MatMul", &["flat", "w2"], "mm"),
                node("Add", &["mm", "b2"], "logits"),
            ],
            initializer: ["three", "six", "w2", "b2"]
                .iter()
                .map(|n| weight(n, &[1]))
                .chain([weight("w1", &[4, 4, 1, 1])])
                .collect(),
            input: vec![value("x")],
            output: vec![value("logits")],
            ..Default::default()
        };
        let index = GraphIndex::new(&graph);
        assert_eq!(index.auto_cut().as_deref(), Ok("flat"));
        assert_eq!(index.candidates(), ["flat", "hs", "hm", "h", "pooled"]);
    }

    #[test]
    fn a_features_output_wins_and_no_classifier_is_explained() {
        let mut graph = conv_classifier(&["probs", "features"]);
        graph.node.push(node("Flatten", &["pooled"], "features"));
        assert_eq!(
            GraphIndex::new(&graph).auto_cut().as_deref(),
            Ok("features")
        );

        let no_head = conv_classifier(&["c0"]);
        let why = GraphIndex::new(&no_head).auto_cut().unwrap_err();
        assert!(why.contains("no classifier layer"), "{why}");

        // A classifier straight on conv maps (no pooling) is not taken as an embedding.
        let mut unpooled = conv_classifier(&["probs"]);
        unpooled.node[1] = node("Relu", &["c0"], "pooled");
        let why = GraphIndex::new(&unpooled).auto_cut().unwrap_err();
        assert!(why.contains("global pooling"), "{why}");
    }

    #[test]
    fn cut_model_keeps_what_computes_the_cut_and_declares_it() {
        let mut graph = conv_classifier(&["probs"]);
        graph.input.push(value("w0")); // an initializer listed as an input (ONNX IR < 4)
        graph.input.push(value("w2"));
        let model = pb::ModelProto {
            graph: Some(graph),
            ..Default::default()
        };
        let cut = cut_model(&model, "x", &[3, 8, 8], "pooled", &[8, 1, 1]);
        let graph = cut.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "GlobalAveragePool"]);
        let names = |v: &[pb::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&graph.input), ["x", "w0"]);
        assert_eq!(graph.initializer.len(), 1);
        assert_eq!(graph.output, [batch_value_info("pooled", &[8, 1, 1])]);
        assert_eq!(graph.input[0], batch_value_info("x", &[3, 8, 8]));
        let Some(pb::type_proto::Value::TensorType(t)) = graph.output[0]
            .r#type
            .as_ref()
            .and_then(|t| t.value.as_ref())
        else {
            panic!("the output has no tensor type");
        };
        let dims: Vec<_> = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.value.clone())
            .collect();
        assert_eq!(
            dims,
            [
                Some(DimValue::DimParam("N".into())),
                Some(DimValue::DimValue(8)),
                Some(DimValue::DimValue(1)),
                Some(DimValue::DimValue(1))
            ]
        );
    }
}
