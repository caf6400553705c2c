//! TF.js layers models: a Keras `modelTopology` (functional `Model`/`Functional` or `Sequential`,
//! nested models included) plus weights, to ONNX.
//!
//! Every Keras layer's output is an ONNX tensor named after the layer, so a cut point can be named
//! by layer (`flatten_1`). The model's input stays channels-last (NHWC) as in Keras; convolutions
//! run on NCHW internally, so 4-d intermediate tensors (convolution, pooling, batch-norm outputs)
//! are NCHW; graph outputs are channels-last again. BatchNormalization becomes a per-channel
//! multiply and add (`{layer}#scale`, then `{layer}`).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;
use tract_onnx::pb;

use super::net::{Conv, Net, Value};
use super::weights::{Tensor, Weights};
use crate::onnx_builder::{attr_int, DataType, Dim};
use crate::tf::{self, nchw_axis, Activation, Padding};
use crate::Error;

/// The outputs of a nested model.
type Outputs = Result<Vec<Value>, Error>;

/// How a layer class is applied.
#[derive(Clone, Copy)]
enum Apply {
    /// One input, one output.
    One(fn(&mut Converter, &Call, Value) -> Result<Value, Error>),
    /// Several inputs (merges), one output.
    Many(fn(&mut Converter, &Call, Vec<Value>) -> Result<Value, Error>),
    /// A nested model: its inputs to its outputs.
    Model(fn(&mut Converter, &Call, Vec<Value>) -> Outputs),
}

use Apply::{Many, Model, One};

/// The layer classes the converter handles, each with its translation: the one list of them.
const LAYERS: &[(&str, Apply)] = &[
    ("InputLayer", One(|_, _, x| Ok(x))),
    ("Conv2D", One(|c, l, x| c.conv(l, &x))),
    ("DepthwiseConv2D", One(|c, l, x| c.conv(l, &x))),
    ("SeparableConv2D", One(|c, l, x| c.conv(l, &x))),
    ("BatchNormalization", One(|c, l, x| c.batch_norm(l, &x))),
    ("ReLU", One(|c, l, x| c.relu(l, x))),
    ("LeakyReLU", One(|c, l, x| Ok(c.leaky_relu(l, x)))),
    ("Activation", One(|c, l, x| c.activation_layer(l, &x))),
    ("Softmax", One(|c, l, x| c.softmax_layer(l, &x))),
    ("ZeroPadding2D", One(|c, l, x| c.zero_padding(l, x))),
    ("Add", Many(|c, l, xs| c.merge(l, xs, "Add", false))),
    ("Subtract", Many(|c, l, xs| c.merge(l, xs, "Sub", false))),
    ("Multiply", Many(|c, l, xs| c.merge(l, xs, "Mul", false))),
    ("Average", Many(|c, l, xs| c.merge(l, xs, "Mean", true))),
    ("Maximum", Many(|c, l, xs| c.merge(l, xs, "Max", true))),
    ("Minimum", Many(|c, l, xs| c.merge(l, xs, "Min", true))),
    (
        "Concatenate",
        Many(|c, l, xs| c.concatenate(l.cfg, l.name, xs)),
    ),
    (
        "GlobalAveragePooling2D",
        One(|c, l, x| c.global_pool(l, x, "GlobalAveragePool")),
    ),
    (
        "GlobalMaxPooling2D",
        One(|c, l, x| c.global_pool(l, x, "GlobalMaxPool")),
    ),
    (
        "AveragePooling2D",
        One(|c, l, x| c.pool(l, x, "AveragePool")),
    ),
    ("MaxPooling2D", One(|c, l, x| c.pool(l, x, "MaxPool"))),
    ("Dense", One(|c, l, x| c.dense(l, &x))),
    ("Dropout", One(|c, l, x| Ok(c.identity(l, x)))),
    ("SpatialDropout2D", One(|c, l, x| Ok(c.identity(l, x)))),
    ("GaussianNoise", One(|c, l, x| Ok(c.identity(l, x)))),
    ("GaussianDropout", One(|c, l, x| Ok(c.identity(l, x)))),
    ("AlphaDropout", One(|c, l, x| Ok(c.identity(l, x)))),
    ("Flatten", One(|c, l, x| Ok(c.flatten(l, x)))),
    ("Reshape", One(|c, l, x| c.reshape(l, x))),
    ("Sequential", One(|c, l, x| c.sequential(l.cfg, Some(x)))),
    ("Model", Model(|c, l, xs| c.functional(l.cfg, Some(&xs)))),
    (
        "Functional",
        Model(|c, l, xs| c.functional(l.cfg, Some(&xs))),
    ),
];

/// The translation of layer class `class`, if it is supported.
fn layer_fn(class: &str) -> Option<Apply> {
    crate::lookup(LAYERS, class)
}

/// The layer classes the converter handles, sorted.
pub fn supported_layers() -> Vec<&'static str> {
    crate::sorted_names(LAYERS)
}

/// One call of a layer.
struct Call<'j> {
    class: &'j str,
    cfg: &'j Json,
    /// The name of its (first) output.
    name: &'j str,
    /// Where its weights are: under the layer's own name, also for a shared layer's later calls.
    wname: String,
}

fn one(inputs: Vec<Value>, name: &str) -> Result<Value, Error> {
    let n = inputs.len();
    let mut it = inputs.into_iter();
    match (it.next(), n) {
        (Some(v), 1) => Ok(v),
        _ => Err(bad(format!("layer {name} takes one input, given {n}"))),
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("TF.js layers model: {}", msg.into()))
}

fn field<'a>(v: &'a Json, key: &str, what: &str) -> Result<&'a Json, Error> {
    v.get(key)
        .ok_or_else(|| bad(format!("{what}: missing \"{key}\"")))
}

fn string<'a>(v: &'a Json, key: &str, what: &str) -> Result<&'a str, Error> {
    field(v, key, what)?
        .as_str()
        .ok_or_else(|| bad(format!("{what}: \"{key}\" is not a string")))
}

fn array<'a>(v: &'a Json, key: &str, what: &str) -> Result<&'a [Json], Error> {
    field(v, key, what)?
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad(format!("{what}: \"{key}\" is not a list")))
}

fn uint(v: &Json, what: &str) -> Result<usize, Error> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n < 1 << 24)
        .ok_or_else(|| bad(format!("{what}: {v} is not a small non-negative integer")))
}

/// A Keras pair value: `3` or `[3, 3]`.
fn pair_value(v: &Json, what: &str) -> Result<[usize; 2], Error> {
    match v {
        Json::Array(a) if a.len() == 2 => Ok([uint(&a[0], what)?, uint(&a[1], what)?]),
        v => {
            let n = uint(v, what)?;
            Ok([n, n])
        }
    }
}

/// A Keras pair setting, `default` when absent or null.
fn pair(
    cfg: &Json,
    key: &str,
    default: Option<[usize; 2]>,
    what: &str,
) -> Result<[usize; 2], Error> {
    let what = format!("{what}: {key}");
    match cfg.get(key) {
        None | Some(Json::Null) => default.ok_or_else(|| bad(format!("{what} is missing"))),
        Some(v) => pair_value(v, &what),
    }
}

fn positive(p: [usize; 2], what: &str) -> Result<[usize; 2], Error> {
    if p.contains(&0) {
        return Err(bad(format!("{what}: zero size or stride")));
    }
    Ok(p)
}

fn padding(cfg: &Json, what: &str) -> Result<Padding, Error> {
    match cfg.get("padding").and_then(Json::as_str).unwrap_or("valid") {
        "valid" => Ok(Padding::Valid),
        "same" => Ok(Padding::Same),
        other => Err(bad(format!("{what}: padding {other:?} is not supported"))),
    }
}

fn channels_last(cfg: &Json, what: &str) -> Result<(), Error> {
    match cfg.get("data_format").and_then(Json::as_str) {
        None | Some("channels_last") => Ok(()),
        Some(other) => Err(bad(format!(
            "{what}: data_format {other:?} is not supported (channels_last is)"
        ))),
    }
}

/// The `layers` of a model config: `config.layers`, or `config` itself (old Sequential format).
fn layers_of<'a>(cfg: &'a Json, what: &str) -> Result<&'a [Json], Error> {
    match cfg {
        Json::Array(a) => Ok(a),
        _ => array(cfg, "layers", what),
    }
}

/// The config declaring the input shape of a model's first layer: the layer's own, or (for a
/// nested model) that of the nested model's first layer or input layer.
fn input_config(layer: &Json) -> Option<&Json> {
    let mut layer = layer;
    for _ in 0..64 {
        let cfg = layer.get("config")?;
        if cfg.get("batch_input_shape").is_some() || cfg.get("batch_shape").is_some() {
            return Some(cfg);
        }
        let layers = match cfg {
            Json::Array(a) => a,
            _ => cfg.get("layers")?.as_array()?,
        };
        layer = match layer.get("class_name")?.as_str()? {
            "Sequential" => layers.first()?,
            "Model" | "Functional" => layers
                .iter()
                .find(|l| l.get("class_name").and_then(Json::as_str) == Some("InputLayer"))?,
            _ => return None,
        };
    }
    None
}

/// Counts unsupported layer classes (and activations) anywhere in the model, nested ones too.
fn unsupported(model: &Json, found: &mut BTreeMap<String, usize>) {
    let Some(cfg) = model.get("config") else {
        return;
    };
    let layers = match cfg {
        Json::Array(a) => a.as_slice(),
        _ => cfg
            .get("layers")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    };
    for layer in layers {
        let class = layer
            .get("class_name")
            .and_then(Json::as_str)
            .unwrap_or("(no class_name)");
        if layer_fn(class).is_none() {
            *found.entry(class.to_string()).or_default() += 1;
            continue;
        }
        if matches!(class, "Sequential" | "Model" | "Functional") {
            unsupported(layer, found);
        }
        if let Some(act) = layer
            .get("config")
            .and_then(|c| c.get("activation"))
            .and_then(Json::as_str)
        {
            if !Activation::keras_names().any(|a| a == act) {
                *found.entry(format!("activation {act:?}")).or_default() += 1;
            }
        }
    }
}

/// Converts a Keras model topology (the `modelTopology` of model.json) with its weights.
pub fn convert(topology: &Json, weights: &Weights) -> Result<pb::ModelProto, Error> {
    let model = topology.get("model_config").unwrap_or(topology);
    let mut found = BTreeMap::new();
    unsupported(model, &mut found);
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|(c, n)| format!("{c} ({n})")).collect();
        return Err(Error::Unsupported(format!(
            "TF.js layers model uses layers graft cannot convert: {}",
            list.join(", ")
        )));
    }
    let class = string(model, "class_name", "model_config")?;
    let cfg = field(model, "config", "model_config")?;
    let mut c = Converter {
        net: Net::new(cfg.get("name").and_then(Json::as_str).unwrap_or("model")),
        weights,
    };
    let outputs = match class {
        "Sequential" => vec![c.sequential(cfg, None)?],
        "Model" | "Functional" => c.functional(cfg, None)?,
        other => return Err(bad(format!("model class {other:?} is not a model"))),
    };
    for v in &outputs {
        let name = if v.nchw {
            tf::transpose(&mut c.net.g, &v.name, false, &format!("{}#nhwc", v.name))
        } else {
            v.name.clone()
        };
        c.net.g.output(&name, DataType::Float, None);
    }
    Ok(c.net.g.finish(
        "graft tfjs-layers",
        "TF.js layers model converted by graft (Keras layer names kept as tensor names; input NHWC)",
    ))
}

struct Converter<'a> {
    net: Net,
    weights: &'a Weights,
}

/// Key of a layer output: (layer name, node index, tensor index).
type OutKey = (String, usize, usize);

fn out_key(r: &Json, what: &str) -> Result<OutKey, Error> {
    let a = r.as_array().filter(|a| a.len() >= 3).ok_or_else(|| {
        bad(format!(
            "{what}: a tensor reference is not [layer, node, tensor, ...]"
        ))
    })?;
    let name = a[0]
        .as_str()
        .ok_or_else(|| bad(format!("{what}: layer reference is not a name")))?;
    Ok((name.to_string(), uint(&a[1], what)?, uint(&a[2], what)?))
}

impl Converter<'_> {
    /// The weight `{layer}/{param}`; also found under a scope prefix (`model/{layer}/{param}`)
    /// when that is unambiguous.
    fn weight(&self, layer: &str, param: &str) -> Result<&Tensor, Error> {
        self.opt_weight(layer, param)?
            .ok_or_else(|| bad(format!("layer {layer}: no weight {layer}/{param}")))
    }

    fn opt_weight(&self, layer: &str, param: &str) -> Result<Option<&Tensor>, Error> {
        let key = format!("{layer}/{param}");
        if let Some(t) = self.weights.tensors.get(&key) {
            return Ok(Some(t));
        }
        let suffix = format!("/{key}");
        let mut hits = self
            .weights
            .tensors
            .iter()
            .filter(|(k, _)| k.ends_with(&suffix));
        match (hits.next(), hits.next()) {
            (Some((_, t)), None) => Ok(Some(t)),
            (None, _) => Ok(None),
            (Some((a, _)), Some((b, _))) => Err(bad(format!(
                "layer {layer}: weight {param} is ambiguous ({a}, {b})"
            ))),
        }
    }

    fn weight_f32(
        &self,
        layer: &str,
        param: &str,
        shape: Option<&[usize]>,
    ) -> Result<Vec<f32>, Error> {
        let t = self.weight(layer, param)?;
        if let Some(s) = shape {
            if t.shape != s {
                return Err(bad(format!(
                    "layer {layer}: {param} has shape {:?}, expected {s:?}",
                    t.shape
                )));
            }
        }
        Ok(t.to_f32())
    }

    /// A graph input from a layer config's `batch_input_shape` (channels-last, kept as is).
    fn graph_input(&mut self, cfg: &Json, name: &str) -> Result<Value, Error> {
        let what = format!("input {name}");
        let shape = cfg
            .get("batch_input_shape")
            .or_else(|| cfg.get("batch_shape"))
            .and_then(Json::as_array)
            .ok_or_else(|| bad(format!("{what}: no batch_input_shape")))?;
        if shape.is_empty() {
            return Err(bad(format!("{what}: empty batch_input_shape")));
        }
        let dims = shape
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Json::Null if i == 0 => Ok(Dim::Symbolic("N".into())),
                Json::Null => Ok(Dim::Symbolic(format!("{name}_d{i}"))),
                d => Ok(Dim::Fixed(uint(d, &what)? as i64)),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        match cfg.get("dtype").and_then(Json::as_str) {
            None | Some("float32") => {}
            Some(other) => return Err(bad(format!("{what}: dtype {other} (float32 only)"))),
        }
        let n = self.net.g.input(name, DataType::Float, &dims);
        Ok(Value::plain(n, Some(shape.len())))
    }

    fn sequential(&mut self, cfg: &Json, input: Option<Value>) -> Result<Value, Error> {
        let layers = layers_of(cfg, "Sequential")?;
        let mut x = input;
        for layer in layers {
            let class = string(layer, "class_name", "Sequential layer")?;
            let lcfg = field(layer, "config", class)?;
            let name = layer
                .get("name")
                .or_else(|| lcfg.get("name"))
                .and_then(Json::as_str)
                .unwrap_or(class)
                .to_string();
            let current = match x.take() {
                Some(v) => v,
                None if class == "InputLayer" => self.graph_input(lcfg, &name)?,
                None => {
                    let cfg = input_config(layer)
                        .ok_or_else(|| bad(format!("layer {name}: no batch_input_shape")))?;
                    self.graph_input(cfg, &format!("{name}_input"))?
                }
            };
            if class == "InputLayer" {
                x = Some(current);
                continue;
            }
            let mut out = self.apply(class, lcfg, &name, vec![current])?;
            if out.len() != 1 {
                return Err(bad(format!(
                    "Sequential layer {name} gives {} outputs",
                    out.len()
                )));
            }
            x = out.pop();
        }
        x.ok_or_else(|| bad("a Sequential model has no layers"))
    }

    fn functional(&mut self, cfg: &Json, inputs: Option<&[Value]>) -> Result<Vec<Value>, Error> {
        let layers = layers_of(cfg, "Model")?;
        let input_refs = array(cfg, "input_layers", "Model")?
            .iter()
            .map(|r| out_key(r, "input_layers"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut done: HashMap<OutKey, Value> = HashMap::new();
        match inputs {
            Some(given) => {
                if given.len() != input_refs.len() {
                    return Err(bad(format!(
                        "nested model takes {} inputs, given {}",
                        input_refs.len(),
                        given.len()
                    )));
                }
                for (k, v) in input_refs.iter().zip(given) {
                    done.insert(k.clone(), v.clone());
                }
            }
            None => {
                for k in &input_refs {
                    let layer = layers
                        .iter()
                        .find(|l| l.get("name").and_then(Json::as_str) == Some(&k.0))
                        .ok_or_else(|| bad(format!("input layer {} is not a layer", k.0)))?;
                    let v = self.graph_input(field(layer, "config", &k.0)?, &k.0)?;
                    done.insert(k.clone(), v);
                }
            }
        }
        // Layers in order of their inbound nodes becoming computable.
        let mut next_node = vec![0usize; layers.len()];
        loop {
            let mut progress = false;
            let mut pending = None;
            for (li, layer) in layers.iter().enumerate() {
                let name = string(layer, "name", "layer")?;
                let class = string(layer, "class_name", name)?;
                if class == "InputLayer" {
                    continue;
                }
                let nodes = array(layer, "inbound_nodes", name)?;
                while let Some(node) = nodes.get(next_node[li]) {
                    let refs = node
                        .as_array()
                        .ok_or_else(|| bad(format!("layer {name}: inbound node is not a list")))?
                        .iter()
                        .map(|r| out_key(r, name))
                        .collect::<Result<Vec<_>, _>>()?;
                    if refs.iter().any(|r| !done.contains_key(r)) {
                        pending = Some(name);
                        break;
                    }
                    let inputs = refs.iter().filter_map(|r| done.get(r).cloned()).collect();
                    let node_index = next_node[li];
                    let out_name = if node_index == 0 {
                        name.to_string()
                    } else {
                        format!("{name}_{node_index}")
                    };
                    let cfg = field(layer, "config", name)?;
                    let outs = self.apply(class, cfg, &out_name, inputs)?;
                    for (ti, v) in outs.into_iter().enumerate() {
                        done.insert((name.to_string(), node_index, ti), v);
                    }
                    next_node[li] += 1;
                    progress = true;
                }
            }
            if !progress {
                if let Some(name) = pending {
                    return Err(bad(format!(
                        "layer {name}: its inputs are never computed (missing layer or cycle)"
                    )));
                }
                break;
            }
        }
        array(cfg, "output_layers", "Model")?
            .iter()
            .map(|r| {
                let k = out_key(r, "output_layers")?;
                done.get(&k)
                    .cloned()
                    .ok_or_else(|| bad(format!("output layer {} is never computed", k.0)))
            })
            .collect()
    }

    /// Applies one layer; its (first) output is called `name`.
    fn apply(
        &mut self,
        class: &str,
        cfg: &Json,
        name: &str,
        inputs: Vec<Value>,
    ) -> Result<Vec<Value>, Error> {
        let f =
            layer_fn(class).ok_or_else(|| Error::Unsupported(format!("layer class {class}")))?;
        let call = Call {
            class,
            cfg,
            name,
            wname: cfg
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or(name)
                .to_string(),
        };
        match f {
            Apply::One(f) => {
                let x = one(inputs, name)?;
                Ok(vec![f(self, &call, x)?])
            }
            Apply::Many(f) => Ok(vec![f(self, &call, inputs)?]),
            Apply::Model(f) => f(self, &call, inputs),
        }
    }

    /// Activation: the Keras activation named in the config.
    fn activation_layer(&mut self, l: &Call, x: &Value) -> Result<Value, Error> {
        let act = string(l.cfg, "activation", l.name)?;
        self.activate(x, act, l.name)
    }

    /// Softmax over `axis` (default the last).
    fn softmax_layer(&mut self, l: &Call, x: &Value) -> Result<Value, Error> {
        let axis = l.cfg.get("axis").and_then(Json::as_i64).unwrap_or(-1);
        self.softmax(x, axis, l.name)
    }

    /// A layer that does nothing at inference (dropout, noise).
    fn identity(&mut self, l: &Call, x: Value) -> Value {
        let out = self.net.g.node("Identity", &[&x.name], l.name, vec![]);
        Value { name: out, ..x }
    }

    /// ReLU, clipped at `max_value` when set (negative slopes and thresholds are refused).
    fn relu(&mut self, l: &Call, x: Value) -> Result<Value, Error> {
        let num = |k: &str| l.cfg.get(k).and_then(Json::as_f64).unwrap_or(0.0);
        let (slope, threshold) = (num("negative_slope"), num("threshold"));
        if slope != 0.0 || threshold != 0.0 {
            return Err(Error::Unsupported(format!(
                "layer {}: ReLU with negative_slope or threshold",
                l.name
            )));
        }
        let out = match l.cfg.get("max_value").and_then(Json::as_f64) {
            Some(max) => self.net.clip(&x.name, 0.0, max as f32, l.name),
            None => self.net.activate(&x.name, Activation::Relu, l.name),
        };
        Ok(Value { name: out, ..x })
    }

    fn leaky_relu(&mut self, l: &Call, x: Value) -> Value {
        let alpha = l.cfg.get("alpha").and_then(Json::as_f64).unwrap_or(0.3) as f32;
        let out = self
            .net
            .activate(&x.name, Activation::LeakyRelu(alpha), l.name);
        Value { name: out, ..x }
    }

    /// ZeroPadding2D: `n`, `[h, w]` or `[[top, bottom], [left, right]]` rows and columns.
    fn zero_padding(&mut self, l: &Call, x: Value) -> Result<Value, Error> {
        let name = l.name;
        channels_last(l.cfg, name)?;
        let (h, w) = match l.cfg.get("padding") {
            Some(Json::Array(a)) if a.len() == 2 => {
                (pair_value(&a[0], name)?, pair_value(&a[1], name)?)
            }
            Some(v) => {
                let n = uint(v, name)?;
                ([n, n], [n, n])
            }
            None => ([1, 1], [1, 1]),
        };
        let p = [h[0], w[0], h[1], w[1]];
        let xin = self.net.nchw(&x, name)?;
        let pads: Vec<i64> = [0, 0, p[0], p[1], 0, 0, p[2], p[3]]
            .iter()
            .map(|&v| v as i64)
            .collect();
        let pads = self
            .net
            .g
            .initializer_i64(&format!("{name}#pads"), &[8], &pads);
        Ok(Value::nchw(self.net.g.node(
            "Pad",
            &[&xin, &pads],
            name,
            vec![],
        )))
    }

    /// GlobalAveragePooling2D / GlobalMaxPooling2D (`op`): `[N, C]`, or NCHW with `keepdims`.
    fn global_pool(&mut self, l: &Call, x: Value, op: &str) -> Result<Value, Error> {
        let name = l.name;
        channels_last(l.cfg, name)?;
        let xin = self.net.nchw(&x, name)?;
        if l.cfg.get("keepdims").and_then(Json::as_bool) == Some(true) {
            return Ok(Value::nchw(self.net.g.node(op, &[&xin], name, vec![])));
        }
        let pooled = self
            .net
            .g
            .node(op, &[&xin], &format!("{name}#pool"), vec![]);
        Ok(Value::plain(
            self.net
                .g
                .node("Flatten", &[&pooled], name, vec![attr_int("axis", 1)]),
            Some(2),
        ))
    }

    /// AveragePooling2D / MaxPooling2D (`op`).
    fn pool(&mut self, l: &Call, x: Value, op: &str) -> Result<Value, Error> {
        let (cfg, name) = (l.cfg, l.name);
        channels_last(cfg, name)?;
        let size = positive(pair(cfg, "pool_size", Some([2, 2]), name)?, name)?;
        let strides = positive(pair(cfg, "strides", Some(size), name)?, name)?;
        let pad = padding(cfg, name)?;
        let xin = self.net.nchw(&x, name)?;
        let attrs = tf::pool_attrs(op, size, strides, pad);
        Ok(Value::nchw(self.net.g.node(op, &[&xin], name, attrs)))
    }

    fn flatten(&mut self, l: &Call, x: Value) -> Value {
        let xin = self.net.plain(&x);
        Value::plain(
            self.net
                .g
                .node("Flatten", &[&xin], l.name, vec![attr_int("axis", 1)]),
            Some(2),
        )
    }

    /// Reshape of everything but the batch to `target_shape`.
    fn reshape(&mut self, l: &Call, x: Value) -> Result<Value, Error> {
        let name = l.name;
        let target = array(l.cfg, "target_shape", name)?;
        let mut shape = vec![0i64];
        for d in target {
            shape.push(match d.as_i64() {
                Some(-1) => -1,
                _ => uint(d, name)? as i64,
            });
        }
        let xin = self.net.plain(&x);
        let s = self
            .net
            .g
            .initializer_i64(&format!("{name}#shape"), &[shape.len()], &shape);
        Ok(Value::plain(
            self.net.g.node("Reshape", &[&xin, &s], name, vec![]),
            Some(shape.len()),
        ))
    }

    /// Dense on the last axis: `MatMul`, `Add` of the bias, then the activation.
    fn dense(&mut self, l: &Call, x: &Value) -> Result<Value, Error> {
        let (cfg, name, wname) = (l.cfg, l.name, l.wname.as_str());
        let xin = self.net.plain(x);
        let kernel = self.weight(wname, "kernel")?;
        let [inp, units] = kernel.shape[..] else {
            return Err(bad(format!(
                "layer {name}: kernel has shape {:?}",
                kernel.shape
            )));
        };
        let w =
            self.net
                .g
                .initializer_f32(&format!("{name}#kernel"), &[inp, units], &kernel.to_f32());
        let act = cfg
            .get("activation")
            .and_then(Json::as_str)
            .unwrap_or("linear");
        let use_bias = cfg.get("use_bias").and_then(Json::as_bool).unwrap_or(true);
        let linear = if act == "linear" {
            name.to_string()
        } else {
            format!("{name}#linear")
        };
        let y = if use_bias {
            let b = self.weight_f32(wname, "bias", Some(&[units]))?;
            let b = self
                .net
                .g
                .initializer_f32(&format!("{name}#bias"), &[units], &b);
            let m = self
                .net
                .g
                .node("MatMul", &[&xin, &w], &format!("{name}#matmul"), vec![]);
            self.net.g.node("Add", &[&m, &b], &linear, vec![])
        } else {
            self.net.g.node("MatMul", &[&xin, &w], &linear, vec![])
        };
        let y = Value::plain(y, x.rank);
        if act == "linear" {
            Ok(y)
        } else {
            self.activate(&y, act, name)
        }
    }

    fn activate(&mut self, x: &Value, act: &str, name: &str) -> Result<Value, Error> {
        if act == "softmax" {
            return self.softmax(x, -1, name);
        }
        let act = Activation::keras(act)
            .ok_or_else(|| Error::Unsupported(format!("layer {name}: activation {act:?}")))?;
        let out = self.net.activate(&x.name, act, name);
        Ok(Value {
            name: out,
            ..x.clone()
        })
    }

    fn softmax(&mut self, x: &Value, axis: i64, name: &str) -> Result<Value, Error> {
        let (xin, axis) = match (x.nchw, nchw_axis(axis)) {
            (true, Some(a)) => (x.name.clone(), a),
            _ => (self.net.plain(x), axis),
        };
        let out = self
            .net
            .g
            .node("Softmax", &[&xin], name, vec![attr_int("axis", axis)]);
        Ok(Value {
            name: out,
            nchw: x.nchw && xin == x.name,
            rank: x.rank,
        })
    }

    /// Conv2D, DepthwiseConv2D or SeparableConv2D.
    fn conv(&mut self, l: &Call, x: &Value) -> Result<Value, Error> {
        let (class, cfg, name, wname) = (l.class, l.cfg, l.name, l.wname.as_str());
        channels_last(cfg, name)?;
        let strides = positive(pair(cfg, "strides", Some([1, 1]), name)?, name)?;
        let dilations = positive(pair(cfg, "dilation_rate", Some([1, 1]), name)?, name)?;
        let pad = padding(cfg, name)?;
        let use_bias = cfg.get("use_bias").and_then(Json::as_bool).unwrap_or(true);
        let act = cfg
            .get("activation")
            .and_then(Json::as_str)
            .unwrap_or("linear");
        let xin = self.net.nchw(x, name)?;
        let last = if act == "linear" {
            name.to_string()
        } else {
            format!("{name}#linear")
        };
        let bias = if use_bias {
            Some(self.weight(wname, "bias")?.to_f32())
        } else {
            None
        };
        let kernel_param = if class == "Conv2D" {
            "kernel"
        } else {
            "depthwise_kernel"
        };
        let k = self.weight(wname, kernel_param)?;
        let [kh, kw, cin, m] = k.shape[..] else {
            return Err(bad(format!(
                "layer {name}: {kernel_param} has shape {:?}",
                k.shape
            )));
        };
        let kernel = k.to_f32();
        let y = if class == "Conv2D" {
            let groups = cfg.get("groups").and_then(Json::as_u64).unwrap_or(1) as usize;
            let conv = Conv {
                kernel_shape: [kh, kw, cin, m],
                kernel: &kernel,
                bias: bias.as_deref(),
                strides,
                dilations,
                group: groups.max(1),
                padding: pad,
            };
            self.net.conv(&xin, &conv, &last)?
        } else {
            let separable = class == "SeparableConv2D";
            let dw_name = if separable {
                format!("{name}#depthwise")
            } else {
                last.clone()
            };
            let conv = Conv {
                kernel_shape: [kh, kw, 1, cin * m],
                kernel: &kernel,
                bias: if separable { None } else { bias.as_deref() },
                strides,
                dilations,
                group: cin,
                padding: pad,
            };
            let y = self.net.conv(&xin, &conv, &dw_name)?;
            if separable {
                let pk = self.weight(wname, "pointwise_kernel")?;
                let [1, 1, pin, pout] = pk.shape[..] else {
                    return Err(bad(format!(
                        "layer {name}: pointwise_kernel has shape {:?}",
                        pk.shape
                    )));
                };
                let pkv = pk.to_f32();
                let conv = Conv {
                    kernel_shape: [1, 1, pin, pout],
                    kernel: &pkv,
                    bias: bias.as_deref(),
                    strides: [1, 1],
                    dilations: [1, 1],
                    group: 1,
                    padding: Padding::Valid,
                };
                self.net.conv(&y, &conv, &last)?
            } else {
                y
            }
        };
        let y = Value::nchw(y);
        if act == "linear" {
            Ok(y)
        } else {
            self.activate(&y, act, name)
        }
    }

    /// Inference BatchNormalization over the last axis: `x * scale + shift` with
    /// `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`, computed in f64.
    fn batch_norm(&mut self, l: &Call, x: &Value) -> Result<Value, Error> {
        let (cfg, name, wname) = (l.cfg, l.name, l.wname.as_str());
        let axis = match cfg.get("axis") {
            Some(Json::Array(a)) if a.len() == 1 => a[0].as_i64(),
            Some(v) => v.as_i64(),
            None => Some(-1),
        };
        let last_axis = match (axis, x.rank) {
            (Some(-1), _) => true,
            (Some(a), Some(r)) => a >= 0 && a as usize + 1 == r,
            _ => false,
        };
        if !last_axis {
            return Err(Error::Unsupported(format!(
                "layer {name}: BatchNormalization over axis {axis:?} (only the channels axis, the last)"
            )));
        }
        let mean = self.weight(wname, "moving_mean")?.to_f32();
        let c = mean.len();
        let var = self.weight_f32(wname, "moving_variance", Some(&[c]))?;
        let center = cfg.get("center").and_then(Json::as_bool).unwrap_or(true);
        let scale = cfg.get("scale").and_then(Json::as_bool).unwrap_or(true);
        let gamma = if scale {
            self.weight_f32(wname, "gamma", Some(&[c]))?
        } else {
            vec![1.0; c]
        };
        let beta = if center {
            self.weight_f32(wname, "beta", Some(&[c]))?
        } else {
            vec![0.0; c]
        };
        let eps = cfg.get("epsilon").and_then(Json::as_f64).unwrap_or(1e-3);
        Ok(self
            .net
            .batch_norm(x, [&gamma, &beta, &mean, &var], eps, name))
    }

    /// Inputs all NCHW stay NCHW; otherwise all are taken channels-last.
    fn same_layout(&mut self, inputs: &[Value]) -> (Vec<String>, bool) {
        let nchw = inputs.iter().all(|v| v.nchw);
        let names = inputs
            .iter()
            .map(|v| {
                if nchw {
                    v.name.clone()
                } else {
                    self.net.plain(v)
                }
            })
            .collect();
        (names, nchw)
    }

    /// A merge layer of two or more inputs: ONNX `op` over all of them (`variadic`), or a chain
    /// of binary `op`s.
    fn merge(
        &mut self,
        l: &Call,
        inputs: Vec<Value>,
        op: &str,
        variadic: bool,
    ) -> Result<Value, Error> {
        let (class, name) = (l.class, l.name);
        if inputs.len() < 2 || (op == "Sub" && inputs.len() != 2) {
            return Err(bad(format!(
                "layer {name}: {class} of {} inputs",
                inputs.len()
            )));
        }
        let rank = inputs[0].rank;
        let (names, nchw) = self.same_layout(&inputs);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = if variadic {
            self.net.g.node(op, &refs, name, vec![])
        } else {
            let mut acc = refs[0].to_string();
            for (i, r) in refs.iter().enumerate().skip(1) {
                let out = if i + 1 == refs.len() {
                    name.to_string()
                } else {
                    format!("{name}#{i}")
                };
                acc = self.net.g.node(op, &[&acc, r], &out, vec![]);
            }
            acc
        };
        Ok(Value {
            name: out,
            nchw,
            rank,
        })
    }

    fn concatenate(&mut self, cfg: &Json, name: &str, inputs: Vec<Value>) -> Result<Value, Error> {
        if inputs.is_empty() {
            return Err(bad(format!("layer {name}: Concatenate of nothing")));
        }
        let axis = cfg.get("axis").and_then(Json::as_i64).unwrap_or(-1);
        let rank = inputs[0].rank;
        let (names, nchw) = self.same_layout(&inputs);
        let axis = if nchw {
            nchw_axis(axis)
                .ok_or_else(|| bad(format!("layer {name}: axis {axis} of a 4-d tensor")))?
        } else {
            axis
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = self
            .net
            .g
            .node("Concat", &refs, name, vec![attr_int("axis", axis)]);
        Ok(Value {
            name: out,
            nchw,
            rank,
        })
    }
}
