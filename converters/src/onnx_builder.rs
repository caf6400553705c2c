//! A small builder for ONNX graphs (opset 13) over `tract_onnx::pb`, shared by the converters.

use prost::Message;
use tract_onnx::pb;

use crate::Error;
pub use pb::tensor_proto::DataType;

/// ONNX opset the converters emit.
pub const OPSET: i64 = 13;
/// IR version matching [`OPSET`].
const IR_VERSION: i64 = 7;

/// Version of the default (`ai.onnx`) operator set `model` imports, if any.
pub fn default_opset(model: &pb::ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// One dimension of a graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size, e.g. the batch dimension "N".
    Symbolic(String),
}

/// Builds a graph node by node; names of intermediate tensors are made unique by the builder.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    used_names: std::collections::HashSet<String>,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: pb::GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            used_names: Default::default(),
        }
    }

    /// A name not used yet, derived from `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while self.used_names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    /// Declares a float32 graph input.
    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> String {
        self.input(name, DataType::Float, dims)
    }

    /// Declares a graph input of element type `elem`.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        let name = self.fresh(name);
        self.graph.input.push(value_info(&name, elem, Some(dims)));
        name
    }

    /// Declares `tensor` (an existing tensor name) as a float32 graph output.
    pub fn output_f32(&mut self, tensor: &str, dims: &[Dim]) {
        self.output(tensor, DataType::Float, Some(dims));
    }

    /// Declares `tensor` as a graph output of element type `elem`; `dims: None` leaves the shape
    /// to the runtime's inference.
    pub fn output(&mut self, tensor: &str, elem: DataType, dims: Option<&[Dim]>) {
        self.graph.output.push(value_info(tensor, elem, dims));
    }

    /// Adds an int64 constant; returns its (unique) name.
    pub fn initializer_i64(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Int64, raw)
    }

    /// Adds an int32 constant; returns its (unique) name.
    pub fn initializer_i32(&mut self, name: &str, dims: &[usize], values: &[i32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Int32, raw)
    }

    fn initializer_raw(
        &mut self,
        name: &str,
        dims: &[usize],
        elem: DataType,
        raw_data: Vec<u8>,
    ) -> String {
        let name = self.fresh(name);
        self.graph.initializer.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: elem as i32,
            raw_data,
            ..Default::default()
        });
        name
    }

    /// Adds a node with several outputs named after `outputs` (made unique); returns their names.
    pub fn node_multi(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<pb::AttributeProto>,
    ) -> Vec<String> {
        let outputs: Vec<String> = outputs.iter().map(|o| self.fresh(o)).collect();
        self.graph.node.push(pb::NodeProto {
            name: outputs.first().cloned().unwrap_or_default(),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            attribute: attributes,
            ..Default::default()
        });
        outputs
    }

    /// Adds a float32 constant; returns its (unique) name.
    pub fn initializer_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(name, dims, DataType::Float, raw)
    }

    /// Reserves `name` so that no later node or initializer is given it (see
    /// [`GraphBuilder::node_reserved`]); false if it is already in use.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.used_names.insert(name.to_string())
    }

    /// Adds a node whose output is exactly `output`, a name taken with [`GraphBuilder::reserve`]
    /// (e.g. a graph output that must keep its name).
    pub fn node_reserved(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<pb::AttributeProto>,
    ) {
        self.graph.node.push(pb::NodeProto {
            name: output.to_string(),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attributes,
            ..Default::default()
        });
    }

    /// Copies the nodes and initializers of `graph` (an opset-13 graph from another file) into this
    /// one, every tensor and node name prefixed with `prefix`. Each of its inputs that is not an
    /// initializer must be bound to an existing tensor here by `bind` (`(its input, tensor)`).
    /// Returns the new names of its outputs, in order. Graphs with subgraphs (If, Loop) are refused.
    pub fn append_graph(
        &mut self,
        graph: &pb::GraphProto,
        prefix: &str,
        bind: &[(&str, &str)],
    ) -> Result<Vec<String>, Error> {
        let mut names: std::collections::HashMap<&str, String> = bind
            .iter()
            .map(|&(from, to)| (from, to.to_string()))
            .collect();
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for input in &graph.input {
            if !initializers.contains(input.name.as_str())
                && !names.contains_key(input.name.as_str())
            {
                return Err(Error::Format(format!(
                    "graph input `{}` is not bound to a tensor",
                    input.name
                )));
            }
        }
        let claim = |builder: &mut Self, name: &str| -> Result<String, Error> {
            let new = format!("{prefix}{name}");
            if !builder.used_names.insert(new.clone()) {
                return Err(Error::Format(format!("tensor name `{new}` is used twice")));
            }
            Ok(new)
        };
        for t in &graph.initializer {
            if names.contains_key(t.name.as_str()) {
                continue;
            }
            let new = claim(self, &t.name)?;
            self.graph.initializer.push(pb::TensorProto {
                name: new.clone(),
                ..t.clone()
            });
            names.insert(&t.name, new);
        }
        for node in &graph.node {
            if node
                .attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty())
            {
                return Err(Error::Format(format!(
                    "node `{}` ({}) has a subgraph, which cannot be merged",
                    node.name, node.op_type
                )));
            }
            let mut inputs = Vec::with_capacity(node.input.len());
            for i in &node.input {
                inputs.push(match (i.is_empty(), names.get(i.as_str())) {
                    (true, _) => String::new(),
                    (false, Some(n)) => n.clone(),
                    (false, None) => {
                        return Err(Error::Format(format!(
                            "node `{}` reads `{i}` before it is produced",
                            node.name
                        )))
                    }
                });
            }
            let mut outputs = Vec::with_capacity(node.output.len());
            for o in &node.output {
                if o.is_empty() {
                    outputs.push(String::new());
                    continue;
                }
                let new = claim(self, o)?;
                names.insert(o, new.clone());
                outputs.push(new);
            }
            self.graph.node.push(pb::NodeProto {
                name: format!("{prefix}{}", node.name),
                input: inputs,
                output: outputs,
                ..node.clone()
            });
        }
        graph
            .output
            .iter()
            .map(|o| {
                names.get(o.name.as_str()).cloned().ok_or_else(|| {
                    Error::Format(format!("graph output `{}` is not produced", o.name))
                })
            })
            .collect()
    }

    /// Adds a node with one output named after `output` (made unique); returns the output name.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<pb::AttributeProto>,
    ) -> String {
        let output = self.fresh(output);
        self.graph.node.push(pb::NodeProto {
            name: output.clone(),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// The finished model (opset 13), with `producer` recorded.
    pub fn finish(self, producer: &str, doc: &str) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: producer.to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: doc.to_string(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// Serialises a model to ONNX protobuf bytes, as prost writes them (repeated numbers packed).
/// The zoo's models are recorded in this encoding (their sha256 is of these bytes); files
/// meant for other tools are written by [`encode_unpacked`].
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Serialises a model to ONNX protobuf bytes as the reference `onnx` package writes them:
/// `onnx.proto` is proto2, so repeated numbers (attribute `ints` and `floats`, tensor `dims`
/// and `*_data`) are written one field each, unpacked. Strict readers refuse the packed form;
/// every reader accepts this one.
pub fn encode_unpacked(model: &pb::ModelProto) -> Result<Vec<u8>, Error> {
    unpack_repeated(&model.encode_to_vec())
}

/// Rewrites serialised ONNX model bytes with every repeated number field of a graph, node,
/// attribute or tensor unpacked (see [`encode_unpacked`]); everything else is copied as it is.
pub fn unpack_repeated(model: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(model.len() + model.len() / 8);
    wire::rewrite(model, wire::Message::Model, 0, &mut out)?;
    Ok(out)
}

/// The protobuf wire format, just enough to unpack ONNX's repeated numbers.
mod wire {
    use crate::Error;

    /// The ONNX messages that hold (or lead to) repeated numbers.
    #[derive(Clone, Copy)]
    pub(super) enum Message {
        Model,
        Graph,
        Node,
        Attribute,
        Tensor,
    }

    /// How a field's length-delimited payload is treated.
    enum Field {
        /// A nested message to rewrite.
        Message(Message),
        /// Packed numbers of this wire type (0 varint, 1 fixed64, 5 fixed32), to unpack.
        Packed(u8),
        /// Anything else: copied.
        Copy,
    }

    fn field(message: Message, number: u64) -> Field {
        use Message::*;
        match (message, number) {
            (Model, 7) => Field::Message(Graph),
            (Graph, 1) => Field::Message(Node),
            (Graph, 5) => Field::Message(Tensor),
            (Node, 5) => Field::Message(Attribute),
            (Attribute, 5 | 10) => Field::Message(Tensor),
            (Attribute, 6 | 11) => Field::Message(Graph),
            (Attribute, 7) => Field::Packed(5),
            (Attribute, 8) => Field::Packed(0),
            // dims, int32_data, int64_data, uint64_data; float_data; double_data.
            (Tensor, 1 | 5 | 7 | 11) => Field::Packed(0),
            (Tensor, 4) => Field::Packed(5),
            (Tensor, 10) => Field::Packed(1),
            _ => Field::Copy,
        }
    }

    /// Nested graphs (subgraph attributes) deeper than this are refused.
    const MAX_DEPTH: usize = 64;

    fn err(msg: &str) -> Error {
        Error::Format(format!("ONNX protobuf: {msg}"))
    }

    /// Reads a varint at `*at`, returning its value; `*at` moves past it.
    pub(super) fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, Error> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*at).ok_or_else(|| err("truncated varint"))?;
            *at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Bytes `at..at + n`, or a truncation error.
    fn take<'a>(bytes: &'a [u8], at: &mut usize, n: u64) -> Result<&'a [u8], Error> {
        let n = usize::try_from(n).map_err(|_| err("length overflows"))?;
        let end = at.checked_add(n).ok_or_else(|| err("length overflows"))?;
        let slice = bytes.get(*at..end).ok_or_else(|| err("truncated field"))?;
        *at = end;
        Ok(slice)
    }

    pub(super) fn rewrite(
        bytes: &[u8],
        message: Message,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(err("messages nested too deeply"));
        }
        let mut at = 0;
        while at < bytes.len() {
            let start = at;
            let key = varint(bytes, &mut at)?;
            let (number, wire_type) = (key >> 3, (key & 7) as u8);
            match wire_type {
                0 => {
                    varint(bytes, &mut at)?;
                    out.extend_from_slice(&bytes[start..at]);
                }
                1 | 5 => {
                    take(bytes, &mut at, if wire_type == 1 { 8 } else { 4 })?;
                    out.extend_from_slice(&bytes[start..at]);
                }
                2 => {
                    let len = varint(bytes, &mut at)?;
                    let payload = take(bytes, &mut at, len)?;
                    match field(message, number) {
                        Field::Message(inner) => {
                            let mut nested = Vec::with_capacity(payload.len());
                            rewrite(payload, inner, depth + 1, &mut nested)?;
                            put_varint(key, out);
                            put_varint(nested.len() as u64, out);
                            out.extend_from_slice(&nested);
                        }
                        Field::Packed(scalar) => {
                            let mut p = 0;
                            while p < payload.len() {
                                let from = p;
                                match scalar {
                                    0 => {
                                        varint(payload, &mut p)?;
                                    }
                                    1 => {
                                        take(payload, &mut p, 8)?;
                                    }
                                    _ => {
                                        take(payload, &mut p, 4)?;
                                    }
                                }
                                put_varint(number << 3 | u64::from(scalar), out);
                                out.extend_from_slice(&payload[from..p]);
                            }
                        }
                        Field::Copy => out.extend_from_slice(&bytes[start..at]),
                    }
                }
                _ => return Err(err("groups or an unknown wire type")),
            }
        }
        Ok(())
    }
}

fn value_info(name: &str, elem: DataType, dims: Option<&[Dim]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = dims.map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => Value::DimValue(*n),
                    Dim::Symbolic(s) => Value::DimParam(s.clone()),
                }),
                ..Default::default()
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, value: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, value: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::*;

    /// y = Clip(x + b, 0, 6) over a symbolic batch, run by tract.
    #[test]
    fn built_graph_runs_in_tract_with_any_batch() {
        let mut g = GraphBuilder::new("t");
        let n = Dim::Symbolic("N".into());
        let x = g.input_f32("x", &[n.clone(), Dim::Fixed(2)]);
        let b = g.initializer_f32("b", &[2], &[1.0, -1.0]);
        let lo = g.initializer_f32("lo", &[], &[0.0]);
        let hi = g.initializer_f32("hi", &[], &[6.0]);
        let s = g.node("Add", &[&x, &b], "sum", vec![]);
        let y = g.node("Clip", &[&s, &lo, &hi], "y", vec![]);
        assert_eq!(
            g.node("Identity", &[&y], "y", vec![]),
            "y_1",
            "names are made unique"
        );
        g.output_f32(&y, &[n, Dim::Fixed(2)]);
        let bytes = encode(&g.finish("test", ""));
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        for rows in [1usize, 3] {
            let input: Vec<f32> = (0..rows * 2).map(|i| i as f32 * 2.0 - 1.0).collect();
            let x = tract_ndarray::Array2::from_shape_vec((rows, 2), input.clone()).unwrap();
            let out = plan.run(tvec!(x.into_tensor().into())).unwrap();
            let got: Vec<f32> = out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            let want: Vec<f32> = input
                .iter()
                .enumerate()
                .map(|(i, v)| (v + if i % 2 == 0 { 1.0 } else { -1.0 }).clamp(0.0, 6.0))
                .collect();
            assert_eq!(got, want);
        }
    }
}

#[cfg(test)]
mod unpacked_tests {
    use super::*;

    /// The (field number, wire type) of every field of the protobuf message `bytes`.
    fn fields(bytes: &[u8]) -> Vec<(u64, u8, &[u8])> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = wire::varint(bytes, &mut at).unwrap();
            let start = at;
            match key & 7 {
                0 => {
                    wire::varint(bytes, &mut at).unwrap();
                }
                1 => at += 8,
                5 => at += 4,
                2 => {
                    let len = wire::varint(bytes, &mut at).unwrap() as usize;
                    at += len;
                    out.push((key >> 3, 2, &bytes[at - len..at]));
                    continue;
                }
                w => panic!("wire type {w}"),
            }
            out.push((key >> 3, (key & 7) as u8, &bytes[start..at]));
        }
        out
    }

    /// The payloads of field `number` (length-delimited) of message `bytes`.
    fn nested(bytes: &[u8], number: u64) -> Vec<&[u8]> {
        fields(bytes)
            .into_iter()
            .filter(|&(n, w, _)| n == number && w == 2)
            .map(|(_, _, p)| p)
            .collect()
    }

    #[test]
    fn repeated_ints_are_written_unpacked_and_read_back_by_prost() {
        let mut g = GraphBuilder::new("t");
        let x = g.input_f32(
            "x",
            &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(4), Dim::Fixed(4)],
        );
        let w = g.initializer_f32("w", &[2, 3, 1, 1], &[0.5; 6]);
        let y = g.node(
            "Conv",
            &[&x, &w],
            "y",
            vec![
                attr_ints("strides", &[1, 1]),
                attr_ints("pads", &[0, 0, 0, 0]),
            ],
        );
        g.output_f32(
            &y,
            &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(4), Dim::Fixed(4)],
        );
        let model = g.finish("test", "");
        let packed = encode(&model);
        let bytes = encode_unpacked(&model).unwrap();
        assert_ne!(bytes, packed);

        let graph = nested(&bytes, 7)[0];
        let node = nested(graph, 1)[0];
        let attributes = nested(node, 5);
        assert_eq!(attributes.len(), 2);
        for attribute in attributes {
            let ints: Vec<(u64, u8)> = fields(attribute)
                .into_iter()
                .filter(|f| f.0 == 8)
                .map(|f| (f.0, f.1))
                .collect();
            // One varint field (wire type 0) per value: strides 2, pads 4.
            assert!(ints.len() == 2 || ints.len() == 4, "{ints:?}");
            assert!(ints.iter().all(|&(_, w)| w == 0), "{ints:?}");
        }
        let tensor = nested(graph, 5)[0];
        let dims: Vec<u8> = fields(tensor)
            .into_iter()
            .filter(|f| f.0 == 1)
            .map(|f| f.1)
            .collect();
        assert_eq!(dims, [0, 0, 0, 0]);
        // In the packed form, ints is one length-delimited field.
        let packed_node = nested(nested(&packed, 7)[0], 1)[0];
        let packed_ints: Vec<u8> = fields(nested(packed_node, 5)[0])
            .into_iter()
            .filter(|f| f.0 == 8)
            .map(|f| f.1)
            .collect();
        assert_eq!(packed_ints, [2]);

        // prost reads both forms to the same model, and unpacking is idempotent.
        assert_eq!(pb::ModelProto::decode(&bytes[..]).unwrap(), model);
        assert_eq!(unpack_repeated(&bytes).unwrap(), bytes);
        assert!(unpack_repeated(&bytes[..bytes.len() - 1]).is_err());
    }
}
