//! graft: transfer learning on pretrained models, in Rust.
//!
//! The data flows one way:
//!
//! 1. **Import** a base model ([`base::BaseModel`]): an ONNX file, or a zoo model ([`zoo`]) that
//!    graft converted from another framework (`graft_converters`: PyTorch checkpoints through a
//!    restricted unpickler, ...). It is cut at its embedding and frozen.
//! 2. **Embed** each labelled example once ([`dataset::Dataset`] -> [`embeddings::Embeddings`]),
//!    through the on-disk [`cache`].
//! 3. **Train a head** ([`head::Head`]) on a seeded, stratified split with [`train::train`], on the
//!    CPU ([`head::CpuBackend`], the reference) or a GPU ([`head::GpuBackend`], wgpu kernels).
//! 4. **Evaluate, predict, save, load** the result as a [`recognizer::Recognizer`]
//!    ([`metrics::Metrics`]; one safetensors file), and **export** base + head as one ONNX file
//!    ([`export::export_onnx`]).
//! 5. Or skip training: a [`knn::Knn`] classifier over the same embeddings.
//!
//! ```no_run
//! use graft::{base::BaseModel, dataset::Dataset, embeddings::Embeddings, head::CpuBackend};
//! use graft::{recognizer::Recognizer, train::TrainOptions};
//!
//! # fn main() -> graft::Result<()> {
//! let base = BaseModel::open("efficientnet-lite0", None, None, None)?;
//! let data = Dataset::from_folder("photos")?;
//! let (embeddings, _skipped) = Embeddings::from_dataset(&base, &data, None, &|_| {})?;
//! let (train, val) = embeddings.split(0.3, 42)?;
//! let opts = TrainOptions::default();
//! let recognizer = Recognizer::train(&train, &val, &opts, &mut CpuBackend::new(), &mut |_| {})?;
//! recognizer.save("recognizer.safetensors".as_ref())?;
//! # Ok(()) }
//! ```

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
pub mod listen;
pub mod metrics;
pub mod pose;
pub mod recognizer;
pub mod tensor_file;
pub mod train;
pub mod zoo;

pub use error::{Error, Result};
pub use head::{Dense, Head};
