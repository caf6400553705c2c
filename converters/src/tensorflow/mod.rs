//! TensorFlow protobuf models to ONNX: a TF1 frozen `GraphDef` (`.pb`, every variable already a
//! `Const`).
//!
//! A TF.js graph model *is* a GraphDef, written as protobuf JSON with its constants moved into
//! weight shards. So this importer decodes the protobuf, writes each node as the JSON node TF.js
//! would have written, moves each `Const`'s value into the weights, and hands both to the TF.js
//! graph converter ([`crate::tfjs::graph`]): one translation of TF ops for both formats.
//!
//! The graph's outputs are the tensors asked for, else every tensor nothing consumes. Only the
//! nodes the outputs need are converted, so training-only or unsupported parts of a graph that
//! the outputs do not use are left behind.

pub mod proto;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use serde_json::{json, Map, Value as Json};

use crate::tfjs::base64;
use crate::tfjs::graph::producer;
use crate::tfjs::weights::{Data, Tensor, Weights};
use crate::tfjs::ModelJson;
use crate::Error;
use proto::attr_value::Value as Attr;

/// The most elements a constant written as one repeated value (a "splat", which costs a few
/// bytes in the file whatever its shape) may expand to: 64 M (256 MB of float32).
pub const MAX_SPLAT_ELEMENTS: usize = 1 << 26;

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("TensorFlow GraphDef: {}", msg.into()))
}

/// Converts the frozen GraphDef at `path` to ONNX bytes; `outputs` names the tensors to keep as
/// graph outputs (`node` or `node:k`), empty: every tensor nothing consumes.
pub fn convert_frozen(path: &Path, outputs: &[String]) -> Result<Vec<u8>, Error> {
    let bytes = crate::limits::read_file(path, crate::limits::ReadLimit::MODEL, "a GraphDef")
        .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
    let graph = proto::GraphDef::decode(bytes.as_slice())
        .map_err(|e| bad(format!("{}: not a GraphDef protobuf: {e}", path.display())))?;
    drop(bytes);
    let proto = convert_graph(&graph, outputs)?;
    Ok(crate::onnx_builder::encode(&proto))
}

/// Converts a decoded GraphDef (see [`convert_frozen`]).
pub fn convert_graph(
    graph: &proto::GraphDef,
    outputs: &[String],
) -> Result<tract_onnx::pb::ModelProto, Error> {
    if graph.node.is_empty() {
        return Err(bad("the graph has no nodes"));
    }
    let nodes = needed_nodes(graph, outputs)?;
    let mut weights = Weights::default();
    let mut json_nodes = Vec::with_capacity(nodes.len());
    for n in nodes {
        if n.op == "Const" {
            if let Some(t) = const_value(n)? {
                weights.tensors.insert(n.name.clone(), t);
            }
        }
        json_nodes.push(node_json(n));
    }
    let signature = (!outputs.is_empty()).then(|| {
        let outs: Map<String, Json> = outputs
            .iter()
            .map(|o| (o.clone(), json!({ "name": o })))
            .collect();
        json!({ "outputs": outs })
    });
    let model = ModelJson {
        format: Some("graph-model".into()),
        topology: json!({ "node": json_nodes }),
        weights_manifest: vec![],
        signature,
    };
    crate::tfjs::graph::convert(&model, &weights)
}

/// The nodes the outputs depend on (data inputs only), in the graph's order; all nodes when no
/// output is named.
fn needed_nodes<'g>(
    graph: &'g proto::GraphDef,
    outputs: &[String],
) -> Result<Vec<&'g proto::NodeDef>, Error> {
    if outputs.is_empty() {
        return Ok(graph.node.iter().collect());
    }
    let by_name: HashMap<&str, &proto::NodeDef> =
        graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut keep: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = Vec::new();
    for o in outputs {
        let name = producer(o);
        if !by_name.contains_key(name) {
            return Err(bad(format!("output {o}: the graph has no node {name}")));
        }
        stack.push(name);
    }
    while let Some(name) = stack.pop() {
        if !keep.insert(name) {
            continue;
        }
        let node = by_name.get(name).ok_or_else(|| {
            bad(format!(
                "an input names node {name}, which is not in the graph"
            ))
        })?;
        stack.extend(
            node.input
                .iter()
                .filter(|r| !r.starts_with('^'))
                .map(|r| producer(r)),
        );
    }
    Ok(graph
        .node
        .iter()
        .filter(|n| keep.contains(n.name.as_str()))
        .collect())
}

/// A node as TF.js writes it in model.json (protobuf JSON; a `Const` without its value).
fn node_json(n: &proto::NodeDef) -> Json {
    let mut attr = Map::new();
    // Sorted, so that the conversion does not depend on the map's order.
    let mut keys: Vec<&String> = n.attr.keys().collect();
    keys.sort();
    for k in keys {
        if let Some(v) = n.attr[k].value.as_ref().and_then(attr_json) {
            attr.insert(k.clone(), v);
        }
    }
    json!({ "name": n.name, "op": n.op, "input": n.input, "attr": attr })
}

fn shape_json(s: &proto::TensorShapeProto) -> Json {
    if s.unknown_rank {
        return json!({ "unknownRank": true });
    }
    let dims: Vec<Json> = s
        .dim
        .iter()
        .map(|d| json!({ "size": d.size.to_string() }))
        .collect();
    json!({ "dim": dims })
}

/// An attribute value in protobuf JSON; `None` for a tensor (constants travel as weights).
fn attr_json(v: &Attr) -> Option<Json> {
    Some(match v {
        Attr::S(s) => json!({ "s": base64::encode(s) }),
        Attr::I(i) => json!({ "i": i.to_string() }),
        Attr::F(f) => json!({ "f": f }),
        Attr::B(b) => json!({ "b": b }),
        Attr::Type(t) => json!({ "type": proto::dtype_name(*t) }),
        Attr::Shape(s) => json!({ "shape": shape_json(s) }),
        Attr::Func(f) => json!({ "func": { "name": f.name } }),
        Attr::Placeholder(p) => json!({ "placeholder": p }),
        Attr::Tensor(_) => return None,
        Attr::List(l) => {
            let mut list = Map::new();
            if !l.s.is_empty() {
                let s: Vec<String> = l.s.iter().map(|s| base64::encode(s)).collect();
                list.insert("s".into(), json!(s));
            }
            if !l.i.is_empty() {
                let i: Vec<String> = l.i.iter().map(i64::to_string).collect();
                list.insert("i".into(), json!(i));
            }
            if !l.f.is_empty() {
                list.insert("f".into(), json!(l.f));
            }
            if !l.b.is_empty() {
                list.insert("b".into(), json!(l.b));
            }
            if !l.r#type.is_empty() {
                let t: Vec<&str> = l.r#type.iter().map(|&t| proto::dtype_name(t)).collect();
                list.insert("type".into(), json!(t));
            }
            if !l.shape.is_empty() {
                let s: Vec<Json> = l.shape.iter().map(shape_json).collect();
                list.insert("shape".into(), json!(s));
            }
            json!({ "list": list })
        }
    })
}

/// The value of a `Const` node, decoded; `None` for a dtype graft does not compute with
/// (strings, resources), which is an error only if a converted node uses it.
fn const_value(n: &proto::NodeDef) -> Result<Option<Tensor>, Error> {
    match n.attr.get("value").and_then(|v| v.value.as_ref()) {
        Some(Attr::Tensor(t)) => tensor(t).map_err(|e| bad(format!("Const {}: {e}", n.name))),
        _ => Err(bad(format!("Const {} has no tensor value", n.name))),
    }
}

/// The shape of a tensor proto and its element count, checked against overflow.
fn shape_of(t: &proto::TensorProto) -> Result<(Vec<usize>, usize), String> {
    let dims = t.tensor_shape.as_ref().map_or(&[][..], |s| &s.dim[..]);
    let mut shape = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for d in dims {
        let n = usize::try_from(d.size).map_err(|_| format!("dimension {}", d.size))?;
        count = count
            .checked_mul(n)
            .ok_or_else(|| "the shape overflows".to_string())?;
        shape.push(n);
    }
    Ok((shape, count))
}

/// Typed values of `count` elements: the raw little-endian `content` (`width` bytes each), else
/// the typed list (`count` values, or one that fills the shape, or none: zeros).
fn values<T: Copy + Default>(
    content: &[u8],
    width: usize,
    from_le: impl Fn(&[u8]) -> T,
    list: &[T],
    count: usize,
) -> Result<Vec<T>, String> {
    if !content.is_empty() {
        if content.len() != count.saturating_mul(width) {
            return Err(format!(
                "{} bytes of content for {count} elements of {width} bytes",
                content.len()
            ));
        }
        return Ok(content.chunks_exact(width).map(from_le).collect());
    }
    match list.len() {
        n if n == count => Ok(list.to_vec()),
        0 | 1 if count <= MAX_SPLAT_ELEMENTS => {
            Ok(vec![list.first().copied().unwrap_or_default(); count])
        }
        0 | 1 => Err(format!(
            "one value repeated to {count} elements (more than {MAX_SPLAT_ELEMENTS})"
        )),
        n => Err(format!("{n} values for {count} elements")),
    }
}

/// Decodes a tensor proto into graft's constant form (floats as float32, integers and booleans
/// as int32).
fn tensor(t: &proto::TensorProto) -> Result<Option<Tensor>, String> {
    let (shape, count) = shape_of(t)?;
    let c = &t.tensor_content;
    let data = match proto::dtype_name(t.dtype) {
        "DT_FLOAT" => Data::F32(values(
            c,
            4,
            |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            &t.float_val,
            count,
        )?),
        "DT_DOUBLE" => {
            let v = values(
                c,
                8,
                |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                &t.double_val,
                count,
            )?;
            Data::F32(v.into_iter().map(|x| x as f32).collect())
        }
        "DT_HALF" => {
            let list: Vec<u16> = t.half_val.iter().map(|&h| h as u16).collect();
            let v = values(c, 2, |b| u16::from_le_bytes([b[0], b[1]]), &list, count)?;
            Data::F32(v.into_iter().map(crate::half::f16_to_f32).collect())
        }
        "DT_INT32" => Data::I32(values(
            c,
            4,
            |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            &t.int_val,
            count,
        )?),
        "DT_INT64" => {
            let v = values(
                c,
                8,
                |b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                &t.int64_val,
                count,
            )?;
            Data::I32(
                v.into_iter()
                    .map(|x| i32::try_from(x).map_err(|_| format!("int64 value {x} out of range")))
                    .collect::<Result<_, _>>()?,
            )
        }
        "DT_BOOL" => {
            let v = values(c, 1, |b| b[0] != 0, &t.bool_val, count)?;
            Data::I32(v.into_iter().map(i32::from).collect())
        }
        "DT_UINT8" | "DT_INT8" => {
            let signed = t.dtype == 6;
            let list: Vec<u8> = t.int_val.iter().map(|&x| x as u8).collect();
            let v = values(c, 1, |b| b[0], &list, count)?;
            Data::I32(
                v.into_iter()
                    .map(|b| {
                        if signed {
                            i32::from(b as i8)
                        } else {
                            i32::from(b)
                        }
                    })
                    .collect(),
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(Tensor { shape, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float_tensor(shape: &[i64], content: Vec<u8>, float_val: Vec<f32>) -> proto::TensorProto {
        proto::TensorProto {
            dtype: 1,
            tensor_shape: Some(proto::TensorShapeProto {
                dim: shape.iter().map(|&size| proto::Dim { size }).collect(),
                unknown_rank: false,
            }),
            tensor_content: content,
            float_val,
            ..Default::default()
        }
    }

    #[test]
    fn constants_decode_from_content_lists_and_splats() {
        let content: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let t = tensor(&float_tensor(&[2], content, vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(t.data, Data::F32(vec![1.5, -2.0]));
        let t = tensor(&float_tensor(&[2, 2], vec![], vec![0.5]))
            .unwrap()
            .unwrap();
        assert_eq!((t.shape, t.data), (vec![2, 2], Data::F32(vec![0.5; 4])));
        let t = tensor(&float_tensor(&[], vec![], vec![])).unwrap().unwrap();
        assert_eq!(t.data, Data::F32(vec![0.0]));
    }

    #[test]
    fn constants_that_lie_about_their_size_are_refused() {
        assert!(tensor(&float_tensor(&[3], vec![0; 8], vec![])).is_err());
        assert!(tensor(&float_tensor(&[3], vec![], vec![1.0, 2.0])).is_err());
        assert!(tensor(&float_tensor(&[-1], vec![], vec![])).is_err());
        // A splat that claims 2^40 elements is refused, not allocated.
        assert!(tensor(&float_tensor(&[1 << 20, 1 << 20], vec![], vec![1.0])).is_err());
        assert!(tensor(&float_tensor(&[1 << 40, 1 << 40], vec![], vec![1.0])).is_err());
    }

    #[test]
    fn outputs_keep_only_the_nodes_they_need() {
        let node = |name: &str, op: &str, input: &[&str]| proto::NodeDef {
            name: name.into(),
            op: op.into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            attr: HashMap::new(),
        };
        let g = proto::GraphDef {
            node: vec![
                node("x", "Placeholder", &[]),
                node("a", "Relu", &["x"]),
                node("b", "Unknown", &["a", "^x"]),
                node("c", "Sigmoid", &["a:0"]),
            ],
            library: None,
        };
        let kept: Vec<&str> = needed_nodes(&g, &["c".into()])
            .unwrap()
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(kept, ["x", "a", "c"]);
        assert!(needed_nodes(&g, &["nothing".into()]).is_err());
    }
}
