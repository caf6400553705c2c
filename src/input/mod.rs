//! Turning an example (image, audio, ...) into the tensor a base model takes, as its manifest says.

use serde::{Deserialize, Serialize};

pub mod image;

/// Memory layout of an image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Layout {
    /// `[batch, channels, height, width]` (PyTorch, most ONNX exports).
    Nchw,
    /// `[batch, height, width, channels]` (TensorFlow, TF.js, TFLite).
    Nhwc,
}

/// Order of the colour channels in the tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// How an image becomes the base model's input tensor: decode, composite alpha on white, optional
/// centre crop, resize (bilinear) to `width` x `height`, then `(pixel - mean) / std` per channel with
/// pixels in 0..=255.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub channels: ChannelOrder,
    /// Per-channel mean, in the tensor's channel order, on the 0..=255 scale.
    pub mean: [f32; 3],
    /// Per-channel divisor, on the 0..=255 scale.
    pub std: [f32; 3],
    /// Fraction of the shorter side kept by a centre crop before resizing (e.g. 0.875); none: no crop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_crop: Option<f32>,
}
