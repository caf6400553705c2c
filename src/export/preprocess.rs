//! The image-in front of an exported graph: `uint8` RGB `[N, H, W, 3]` of any size in, the base's
//! prepared float input out, computed as [`crate::input::image::preprocess`] computes it for an
//! RGB image (no alpha).
//!
//! Cast to float, then ONNX `Resize` (opset 18) to the base's size: `linear`, `half_pixel`,
//! `antialias = 1` (the triangle filter widened by the shrink factor, as graft's and PIL's
//! bilinear resize) and `exclude_outside = 1` (taps outside the image dropped and the rest
//! renormalised, as graft does at the borders), over axes 1 and 2 only; then the channel order
//! (for a grey base, a `MatMul` by the BT.601 luma weights), `(x - mean) / std` and, for an NCHW
//! base, a transpose. All of it is ONNX Runtime CPU (also
//! its web and mobile builds) and tract 0.23.

use std::collections::HashSet;

use graft_converters::onnx_builder::{attr_int, attr_ints, attr_string};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

use crate::input::{ChannelOrder, ImageSpec, Layout, LUMA};

/// The opset the image-in graph needs: `Resize` with `antialias` and `axes`.
pub const IMAGE_OPSET: i64 = 18;

/// Operators whose form changed between opset 13 and [`IMAGE_OPSET`] in a way that an older graph
/// would be read wrongly at 18 (their `axes` attribute became an input).
const CHANGED_BY_18: &[&str] = &[
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// Why the image-in front cannot be put before this base, or `None` when it can.
pub fn blocker(spec: &ImageSpec, model: &pb::ModelProto) -> Option<String> {
    if spec.letterbox {
        return Some("the base letterboxes its images (only a plain resize is built in)".into());
    }
    if spec.center_crop.is_some() {
        return Some("the base centre-crops its images (only a plain resize is built in)".into());
    }
    let opset = default_opset(model);
    if opset < 13 {
        return Some(format!(
            "the base's opset is {opset}; the image-in graph needs opset {IMAGE_OPSET}, reachable \
             unchanged from 13 or later"
        ));
    }
    if opset < IMAGE_OPSET {
        let mut ops = Vec::new();
        if let Some(graph) = &model.graph {
            collect_ops(graph, &mut ops);
        }
        if let Some(op) = ops.iter().find(|op| CHANGED_BY_18.contains(&op.as_str())) {
            return Some(format!(
                "the base (opset {opset}) uses {op}, whose form changed by opset {IMAGE_OPSET}"
            ));
        }
    }
    None
}

/// The version of the default ONNX domain the model imports (1 when it names none).
pub fn default_opset(model: &pb::ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

/// Raises the default domain's version to at least [`IMAGE_OPSET`] (after [`blocker`] said yes).
pub fn raise_opset(model: &mut pb::ModelProto) {
    match model
        .opset_import
        .iter_mut()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    {
        Some(o) => o.version = o.version.max(IMAGE_OPSET),
        None => model.opset_import.push(pb::OperatorSetIdProto {
            domain: String::new(),
            version: IMAGE_OPSET,
        }),
    }
}

fn collect_ops(graph: &pb::GraphProto, ops: &mut Vec<String>) {
    for node in &graph.node {
        ops.push(node.op_type.clone());
        for attr in &node.attribute {
            for g in attr.g.iter().chain(&attr.graphs) {
                collect_ops(g, ops);
            }
        }
    }
}

/// Tensor names in use, and fresh ones made from stems.
pub struct Names(HashSet<String>);

impl Names {
    /// The names `taken` already.
    pub fn new(taken: HashSet<String>) -> Names {
        Names(taken)
    }

    /// `stem`, or `stem_1`, `stem_2`, ... : the first one not taken, now taken.
    pub fn fresh(&mut self, stem: &str) -> String {
        let mut name = stem.to_string();
        let mut k = 1;
        while self.0.contains(&name) {
            name = format!("{stem}_{k}");
            k += 1;
        }
        self.0.insert(name.clone());
        name
    }

    /// Whether `name` is taken.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// One node with one output.
pub fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// A little-endian initializer of `data_type` from raw bytes.
pub fn initializer(name: &str, dims: &[i64], data_type: DataType, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// A float initializer.
pub fn float_initializer(
    name: &str,
    dims: &[usize],
    values: impl Iterator<Item = f32>,
) -> pb::TensorProto {
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    initializer(
        name,
        &dims,
        DataType::Float,
        values.flat_map(f32::to_le_bytes).collect(),
    )
}

pub fn int64_initializer(name: &str, values: &[i64]) -> pb::TensorProto {
    initializer(
        name,
        &[values.len() as i64],
        DataType::Int64,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// The declaration of the image input: `uint8 [N, H, W, 3]`.
pub fn image_value_info(name: &str) -> pb::ValueInfoProto {
    let dim = |value| pb::tensor_shape_proto::Dimension {
        value: Some(value),
        ..Default::default()
    };
    let dims = [
        dim(DimValue::DimParam("N".into())),
        dim(DimValue::DimParam("H".into())),
        dim(DimValue::DimParam("W".into())),
        dim(DimValue::DimValue(3)),
    ];
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Uint8 as i32,
                shape: Some(pb::TensorShapeProto { dim: dims.into() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Appends to `graph` the nodes (and constants) that turn `image` (`uint8 [N, H, W, 3]`) into
/// `output`, the base's input as `spec` prepares it.
pub fn append_front(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    spec: &ImageSpec,
    image: &str,
    output: &str,
) {
    let sizes = names.fresh("graft_image_sizes");
    let order = names.fresh("graft_image_channels");
    let mean = names.fresh("graft_image_mean");
    let std = names.fresh("graft_image_std");
    graph.initializer.push(int64_initializer(
        &sizes,
        &[i64::from(spec.height), i64::from(spec.width)],
    ));
    let bgr = spec.channels == ChannelOrder::Bgr;
    let gray = spec.channels == ChannelOrder::Gray;
    if bgr {
        graph
            .initializer
            .push(int64_initializer(&order, &[2, 1, 0]));
    }
    if gray {
        // RGB [.., 3] x luma [3, 1] = grey [.., 1].
        graph
            .initializer
            .push(float_initializer(&order, &[3, 1], LUMA.into_iter()));
    }
    let channels = spec.channels.count();
    graph.initializer.push(float_initializer(
        &mean,
        &[channels],
        spec.mean.into_iter().take(channels),
    ));
    graph.initializer.push(float_initializer(
        &std,
        &[channels],
        spec.std.into_iter().take(channels),
    ));

    let mut nodes = Vec::new();
    let mut step =
        |op: &str, inputs: &[&str], out: Option<&str>, attrs: Vec<pb::AttributeProto>| {
            let stem = format!("graft_image_{}", op.to_lowercase());
            let out = out.map_or_else(|| names.fresh(&stem), str::to_string);
            let mut n = node(op, &names.fresh(&format!("{stem}_node")), inputs, &out);
            n.attribute = attrs;
            nodes.push(n);
            out
        };
    let mut last = image.to_string();
    let nchw = spec.layout == Layout::Nchw;
    last = step(
        "Cast",
        &[&last],
        None,
        vec![attr_int("to", DataType::Float as i64)],
    );
    last = step(
        "Resize",
        &[&last, "", "", &sizes],
        None,
        vec![
            attr_string("mode", "linear"),
            attr_string("coordinate_transformation_mode", "half_pixel"),
            attr_int("antialias", 1),
            attr_int("exclude_outside", 1),
            attr_ints("axes", &[1, 2]),
        ],
    );
    if bgr {
        last = step("Gather", &[&last, &order], None, vec![attr_int("axis", 3)]);
    }
    if gray {
        last = step("MatMul", &[&last, &order], None, vec![]);
    }
    last = step("Sub", &[&last, &mean], None, vec![]);
    last = step(
        "Div",
        &[&last, &std],
        if nchw { None } else { Some(output) },
        vec![],
    );
    if nchw {
        step(
            "Transpose",
            &[&last],
            Some(output),
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        );
    }
    // The front comes first: ONNX graphs are topologically sorted.
    nodes.append(&mut graph.node);
    graph.node = nodes;
}
