//! `graft inspect`: what an ONNX file holds and where it can be cut.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::graph::dtype_name;
use super::graph::{parse_onnx, GraphIndex};
use super::guard;
use super::resolve::{declared_input, CUT_HINT};
use super::tract::typed_model;
use crate::cache::sha256_hex;
use crate::{Error, Result};
use graft_converters::onnx_builder::default_opset;

/// One tensor dimension as declared in an ONNX file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Dim {
    Fixed(i64),
    Named(String),
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Named(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

fn format_shape(shape: &Option<Vec<Dim>>) -> String {
    match shape {
        Some(dims) => format!(
            "[{}]",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "unknown".into(),
    }
}

/// A named tensor with its declared type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// `None` when the file does not declare it.
    pub shape: Option<Vec<Dim>>,
    pub dtype: String,
}

/// A tensor that makes a sensible cut.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CutCandidate {
    pub tensor: String,
    /// Op type of the node producing it.
    pub op: String,
    /// Shape with a symbolic batch `N` (or batch 1 where the graph needs a fixed one), when tract
    /// can infer it.
    pub shape: Option<Vec<Dim>>,
}

/// What `graft inspect MODEL` shows about an ONNX file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub sha256: String,
    pub producer: String,
    pub opset: i64,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// Op type -> number of nodes.
    pub ops: BTreeMap<String, usize>,
    pub candidates: Vec<CutCandidate>,
    /// The automatic cut, or why there is none.
    pub auto_cut: std::result::Result<String, String>,
    /// Why graft cannot run this model at all (one float input, every output prepared by
    /// tract); `None` when it can.
    pub problem: Option<String>,
}

fn shape_of(info: &pb::ValueInfoProto) -> Option<Vec<Dim>> {
    let Some(pb::type_proto::Value::TensorType(t)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = t.shape.as_ref()?.dim.iter().map(|d| match &d.value {
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => Dim::Fixed(*v),
        Some(pb::tensor_shape_proto::dimension::Value::DimParam(s)) if !s.is_empty() => {
            Dim::Named(s.clone())
        }
        _ => Dim::Unknown,
    });
    Some(dims.collect())
}

fn tensor_info(info: &pb::ValueInfoProto) -> TensorInfo {
    let dtype = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => dtype_name(t.elem_type),
        _ => "non-tensor".into(),
    };
    TensorInfo {
        name: info.name.clone(),
        shape: shape_of(info),
        dtype,
    }
}

/// Shapes tract infers for `tensors` with a symbolic batch, or `None` where it cannot.
fn inferred_shapes(
    proto: &pb::ModelProto,
    input_shape: &[Option<usize>],
    tensors: &[String],
) -> Vec<Option<Vec<Dim>>> {
    let shapes = guard("", || {
        let typed = typed_model(proto, None, input_shape, tensors)
            .or_else(|_| typed_model(proto, Some(1), input_shape, tensors))?;
        (0..tensors.len())
            .map(|i| {
                let fact = typed.output_fact(i)?;
                Ok(fact
                    .shape
                    .iter()
                    .map(|d| match d.to_i64() {
                        Ok(v) => Dim::Fixed(v),
                        Err(_) => Dim::Named(d.to_string()),
                    })
                    .collect())
            })
            .collect::<TractResult<Vec<Vec<Dim>>>>()
    });
    match shapes {
        Ok(s) => s.into_iter().map(Some).collect(),
        Err(_) => vec![None; tensors.len()],
    }
}

/// Reads an ONNX file and describes its inputs, outputs, ops and candidate cuts.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let bytes = crate::limits::read(path, crate::limits::FileKind::Model)?;
    let proto = parse_onnx(&bytes, path)?;
    let graph = proto.graph.as_ref().ok_or_else(|| Error::Model {
        path: path.to_path_buf(),
        msg: "no graph".into(),
    })?;
    let index = GraphIndex::new(graph);
    let mut ops = BTreeMap::new();
    for node in &graph.node {
        *ops.entry(node.op_type.clone()).or_insert(0) += 1;
    }
    let names = index.candidates();
    let declared = declared_input(&index, path);
    let shapes = match &declared {
        Ok((_, declared)) if !names.is_empty() => inferred_shapes(&proto, declared, &names),
        _ => vec![None; names.len()],
    };
    let problem = match &declared {
        Err(e) => Some(e.to_string()),
        Ok((_, declared)) => {
            let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
            guard("tract cannot prepare the model", || {
                typed_model(&proto, None, declared, &outputs)
                    .or_else(|_| typed_model(&proto, Some(1), declared, &outputs))
                    .and_then(|m| m.into_decluttered())
            })
            .err()
        }
    };
    let candidates = names
        .into_iter()
        .zip(shapes)
        .map(|(tensor, shape)| CutCandidate {
            op: index
                .producer(&tensor)
                .map_or_else(|| "input".into(), |n| n.op_type.clone()),
            tensor,
            shape,
        })
        .collect();
    let opset = default_opset(&proto).unwrap_or(0);
    Ok(Inspection {
        path: path.to_path_buf(),
        sha256: sha256_hex(&bytes),
        producer: format!("{} {}", proto.producer_name, proto.producer_version)
            .trim()
            .to_string(),
        opset,
        inputs: index.real_inputs().map(tensor_info).collect(),
        outputs: graph.output.iter().map(tensor_info).collect(),
        ops,
        candidates,
        auto_cut: index.auto_cut(),
        problem,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model    {}", self.path.display())?;
        writeln!(f, "sha256   {}", self.sha256)?;
        writeln!(f, "producer {}", self.producer)?;
        writeln!(f, "opset    {}", self.opset)?;
        writeln!(f, "inputs:")?;
        for t in &self.inputs {
            writeln!(f, "  {} {} {}", t.name, t.dtype, format_shape(&t.shape))?;
        }
        writeln!(f, "outputs:")?;
        for t in &self.outputs {
            writeln!(f, "  {} {} {}", t.name, t.dtype, format_shape(&t.shape))?;
        }
        let total: usize = self.ops.values().sum();
        writeln!(f, "ops ({total} nodes):")?;
        for (op, n) in &self.ops {
            writeln!(f, "  {op:<24} {n}")?;
        }
        writeln!(f, "candidate cuts:")?;
        if self.candidates.is_empty() {
            writeln!(f, "  (none found)")?;
        }
        for c in &self.candidates {
            writeln!(f, "  {} ({}) {}", c.tensor, c.op, format_shape(&c.shape))?;
        }
        match &self.auto_cut {
            Ok(cut) => writeln!(f, "automatic cut: {cut}")?,
            Err(why) => writeln!(f, "automatic cut: none ({why}); {CUT_HINT}")?,
        }
        match &self.problem {
            None => Ok(()),
            Some(why) => writeln!(f, "unusable: {why}"),
        }
    }
}
