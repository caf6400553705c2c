//! graft: transfer learning on pretrained models.

pub mod atomic;
pub mod base;
pub mod cache;
pub mod dataset;
pub mod embeddings;
pub mod error;
pub mod export;
pub mod gpu;
pub mod head;
pub mod input;
pub mod knn;
pub mod metrics;
pub mod recognizer;
pub mod tensor_file;
pub mod train;
pub mod zoo;

pub use error::{Error, Result};
pub use head::{Dense, Head};
