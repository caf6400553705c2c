//! The library's one error type: each variant says what the user can fix.

use std::path::PathBuf;

/// Everything that can go wrong in graft, phrased for the person who can fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A model file is missing, corrupt, truncated or uses something graft cannot run.
    #[error("model {}: {msg}", path.display())]
    Model { path: PathBuf, msg: String },
    /// An input example (image, audio) cannot be used.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },
    /// The labelled data set cannot be used as it is (empty class, one class only, ...).
    #[error("dataset: {0}")]
    Dataset(String),
    /// A saved recognizer or KNN index is corrupt or does not match what it is used with.
    #[error("recognizer {}: {msg}", path.display())]
    Recognizer { path: PathBuf, msg: String },
    /// An argument or option is out of range or inconsistent (e.g. mismatched embedding sizes).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Something made with one base model (a recognizer, an index, embeddings) meets another.
    #[error("base mismatch: {0}")]
    BaseMismatch(String),
    /// The base model failed while running.
    #[error("inference: {0}")]
    Inference(String),
    /// The GPU could not be used.
    #[error("gpu: {0}")]
    Gpu(String),
    /// A converter (PyTorch, TF.js, TFLite reader) refused its input.
    #[error(transparent)]
    Convert(#[from] graft_converters::Error),
    /// A zoo manifest is wrong, or a zoo model cannot be obtained.
    #[error("zoo: {0}")]
    Zoo(String),
    /// A download failed, did not match its published hash, or is forbidden (`GRAFT_OFFLINE`).
    #[error("download: {0}")]
    Download(String),
    /// A bug in graft: a state its own checks should have made impossible. Please report it.
    #[error("internal error (a bug in graft, please report it): {0}")]
    Internal(String),
}

/// Short for `std::result::Result<T, graft::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error that names the path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
