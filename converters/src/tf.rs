//! TensorFlow's semantics in ONNX terms, shared by the TF.js graph, TF.js layers and TFLite
//! converters: layouts (NHWC data, NCHW ONNX operators), SAME / VALID / explicit padding, filter
//! layouts (TF's HWIO, TFLite's OHWI, depthwise filters) to ONNX's OIHW, fused activations, and
//! the coordinate modes of bilinear resizes.
//!
//! The converters decide *when* a tensor changes layout or an activation is fused; this module
//! says *what* each of those means, once.

use std::collections::HashMap;

use tract_onnx::pb;

use crate::onnx_builder::{attr_float, attr_int, attr_ints, attr_string, GraphBuilder};
use crate::Error;

// ---------- layout ----------

/// `Transpose` permutation NHWC -> NCHW.
pub const TO_NCHW: [i64; 4] = [0, 3, 1, 2];
/// `Transpose` permutation NCHW -> NHWC.
pub const TO_NHWC: [i64; 4] = [0, 2, 3, 1];

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

/// A `Transpose` of `x` to NCHW (`to_nchw`) or back to NHWC, named after `out`.
pub fn transpose(g: &mut GraphBuilder, x: &str, to_nchw: bool, out: &str) -> String {
    let perm = if to_nchw { TO_NCHW } else { TO_NHWC };
    g.node("Transpose", &[x], out, vec![attr_ints("perm", &perm)])
}

/// Constant data of shape `[n, h, w, c]` (row-major, channels last) reordered to `[n, c, h, w]`.
pub fn nhwc_to_nchw<T: Copy>(v: &[T], [n, h, w, c]: [usize; 4]) -> Result<Vec<T>, Error> {
    if v.len() != n * h * w * c {
        return Err(Error::Format(format!(
            "{} values for an NHWC shape {:?}",
            v.len(),
            [n, h, w, c]
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for b in 0..n {
        for ch in 0..c {
            for row in 0..h {
                for col in 0..w {
                    out.push(v[((b * h + row) * w + col) * c + ch]);
                }
            }
        }
    }
    Ok(out)
}

// ---------- padding and windows ----------

/// Padding of a convolution or pooling window, TensorFlow style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output size `ceil(in / stride)`; the odd extra row/column of padding at the bottom/right.
    Same,
    /// No padding: the window stays inside the input.
    Valid,
    /// Explicit `[top, left, bottom, right]`.
    Explicit([i64; 4]),
}

impl Padding {
    /// The ONNX attribute for this padding: `auto_pad = SAME_UPPER` (TF's SAME) or `pads`.
    pub fn attr(self) -> pb::AttributeProto {
        match self {
            Padding::Same => attr_string("auto_pad", "SAME_UPPER"),
            Padding::Valid => attr_ints("pads", &[0, 0, 0, 0]),
            Padding::Explicit(p) => attr_ints("pads", &p),
        }
    }

    /// Output size and (begin, end) padding of one spatial axis (`axis` 0: height, 1: width) of
    /// `input` cells under a window of `kernel` cells, as TensorFlow computes them.
    pub fn window_axis(
        self,
        axis: usize,
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
    ) -> Result<(usize, usize, usize), Error> {
        let effective = kernel
            .checked_sub(1)
            .and_then(|k| k.checked_mul(dilation))
            .and_then(|k| k.checked_add(1))
            .ok_or_else(|| Error::Format(format!("kernel {kernel} with dilation {dilation}")))?;
        if stride == 0 {
            return Err(Error::Format("stride 0".into()));
        }
        let (begin, end) = match self {
            Padding::Same => {
                let out = input.div_ceil(stride);
                let needed = out
                    .saturating_sub(1)
                    .checked_mul(stride)
                    .and_then(|n| n.checked_add(effective))
                    .ok_or_else(|| Error::Format("window too large".into()))?;
                let total = needed.saturating_sub(input);
                return Ok((out, total / 2, total - total / 2));
            }
            Padding::Valid => (0, 0),
            Padding::Explicit(p) => {
                let side = |v: i64| {
                    usize::try_from(v).map_err(|_| Error::Format(format!("negative padding {p:?}")))
                };
                (side(p[axis.min(1)])?, side(p[axis.min(1) + 2])?)
            }
        };
        let padded = input + begin + end;
        let span = padded.checked_sub(effective).ok_or_else(|| {
            Error::Format(format!(
                "window of {effective} does not fit an input of {padded}"
            ))
        })?;
        Ok((span / stride + 1, begin, end))
    }
}

/// `kernel_shape`, `strides` and the padding attribute of a convolution or pool window.
pub fn window_attrs(
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
) -> Vec<pb::AttributeProto> {
    vec![
        attr_ints("kernel_shape", &[kernel[0] as i64, kernel[1] as i64]),
        attr_ints("strides", &[strides[0] as i64, strides[1] as i64]),
        padding.attr(),
    ]
}

/// The attributes of an ONNX `MaxPool` or `AveragePool` (`op`) doing a TF pool; TF's average
/// counts only the cells inside the input (`count_include_pad = 0`).
pub fn pool_attrs(
    op: &str,
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
) -> Vec<pb::AttributeProto> {
    let mut attrs = if op == "AveragePool" {
        vec![attr_int("count_include_pad", 0)]
    } else {
        vec![]
    };
    attrs.extend(window_attrs(kernel, strides, padding));
    attrs
}

// ---------- filters ----------

/// The layout of a convolution filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterLayout {
    /// TensorFlow's `[kh, kw, in / group, out]` (a depthwise `[kh, kw, in, multiplier]` is the
    /// same data as `[kh, kw, 1, in * multiplier]`; TFLite's depthwise `[1, kh, kw, out]` too).
    Hwio,
    /// TFLite's `[out, kh, kw, in / group]`.
    Ohwi,
}

/// A filter reordered to ONNX's `[out, in / group, kh, kw]`; returns it with that shape.
pub fn filter_to_oihw(
    kernel: &[f32],
    layout: FilterLayout,
    shape: [usize; 4],
) -> Result<(Vec<f32>, [usize; 4]), Error> {
    let [kh, kw, cin, cout] = match layout {
        FilterLayout::Hwio => shape,
        FilterLayout::Ohwi => [shape[1], shape[2], shape[3], shape[0]],
    };
    let n = kh * kw * cin * cout;
    if kernel.len() != n || n == 0 {
        return Err(Error::Format(format!(
            "kernel has {} values for shape {shape:?}",
            kernel.len()
        )));
    }
    let mut w = vec![0f32; n];
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..cin {
                for o in 0..cout {
                    let from = match layout {
                        FilterLayout::Hwio => ((y * kw + x) * cin + i) * cout + o,
                        FilterLayout::Ohwi => ((o * kh + y) * kw + x) * cin + i,
                    };
                    w[((o * cin + i) * kh + y) * kw + x] = kernel[from];
                }
            }
        }
    }
    Ok((w, [cout, cin, kh, kw]))
}

// ---------- activations ----------

/// An elementwise activation, as fused into TF ops (`fused_ops`), named by Keras, or fused into
/// TFLite operators (`ActivationFunctionType`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Identity (Keras "linear", TFLite NONE when a node is wanted).
    Linear,
    Relu,
    /// `min(max(x, lo), hi)`: ReLU6 is `Clip(0, 6)`, TFLite's RELU_N1_TO_1 `Clip(-1, 1)`.
    Clip(f32, f32),
    /// ELU; `Some(alpha)` is written as an attribute, `None` leaves ONNX's default (1).
    Elu(Option<f32>),
    Selu,
    Sigmoid,
    Tanh,
    LeakyRelu(f32),
    Softplus,
    Softsign,
    /// Keras' hard sigmoid, `clip(0.2 x + 0.5, 0, 1)`.
    HardSigmoid,
    /// `x * sigmoid(x)`.
    Swish,
}

/// Keras activation names and their meaning (softmax, which has an axis, is left to the callers).
const KERAS_ACTIVATIONS: &[(&str, Activation)] = &[
    ("linear", Activation::Linear),
    ("relu", Activation::Relu),
    ("relu6", Activation::RELU6),
    ("sigmoid", Activation::Sigmoid),
    ("tanh", Activation::Tanh),
    ("elu", Activation::Elu(Some(1.0))),
    ("selu", Activation::Selu),
    ("softplus", Activation::Softplus),
    ("softsign", Activation::Softsign),
    ("hard_sigmoid", Activation::HardSigmoid),
    ("swish", Activation::Swish),
    ("silu", Activation::Swish),
];

/// Where the bounds of a `Clip` come from.
pub enum ClipBounds<'a> {
    /// Fresh initializers named after the node (`{out}#min`, `{out}#max`).
    PerNode,
    /// Scalar initializers shared by value (`scalar_{v}`), cached here by bit pattern.
    Shared(&'a mut HashMap<u32, String>),
}

impl Activation {
    /// ReLU6.
    pub const RELU6: Activation = Activation::Clip(0.0, 6.0);

    /// The activation of a Keras name.
    pub fn keras(name: &str) -> Option<Activation> {
        KERAS_ACTIVATIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, a)| a)
    }

    /// Keras activation names understood (softmax included: its callers handle it).
    pub fn keras_names() -> impl Iterator<Item = &'static str> {
        KERAS_ACTIVATIONS
            .iter()
            .map(|&(n, _)| n)
            .chain(std::iter::once("softmax"))
    }

    /// The activation of a TF op name as it appears in a fused op (`fused_ops`); `leaky_alpha`
    /// is the node's `leakyrelu_alpha`.
    pub fn tf_fused(name: &str, leaky_alpha: Option<f64>) -> Option<Activation> {
        Some(match name {
            "Relu" => Activation::Relu,
            "Relu6" => Activation::RELU6,
            "Elu" => Activation::Elu(None),
            "Sigmoid" => Activation::Sigmoid,
            "Tanh" => Activation::Tanh,
            "LeakyRelu" => Activation::LeakyRelu(leaky_alpha.unwrap_or(0.2) as f32),
            _ => return None,
        })
    }

    /// Adds the activation of `x` to `g`, its output named after `out`; returns that name.
    pub fn emit(self, g: &mut GraphBuilder, x: &str, out: &str, bounds: ClipBounds) -> String {
        match self {
            Activation::Linear => g.node("Identity", &[x], out, vec![]),
            Activation::Relu => g.node("Relu", &[x], out, vec![]),
            Activation::Clip(lo, hi) => clip(g, x, lo, hi, out, bounds),
            Activation::Elu(alpha) => {
                let attrs = alpha.map(|a| attr_float("alpha", a)).into_iter().collect();
                g.node("Elu", &[x], out, attrs)
            }
            Activation::Selu => g.node("Selu", &[x], out, vec![]),
            Activation::Sigmoid => g.node("Sigmoid", &[x], out, vec![]),
            Activation::Tanh => g.node("Tanh", &[x], out, vec![]),
            Activation::LeakyRelu(alpha) => {
                g.node("LeakyRelu", &[x], out, vec![attr_float("alpha", alpha)])
            }
            Activation::Softplus => g.node("Softplus", &[x], out, vec![]),
            Activation::Softsign => g.node("Softsign", &[x], out, vec![]),
            Activation::HardSigmoid => g.node(
                "HardSigmoid",
                &[x],
                out,
                vec![attr_float("alpha", 0.2), attr_float("beta", 0.5)],
            ),
            Activation::Swish => {
                let s = g.node("Sigmoid", &[x], &format!("{out}#sigmoid"), vec![]);
                g.node("Mul", &[x, &s], out, vec![])
            }
        }
    }
}

/// `Clip(x, lo, hi)`, named after `out`.
pub fn clip(
    g: &mut GraphBuilder,
    x: &str,
    lo: f32,
    hi: f32,
    out: &str,
    bounds: ClipBounds,
) -> String {
    let (lo, hi) = match bounds {
        ClipBounds::PerNode => (
            g.initializer_f32(&format!("{out}#min"), &[], &[lo]),
            g.initializer_f32(&format!("{out}#max"), &[], &[hi]),
        ),
        ClipBounds::Shared(cache) => {
            let mut scalar = |v: f32| {
                cache
                    .entry(v.to_bits())
                    .or_insert_with(|| g.initializer_f32(&format!("scalar_{v}"), &[], &[v]))
                    .clone()
            };
            (scalar(lo), scalar(hi))
        }
    };
    g.node("Clip", &[x, &lo, &hi], out, vec![])
}

// ---------- resize ----------

/// ONNX `coordinate_transformation_mode` of a TF bilinear resize's flags; `None` when both are set
/// (TF refuses that too).
pub fn resize_mode(align_corners: bool, half_pixel_centers: bool) -> Option<&'static str> {
    match (align_corners, half_pixel_centers) {
        (false, false) => Some("asymmetric"),
        (true, false) => Some("align_corners"),
        (false, true) => Some("half_pixel"),
        (true, true) => None,
    }
}

/// The attributes of an ONNX `Resize` doing a TF bilinear resize in coordinate mode `mode`.
pub fn bilinear_attrs(mode: &str) -> Vec<pb::AttributeProto> {
    vec![
        attr_string("mode", "linear"),
        attr_string("coordinate_transformation_mode", mode),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_windows_pad_as_given() {
        // SAME and VALID: see the TFLite converter's tests.
        let explicit = Padding::Explicit([1, 2, 3, 4]);
        assert_eq!(explicit.window_axis(0, 4, 3, 1, 1).unwrap(), (6, 1, 3));
        assert_eq!(explicit.window_axis(1, 4, 3, 2, 1).unwrap(), (4, 2, 4));
    }

    #[test]
    fn filters_reach_oihw_from_either_layout() {
        // out 2, in 3, 1x2 window: value = 100 * o + 10 * i + x.
        let want: Vec<f32> = (0..2)
            .flat_map(|o| {
                (0..3).flat_map(move |i| (0..2).map(move |x| (100 * o + 10 * i + x) as f32))
            })
            .collect();
        let mut hwio = vec![];
        for x in 0..2 {
            for i in 0..3 {
                for o in 0..2 {
                    hwio.push((100 * o + 10 * i + x) as f32);
                }
            }
        }
        let mut ohwi = vec![];
        for o in 0..2 {
            for x in 0..2 {
                for i in 0..3 {
                    ohwi.push((100 * o + 10 * i + x) as f32);
                }
            }
        }
        let a = filter_to_oihw(&hwio, FilterLayout::Hwio, [1, 2, 3, 2]).unwrap();
        let b = filter_to_oihw(&ohwi, FilterLayout::Ohwi, [2, 1, 2, 3]).unwrap();
        assert_eq!(a, (want.clone(), [2, 3, 1, 2]));
        assert_eq!(b, (want, [2, 3, 1, 2]));
        assert!(filter_to_oihw(&[0.0; 5], FilterLayout::Hwio, [1, 2, 3, 2]).is_err());
    }

    #[test]
    fn layouts_and_modes() {
        let v: Vec<u32> = (0..12).collect();
        // [1, 2, 2, 3] -> [1, 3, 2, 2]
        assert_eq!(
            nhwc_to_nchw(&v, [1, 2, 2, 3]).unwrap(),
            [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
        );
        assert_eq!(nchw_axis(-1), Some(1));
        assert_eq!(nchw_axis(4), None);
        assert_eq!(resize_mode(true, true), None);
        assert_eq!(resize_mode(false, true), Some("half_pixel"));
        assert_eq!(Activation::keras("relu6"), Some(Activation::RELU6));
        assert!(Activation::keras_names().any(|n| n == "softmax"));
    }
}
