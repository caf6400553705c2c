//! Translation of a TFLite main subgraph into an ONNX graph.
//!
//! TFLite tensors are NHWC; ONNX `Conv`, `MaxPool` and `AveragePool` want NCHW. Each TFLite
//! tensor may exist in the ONNX graph in its TFLite layout, in NCHW (rank-4 tensors only), or
//! both; a `Transpose` is inserted the first time a layout is asked for that does not exist yet.
//! Convolutions and pools produce NCHW, layout-agnostic operators (elementwise, `Pad`, `Resize`)
//! keep whichever layout their input already has, and graph outputs are given back in TFLite's
//! layout under the TFLite output names. Weights are constants: DEQUANTIZE of fp16 or int8/uint8
//! data is done here, and filters are reordered to ONNX layout at conversion time.
//!
//! Batch sizes other than the file's 1 also run: reshapes keep the leading dimension free and
//! resizes use scales where they are exact.

use std::collections::HashMap;

use tract_onnx::pb;

use super::schema::{self, op, Model, Operator, TensorType};
pub use crate::half::f16_to_f32;
use crate::onnx_builder::{attr_int, attr_ints, Dim, GraphBuilder};
use crate::tf::{self, Activation, ClipBounds, FilterLayout, Padding};
use crate::Error;

/// Translates one operator (its output recorded in the converter).
type OpFn = fn(&mut Converter, &Operator) -> Result<(), Error>;

/// The builtin operators [`build`] converts, by code, each with its translation: the one list of
/// them.
const OPS: &[(i32, OpFn)] = &[
    (op::ADD, |c, o| c.elementwise(o, "Add")),
    (op::AVERAGE_POOL_2D, |c, o| c.pool(o, "AveragePool")),
    (op::CONV_2D, |c, o| c.conv(o, false)),
    (op::DEPTHWISE_CONV_2D, |c, o| c.conv(o, true)),
    (op::DEQUANTIZE, |c, o| c.dequantize(o)),
    (op::LOGISTIC, |c, o| c.unary(o, Activation::Sigmoid)),
    (op::MAX_POOL_2D, |c, o| c.pool(o, "MaxPool")),
    (op::MUL, |c, o| c.elementwise(o, "Mul")),
    (op::PAD, |c, o| c.pad(o)),
    (op::RELU, |c, o| c.unary(o, Activation::Relu)),
    (op::RELU6, |c, o| c.unary(o, Activation::RELU6)),
    (op::RESHAPE, |c, o| c.reshape(o)),
    (op::RESIZE_BILINEAR, |c, o| c.resize(o)),
    (op::SUB, |c, o| c.elementwise(o, "Sub")),
    (op::TANH, |c, o| c.unary(o, Activation::Tanh)),
];

/// The translation of builtin operator `code`, if it is supported.
fn op_fn(code: i32) -> Option<OpFn> {
    crate::lookup(OPS, code)
}

/// The codes of the builtin operators [`build`] converts.
pub fn supported() -> Vec<i32> {
    OPS.iter().map(|&(c, _)| c).collect()
}

/// The schema names of the builtin operators [`build`] converts (`CONV_2D`), sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut names: Vec<&str> = OPS
        .iter()
        .filter_map(|&(c, _)| schema::builtin_name(c))
        .collect();
    names.sort_unstable();
    names
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("TFLite model: {}", msg.into()))
}

/// Axis order of a rank-4 tensor in the ONNX graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Layout {
    /// TFLite's own layout (any rank).
    Tflite,
    /// Channels moved from last to second (rank 4 only).
    Nchw,
}

/// A TFLite tensor as known to the converter.
#[derive(Clone, Debug)]
enum Value {
    /// Not produced yet (or a constant of a type only DEQUANTIZE reads).
    Missing,
    /// A float constant in TFLite layout (fp16 and quantized data already converted).
    Float(Vec<f32>),
    /// An integer constant (shapes, paddings, sizes).
    Ints(Vec<i64>),
    /// A tensor of the ONNX graph, by name, in one or both layouts.
    Graph {
        tflite: Option<String>,
        nchw: Option<String>,
    },
}

/// Converts the model into an ONNX graph: inputs and outputs keep their TFLite names and layouts.
pub fn build(model: &Model) -> Result<pb::ModelProto, Error> {
    check_supported(model)?;
    let mut c = Converter {
        model,
        g: GraphBuilder::new("tflite"),
        values: model
            .tensors
            .iter()
            .map(constant)
            .collect::<Result<_, _>>()?,
        initializers: HashMap::new(),
        filters: HashMap::new(),
        scalars: HashMap::new(),
    };
    for &i in &model.inputs {
        let t = &model.tensors[i];
        if t.dtype != TensorType::Float32 {
            return Err(bad(format!(
                "input {:?} is {:?}; only float32 inputs are supported",
                t.name, t.dtype
            )));
        }
        let name = c.g.input_f32(&t.name, &fixed_dims(&t.shape));
        c.values[i] = Value::Graph {
            tflite: Some(name),
            nchw: None,
        };
    }
    for &i in &model.outputs {
        if !c.g.reserve(&model.tensors[i].name) {
            return Err(bad(format!(
                "output name {:?} is used twice",
                model.tensors[i].name
            )));
        }
    }
    for (k, o) in model.operators.iter().enumerate() {
        c.operator(o)
            .map_err(|e| bad(format!("operator {k} ({}): {}", o.name(), message(e))))?;
    }
    for &i in &model.outputs {
        let t = &model.tensors[i];
        let x = c.graph(i, Layout::Tflite)?;
        c.g.node_reserved("Identity", &[&x], &t.name, vec![]);
        c.g.output_f32(&t.name, &fixed_dims(&t.shape));
    }
    Ok(c.g.finish(
        "graft tflite",
        "Converted by graft from a TFLite flatbuffer (NHWC inputs and outputs as in the original)",
    ))
}

fn message(e: Error) -> String {
    match e {
        Error::Format(m) => m.strip_prefix("TFLite model: ").unwrap_or(&m).to_string(),
        other => other.to_string(),
    }
}

fn fixed_dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Fixed(d as i64)).collect()
}

/// One error listing every unsupported operator with its count.
fn check_supported(model: &Model) -> Result<(), Error> {
    let mut unsupported: Vec<(String, usize)> = Vec::new();
    for o in &model.operators {
        if op_fn(o.code).is_some() {
            continue;
        }
        let name = o.name();
        match unsupported.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => unsupported.push((name, 1)),
        }
    }
    if unsupported.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unsupported
        .iter()
        .map(|(n, c)| format!("{n} x{c}"))
        .collect();
    Err(Error::Unsupported(format!(
        "TFLite operators graft cannot convert: {}",
        list.join(", ")
    )))
}

/// The value of a tensor before any operator runs: its constant data, decoded, if any.
fn constant(t: &schema::Tensor) -> Result<Value, Error> {
    let Some(data) = t.data else {
        return Ok(Value::Missing);
    };
    let Some(size) = t.dtype.size() else {
        return Ok(Value::Missing);
    };
    let numel = t.numel()?;
    if numel.checked_mul(size) != Some(data.len()) {
        return Err(bad(format!(
            "tensor {:?} of shape {:?} has {} bytes of {:?} data",
            t.name,
            t.shape,
            data.len(),
            t.dtype
        )));
    }
    let words4 = || data.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]);
    Ok(match t.dtype {
        TensorType::Float32 => Value::Float(words4().map(f32::from_le_bytes).collect()),
        TensorType::Float16 => Value::Float(
            data.chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        TensorType::Int32 => {
            Value::Ints(words4().map(|b| i64::from(i32::from_le_bytes(b))).collect())
        }
        TensorType::Int64 => Value::Ints(
            data.chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    i64::from_le_bytes(a)
                })
                .collect(),
        ),
        // Quantized constants are read by DEQUANTIZE.
        _ => Value::Missing,
    })
}

struct Converter<'m, 'a> {
    model: &'m Model<'a>,
    g: GraphBuilder,
    values: Vec<Value>,
    /// Initializers made for float constants, by tensor and layout.
    initializers: HashMap<(usize, Layout), String>,
    /// Conv weights in ONNX layout, by filter tensor and whether it is depthwise.
    filters: HashMap<(usize, bool), String>,
    /// Scalar float initializers (Clip bounds), by bit pattern (see [`ClipBounds::Shared`]).
    scalars: HashMap<u32, String>,
}

impl Converter<'_, '_> {
    fn name(&self, i: usize) -> &str {
        &self.model.tensors[i].name
    }

    fn shape(&self, i: usize) -> &[usize] {
        &self.model.tensors[i].shape
    }

    /// The shape of a rank-4 tensor.
    fn shape4(&self, i: usize) -> Result<[usize; 4], Error> {
        <[usize; 4]>::try_from(self.shape(i)).map_err(|_| {
            bad(format!(
                "{:?} has shape {:?}, expected rank 4",
                self.name(i),
                self.shape(i)
            ))
        })
    }

    /// Tensor index of required input `k`.
    fn input(&self, o: &Operator, k: usize) -> Result<usize, Error> {
        o.inputs
            .get(k)
            .copied()
            .flatten()
            .ok_or_else(|| bad(format!("input {k} is missing")))
    }

    /// Tensor index of the single output.
    fn output(&self, o: &Operator) -> Result<usize, Error> {
        match o.outputs[..] {
            [i] => Ok(i),
            _ => Err(bad(format!("has {} outputs, expected 1", o.outputs.len()))),
        }
    }

    fn floats(&self, i: usize) -> Result<&[f32], Error> {
        match &self.values[i] {
            Value::Float(v) => Ok(v),
            _ => Err(bad(format!("{:?} is not a float constant", self.name(i)))),
        }
    }

    fn ints(&self, i: usize) -> Result<&[i64], Error> {
        match &self.values[i] {
            Value::Ints(v) => Ok(v),
            _ => Err(bad(format!(
                "{:?} is not an integer constant",
                self.name(i)
            ))),
        }
    }

    /// The layout a tensor is cheapest to read in.
    fn available(&self, i: usize) -> Layout {
        match &self.values[i] {
            Value::Graph { nchw: Some(_), .. } => Layout::Nchw,
            _ => Layout::Tflite,
        }
    }

    /// Records the ONNX tensor `name` as TFLite tensor `i` in `layout`.
    fn define(&mut self, i: usize, layout: Layout, name: String) -> Result<(), Error> {
        if !matches!(self.values[i], Value::Missing) || self.model.tensors[i].data.is_some() {
            return Err(bad(format!("tensor {:?} is written twice", self.name(i))));
        }
        self.values[i] = match layout {
            Layout::Tflite => Value::Graph {
                tflite: Some(name),
                nchw: None,
            },
            Layout::Nchw => Value::Graph {
                tflite: None,
                nchw: Some(name),
            },
        };
        Ok(())
    }

    /// The ONNX tensor holding TFLite tensor `i` in `layout`, made on first request.
    fn graph(&mut self, i: usize, layout: Layout) -> Result<String, Error> {
        let name = self.name(i).to_string();
        match &self.values[i] {
            Value::Graph { tflite, nchw } => {
                let (have, other) = match layout {
                    Layout::Tflite => (tflite, nchw),
                    Layout::Nchw => (nchw, tflite),
                };
                if let Some(have) = have {
                    return Ok(have.clone());
                }
                let other = other.clone().ok_or_else(|| bad("internal: empty value"))?;
                self.shape4(i)?;
                let to_nchw = layout == Layout::Nchw;
                let suffix = if to_nchw { "nchw" } else { "nhwc" };
                let t = tf::transpose(&mut self.g, &other, to_nchw, &format!("{name}/{suffix}"));
                if let Value::Graph { tflite, nchw } = &mut self.values[i] {
                    match layout {
                        Layout::Tflite => *tflite = Some(t.clone()),
                        Layout::Nchw => *nchw = Some(t.clone()),
                    }
                }
                Ok(t)
            }
            Value::Float(v) => {
                let layout = if v.len() == 1 { Layout::Tflite } else { layout };
                if let Some(n) = self.initializers.get(&(i, layout)) {
                    return Ok(n.clone());
                }
                let (dims, data) = match layout {
                    Layout::Tflite => (self.shape(i).to_vec(), v.clone()),
                    Layout::Nchw => {
                        let [n, h, w, c] = self.shape4(i)?;
                        (vec![n, c, h, w], tf::nhwc_to_nchw(v, [n, h, w, c])?)
                    }
                };
                let init = self.g.initializer_f32(&name, &dims, &data);
                self.initializers.insert((i, layout), init.clone());
                Ok(init)
            }
            Value::Ints(_) => Err(bad(format!("integer tensor {name:?} used as float data"))),
            Value::Missing => Err(bad(format!(
                "tensor {name:?} is read before any operator writes it"
            ))),
        }
    }

    /// Adds node `op_type` whose result (after the fused activation) is TFLite tensor `out`.
    fn emit(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
        act: Option<Activation>,
        out: usize,
        layout: Layout,
    ) -> Result<(), Error> {
        let name = self.name(out).to_string();
        let y = match act {
            None => self.g.node(op_type, inputs, &name, attrs),
            Some(act) => {
                let pre = self
                    .g
                    .node(op_type, inputs, &format!("{name}/linear"), attrs);
                act.emit(
                    &mut self.g,
                    &pre,
                    &name,
                    ClipBounds::Shared(&mut self.scalars),
                )
            }
        };
        self.define(out, layout, y)
    }

    fn operator(&mut self, o: &Operator) -> Result<(), Error> {
        let f = op_fn(o.code).ok_or_else(|| Error::Unsupported(o.name()))?;
        f(self, o)
    }

    fn dequantize(&mut self, o: &Operator) -> Result<(), Error> {
        let (x, y) = (self.input(o, 0)?, self.output(o)?);
        let t = &self.model.tensors[x];
        let values = match (&self.values[x], t.dtype, t.data, &t.quantization) {
            (Value::Float(v), _, _, _) => v.clone(),
            (_, TensorType::Int8 | TensorType::Uint8, Some(data), Some(q)) => {
                dequantize_bytes(data, t.dtype == TensorType::Int8, &t.shape, q)
                    .map_err(|m| bad(format!("{:?}: {m}", t.name)))?
            }
            _ => {
                return Err(bad(format!(
                    "only constant fp16, int8 or uint8 tensors can be dequantized, not {:?} ({:?})",
                    t.name, t.dtype
                )))
            }
        };
        if values.len() != self.model.tensors[y].numel()? {
            return Err(bad("output size differs from input size"));
        }
        if !matches!(self.values[y], Value::Missing) {
            return Err(bad(format!("tensor {:?} is written twice", self.name(y))));
        }
        self.values[y] = Value::Float(values);
        Ok(())
    }

    /// CONV_2D, or DEPTHWISE_CONV_2D (`depthwise`).
    fn conv(&mut self, o: &Operator, depthwise: bool) -> Result<(), Error> {
        let win = schema::conv_options(o)?;
        let (x, w, y) = (self.input(o, 0)?, self.input(o, 1)?, self.output(o)?);
        let [_, ih, iw, ic] = self.shape4(x)?;
        let [ws0, kh, kw, ws3] = self.shape4(w)?;
        let [_, oh, ow, oc] = self.shape4(y)?;
        // TFLite filters: [out, kh, kw, in/group] (conv) or [1, kh, kw, out] (depthwise,
        // out = in * multiplier).
        let (group, out_ch) = if depthwise {
            if ws0 != 1 || ic == 0 || ws3 % ic != 0 {
                return Err(bad(format!(
                    "depthwise filter {:?} does not fit {ic} input channels",
                    self.shape(w)
                )));
            }
            (ic, ws3)
        } else {
            if ws3 == 0 || ic == 0 || ic % ws3 != 0 || ws0 % (ic / ws3) != 0 {
                return Err(bad(format!(
                    "filter {:?} does not fit {ic} input channels",
                    self.shape(w)
                )));
            }
            (ic / ws3, ws0)
        };
        if out_ch != oc {
            return Err(bad(format!(
                "filter gives {out_ch} channels, output has {oc}"
            )));
        }
        let pad = win.padding;
        let (oh2, top, bottom) = pad.window_axis(0, ih, kh, win.stride.0, win.dilation.0)?;
        let (ow2, left, right) = pad.window_axis(1, iw, kw, win.stride.1, win.dilation.1)?;
        if (oh2, ow2) != (oh, ow) {
            return Err(bad(format!(
                "computed output {oh2}x{ow2}, the file says {oh}x{ow}"
            )));
        }
        let mut inputs = vec![self.graph(x, Layout::Nchw)?, self.filter(w, depthwise)?];
        if let Some(Some(b)) = o.inputs.get(2) {
            if self.floats(*b)?.len() != out_ch {
                return Err(bad(format!(
                    "bias {:?} does not have {out_ch} values",
                    self.shape(*b)
                )));
            }
            inputs.push(self.graph(*b, Layout::Tflite)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut attrs = tf::window_attrs(
            [kh, kw],
            [win.stride.0, win.stride.1],
            Padding::Explicit([top, left, bottom, right].map(|p| p as i64)),
        );
        attrs.push(attr_ints(
            "dilations",
            &[win.dilation.0 as i64, win.dilation.1 as i64],
        ));
        attrs.push(attr_int("group", group as i64));
        self.emit("Conv", &inputs, attrs, win.activation, y, Layout::Nchw)
    }

    /// The ONNX weight `[out, in/group, kh, kw]` of TFLite filter `w` (made once per filter).
    fn filter(&mut self, w: usize, depthwise: bool) -> Result<String, Error> {
        if let Some(name) = self.filters.get(&(w, depthwise)) {
            return Ok(name.clone());
        }
        let [ws0, kh, kw, ws3] = self.shape4(w)?;
        // A depthwise [1, kh, kw, out] filter is the HWIO filter [kh, kw, 1, out].
        let (layout, shape) = if depthwise {
            (FilterLayout::Hwio, [kh, kw, ws0, ws3])
        } else {
            (FilterLayout::Ohwi, [ws0, kh, kw, ws3])
        };
        let (onnx_w, dims) = tf::filter_to_oihw(self.floats(w)?, layout, shape)?;
        let name = self.name(w).to_string();
        let init = self.g.initializer_f32(&name, &dims, &onnx_w);
        self.filters.insert((w, depthwise), init.clone());
        Ok(init)
    }

    /// MAX_POOL_2D or AVERAGE_POOL_2D, as ONNX `op_type`.
    fn pool(&mut self, o: &Operator, op_type: &str) -> Result<(), Error> {
        let (win, (kh, kw)) = schema::pool_options(o)?;
        let (x, y) = (self.input(o, 0)?, self.output(o)?);
        let [_, ih, iw, ic] = self.shape4(x)?;
        let [_, oh, ow, oc] = self.shape4(y)?;
        let pad = win.padding;
        let (oh2, top, bottom) = pad.window_axis(0, ih, kh, win.stride.0, 1)?;
        let (ow2, left, right) = pad.window_axis(1, iw, kw, win.stride.1, 1)?;
        if (oh2, ow2, ic) != (oh, ow, oc) {
            return Err(bad(format!(
                "computed output {oh2}x{ow2}x{ic}, the file says {oh}x{ow}x{oc}"
            )));
        }
        let xn = self.graph(x, Layout::Nchw)?;
        let mut attrs = tf::window_attrs(
            [kh, kw],
            [win.stride.0, win.stride.1],
            Padding::Explicit([top, left, bottom, right].map(|p| p as i64)),
        );
        if op_type == "AveragePool" {
            // TFLite averages over the valid (unpadded) part of the window.
            attrs.push(attr_int("count_include_pad", 0));
        }
        self.emit(op_type, &[&xn], attrs, win.activation, y, Layout::Nchw)
    }

    /// ADD, SUB or MUL, as ONNX `op_type`.
    fn elementwise(&mut self, o: &Operator, op_type: &str) -> Result<(), Error> {
        let act = schema::elementwise_activation(o)?;
        let (a, b, y) = (self.input(o, 0)?, self.input(o, 1)?, self.output(o)?);
        // NCHW works when both operands are rank 4 (or single constants) and one is NCHW already.
        let fits_nchw = |i: usize| {
            self.shape(i).len() == 4 || matches!(&self.values[i], Value::Float(v) if v.len() == 1)
        };
        let layout = if self.shape(y).len() == 4
            && fits_nchw(a)
            && fits_nchw(b)
            && (self.available(a) == Layout::Nchw || self.available(b) == Layout::Nchw)
        {
            Layout::Nchw
        } else {
            Layout::Tflite
        };
        let (an, bn) = (self.graph(a, layout)?, self.graph(b, layout)?);
        self.emit(op_type, &[&an, &bn], vec![], act, y, layout)
    }

    /// An activation operator (LOGISTIC, RELU, RELU6, TANH); the input's layout is kept.
    fn unary(&mut self, o: &Operator, act: Activation) -> Result<(), Error> {
        let (x, y) = (self.input(o, 0)?, self.output(o)?);
        let layout = self.available(x);
        let xn = self.graph(x, layout)?;
        let name = self.name(y).to_string();
        let out = act.emit(
            &mut self.g,
            &xn,
            &name,
            ClipBounds::Shared(&mut self.scalars),
        );
        self.define(y, layout, out)
    }

    fn pad(&mut self, o: &Operator) -> Result<(), Error> {
        let (x, p, y) = (self.input(o, 0)?, self.input(o, 1)?, self.output(o)?);
        let rank = self.shape(x).len();
        let pads = self.ints(p)?.to_vec();
        if pads.len() != 2 * rank || pads.iter().any(|&v| v < 0) {
            return Err(bad(format!("paddings {pads:?} for rank {rank}")));
        }
        let padded: Option<Vec<usize>> = self
            .shape(x)
            .iter()
            .enumerate()
            .map(|(k, &d)| {
                let d = (d as i64)
                    .checked_add(pads[2 * k])?
                    .checked_add(pads[2 * k + 1])?;
                usize::try_from(d).ok()
            })
            .collect();
        if padded.as_deref() != Some(self.shape(y)) {
            return Err(bad(format!(
                "padded shape {padded:?}, the file says {:?}",
                self.shape(y)
            )));
        }
        let layout = if rank == 4 {
            self.available(x)
        } else {
            Layout::Tflite
        };
        let axes: Vec<usize> = match layout {
            Layout::Tflite => (0..rank).collect(),
            Layout::Nchw => tf::TO_NCHW.iter().map(|&a| a as usize).collect(),
        };
        let mut onnx_pads: Vec<i64> = axes.iter().map(|&a| pads[2 * a]).collect();
        onnx_pads.extend(axes.iter().map(|&a| pads[2 * a + 1]));
        let xn = self.graph(x, layout)?;
        let pname = self.name(p).to_string();
        let pads_init = self.g.initializer_i64(&pname, &[2 * rank], &onnx_pads);
        self.emit("Pad", &[&xn, &pads_init], vec![], None, y, layout)
    }

    fn reshape(&mut self, o: &Operator) -> Result<(), Error> {
        let (x, y) = (self.input(o, 0)?, self.output(o)?);
        let (from, to) = (self.shape(x).to_vec(), self.shape(y).to_vec());
        if self.model.tensors[x].numel()? != self.model.tensors[y].numel()? {
            return Err(bad(format!("cannot reshape {from:?} to {to:?}")));
        }
        let mut target: Vec<i64> = to.iter().map(|&d| d as i64).collect();
        // A leading batch of 1 on both sides stays free, so that other batch sizes run.
        if from.first() == Some(&1) && to.first() == Some(&1) && to.iter().all(|&d| d > 0) {
            target[0] = -1;
        }
        let xn = self.graph(x, Layout::Tflite)?;
        let name = format!("{}/shape", self.name(y));
        let shape = self.g.initializer_i64(&name, &[target.len()], &target);
        self.emit("Reshape", &[&xn, &shape], vec![], None, y, Layout::Tflite)
    }

    fn resize(&mut self, o: &Operator) -> Result<(), Error> {
        let (align_corners, half_pixel) = schema::resize_options(o)?;
        let (x, y) = (self.input(o, 0)?, self.output(o)?);
        let [n, ih, iw, c] = self.shape4(x)?;
        let [_, oh, ow, oc] = self.shape4(y)?;
        if let Some(Some(size)) = o.inputs.get(1) {
            if let Value::Ints(s) = &self.values[*size] {
                if s[..] != [oh as i64, ow as i64] {
                    return Err(bad(format!("size {s:?}, the output is {oh}x{ow}")));
                }
            }
        }
        if oc != c || ih == 0 || iw == 0 {
            return Err(bad(format!(
                "resizes {:?} to {:?}",
                self.shape(x),
                self.shape(y)
            )));
        }
        let mode = tf::resize_mode(align_corners, half_pixel)
            .ok_or_else(|| bad("align_corners and half_pixel_centers both set"))?;
        let layout = self.available(x);
        let xn = self.graph(x, layout)?;
        let arrange = |batch: f32, c: f32, h: f32, w: f32| match layout {
            Layout::Nchw => [batch, c, h, w],
            Layout::Tflite => [batch, h, w, c],
        };
        let (sh, sw) = (oh as f32 / ih as f32, ow as f32 / iw as f32);
        // ONNX gives floor(input * scale) outputs: use scales (any batch) when that is exact.
        let exact = (ih as f32 * sh).floor() == oh as f32 && (iw as f32 * sw).floor() == ow as f32;
        let yname = self.name(y).to_string();
        let inputs = if exact {
            let scales = self.g.initializer_f32(
                &format!("{yname}/scales"),
                &[4],
                &arrange(1.0, 1.0, sh, sw),
            );
            vec![xn, String::new(), scales]
        } else {
            let s = arrange(n as f32, c as f32, oh as f32, ow as f32).map(|v| v as i64);
            let sizes = self.g.initializer_i64(&format!("{yname}/sizes"), &[4], &s);
            vec![xn, String::new(), String::new(), sizes]
        };
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = tf::bilinear_attrs(mode);
        self.emit("Resize", &inputs, attrs, None, y, layout)
    }
}

/// Dequantizes int8/uint8 data, per tensor or per axis: `scale * (q - zero_point)`.
fn dequantize_bytes(
    data: &[u8],
    signed: bool,
    shape: &[usize],
    q: &schema::Quantization,
) -> Result<Vec<f32>, String> {
    let channels = if q.scale.len() == 1 {
        1
    } else {
        *shape
            .get(q.axis)
            .filter(|&&d| d == q.scale.len())
            .ok_or_else(|| format!("{} scales for axis {} of {shape:?}", q.scale.len(), q.axis))?
    };
    if !(q.zero_point.is_empty() || q.zero_point.len() == q.scale.len()) {
        return Err(format!(
            "{} zero points for {} scales",
            q.zero_point.len(),
            q.scale.len()
        ));
    }
    let inner: usize = shape.get(q.axis + 1..).unwrap_or_default().iter().product();
    let inner = if channels == 1 {
        data.len().max(1)
    } else {
        inner.max(1)
    };
    Ok(data
        .iter()
        .enumerate()
        .map(|(k, &b)| {
            let ch = (k / inner) % channels;
            let v = if signed {
                f32::from(b as i8)
            } else {
                f32::from(b)
            };
            let zero = q.zero_point.get(ch).copied().unwrap_or(0) as f32;
            q.scale[ch] * (v - zero)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_axis(
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
    ) -> Result<(usize, usize, usize), Error> {
        padding.window_axis(0, input, kernel, stride, dilation)
    }

    #[test]
    fn same_and_valid_windows_follow_tflite() {
        // 256 -> 128 with a 3x3 stride-2 SAME window: one row of padding, at the end.
        assert_eq!(
            window_axis(256, 3, 2, 1, Padding::Same).unwrap(),
            (128, 0, 1)
        );
        assert_eq!(window_axis(8, 5, 1, 1, Padding::Same).unwrap(), (8, 2, 2));
        assert_eq!(window_axis(2, 2, 1, 1, Padding::Valid).unwrap(), (1, 0, 0));
        assert_eq!(window_axis(9, 3, 1, 2, Padding::Valid).unwrap(), (5, 0, 0));
        assert!(window_axis(2, 3, 1, 1, Padding::Valid).is_err());
    }

    #[test]
    fn per_axis_dequantization() {
        let q = schema::Quantization {
            scale: vec![0.5, 2.0],
            zero_point: vec![0, 1],
            axis: 0,
        };
        let got = dequantize_bytes(&[2, 4, 3, 255], true, &[2, 2], &q).unwrap();
        assert_eq!(got, [1.0, 2.0, 4.0, -4.0]);
        let bad_axis = schema::Quantization {
            axis: 1,
            scale: vec![1.0; 3],
            ..q
        };
        assert!(dequantize_bytes(&[0; 4], true, &[2, 2], &bad_axis).is_err());
    }
}
