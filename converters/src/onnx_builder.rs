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

/// Serialises a model to ONNX protobuf bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
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
