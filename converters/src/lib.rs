//! graft's importers: read other frameworks' model files safely and emit ONNX.

/// A converter refused its input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not in the expected format, or is truncated or corrupt.
    #[error("{0}")]
    Format(String),
}
