//! graft's importers: read other frameworks' model files safely and emit ONNX.

pub mod efficientnet_lite;
pub mod onnx_builder;
pub mod package;
pub mod speech;
pub mod tfjs;
pub mod tflite;
pub mod torch;

/// A converter refused its input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not in the expected format, or is truncated or corrupt.
    #[error("{0}")]
    Format(String),
    /// A pickle named a global outside the allow-list; nothing was executed.
    #[error("refusing global {0}: a checkpoint may only build tensors, storages and dicts")]
    UnsafeGlobal(String),
    /// The model uses layers or ops the converter cannot translate (all of them are listed).
    #[error("{0}")]
    Unsupported(String),
}
