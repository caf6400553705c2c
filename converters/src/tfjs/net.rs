//! The ONNX graph under construction, shared by the layers and graph converters: tensors keep
//! TensorFlow's channels-last meaning, but 4-d results of convolutions and pooling stay NCHW (ONNX's
//! layout) until an op needs channels-last again, so chains of convolutions need no transposes.

use std::collections::HashMap;

use crate::onnx_builder::{attr_float, attr_int, attr_ints, attr_string, GraphBuilder};
use crate::Error;

/// NHWC -> NCHW.
const TO_NCHW: [i64; 4] = [0, 3, 1, 2];
/// NCHW -> NHWC.
const TO_NHWC: [i64; 4] = [0, 2, 3, 1];

/// A tensor of the graph: its ONNX name and whether it is held as NCHW (its channels-last
/// meaning is then the transpose). `rank` is known for most layers-model tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub nchw: bool,
    pub rank: Option<usize>,
}

impl Value {
    /// A channels-last tensor.
    pub fn plain(name: String, rank: Option<usize>) -> Value {
        Value {
            name,
            nchw: false,
            rank,
        }
    }

    /// A 4-d tensor held as NCHW.
    pub fn nchw(name: String) -> Value {
        Value {
            name,
            nchw: true,
            rank: Some(4),
        }
    }
}

/// Convolution padding, TensorFlow style.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Padding {
    /// Output size `ceil(in / stride)`, the odd extra row/column at the bottom/right.
    Same,
    Valid,
    /// Explicit `[top, left, bottom, right]`.
    Explicit([i64; 4]),
}

impl Padding {
    fn attr(self) -> Vec<tract_onnx::pb::AttributeProto> {
        match self {
            Padding::Same => vec![attr_string("auto_pad", "SAME_UPPER")],
            Padding::Valid => vec![attr_ints("pads", &[0, 0, 0, 0])],
            Padding::Explicit(p) => vec![attr_ints("pads", &p)],
        }
    }
}

/// A 2-d convolution: kernel in TensorFlow's `[kh, kw, in/group, out]` layout (a depthwise kernel
/// `[kh, kw, in, multiplier]` is passed as `[kh, kw, 1, in * multiplier]` with `group = in`).
pub struct Conv<'a> {
    pub kernel_shape: [usize; 4],
    pub kernel: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub group: usize,
    pub padding: Padding,
}

/// Builder plus the transposes made so far (each tensor is transposed at most once).
pub struct Net {
    pub g: GraphBuilder,
    transposed: HashMap<(String, bool), String>,
}

impl Net {
    pub fn new(name: &str) -> Net {
        Net {
            g: GraphBuilder::new(name),
            transposed: HashMap::new(),
        }
    }

    /// `v` in its channels-last meaning.
    pub fn plain(&mut self, v: &Value) -> String {
        if v.nchw {
            self.transpose(&v.name, false)
        } else {
            v.name.clone()
        }
    }

    /// `v` (which must be 4-d) as NCHW.
    pub fn nchw(&mut self, v: &Value, what: &str) -> Result<String, Error> {
        if v.nchw {
            return Ok(v.name.clone());
        }
        match v.rank {
            Some(4) | None => Ok(self.transpose(&v.name, true)),
            Some(r) => Err(Error::Format(format!(
                "{what}: needs a 4-d (batch, height, width, channels) input, got rank {r}"
            ))),
        }
    }

    fn transpose(&mut self, name: &str, to_nchw: bool) -> String {
        let key = (name.to_string(), to_nchw);
        if let Some(t) = self.transposed.get(&key) {
            return t.clone();
        }
        let (suffix, perm) = if to_nchw {
            ("nchw", TO_NCHW)
        } else {
            ("nhwc", TO_NHWC)
        };
        let t = self.g.node(
            "Transpose",
            &[name],
            &format!("{name}#{suffix}"),
            vec![attr_ints("perm", &perm)],
        );
        self.transposed.insert(key, t.clone());
        t
    }

    /// Inference batch normalisation of `x` over its channels, folded into one scale and one
    /// offset per channel (`k = gamma / sqrt(var + eps)`, `y = x * k + (beta - mean * k)`, computed
    /// in f64); the output is named `name` and keeps `x`'s layout.
    pub fn batch_norm(&mut self, x: &Value, params: [&[f32]; 4], eps: f64, name: &str) -> Value {
        let [gamma, beta, mean, var] = params;
        let c = gamma.len();
        let (mut mul, mut add) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for (((&g, &b), &m), &v) in gamma.iter().zip(beta).zip(mean).zip(var) {
            let k = f64::from(g) / (f64::from(v) + eps).sqrt();
            mul.push(k as f32);
            add.push((f64::from(b) - f64::from(m) * k) as f32);
        }
        let dims = if x.nchw { vec![c, 1, 1] } else { vec![c] };
        let m = self.g.initializer_f32(&format!("{name}#mul"), &dims, &mul);
        let a = self.g.initializer_f32(&format!("{name}#add"), &dims, &add);
        let y = self
            .g
            .node("Mul", &[&x.name, &m], &format!("{name}#scale"), vec![]);
        let y = self.g.node("Add", &[&y, &a], name, vec![]);
        Value {
            name: y,
            ..x.clone()
        }
    }

    /// A convolution of NCHW input `x`, named `out`.
    pub fn conv(&mut self, x: &str, c: &Conv, out: &str) -> Result<String, Error> {
        let [kh, kw, cin, cout] = c.kernel_shape;
        let n = kh * kw * cin * cout;
        if c.kernel.len() != n || n == 0 {
            return Err(Error::Format(format!(
                "{out}: kernel has {} values for shape {:?}",
                c.kernel.len(),
                c.kernel_shape
            )));
        }
        let mut w = vec![0f32; n];
        for y in 0..kh {
            for xx in 0..kw {
                for i in 0..cin {
                    for o in 0..cout {
                        w[((o * cin + i) * kh + y) * kw + xx] =
                            c.kernel[((y * kw + xx) * cin + i) * cout + o];
                    }
                }
            }
        }
        let wname = self
            .g
            .initializer_f32(&format!("{out}#kernel"), &[cout, cin, kh, kw], &w);
        let mut inputs = vec![x.to_string(), wname];
        if let Some(b) = c.bias {
            if b.len() != cout {
                return Err(Error::Format(format!(
                    "{out}: bias has {} values for {cout} filters",
                    b.len()
                )));
            }
            inputs.push(self.g.initializer_f32(&format!("{out}#bias"), &[cout], b));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut attrs = vec![
            attr_ints("kernel_shape", &[kh as i64, kw as i64]),
            attr_ints("strides", &[c.strides[0] as i64, c.strides[1] as i64]),
            attr_ints("dilations", &[c.dilations[0] as i64, c.dilations[1] as i64]),
            attr_int("group", c.group as i64),
        ];
        attrs.extend(c.padding.attr());
        Ok(self.g.node("Conv", &refs, out, attrs))
    }

    /// ReLU6 as `Clip(x, 0, 6)`.
    pub fn clip(&mut self, x: &str, lo: f32, hi: f32, out: &str) -> String {
        let lo = self.g.initializer_f32(&format!("{out}#min"), &[], &[lo]);
        let hi = self.g.initializer_f32(&format!("{out}#max"), &[], &[hi]);
        self.g.node("Clip", &[x, &lo, &hi], out, vec![])
    }

    /// A named elementwise activation of `x` (Keras names; TF op names map onto them), called `out`.
    /// `None` for an unknown name.
    pub fn activation(&mut self, x: &str, name: &str, out: &str) -> Option<String> {
        Some(match name {
            "linear" => self.g.node("Identity", &[x], out, vec![]),
            "relu" => self.g.node("Relu", &[x], out, vec![]),
            "relu6" => self.clip(x, 0.0, 6.0, out),
            "sigmoid" => self.g.node("Sigmoid", &[x], out, vec![]),
            "tanh" => self.g.node("Tanh", &[x], out, vec![]),
            "elu" => self
                .g
                .node("Elu", &[x], out, vec![attr_float("alpha", 1.0)]),
            "selu" => self.g.node("Selu", &[x], out, vec![]),
            "softplus" => self.g.node("Softplus", &[x], out, vec![]),
            "softsign" => self.g.node("Softsign", &[x], out, vec![]),
            "hard_sigmoid" => self.g.node(
                "HardSigmoid",
                &[x],
                out,
                vec![attr_float("alpha", 0.2), attr_float("beta", 0.5)],
            ),
            "swish" | "silu" => {
                let s = self
                    .g
                    .node("Sigmoid", &[x], &format!("{out}#sigmoid"), vec![]);
                self.g.node("Mul", &[x, &s], out, vec![])
            }
            _ => return None,
        })
    }
}

/// Activation names [`Net::activation`] knows (softmax is handled by the callers: it has an axis).
pub const ACTIVATIONS: &[&str] = &[
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "hard_sigmoid",
    "swish",
    "silu",
    "softmax",
];

/// Maps a channels-last axis of a 4-d tensor to its NCHW position.
pub fn nchw_axis(axis: i64) -> Option<i64> {
    match axis {
        0 | -4 => Some(0),
        1 | -3 => Some(2),
        2 | -2 => Some(3),
        3 | -1 => Some(1),
        _ => None,
    }
}
