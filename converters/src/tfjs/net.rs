//! The ONNX graph under construction, shared by the layers and graph converters: tensors keep
//! TensorFlow's channels-last meaning, but 4-d results of convolutions and pooling stay NCHW (ONNX's
//! layout) until an op needs channels-last again, so chains of convolutions need no transposes.

use std::collections::HashMap;

use crate::onnx_builder::{attr_int, attr_ints, GraphBuilder};
use crate::tf::{self, Activation, ClipBounds, FilterLayout};
pub use crate::tf::{nchw_axis, Padding};
use crate::Error;

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
        let suffix = if to_nchw { "nchw" } else { "nhwc" };
        let t = tf::transpose(&mut self.g, name, to_nchw, &format!("{name}#{suffix}"));
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
        let [kh, kw, _, cout] = c.kernel_shape;
        let (w, dims) = tf::filter_to_oihw(c.kernel, FilterLayout::Hwio, c.kernel_shape)
            .map_err(|e| Error::Format(format!("{out}: {e}")))?;
        let wname = self.g.initializer_f32(&format!("{out}#kernel"), &dims, &w);
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
        let attrs = vec![
            attr_ints("kernel_shape", &[kh as i64, kw as i64]),
            attr_ints("strides", &[c.strides[0] as i64, c.strides[1] as i64]),
            attr_ints("dilations", &[c.dilations[0] as i64, c.dilations[1] as i64]),
            attr_int("group", c.group as i64),
            c.padding.attr(),
        ];
        Ok(self.g.node("Conv", &refs, out, attrs))
    }

    /// `Clip(x, lo, hi)` with its bounds named after `out`.
    pub fn clip(&mut self, x: &str, lo: f32, hi: f32, out: &str) -> String {
        tf::clip(&mut self.g, x, lo, hi, out, ClipBounds::PerNode)
    }

    /// `act` applied to `x`, called `out`.
    pub fn activate(&mut self, x: &str, act: Activation, out: &str) -> String {
        act.emit(&mut self.g, x, out, ClipBounds::PerNode)
    }
}
