//! TF.js graph models: a TensorFlow GraphDef as JSON (`modelTopology.node`), constants in the
//! weight shards, to ONNX.
//!
//! Each TF node's first output keeps the node's name as ONNX tensor name (`name:k` for output k).
//! Channels-last stays the meaning of every tensor; convolutions and resizes run NCHW and their
//! results stay NCHW while only layout-neutral ops (elementwise with broadcastable constants,
//! activations) follow. An int32 image placeholder used only through casts to float becomes a
//! float32 input (feed the same whole numbers as floats), so graft's image pipeline can feed it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value as Json;
use tract_onnx::pb;

use super::base64;
use super::fold;
use super::net::{Conv, Net, Value};
use super::weights::{Data, Tensor, Weights};
use super::ModelJson;
use crate::onnx_builder::{attr_int, attr_ints, DataType, Dim};
use crate::tf::{self, nchw_axis, Activation, Padding};
use crate::Error;

/// Translates one node (its outputs recorded in the converter).
type OpFn = fn(&mut Converter, &Node) -> Result<(), Error>;

/// The TF ops the converter handles, each with its translation: the one list of them.
const OPS: &[(&str, OpFn)] = &[
    ("Placeholder", |c, n| c.placeholder(n)),
    ("Const", |c, n| c.constant(n)),
    ("Identity", |c, n| c.identity(n)),
    // A frozen graph's feedable default (e.g. a bottleneck input): its default is what runs.
    ("PlaceholderWithDefault", |c, n| c.identity(n)),
    ("StopGradient", |c, n| c.identity(n)),
    ("Snapshot", |c, n| c.identity(n)),
    ("_FusedConv2D", |c, n| c.conv(n, false)),
    ("Conv2D", |c, n| c.conv(n, false)),
    ("DepthwiseConv2dNative", |c, n| c.conv(n, true)),
    ("FusedDepthwiseConv2dNative", |c, n| c.conv(n, true)),
    ("BiasAdd", |c, n| c.binary(n, "Add")),
    ("Add", |c, n| c.binary(n, "Add")),
    ("AddV2", |c, n| c.binary(n, "Add")),
    ("Sub", |c, n| c.binary(n, "Sub")),
    ("Mul", |c, n| c.binary(n, "Mul")),
    ("RealDiv", |c, n| c.binary(n, "Div")),
    ("Div", |c, n| c.binary(n, "Div")),
    ("FloorDiv", |c, n| c.floor_div(n)),
    ("Maximum", |c, n| c.binary(n, "Max")),
    ("Minimum", |c, n| c.binary(n, "Min")),
    ("SquaredDifference", |c, n| c.squared_difference(n)),
    ("Relu", |c, n| c.activation(n, Activation::Relu)),
    ("Relu6", |c, n| c.activation(n, Activation::RELU6)),
    ("Elu", |c, n| c.activation(n, Activation::Elu(None))),
    ("Selu", |c, n| c.activation(n, Activation::Selu)),
    ("Sigmoid", |c, n| c.activation(n, Activation::Sigmoid)),
    ("Tanh", |c, n| c.activation(n, Activation::Tanh)),
    ("Sqrt", |c, n| c.unary(n, "Sqrt")),
    ("Rsqrt", |c, n| c.rsqrt(n)),
    ("Exp", |c, n| c.unary(n, "Exp")),
    ("Log", |c, n| c.unary(n, "Log")),
    ("Neg", |c, n| c.unary(n, "Neg")),
    ("Abs", |c, n| c.unary(n, "Abs")),
    ("Floor", |c, n| c.unary(n, "Floor")),
    ("Square", |c, n| c.square(n)),
    ("Softmax", |c, n| c.softmax(n)),
    ("Cast", |c, n| c.cast(n)),
    ("Reshape", |c, n| c.with_int64(n, "Reshape")),
    ("ExpandDims", |c, n| c.expand_dims(n)),
    ("Squeeze", |c, n| c.squeeze(n)),
    ("ConcatV2", |c, n| c.concat(n)),
    ("Pack", |c, n| c.pack(n)),
    ("Unpack", |c, n| c.unpack(n)),
    ("GatherNd", |c, n| c.with_int64(n, "GatherND")),
    ("ArgMax", |c, n| c.arg_max(n)),
    ("ResizeBilinear", |c, n| c.resize(n)),
    ("MaxPool", |c, n| c.pool(n, "MaxPool")),
    ("AvgPool", |c, n| c.pool(n, "AveragePool")),
    ("Mean", |c, n| c.mean(n)),
    ("MatMul", |c, n| c.matmul(n, false)),
    ("_FusedMatMul", |c, n| c.matmul(n, true)),
    ("Pad", |c, n| c.pad(n, false)),
    ("PadV2", |c, n| c.pad(n, true)),
    ("FusedBatchNorm", |c, n| c.batch_norm(n)),
    ("FusedBatchNormV3", |c, n| c.batch_norm(n)),
    ("Transpose", |c, n| c.transpose(n)),
];

/// The translation of TF op `op`, if it is supported.
fn op_fn(op: &str) -> Option<OpFn> {
    crate::lookup(OPS, op)
}

/// The TF ops the converter handles, sorted.
pub fn supported_ops() -> Vec<&'static str> {
    crate::sorted_names(OPS)
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("TF.js graph model: {}", msg.into()))
}

/// One GraphDef node.
struct Node<'a> {
    name: &'a str,
    op: &'a str,
    /// Data inputs (`^control` inputs dropped), as written (`name` or `name:k`).
    inputs: Vec<&'a str>,
    attr: Option<&'a Json>,
}

impl<'a> Node<'a> {
    fn parse(v: &'a Json) -> Result<Node<'a>, Error> {
        let name = v
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("a node has no name"))?;
        let op = v
            .get("op")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("node {name} has no op")))?;
        let inputs = match v.get("input") {
            None => vec![],
            Some(Json::Array(a)) => a
                .iter()
                .map(|i| {
                    i.as_str()
                        .ok_or_else(|| bad(format!("node {name}: an input is not a name")))
                })
                .filter(|i| !matches!(i, Ok(s) if s.starts_with('^')))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad(format!("node {name}: input is not a list"))),
        };
        Ok(Node {
            name,
            op,
            inputs,
            attr: v.get("attr"),
        })
    }

    fn attr(&self, key: &str) -> Option<&'a Json> {
        self.attr.and_then(|a| a.get(key))
    }

    fn int(&self, key: &str) -> Option<i64> {
        json_int(self.attr(key)?.get("i")?)
    }

    fn ints(&self, key: &str) -> Result<Option<Vec<i64>>, Error> {
        let Some(list) = self.attr(key).and_then(|a| a.get("list")) else {
            return Ok(None);
        };
        let Some(items) = list.get("i") else {
            return Ok(Some(vec![]));
        };
        items
            .as_array()
            .ok_or_else(|| bad(format!("node {}: {key} is not a list", self.name)))?
            .iter()
            .map(|v| json_int(v).ok_or_else(|| bad(format!("node {}: {key}", self.name))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn string(&self, key: &str) -> Result<Option<String>, Error> {
        match self
            .attr(key)
            .and_then(|a| a.get("s"))
            .and_then(Json::as_str)
        {
            None => Ok(None),
            Some(s) => Ok(Some(decode_str(s)?)),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, Error> {
        let items = self
            .attr(key)
            .and_then(|a| a.get("list"))
            .and_then(|l| l.get("s"))
            .and_then(Json::as_array);
        items
            .map(|a| {
                a.iter()
                    .map(|s| {
                        s.as_str()
                            .ok_or_else(|| bad(format!("node {}: {key}", self.name)))
                            .and_then(decode_str)
                    })
                    .collect()
            })
            .unwrap_or(Ok(vec![]))
    }

    fn dtype(&self, key: &str) -> Option<&'a str> {
        self.attr(key)?.get("type")?.as_str()
    }

    fn bool(&self, key: &str) -> bool {
        self.attr(key)
            .and_then(|a| a.get("b"))
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }

    fn float(&self, key: &str) -> Option<f64> {
        self.attr(key)?.get("f")?.as_f64()
    }
}

fn json_int(v: &Json) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

fn decode_str(s: &str) -> Result<String, Error> {
    String::from_utf8(base64::decode(s.as_bytes())?)
        .map_err(|_| bad("a string attribute is not UTF-8"))
}

/// ONNX element type of a TF dtype name.
fn onnx_type(dt: &str) -> Option<DataType> {
    Some(match dt {
        "DT_FLOAT" => DataType::Float,
        "DT_INT32" => DataType::Int32,
        "DT_INT64" => DataType::Int64,
        "DT_BOOL" => DataType::Bool,
        _ => return None,
    })
}

/// `name:0` and `name` are the same tensor.
fn tensor_key(r: &str) -> &str {
    r.strip_suffix(":0").unwrap_or(r)
}

/// The node that produces tensor `r` (`name` or `name:k`).
pub(crate) fn producer(r: &str) -> &str {
    match r.rsplit_once(':') {
        Some((n, k)) if k.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => r,
    }
}

/// A `[1, h, w, 1]` list attribute (strides, dilations, ksize) as `[h, w]`; absent: `[1, 1]`.
fn hw_list(node: &Node, key: &str) -> Result<[usize; 2], Error> {
    match node.ints(key)?.as_deref() {
        None | Some([]) => Ok([1, 1]),
        Some(&[1, h, w, 1]) if h > 0 && w > 0 && h < 1 << 16 && w < 1 << 16 => {
            Ok([h as usize, w as usize])
        }
        Some(other) => Err(Error::Unsupported(format!(
            "node {}: {key} {other:?}",
            node.name
        ))),
    }
}

/// The padding of a convolution or pooling.
fn padding(node: &Node) -> Result<Padding, Error> {
    let name = node.name;
    match node.string("padding")?.as_deref() {
        Some("SAME") => Ok(Padding::Same),
        Some("VALID") => Ok(Padding::Valid),
        Some("EXPLICIT") => match node.ints("explicit_paddings")?.as_deref() {
            Some(&[0, 0, t, b, l, r, 0, 0]) if [t, b, l, r].iter().all(|&p| p >= 0) => {
                Ok(Padding::Explicit([t, l, b, r]))
            }
            other => Err(bad(format!("node {name}: explicit_paddings {other:?}"))),
        },
        other => Err(bad(format!("node {name}: padding {other:?}"))),
    }
}

/// A fused op's extras: the input index of its bias (if `BiasAdd` is fused) and its activation.
fn fused_ops(node: &Node) -> Result<(Option<usize>, Option<String>), Error> {
    let fused = node.strings("fused_ops")?;
    match fused.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => Ok((None, None)),
        ["BiasAdd"] => Ok((Some(2), None)),
        ["BiasAdd", act] => Ok((Some(2), Some(act.to_string()))),
        ref other => Err(Error::Unsupported(format!(
            "node {}: fused ops {other:?}",
            node.name
        ))),
    }
}

/// Converts a graph model with its weights (the constants).
pub fn convert(model: &ModelJson, weights: &Weights) -> Result<pb::ModelProto, Error> {
    let mut nodes = model
        .topology
        .get("node")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("modelTopology has no node list"))?
        .iter()
        .map(Node::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let order = topological_order(&nodes)?;
    let folded = fold_constants(&mut nodes, &order, weights);
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes.iter().filter(|n| op_fn(n.op).is_none()) {
        *found.entry(n.op).or_default() += 1;
    }
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|(c, n)| format!("{c} ({n})")).collect();
        return Err(Error::Unsupported(format!(
            "TF.js graph model uses ops graft cannot convert: {}",
            list.join(", ")
        )));
    }
    let mut c = Converter {
        net: Net::new("tfjs_graph"),
        weights,
        folded: &folded,
        consts: HashMap::new(),
        values: HashMap::new(),
        materialized: HashMap::new(),
        nodes: &nodes,
    };
    for i in order {
        c.node(&nodes[i])?;
    }
    c.outputs(model)?;
    Ok(c.net.g.finish(
        "graft tfjs-graph",
        "TF.js graph model converted by graft (TF node names kept as tensor names; NHWC kept at the edges)",
    ))
}

/// Computes at conversion time every node of [`fold::FOLDABLE`] whose inputs are all constants
/// (in topological `order`, so chains fold whole); each such node becomes a `Const` whose value
/// is in the map returned.
fn fold_constants(
    nodes: &mut [Node],
    order: &[usize],
    weights: &Weights,
) -> HashMap<String, Tensor> {
    let mut folded: HashMap<String, Tensor> = HashMap::new();
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    for &i in order {
        if !fold::FOLDABLE.contains(&nodes[i].op) {
            continue;
        }
        let value = {
            let inputs: Option<Vec<&Tensor>> = nodes[i]
                .inputs
                .iter()
                .map(|r| {
                    let key = tensor_key(r);
                    let &j = index.get(key)?;
                    if nodes[j].op != "Const" {
                        return None;
                    }
                    folded.get(key).or_else(|| weights.tensors.get(key))
                })
                .collect();
            inputs.and_then(|inputs| fold::fold(nodes[i].op, &inputs))
        };
        if let Some(t) = value {
            folded.insert(nodes[i].name.to_string(), t);
            nodes[i].op = "Const";
        }
    }
    folded
}

/// Node indices such that every node comes after its inputs' producers.
fn topological_order(nodes: &[Node]) -> Result<Vec<usize>, Error> {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    if index.len() != nodes.len() {
        return Err(bad("two nodes have the same name"));
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![vec![]; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for r in &n.inputs {
            let p = *index
                .get(producer(r))
                .ok_or_else(|| bad(format!("node {}: input {r} has no producer", n.name)))?;
            pending[i] += 1;
            users[p].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(bad("the graph has a cycle"));
    }
    Ok(order)
}

/// An input of a node: a constant (known at conversion time) or a computed tensor.
enum Input<'w> {
    Const(&'w Tensor),
    Value(Value),
}

struct Converter<'a, 'w> {
    net: Net,
    weights: &'w Weights,
    /// Values of the nodes folded into constants ([`fold_constants`]).
    folded: &'w HashMap<String, Tensor>,
    /// Const nodes by name.
    consts: HashMap<String, &'w Tensor>,
    /// Computed tensors by key (`name` or `name:k`).
    values: HashMap<String, Value>,
    /// Initializers made from constants, by (const name, NCHW broadcast form, int64).
    materialized: HashMap<(String, bool, bool), String>,
    nodes: &'a [Node<'a>],
}

impl<'w> Converter<'_, 'w> {
    fn input(&self, node: &Node, i: usize) -> Result<Input<'w>, Error> {
        let r = node
            .inputs
            .get(i)
            .ok_or_else(|| bad(format!("node {}: missing input {i}", node.name)))?;
        let key = tensor_key(r);
        if let Some(t) = self.consts.get(key) {
            return Ok(Input::Const(t));
        }
        self.values
            .get(key)
            .cloned()
            .map(Input::Value)
            .ok_or_else(|| bad(format!("node {}: input {r} is not computed", node.name)))
    }

    fn konst(&self, node: &Node, i: usize, what: &str) -> Result<&'w Tensor, Error> {
        match self.input(node, i)? {
            Input::Const(t) => Ok(t),
            Input::Value(_) => Err(Error::Unsupported(format!(
                "node {} ({}): {what} must be a constant",
                node.name, node.op
            ))),
        }
    }

    fn const_ints(&self, node: &Node, i: usize, what: &str) -> Result<Vec<i64>, Error> {
        self.konst(node, i, what)?
            .to_i64(&format!("node {}: {what}", node.name))
    }

    fn const_scalar(&self, node: &Node, i: usize, what: &str) -> Result<i64, Error> {
        match self.const_ints(node, i, what)?[..] {
            [v] => Ok(v),
            _ => Err(bad(format!("node {}: {what} is not one number", node.name))),
        }
    }

    /// A constant as an initializer; `nchw` broadcasts it against NCHW tensors (its shape padded
    /// to rank 4 and permuted); `int64` converts integers for shape and index inputs.
    fn materialize(
        &mut self,
        key: &str,
        t: &Tensor,
        nchw: bool,
        int64: bool,
    ) -> Result<String, Error> {
        let cache = (key.to_string(), nchw, int64);
        if let Some(n) = self.materialized.get(&cache) {
            return Ok(n.clone());
        }
        let (shape, perm) = if nchw {
            let mut s = vec![1usize; 4 - t.shape.len()];
            s.extend(&t.shape);
            (vec![s[0], s[3], s[1], s[2]], Some(s))
        } else {
            (t.shape.clone(), None)
        };
        let permute = |n: usize| -> Result<Vec<usize>, Error> {
            let idx: Vec<usize> = (0..n).collect();
            match &perm {
                None => Ok(idx),
                Some(s) => tf::nhwc_to_nchw(&idx, [s[0], s[1], s[2], s[3]])
                    .map_err(|e| bad(format!("constant {key}: {e}"))),
            }
        };
        let name = format!("{key}#const");
        let out = if int64 {
            let v = t.to_i64(key)?;
            let v: Vec<i64> = permute(v.len())?.into_iter().map(|i| v[i]).collect();
            self.net.g.initializer_i64(&name, &shape, &v)
        } else {
            match &t.data {
                Data::F32(v) => {
                    let v: Vec<f32> = permute(v.len())?.into_iter().map(|i| v[i]).collect();
                    self.net.g.initializer_f32(&name, &shape, &v)
                }
                Data::I32(v) => {
                    let v: Vec<i32> = permute(v.len())?.into_iter().map(|i| v[i]).collect();
                    self.net.g.initializer_i32(&name, &shape, &v)
                }
            }
        };
        self.materialized.insert(cache, out.clone());
        Ok(out)
    }

    /// Input `i` in its channels-last meaning.
    fn plain(&mut self, node: &Node, i: usize) -> Result<String, Error> {
        match self.input(node, i)? {
            Input::Const(t) => self.materialize(tensor_key(node.inputs[i]), t, false, false),
            Input::Value(v) => Ok(self.net.plain(&v)),
        }
    }

    /// Input `i` as int64 (shapes, axes, indices).
    fn int64(&mut self, node: &Node, i: usize) -> Result<String, Error> {
        match self.input(node, i)? {
            Input::Const(t) => self.materialize(tensor_key(node.inputs[i]), t, false, true),
            Input::Value(v) => {
                let x = self.net.plain(&v);
                Ok(self.net.g.node(
                    "Cast",
                    &[&x],
                    &format!("{}#int64_{i}", node.name),
                    vec![attr_int("to", DataType::Int64 as i64)],
                ))
            }
        }
    }

    /// All inputs for an elementwise op: NCHW when every computed input is NCHW and every
    /// constant broadcasts (rank <= 4), channels-last otherwise.
    fn elementwise(&mut self, node: &Node) -> Result<(Vec<String>, bool), Error> {
        let inputs: Vec<Input> = (0..node.inputs.len())
            .map(|i| self.input(node, i))
            .collect::<Result<_, _>>()?;
        let mut any_nchw = false;
        let mut all_ok = true;
        for inp in &inputs {
            match inp {
                Input::Value(v) => {
                    any_nchw |= v.nchw;
                    all_ok &= v.nchw;
                }
                Input::Const(t) => all_ok &= t.shape.len() <= 4,
            }
        }
        let nchw = any_nchw && all_ok;
        let mut names = Vec::with_capacity(inputs.len());
        for (i, inp) in inputs.into_iter().enumerate() {
            names.push(match inp {
                Input::Const(t) => self.materialize(tensor_key(node.inputs[i]), t, nchw, false)?,
                Input::Value(v) if nchw => v.name,
                Input::Value(v) => self.net.plain(&v),
            });
        }
        Ok((names, nchw))
    }

    fn set(&mut self, node: &Node, name: String, nchw: bool) {
        let v = if nchw {
            Value::nchw(name)
        } else {
            Value::plain(name, None)
        };
        self.values.insert(node.name.to_string(), v);
    }

    fn node(&mut self, node: &Node) -> Result<(), Error> {
        if node.op == "Cast" && self.values.contains_key(node.name) {
            return Ok(()); // a cast of a float-typed image input: already that input
        }
        let f = op_fn(node.op)
            .ok_or_else(|| Error::Unsupported(format!("node {}: op {}", node.name, node.op)))?;
        f(self, node)
    }

    /// Adds a node named after `node` whose output is its (first) output.
    fn emit(
        &mut self,
        node: &Node,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> String {
        self.net.g.node(op, inputs, node.name, attrs)
    }

    /// Input `i`, a computed tensor in whichever layout it has, or a constant (channels-last).
    fn value(&mut self, node: &Node, i: usize) -> Result<Value, Error> {
        match self.input(node, i)? {
            Input::Value(v) => Ok(v),
            Input::Const(_) => Ok(Value::plain(self.plain(node, i)?, None)),
        }
    }

    fn constant(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let t = self
            .folded
            .get(name)
            .or_else(|| self.weights.tensors.get(name))
            .ok_or_else(|| bad(format!("Const {name} has no value in the weights")))?;
        self.consts.insert(name.to_string(), t);
        Ok(())
    }

    fn identity(&mut self, node: &Node) -> Result<(), Error> {
        let x = self.plain(node, 0)?;
        let y = self.emit(node, "Identity", &[&x], vec![]);
        self.set(node, y, false);
        Ok(())
    }

    /// An elementwise op of two (broadcast) inputs.
    fn binary(&mut self, node: &Node, op: &str) -> Result<(), Error> {
        let (ins, nchw) = self.elementwise(node)?;
        let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        let y = self.emit(node, op, &refs, vec![]);
        self.set(node, y, nchw);
        Ok(())
    }

    /// The two inputs of a binary op, as [`Converter::elementwise`] gives them.
    fn two(&mut self, node: &Node) -> Result<([String; 2], bool), Error> {
        let (ins, nchw) = self.elementwise(node)?;
        match <[String; 2]>::try_from(ins) {
            Ok(pair) => Ok((pair, nchw)),
            Err(_) => Err(bad(format!("node {}: takes two inputs", node.name))),
        }
    }

    /// `(a - b)^2`.
    fn squared_difference(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let ([a, b], nchw) = self.two(node)?;
        let d = self
            .net
            .g
            .node("Sub", &[&a, &b], &format!("{name}#diff"), vec![]);
        let y = self.emit(node, "Mul", &[&d, &d], vec![]);
        self.set(node, y, nchw);
        Ok(())
    }

    /// Division rounding down: `floor(a / b)` for floats; for integers, exactly
    /// `(a - (a mod b)) / b` with the modulo taking the divisor's sign.
    fn floor_div(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let ([a, b], nchw) = self.two(node)?;
        let y = if node.dtype("T") == Some("DT_FLOAT") {
            let q = self
                .net
                .g
                .node("Div", &[&a, &b], &format!("{name}#div"), vec![]);
            self.emit(node, "Floor", &[&q], vec![])
        } else {
            let m = self.net.g.node(
                "Mod",
                &[&a, &b],
                &format!("{name}#mod"),
                vec![attr_int("fmod", 0)],
            );
            let d = self
                .net
                .g
                .node("Sub", &[&a, &m], &format!("{name}#sub"), vec![]);
            self.emit(node, "Div", &[&d, &b], vec![])
        };
        self.set(node, y, nchw);
        Ok(())
    }

    /// An activation op; the input's layout is kept.
    fn activation(&mut self, node: &Node, act: Activation) -> Result<(), Error> {
        let v = self.value(node, 0)?;
        let y = self.net.activate(&v.name, act, node.name);
        self.set(node, y, v.nchw);
        Ok(())
    }

    /// A one-input elementwise op that ONNX has under the name `op`; the input's layout is kept.
    fn unary(&mut self, node: &Node, op: &str) -> Result<(), Error> {
        let v = self.value(node, 0)?;
        let y = self.emit(node, op, &[&v.name], vec![]);
        self.set(node, y, v.nchw);
        Ok(())
    }

    /// `1 / sqrt(x)`.
    fn rsqrt(&mut self, node: &Node) -> Result<(), Error> {
        let v = self.value(node, 0)?;
        let s = self
            .net
            .g
            .node("Sqrt", &[&v.name], &format!("{}#sqrt", node.name), vec![]);
        let y = self.emit(node, "Reciprocal", &[&s], vec![]);
        self.set(node, y, v.nchw);
        Ok(())
    }

    /// `x * x`.
    fn square(&mut self, node: &Node) -> Result<(), Error> {
        let v = self.value(node, 0)?;
        let y = self.emit(node, "Mul", &[&v.name, &v.name], vec![]);
        self.set(node, y, v.nchw);
        Ok(())
    }

    fn cast(&mut self, node: &Node) -> Result<(), Error> {
        let v = self.value(node, 0)?;
        let dst = node.dtype("DstT").unwrap_or("(none)");
        let to = onnx_type(dst)
            .ok_or_else(|| Error::Unsupported(format!("node {}: Cast to {dst}", node.name)))?;
        let y = self.emit(node, "Cast", &[&v.name], vec![attr_int("to", to as i64)]);
        self.set(node, y, v.nchw);
        Ok(())
    }

    /// Softmax over the last axis.
    fn softmax(&mut self, node: &Node) -> Result<(), Error> {
        let x = self.plain(node, 0)?;
        let y = self.emit(node, "Softmax", &[&x], vec![attr_int("axis", -1)]);
        self.set(node, y, false);
        Ok(())
    }

    /// ONNX `op` of input 0 (channels-last) and input 1 as int64: Reshape (shape), GatherND
    /// (indices).
    fn with_int64(&mut self, node: &Node, op: &str) -> Result<(), Error> {
        let x = self.plain(node, 0)?;
        let i = self.int64(node, 1)?;
        let y = self.emit(node, op, &[&x, &i], vec![]);
        self.set(node, y, false);
        Ok(())
    }

    fn expand_dims(&mut self, node: &Node) -> Result<(), Error> {
        let x = self.plain(node, 0)?;
        let axis = self.const_scalar(node, 1, "axis")?;
        let a = self
            .net
            .g
            .initializer_i64(&format!("{}#axes", node.name), &[1], &[axis]);
        let y = self.emit(node, "Unsqueeze", &[&x, &a], vec![]);
        self.set(node, y, false);
        Ok(())
    }

    /// Squeeze of `squeeze_dims` (or `axis`), else of every dimension of size 1.
    fn squeeze(&mut self, node: &Node) -> Result<(), Error> {
        let x = self.plain(node, 0)?;
        let dims = node
            .ints("squeeze_dims")?
            .or(node.ints("axis")?)
            .unwrap_or_default();
        let y = if dims.is_empty() {
            self.emit(node, "Squeeze", &[&x], vec![])
        } else {
            let a =
                self.net
                    .g
                    .initializer_i64(&format!("{}#axes", node.name), &[dims.len()], &dims);
            self.emit(node, "Squeeze", &[&x, &a], vec![])
        };
        self.set(node, y, false);
        Ok(())
    }

    /// ConcatV2 (axis last): NCHW inputs stay NCHW when the axis maps.
    fn concat(&mut self, node: &Node) -> Result<(), Error> {
        let n = node.inputs.len();
        if n < 2 {
            return Err(bad(format!("node {}: ConcatV2 without inputs", node.name)));
        }
        let axis = self.const_scalar(node, n - 1, "axis")?;
        let ins: Vec<Input> = (0..n - 1)
            .map(|i| self.input(node, i))
            .collect::<Result<_, _>>()?;
        let nchw = ins.iter().all(|i| matches!(i, Input::Value(v) if v.nchw));
        let (axis, nchw) = match (nchw, nchw_axis(axis)) {
            (true, Some(a)) => (a, true),
            _ => (axis, false),
        };
        let mut names = Vec::new();
        for i in 0..n - 1 {
            names.push(match self.input(node, i)? {
                Input::Value(v) if nchw => v.name,
                _ => self.plain(node, i)?,
            });
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let y = self.emit(node, "Concat", &refs, vec![attr_int("axis", axis)]);
        self.set(node, y, nchw);
        Ok(())
    }

    /// Pack: each input unsqueezed at `axis`, then concatenated.
    fn pack(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let axis = node.int("axis").unwrap_or(0);
        let a = self
            .net
            .g
            .initializer_i64(&format!("{name}#axes"), &[1], &[axis]);
        let mut parts = Vec::new();
        for i in 0..node.inputs.len() {
            let x = self.plain(node, i)?;
            parts.push(
                self.net
                    .g
                    .node("Unsqueeze", &[&x, &a], &format!("{name}#{i}"), vec![]),
            );
        }
        if parts.is_empty() {
            return Err(bad(format!("node {name}: Pack of nothing")));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let y = self.emit(node, "Concat", &refs, vec![attr_int("axis", axis)]);
        self.set(node, y, false);
        Ok(())
    }

    /// Unpack into `num` tensors (`name`, `name:1`, ...): a Split, each part squeezed.
    fn unpack(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let x = self.plain(node, 0)?;
        let axis = node.int("axis").unwrap_or(0);
        let num = node
            .int("num")
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| (1..=4096).contains(&n))
            .ok_or_else(|| bad(format!("node {name}: Unpack needs num")))?;
        let parts: Vec<String> = (0..num).map(|k| format!("{name}#part{k}")).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let parts = self
            .net
            .g
            .node_multi("Split", &[&x], &refs, vec![attr_int("axis", axis)]);
        let a = self
            .net
            .g
            .initializer_i64(&format!("{name}#axes"), &[1], &[axis]);
        for (k, p) in parts.iter().enumerate() {
            let key = if k == 0 {
                name.to_string()
            } else {
                format!("{name}:{k}")
            };
            let y = self.net.g.node("Squeeze", &[p, &a], &key, vec![]);
            self.values.insert(key, Value::plain(y, None));
        }
        Ok(())
    }

    /// ArgMax over a constant axis, cast when `output_type` is not int64.
    fn arg_max(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let x = self.plain(node, 0)?;
        let axis = self.const_scalar(node, 1, "dimension")?;
        let out_type = node.dtype("output_type").unwrap_or("DT_INT64");
        let attrs = vec![attr_int("axis", axis), attr_int("keepdims", 0)];
        let y = if out_type == "DT_INT64" {
            self.emit(node, "ArgMax", &[&x], attrs)
        } else {
            let to = onnx_type(out_type)
                .ok_or_else(|| Error::Unsupported(format!("node {name}: ArgMax to {out_type}")))?;
            let i = self
                .net
                .g
                .node("ArgMax", &[&x], &format!("{name}#int64"), attrs);
            self.emit(node, "Cast", &[&i], vec![attr_int("to", to as i64)])
        };
        self.set(node, y, false);
        Ok(())
    }

    fn transpose(&mut self, node: &Node) -> Result<(), Error> {
        let x = self.plain(node, 0)?;
        let perm = self.const_ints(node, 1, "perm")?;
        let y = self.emit(node, "Transpose", &[&x], vec![attr_ints("perm", &perm)]);
        self.set(node, y, false);
        Ok(())
    }

    /// Whether every consumer of `name` is a Cast to float.
    fn only_cast_to_float(&self, name: &str) -> bool {
        let mut users = self
            .nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|r| producer(r) == name))
            .peekable();
        users.peek().is_some()
            && users.all(|n| n.op == "Cast" && n.dtype("DstT") == Some("DT_FLOAT"))
    }

    fn placeholder(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let dtype = node.dtype("dtype").unwrap_or("DT_FLOAT");
        let dims = node
            .attr("shape")
            .and_then(|s| s.get("shape"))
            .and_then(|s| s.get("dim"))
            .and_then(Json::as_array)
            .ok_or_else(|| Error::Unsupported(format!("input {name} has no known shape")))?;
        let dims = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d.get("size").and_then(json_int) {
                Some(n) if n >= 0 => Ok(Dim::Fixed(n)),
                Some(-1) | None if i == 0 => Ok(Dim::Symbolic("N".into())),
                Some(-1) | None => Ok(Dim::Symbolic(format!("{name}_d{i}"))),
                Some(n) => Err(bad(format!("input {name}: dimension {n}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let as_float = dtype == "DT_INT32" && self.only_cast_to_float(name);
        let elem = if as_float {
            DataType::Float
        } else {
            onnx_type(dtype)
                .ok_or_else(|| Error::Unsupported(format!("input {name}: dtype {dtype}")))?
        };
        let x = self.net.g.input(name, elem, &dims);
        if as_float {
            // The casts to float become the input itself.
            for n in self
                .nodes
                .iter()
                .filter(|n| n.inputs.iter().any(|r| producer(r) == name))
            {
                self.values.insert(
                    n.name.to_string(),
                    Value::plain(x.clone(), Some(dims.len())),
                );
            }
        }
        self.values
            .insert(name.to_string(), Value::plain(x, Some(dims.len())));
        Ok(())
    }

    /// Input 0 of a spatial op (convolution, pooling, resize) as NCHW; data_format must be NHWC.
    fn spatial_input(&mut self, node: &Node) -> Result<String, Error> {
        let name = node.name;
        if let Some(f) = node.string("data_format")? {
            if f != "NHWC" {
                return Err(Error::Unsupported(format!("node {name}: data_format {f}")));
            }
        }
        match self.input(node, 0)? {
            Input::Value(v) => self.net.nchw(&v, name),
            Input::Const(_) => Err(Error::Unsupported(format!(
                "node {name}: {} of a constant",
                node.op
            ))),
        }
    }

    /// Conv2D / DepthwiseConv2dNative and their fused forms (bias and activation).
    fn conv(&mut self, node: &Node, depthwise: bool) -> Result<(), Error> {
        let name = node.name;
        let x = self.spatial_input(node)?;
        let filter = self.konst(node, 1, "filter")?;
        let [kh, kw, cin, m] = filter.shape[..] else {
            return Err(bad(format!(
                "node {name}: filter has shape {:?}",
                filter.shape
            )));
        };
        let strides = hw_list(node, "strides")?;
        let dilations = hw_list(node, "dilations")?;
        let padding = padding(node)?;
        let (bias, act) = fused_ops(node)?;
        let bias = match bias {
            Some(i) => Some(self.konst(node, i, "bias")?.to_f32()),
            None => None,
        };
        let kernel = filter.to_f32();
        let conv = Conv {
            kernel_shape: if depthwise {
                [kh, kw, 1, cin * m]
            } else {
                [kh, kw, cin, m]
            },
            kernel: &kernel,
            bias: bias.as_deref(),
            strides,
            dilations,
            group: if depthwise { cin } else { 1 },
            padding,
        };
        let out = if act.is_some() {
            format!("{name}#linear")
        } else {
            name.to_string()
        };
        let y = self.net.conv(&x, &conv, &out)?;
        let y = self.fused_activation(node, &y, act.as_deref())?;
        self.set(node, y, true);
        Ok(())
    }

    /// The activation of a fused op applied to `y`, named after the node.
    fn fused_activation(
        &mut self,
        node: &Node,
        y: &str,
        act: Option<&str>,
    ) -> Result<String, Error> {
        let name = node.name;
        let Some(act) = act else {
            return Ok(y.to_string());
        };
        let act = Activation::tf_fused(act, node.float("leakyrelu_alpha"))
            .ok_or_else(|| Error::Unsupported(format!("node {name}: fused activation {act}")))?;
        Ok(self.net.activate(y, act, name))
    }

    /// MaxPool / AvgPool (TF's average excludes the padding, as `count_include_pad = 0`).
    fn pool(&mut self, node: &Node, op: &str) -> Result<(), Error> {
        let x = self.spatial_input(node)?;
        let ksize = hw_list(node, "ksize")?;
        let strides = hw_list(node, "strides")?;
        let attrs = tf::pool_attrs(op, ksize, strides, padding(node)?);
        let y = self.emit(node, op, &[&x], attrs);
        self.set(node, y, true);
        Ok(())
    }

    /// Mean over constant axes; a channels-last 4-d input held NCHW stays so when dims are kept,
    /// and a spatial mean without kept dims gives `[N, C]` either way.
    fn mean(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let mut axes = self.const_ints(node, 1, "axes")?;
        let keep = node.bool("keep_dims");
        let x = match self.input(node, 0)? {
            Input::Value(v) => v,
            Input::Const(_) => Value::plain(self.plain(node, 0)?, None),
        };
        axes.iter_mut().for_each(|a| {
            if *a < 0 {
                *a += 4;
            }
        });
        axes.sort_unstable();
        let spatial = axes == [1, 2];
        let stay_nchw = x.nchw && (keep || spatial);
        let (input, axes) = if stay_nchw {
            let mapped: Option<Vec<i64>> = axes.iter().map(|&a| nchw_axis(a)).collect();
            match mapped {
                Some(m) => (x.name.clone(), m),
                None => return Err(bad(format!("node {name}: axes {axes:?}"))),
            }
        } else {
            (self.net.plain(&x), self.const_ints(node, 1, "axes")?)
        };
        let y = self.net.g.node(
            "ReduceMean",
            &[&input],
            name,
            vec![
                attr_ints("axes", &axes),
                attr_int("keepdims", i64::from(keep)),
            ],
        );
        self.set(node, y, stay_nchw && keep);
        Ok(())
    }

    /// MatMul / _FusedMatMul (2-d) as Gemm, with a fused bias and activation.
    fn matmul(&mut self, node: &Node, fused: bool) -> Result<(), Error> {
        let name = node.name;
        let a = self.plain(node, 0)?;
        let b = self.plain(node, 1)?;
        let (bias, act) = if fused {
            fused_ops(node)?
        } else {
            (None, None)
        };
        let mut inputs = vec![a, b];
        if let Some(i) = bias {
            inputs.push(self.plain(node, i)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = if act.is_some() {
            format!("{name}#linear")
        } else {
            name.to_string()
        };
        let y = self.net.g.node(
            "Gemm",
            &refs,
            &out,
            vec![
                attr_int("transA", i64::from(node.bool("transpose_a"))),
                attr_int("transB", i64::from(node.bool("transpose_b"))),
            ],
        );
        let y = self.fused_activation(node, &y, act.as_deref())?;
        self.set(node, y, false);
        Ok(())
    }

    /// Inference batch norm over the channels (last) axis with constant scale, offset, mean and
    /// variance, as a per-channel multiply and add computed in f64.
    fn batch_norm(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        if node.bool("is_training") {
            return Err(Error::Unsupported(format!(
                "node {name}: batch norm in training mode"
            )));
        }
        if let Some(f) = node.string("data_format")? {
            if f != "NHWC" {
                return Err(Error::Unsupported(format!("node {name}: data_format {f}")));
            }
        }
        let params = (1..5)
            .map(|i| {
                self.konst(node, i, "batch norm parameter")
                    .map(Tensor::to_f32)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let c = params[0].len();
        if params.iter().any(|p| p.len() != c) {
            return Err(bad(format!(
                "node {name}: batch norm parameters differ in length"
            )));
        }
        let eps = node.float("epsilon").unwrap_or(1e-4); // TF's default
        let x = match self.input(node, 0)? {
            Input::Value(v) => v,
            Input::Const(_) => Value::plain(self.plain(node, 0)?, None),
        };
        let bn = [&params[0][..], &params[1], &params[2], &params[3]];
        let y = self.net.batch_norm(&x, bn, eps, name);
        self.set(node, y.name, x.nchw);
        Ok(())
    }

    /// Pad / PadV2 with constant paddings `[rank, 2]` (and a constant value for PadV2).
    fn pad(&mut self, node: &Node, with_value: bool) -> Result<(), Error> {
        let name = node.name;
        let x = self.plain(node, 0)?;
        let p = self.const_ints(node, 1, "paddings")?;
        if p.len() % 2 != 0 || p.iter().any(|&v| v < 0) {
            return Err(bad(format!("node {name}: paddings {p:?}")));
        }
        let pads: Vec<i64> = p
            .iter()
            .step_by(2)
            .chain(p.iter().skip(1).step_by(2))
            .copied()
            .collect();
        let pads = self
            .net
            .g
            .initializer_i64(&format!("{name}#pads"), &[pads.len()], &pads);
        let mut inputs = vec![x, pads];
        if with_value {
            inputs.push(self.plain(node, 2)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let y = self.net.g.node("Pad", &refs, name, vec![]);
        self.set(node, y, false);
        Ok(())
    }

    fn resize(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name;
        let x = match self.input(node, 0)? {
            Input::Value(v) => self.net.nchw(&v, name)?,
            Input::Const(_) => {
                return Err(Error::Unsupported(format!(
                    "node {name}: resize of a constant"
                )))
            }
        };
        let size = self.const_ints(node, 1, "size")?;
        if size.len() != 2 || size.iter().any(|&s| s <= 0) {
            return Err(bad(format!("node {name}: size {size:?}")));
        }
        let mode = tf::resize_mode(node.bool("align_corners"), node.bool("half_pixel_centers"))
            .ok_or_else(|| {
                bad(format!(
                    "node {name}: align_corners and half_pixel_centers both set"
                ))
            })?;
        // sizes = [N, C] of the input, then the requested [H, W].
        let shape = self
            .net
            .g
            .node("Shape", &[&x], &format!("{name}#shape"), vec![]);
        let zero = self
            .net
            .g
            .initializer_i64(&format!("{name}#start"), &[1], &[0]);
        let two = self
            .net
            .g
            .initializer_i64(&format!("{name}#end"), &[1], &[2]);
        let nc = self.net.g.node(
            "Slice",
            &[&shape, &zero, &two],
            &format!("{name}#nc"),
            vec![],
        );
        let hw = self
            .net
            .g
            .initializer_i64(&format!("{name}#hw"), &[2], &size);
        let sizes = self.net.g.node(
            "Concat",
            &[&nc, &hw],
            &format!("{name}#sizes"),
            vec![attr_int("axis", 0)],
        );
        let y = self.net.g.node(
            "Resize",
            &[&x, "", "", &sizes],
            name,
            tf::bilinear_attrs(mode),
        );
        self.set(node, y, true);
        Ok(())
    }

    /// Graph outputs: the signature's outputs, else every computed tensor nothing consumes.
    fn outputs(&mut self, model: &ModelJson) -> Result<(), Error> {
        let mut outs: Vec<(String, Option<Vec<Dim>>, Option<DataType>)> = Vec::new();
        let sig = model
            .signature
            .as_ref()
            .and_then(|s| s.get("outputs"))
            .and_then(Json::as_object);
        match sig {
            Some(map) if !map.is_empty() => {
                for (key, spec) in map {
                    let r = spec.get("name").and_then(Json::as_str).unwrap_or(key);
                    let dims = spec
                        .get("tensorShape")
                        .and_then(|s| s.get("dim"))
                        .and_then(Json::as_array)
                        .map(|d| {
                            d.iter()
                                .enumerate()
                                .map(|(i, d)| match d.get("size").and_then(json_int) {
                                    Some(n) if n >= 0 => Dim::Fixed(n),
                                    _ if i == 0 => Dim::Symbolic("N".into()),
                                    _ => Dim::Symbolic(format!("out_d{i}")),
                                })
                                .collect()
                        });
                    let dtype = spec.get("dtype").and_then(Json::as_str).and_then(onnx_type);
                    outs.push((tensor_key(r).to_string(), dims, dtype));
                }
            }
            _ => {
                for n in self.nodes {
                    let used = self
                        .nodes
                        .iter()
                        .any(|u| u.inputs.iter().any(|r| producer(r) == n.name));
                    if !used && n.op != "Const" && n.op != "Placeholder" {
                        let dtype = n.dtype("T").and_then(onnx_type);
                        outs.push((n.name.to_string(), None, dtype));
                    }
                }
            }
        }
        if outs.is_empty() {
            return Err(bad("the graph has no outputs"));
        }
        for (key, dims, dtype) in outs {
            let v = self
                .values
                .get(&key)
                .cloned()
                .ok_or_else(|| bad(format!("output {key} is not computed")))?;
            let name = self.net.plain(&v);
            self.net
                .g
                .output(&name, dtype.unwrap_or(DataType::Float), dims.as_deref());
        }
        Ok(())
    }
}
