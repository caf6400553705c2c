//! EfficientNet-Lite as ONNX, built from a PyTorch state dict (the `efficientnet_pytorch` key layout:
//! `_conv_stem`, `_bn0`, `_blocks.<i>.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`,
//! `_conv_head`, `_bn1`, `_fc`).
//!
//! The network is a MobileNetV2-style stack: a 3x3 stride-2 stem, inverted-residual blocks (optional
//! 1x1 expansion, depthwise kxk, 1x1 projection, identity skip when shape is kept), a 1x1 head conv,
//! global average pooling and a fully connected classifier. Every activation is ReLU6 (`Clip(0, 6)`);
//! there is no squeeze-excite. BatchNorm (epsilon 1e-3) is folded into the preceding convolution.
//! Padding is TensorFlow's "SAME" (the weights come from Google's TF checkpoints): for stride 2 the
//! extra row/column goes to the bottom/right, computed for the fixed input size.

use tract_onnx::pb;

use crate::onnx_builder::{attr_int, attr_ints, Dim, GraphBuilder};
use crate::torch::StateDict;
use crate::Error;

/// Name of the image input, float32 `[N, 3, 224, 224]`, RGB, `(pixel - 127) / 128`.
pub const INPUT: &str = "input";
/// Name of the embedding output, `[N, 1280]`: the globally average-pooled head features.
pub const FEATURES: &str = "features";
/// Name of the classifier output, `[N, classes]` (ImageNet-1k: 1000).
pub const LOGITS: &str = "logits";
/// Input height and width.
pub const IMAGE_SIZE: usize = 224;

/// BatchNorm epsilon of the TF EfficientNet-Lite checkpoints.
const BN_EPS: f64 = 1e-3;
/// Stride of the first block of each of the seven stages (the architecture's definition; the
/// state dict does not record strides). Blocks after the first in a stage have stride 1.
const STAGE_STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("EfficientNet-Lite state dict: {}", msg.into()))
}

/// One inverted-residual block as found in the state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Whether the block starts with a 1x1 expansion conv (all but the first block).
    pub expand: bool,
    pub in_channels: usize,
    /// Channels of the depthwise conv (after expansion).
    pub mid_channels: usize,
    pub out_channels: usize,
    /// Depthwise kernel size (3 or 5).
    pub kernel: usize,
    /// Depthwise stride (1 or 2).
    pub stride: usize,
}

/// Reads the block structure from the state dict's shapes. A stage is a run of blocks with the same
/// output width; its first block takes the stage's stride from the architecture's table.
pub fn blocks(sd: &StateDict) -> Result<Vec<Block>, Error> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut stage = 0;
    for i in 0.. {
        let p = format!("_blocks.{i}");
        let Some(dw) = sd.get(&format!("{p}._depthwise_conv.weight")) else {
            break;
        };
        let [mid, 1, k, k2] = dw.shape[..] else {
            return Err(bad(format!(
                "{p}: depthwise weight has shape {:?}",
                dw.shape
            )));
        };
        if k != k2 || k % 2 == 0 {
            return Err(bad(format!(
                "{p}: depthwise kernel {k}x{k2} is not square and odd"
            )));
        }
        let expand = sd.get(&format!("{p}._expand_conv.weight"));
        let in_channels = match expand {
            Some(w) => match w.shape[..] {
                [m, c, 1, 1] if m == mid => c,
                _ => return Err(bad(format!("{p}: expand weight has shape {:?}", w.shape))),
            },
            None => mid,
        };
        let proj = sd.require(&format!("{p}._project_conv.weight"))?;
        let out_channels = match proj.shape[..] {
            [o, m, 1, 1] if m == mid => o,
            _ => {
                return Err(bad(format!(
                    "{p}: project weight has shape {:?}",
                    proj.shape
                )))
            }
        };
        let first_of_stage = match blocks.last() {
            None => true,
            Some(prev) => {
                if prev.out_channels != in_channels {
                    return Err(bad(format!(
                        "{p}: takes {in_channels} channels, previous block gives {}",
                        prev.out_channels
                    )));
                }
                prev.out_channels != out_channels
            }
        };
        if first_of_stage && !blocks.is_empty() {
            stage += 1;
        }
        let stride = *STAGE_STRIDES
            .get(stage)
            .ok_or_else(|| bad("more than seven stages"))?;
        blocks.push(Block {
            expand: expand.is_some(),
            in_channels,
            mid_channels: mid,
            out_channels,
            kernel: k,
            stride: if first_of_stage { stride } else { 1 },
        });
    }
    if blocks.is_empty() {
        return Err(bad(
            "no _blocks.0._depthwise_conv.weight: not an EfficientNet-Lite state dict",
        ));
    }
    if stage + 1 != STAGE_STRIDES.len() {
        return Err(bad(format!(
            "found {} stages, EfficientNet-Lite has 7",
            stage + 1
        )));
    }
    Ok(blocks)
}

/// Builds the ONNX model (opset 13, batch dimension "N") with outputs [`FEATURES`] and [`LOGITS`].
pub fn build(sd: &StateDict) -> Result<pb::ModelProto, Error> {
    let blocks = blocks(sd)?;
    let mut b = Net {
        g: GraphBuilder::new("efficientnet_lite"),
        sd,
        relu6: None,
    };
    let batch = Dim::Symbolic("N".into());
    let x = b.g.input_f32(
        INPUT,
        &[
            batch.clone(),
            Dim::Fixed(3),
            Dim::Fixed(IMAGE_SIZE as i64),
            Dim::Fixed(IMAGE_SIZE as i64),
        ],
    );
    let (mut x, mut size) = b.conv_bn("_conv_stem", "_bn0", &x, 2, 1, IMAGE_SIZE, "stem")?;
    x = b.relu6(&x, "stem_relu6");
    for (i, blk) in blocks.iter().enumerate() {
        let p = format!("_blocks.{i}");
        let input = x.clone();
        if blk.expand {
            (x, _) = b.conv_bn(
                &format!("{p}._expand_conv"),
                &format!("{p}._bn0"),
                &x,
                1,
                1,
                size,
                &format!("block{i}_expand"),
            )?;
            x = b.relu6(&x, &format!("block{i}_expand_relu6"));
        }
        (x, size) = b.conv_bn(
            &format!("{p}._depthwise_conv"),
            &format!("{p}._bn1"),
            &x,
            blk.stride,
            blk.mid_channels,
            size,
            &format!("block{i}_depthwise"),
        )?;
        x = b.relu6(&x, &format!("block{i}_depthwise_relu6"));
        (x, _) = b.conv_bn(
            &format!("{p}._project_conv"),
            &format!("{p}._bn2"),
            &x,
            1,
            1,
            size,
            &format!("block{i}_project"),
        )?;
        if blk.stride == 1 && blk.in_channels == blk.out_channels {
            x =
                b.g.node("Add", &[&x, &input], &format!("block{i}_add"), vec![]);
        }
    }
    (x, _) = b.conv_bn("_conv_head", "_bn1", &x, 1, 1, size, "head")?;
    x = b.relu6(&x, "head_relu6");
    let pooled = b.g.node("GlobalAveragePool", &[&x], "pool", vec![]);
    let features =
        b.g.node("Flatten", &[&pooled], FEATURES, vec![attr_int("axis", 1)]);
    let fc_w = sd.require("_fc.weight")?;
    let fc_b = sd.require("_fc.bias")?;
    let [classes, width] = fc_w.shape[..] else {
        return Err(bad(format!("_fc.weight has shape {:?}", fc_w.shape)));
    };
    if fc_b.shape != [classes] {
        return Err(bad(format!("_fc.bias has shape {:?}", fc_b.shape)));
    }
    let w =
        b.g.initializer_f32("fc.weight", &fc_w.shape, &fc_w.to_f32()?);
    let bias = b.g.initializer_f32("fc.bias", &fc_b.shape, &fc_b.to_f32()?);
    let logits = b.g.node(
        "Gemm",
        &[&features, &w, &bias],
        LOGITS,
        vec![attr_int("transB", 1)],
    );
    b.g.output_f32(&features, &[batch.clone(), Dim::Fixed(width as i64)]);
    b.g.output_f32(&logits, &[batch, Dim::Fixed(classes as i64)]);
    Ok(b.g.finish(
        "graft torch-efficientnet-lite",
        "EfficientNet-Lite converted by graft from a PyTorch state dict (BatchNorm folded, TF SAME padding)",
    ))
}

/// Graph under construction plus the weights it reads.
struct Net<'a> {
    g: GraphBuilder,
    sd: &'a StateDict,
    /// Names of the shared Clip bounds, once created.
    relu6: Option<(String, String)>,
}

impl Net<'_> {
    fn relu6(&mut self, x: &str, name: &str) -> String {
        let (lo, hi) = self.relu6.get_or_insert_with(|| {
            (
                self.g.initializer_f32("relu6_min", &[], &[0.0]),
                self.g.initializer_f32("relu6_max", &[], &[6.0]),
            )
        });
        let (lo, hi) = (lo.clone(), hi.clone());
        self.g.node("Clip", &[x, &lo, &hi], name, vec![])
    }

    /// Conv (no bias in the checkpoint) followed by BatchNorm, folded into one Conv with TF SAME
    /// padding. Returns the output name and its spatial size.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        x: &str,
        stride: usize,
        group: usize,
        size: usize,
        name: &str,
    ) -> Result<(String, usize), Error> {
        let w = self.sd.require(&format!("{conv}.weight"))?;
        let [out_ch, _, k, k2] = w.shape[..] else {
            return Err(bad(format!("{conv}.weight has shape {:?}", w.shape)));
        };
        if k != k2 {
            return Err(bad(format!("{conv}.weight is not square")));
        }
        let param = |p: &str| -> Result<Vec<f32>, Error> {
            let t = self.sd.require(&format!("{bn}.{p}"))?;
            if t.shape != [out_ch] {
                return Err(bad(format!(
                    "{bn}.{p} has shape {:?}, expected [{out_ch}]",
                    t.shape
                )));
            }
            t.to_f32()
        };
        let (gamma, beta, mean, var) = (
            param("weight")?,
            param("bias")?,
            param("running_mean")?,
            param("running_var")?,
        );
        let mut weight = w.to_f32()?;
        let per_out = weight.len() / out_ch;
        let mut bias = Vec::with_capacity(out_ch);
        for o in 0..out_ch {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + BN_EPS).sqrt();
            for v in &mut weight[o * per_out..(o + 1) * per_out] {
                *v = (f64::from(*v) * scale) as f32;
            }
            bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
        }
        let wname = self
            .g
            .initializer_f32(&format!("{name}.weight"), &w.shape, &weight);
        let bname = self
            .g
            .initializer_f32(&format!("{name}.bias"), &[out_ch], &bias);
        let out_size = size.div_ceil(stride);
        let pad = ((out_size - 1) * stride + k).saturating_sub(size);
        let (begin, end) = (pad / 2, pad - pad / 2);
        let (begin, end) = (begin as i64, end as i64);
        let y = self.g.node(
            "Conv",
            &[x, &wname, &bname],
            name,
            vec![
                attr_ints("kernel_shape", &[k as i64, k as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("pads", &[begin, begin, end, end]),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", group as i64),
            ],
        );
        Ok((y, out_size))
    }
}

/// Converts a state dict to ONNX bytes.
pub fn to_onnx(sd: &StateDict) -> Result<Vec<u8>, Error> {
    Ok(crate::onnx_builder::encode(&build(sd)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torch::{DType, Tensor};

    fn f32_tensor(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor {
            dtype: DType::F32,
            shape: shape.to_vec(),
            data: vec![0; n * 4],
        }
    }

    #[test]
    fn other_state_dicts_are_clear_errors() {
        let mut sd = StateDict::default();
        sd.insert("fc.weight".into(), f32_tensor(&[10, 4]));
        let err = build(&sd).unwrap_err().to_string();
        assert!(err.contains("not an EfficientNet-Lite"), "{err}");
        // One stage only.
        sd.insert(
            "_blocks.0._depthwise_conv.weight".into(),
            f32_tensor(&[8, 1, 3, 3]),
        );
        sd.insert(
            "_blocks.0._project_conv.weight".into(),
            f32_tensor(&[4, 8, 1, 1]),
        );
        let err = build(&sd).unwrap_err().to_string();
        assert!(err.contains("found 1 stages"), "{err}");
        // A depthwise kernel of the wrong rank.
        sd.insert(
            "_blocks.0._depthwise_conv.weight".into(),
            f32_tensor(&[8, 3, 3]),
        );
        let err = build(&sd).unwrap_err().to_string();
        assert!(
            err.contains("_blocks.0: depthwise weight has shape [8, 3, 3]"),
            "{err}"
        );
    }
}
