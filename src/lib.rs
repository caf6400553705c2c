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
//! Both answer "unknown" when a rule calibrated on the validation split ([`reject`]) says an
//! example is like none of their classes.
//!
//! [`task`] runs each of these flows as one call (what the `graft` command line runs), with one
//! options struct each; `doc/ARCHITECTURE.md` draws the modules and which may import which.
//!
//! ```no_run
//! use graft::base::{BaseModel, BaseOptions};
//! use graft::dataset::Dataset;
//! use graft::task::{self, CreateOptions, Silent};
//!
//! # fn main() -> graft::Result<()> {
//! let base = BaseModel::open("efficientnet-lite0", &BaseOptions::default())?;
//! let data = Dataset::from_folder("photos")?;
//! let created = task::create(&base, &data, &CreateOptions::default(), &Silent)?;
//! println!("{:?}", created.recognizer.training().and_then(|t| t.validation.as_ref()));
//! created.recognizer.save("recognizer.safetensors".as_ref())?;
//! # Ok(()) }
//! ```

pub(crate) mod atomic;
pub mod base;
pub mod cache;
pub mod dataset;
pub mod doctor;
pub mod download;
pub mod embeddings;
pub mod error;
pub mod export;
pub mod gpu;
pub mod head;
pub mod input;
pub mod knn;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod plots;
pub mod pose;
pub mod progress;
pub mod recognizer;
pub mod reject;
pub mod report;
#[cfg(feature = "serve")]
pub mod serve;
pub mod task;
pub(crate) mod tensor_file;
pub mod train;
pub mod zoo;

pub use error::{Error, Result};
pub use head::{Dense, Head};
