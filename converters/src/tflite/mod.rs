//! TFLite flatbuffers (`.tflite`) to ONNX.
//!
//! The file is read with graft's own bounds-checked FlatBuffers reader ([`flatbuffer`]) and a
//! hand-written accessor layer for the parts of the TFLite schema it needs ([`schema`]): no
//! generated code and no extra dependency, and every offset is checked, so corrupt or hostile
//! files give an error, never a panic. [`graph`] translates the main subgraph; see there for the
//! layout handling. Supported operators: [`graph::supported_ops`] (enough for the BlazePose landmark
//! models); a model using others is refused with one error listing each with its count.

pub mod flatbuffer;
pub mod graph;
pub mod schema;

use std::path::Path;

use tract_onnx::pb;

use crate::Error;

/// Converter id in zoo manifests.
pub const CONVERTER_ID: &str = "tflite";

/// Converts the `.tflite` file at `path` to ONNX bytes (opset 13): inputs and outputs keep their
/// TFLite names, shapes and (NHWC) layouts.
pub fn convert(path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = crate::limits::read_model(path)?;
    convert_bytes(&bytes).map_err(|e| match e {
        Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Converts a TFLite model held in memory to ONNX bytes.
pub fn convert_bytes(tflite: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(crate::onnx_builder::encode(&to_onnx(tflite)?))
}

/// Converts a TFLite model held in memory to an ONNX model.
pub fn to_onnx(tflite: &[u8]) -> Result<pb::ModelProto, Error> {
    graph::build(&schema::read(tflite)?)
}
