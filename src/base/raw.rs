//! Raw bases: no pretrained model, the example itself is the embedding, so that a head is
//! trained from scratch on pixels or numbers.
//!
//! A raw base is named by a spec instead of a zoo name or a file:
//!
//! | spec | an example is | embedding |
//! |---|---|---|
//! | `raw:image:WxH` | a PNG or JPEG, resized (bilinear, antialiased, no crop) to W x H, RGB | 3·W·H numbers: the pixels row by row, each pixel's R, G, B, in 0..1 |
//! | `raw:image:WxH:gray` | the same in grey (BT.601 luma; `:grey` too, `:rgb` the default) | W·H numbers in 0..1 |
//! | `raw:vector:N` | an `.npy` array or numbers as CSV text ([`crate::input::vector`]) | the N numbers as they are |
//!
//! The base is a one-node ONNX graph that graft writes itself: `input` (the prepared example,
//! `[N, H, W, C]` or `[N, length]`) through `Flatten` to [`RAW_CUT`]. Its bytes depend on the
//! spec alone, so their sha256 identifies the base in recognizers and caches as a model file's
//! does, and an export is that graph followed by the head (for images with the image-in front:
//! resize, grey, scale, flatten, head, all in the one ONNX file). Its engine is tract unless ONNX
//! Runtime is asked for by name: `auto` never fetches a runtime to flatten a tensor. A raw base
//! has its own preprocessing and cut: `mean`, `std` and a different `cut` are refused; training's
//! standardisation ([`crate::train::TrainOptions::standardize`]) centres and scales the inputs.

use prost::Message;
use tract_onnx::pb;

use super::graph::batch_value_info;
use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout, VectorSpec};
use crate::{Error, Result};

/// What every raw base's name starts with.
pub const RAW_PREFIX: &str = "raw:";

/// The forms a raw spec takes, for messages and help.
pub const RAW_SYNTAX: &str = "raw:image:WxH (RGB), raw:image:WxH:gray or raw:vector:N";

/// The input tensor of a raw base's graph.
pub const RAW_INPUT: &str = "input";

/// The tensor a raw base is cut at: its input flattened to `[N, embedding_dim]`.
pub const RAW_CUT: &str = "raw_flattened";

/// Whether `name` names a raw base (starts with [`RAW_PREFIX`]).
pub fn is_raw(name: &str) -> bool {
    name.starts_with(RAW_PREFIX)
}

/// A raw spec read: its canonical name (`raw:image:28x28:gray`, `raw:image:32x32`,
/// `raw:vector:784`) and how an example becomes its input.
#[derive(Clone, Debug, PartialEq)]
pub struct RawSpec {
    pub name: String,
    pub input: InputSpec,
}

impl RawSpec {
    /// Reads a spec of the forms in [`RAW_SYNTAX`]; anything else is an [`Error::Invalid`] that
    /// shows them.
    pub fn parse(spec: &str) -> Result<RawSpec> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "'{spec}' is not a raw base ({why}): give {RAW_SYNTAX}, e.g. raw:image:28x28:gray"
            ))
        };
        let rest = spec
            .strip_prefix(RAW_PREFIX)
            .ok_or_else(|| bad("no raw: prefix"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let spec = match parts[..] {
            ["image", size] => image(size, ChannelOrder::Rgb).map_err(|w| bad(&w))?,
            ["image", size, colour] => {
                let channels = match colour.to_ascii_lowercase().as_str() {
                    "rgb" => ChannelOrder::Rgb,
                    "gray" | "grey" => ChannelOrder::Gray,
                    other => return Err(bad(&format!("colour '{other}': give rgb or gray"))),
                };
                image(size, channels).map_err(|w| bad(&w))?
            }
            ["vector", n] => {
                let length = positive(n).map_err(|w| bad(&w))?;
                RawSpec {
                    name: format!("{RAW_PREFIX}vector:{length}"),
                    input: InputSpec::Vector(VectorSpec { length }),
                }
            }
            ["image"] => return Err(bad("no size")),
            ["vector"] => return Err(bad("no length")),
            [kind, ..] if kind != "image" && kind != "vector" => {
                return Err(bad(&format!("unknown kind '{kind}'")))
            }
            _ => return Err(bad("too many parts")),
        };
        spec.input.check().map_err(|w| bad(&w))?;
        Ok(spec)
    }

    /// The base's ONNX graph: [`RAW_INPUT`] `[N, shape...]` flattened to [`RAW_CUT`]. The same
    /// bytes for the same spec, in every graft version (nothing version-dependent is written).
    pub fn graph_bytes(&self) -> Vec<u8> {
        let shape = self.input.shape();
        let dim: usize = shape.iter().product();
        let graph = pb::GraphProto {
            name: self.name.clone(),
            node: vec![pb::NodeProto {
                name: "flatten".into(),
                op_type: "Flatten".into(),
                input: vec![RAW_INPUT.into()],
                output: vec![RAW_CUT.into()],
                attribute: vec![graft_converters::onnx_builder::attr_int("axis", 1)],
                ..Default::default()
            }],
            input: vec![batch_value_info(RAW_INPUT, &shape)],
            output: vec![batch_value_info(RAW_CUT, &[dim])],
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "graft raw base".into(),
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// `raw:image:<size>` with `channels`.
fn image(size: &str, channels: ChannelOrder) -> std::result::Result<RawSpec, String> {
    let (w, h) = size
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size '{size}': give WIDTHxHEIGHT, e.g. 28x28"))?;
    let (width, height) = (positive(w)?, positive(h)?);
    let (width, height) = (
        u32::try_from(width).map_err(|_| format!("width {width} is too large"))?,
        u32::try_from(height).map_err(|_| format!("height {height} is too large"))?,
    );
    let colour = match channels {
        ChannelOrder::Gray => ":gray",
        _ => "",
    };
    Ok(RawSpec {
        name: format!("{RAW_PREFIX}image:{width}x{height}{colour}"),
        input: InputSpec::Image(ImageSpec {
            width,
            height,
            layout: Layout::Nhwc,
            channels,
            mean: [0.0; 3],
            std: [255.0; 3],
            center_crop: None,
            letterbox: false,
        }),
    })
}

/// A whole number of at least 1.
fn positive(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::sha256_hex;

    #[test]
    fn specs_read_to_their_canonical_names_and_inputs() {
        let gray = RawSpec::parse("raw:image:28x28:grey").unwrap();
        assert_eq!(gray.name, "raw:image:28x28:gray");
        assert_eq!(gray.input.shape(), [28, 28, 1]);
        let rgb = RawSpec::parse("raw:image:32X16:RGB").unwrap();
        assert_eq!(rgb.name, "raw:image:32x16");
        assert_eq!(rgb.input.shape(), [16, 32, 3]);
        let v = RawSpec::parse("raw:vector:784").unwrap();
        assert_eq!(v.name, "raw:vector:784");
        assert_eq!(v.input, InputSpec::Vector(VectorSpec { length: 784 }));
    }

    #[test]
    fn bad_specs_say_what_is_wrong_and_show_the_syntax() {
        for (spec, want) in [
            ("raw:", "unknown kind ''"),
            ("raw:csv", "unknown kind 'csv'"),
            ("raw:image", "no size"),
            ("raw:vector", "no length"),
            ("raw:image:28", "give WIDTHxHEIGHT"),
            ("raw:image:0x28", "'0' is not a whole number"),
            ("raw:image:28x28:blue", "colour 'blue'"),
            ("raw:image:28x28:gray:x", "too many parts"),
            ("raw:vector:-3", "'-3' is not a whole number"),
            ("raw:vector:999999999999", "more than the limit"),
            ("raw:image:99999x99999", "more than the limit"),
            ("image:28x28", "no raw: prefix"),
        ] {
            let err = RawSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
            assert!(err.contains(RAW_SYNTAX), "{spec}: {err}");
        }
    }

    #[test]
    fn the_graph_is_the_same_bytes_for_the_same_spec() {
        // Saved recognizers name their base by this sha256: it must never change.
        let spec = RawSpec::parse("raw:vector:3").unwrap();
        assert_eq!(spec.graph_bytes(), spec.graph_bytes());
        assert_eq!(
            sha256_hex(&spec.graph_bytes()),
            "570304a0f5541ed3f5562bacdc05ccb0d40b7d260b2607bbc1bc94b9e9845892"
        );
    }
}
