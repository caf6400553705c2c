//! The frozen base recognizer: an ONNX model cut at its feature layer, run through tract (or,
//! with the `onnxruntime` feature, ONNX Runtime).
//!
//! The cut is either a tensor (or node) the user names, or found automatically: the input of the
//! final classifier layer, above a global pooling. Everything is inference only; the base is never
//! trained.
//!
//! - [`options`](BaseOptions): which engine, where to cut, what the file leaves open;
//! - `resolve`: opening a zoo name, an ONNX file or bytes, or the base a saved model names
//!   ([`BaseModel::open`], [`BaseModel::from_bytes`], [`BaseModel::from_ref`]);
//! - [`raw`](RawSpec): raw bases (`raw:image:28x28:gray`, `raw:vector:N`), the example itself
//!   as the embedding, for heads trained from scratch;
//! - `tract` and `onnxruntime`: the two engines; `graph`: reading and cutting ONNX graphs;
//!   `pose_features`: the pose normalisation appended to a keypoint model as ONNX nodes;
//! - [`BaseRef`]: what identifies a base in saved files; [`inspect`]: what a model file holds.
//!
//! A `BaseModel` is `Send + Sync`: one loaded base serves many threads (tract plans are shared
//! behind a lock, ONNX Runtime's session runs one call at a time).

mod graph;
mod inspect;
mod onnxruntime;
mod options;
pub mod pose_features;
mod raw;
mod reference;
mod resolve;
mod tract;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayViewD};
use tract_onnx::pb;

pub(crate) use graph::{batch_value_info, prune_to};
pub use graph::{parse_onnx, FEATURES_OUTPUT};
pub use inspect::{inspect, CutCandidate, Dim, Inspection, TensorInfo};
pub use onnxruntime::{default_library, find_library, install, library_file_name, pinned};
pub use onnxruntime::{Library, Origin, Pinned, INSTALL_COMMAND, ORT_DYLIB_ENV, ORT_VERSION};
pub use options::{parse_triple, Backend, BaseOptions, EngineOptions};
pub use options::{EngineChoice, EngineReport};
pub use raw::{is_raw, RawSpec, RAW_CUT, RAW_INPUT, RAW_PREFIX, RAW_SYNTAX};
pub use reference::BaseRef;

use crate::input::{ImageSpec, InputSpec};
use crate::{Error, Result};
use onnxruntime::OrtSession;
use tract::TractPlans;

/// Runs `f` (a call into tract or ONNX Runtime), turning its error or panic into a message.
fn guard<T, E: fmt::Display>(
    what: &str,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:#}")),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: panicked ({detail})"))
        }
    }
}

/// A frozen base model cut at its embedding, run by one engine.
pub struct BaseModel {
    path: PathBuf,
    name: String,
    sha256: String,
    bytes: Vec<u8>,
    cut: String,
    input_name: String,
    input_shape: Vec<usize>,
    cut_shape: Vec<usize>,
    embedding_dim: usize,
    known_input: Vec<Option<usize>>,
    input: Option<InputSpec>,
    engine: Engine,
}

/// What runs the cut model.
enum Engine {
    /// tract plans, optimised per batch size met.
    Tract(Box<TractPlans>),
    /// An ONNX Runtime session over the cut graph (any batch size).
    Ort(OrtSession),
}

impl fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseModel")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("cut", &self.cut)
            .field("input_shape", &self.input_shape)
            .field("cut_shape", &self.cut_shape)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl BaseModel {
    /// Embeddings `[N, embedding_dim]` for a batch `[N, input_shape...]`.
    pub fn embed(&self, input: ArrayViewD<f32>) -> Result<Array2<f32>> {
        let shape = input.shape();
        if shape.len() != self.input_shape.len() + 1 || shape[1..] != self.input_shape[..] {
            return Err(Error::Invalid(format!(
                "model {} takes [N, {}], got {shape:?}",
                self.name,
                self.input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let n = shape[0];
        if n == 0 {
            return Ok(Array2::zeros((0, self.embedding_dim)));
        }
        let input = input.as_standard_layout();
        let output = match &self.engine {
            Engine::Tract(plans) => plans.run(
                input.view(),
                n,
                &|| self.model_proto(),
                &self.known_input,
                &self.cut,
            )?,
            Engine::Ort(session) => session.run(input.view())?,
        };
        if output.len() != n * self.embedding_dim {
            return Err(Error::Inference(format!(
                "embedding has shape {:?}, expected [{n}, {}]",
                output.shape(),
                self.embedding_dim
            )));
        }
        let flat: Vec<f32> = output.iter().copied().collect();
        Array2::from_shape_vec((n, self.embedding_dim), flat)
            .map_err(|e| Error::Inference(e.to_string()))
    }

    /// The engine that runs this base.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Tract(_) => Backend::Tract,
            Engine::Ort(_) => Backend::Ort,
        }
    }

    /// Size of one embedding (the cut tensor flattened).
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Shape of one input example (the dims after the batch).
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Name of the model's input tensor.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// ONNX name of the tensor the model is cut at.
    pub fn cut(&self) -> &str {
        &self.cut
    }

    /// Shape of the cut tensor after the batch (e.g. `[200, 1, 1]` before flattening).
    pub fn cut_shape(&self) -> &[usize] {
        &self.cut_shape
    }

    /// Hex sha256 of the ONNX bytes: the base's identity for caches and metadata.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where the model came from (the name given to `from_bytes`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File name of the model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How an example becomes this base's input: from the zoo manifest, or for an ONNX file whose
    /// input is `[3, H, W]` or `[H, W, 3]`, RGB images scaled by the given mean and std.
    pub fn input_spec(&self) -> Result<&InputSpec> {
        self.input.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "base {} takes {:?}, which graft cannot prepare examples for (expected an image \
                 [3, H, W] or [H, W, 3], or a zoo model)",
                self.name, self.input_shape
            ))
        })
    }

    /// The image preprocessing; an error for a base that does not take images.
    pub fn image_spec(&self) -> Result<&ImageSpec> {
        self.input_spec()?
            .image()
            .ok_or_else(|| Error::Invalid(format!("base {} does not take images", self.name)))
    }

    /// This base with `spec` as its preprocessing (for a model whose file does not say it, e.g.
    /// one graft exported, whose metadata does); `spec` must give the base's input shape.
    pub fn with_input_spec(mut self, spec: InputSpec) -> Result<BaseModel> {
        if spec.shape() != self.input_shape {
            return Err(Error::Invalid(format!(
                "preprocessing for input {:?} given to {}, which takes {:?}",
                spec.shape(),
                self.name,
                self.input_shape
            )));
        }
        self.input = Some(spec);
        Ok(self)
    }

    /// What identifies this base in recognizers, indexes and caches.
    pub fn reference(&self) -> Result<BaseRef> {
        Ok(BaseRef {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            cut: self.cut.clone(),
            embedding_dim: self.embedding_dim,
            input: self.input_spec()?.clone(),
        })
    }

    /// The decoded ONNX model, for export.
    pub fn model_proto(&self) -> Result<pb::ModelProto> {
        parse_onnx(&self.bytes, &self.path)
    }

    /// What each of `tensors` (names in the base's graph, its input among them) takes over
    /// `inputs` (prepared examples without the batch dim): its smallest and largest value and
    /// the mean of each channel, what an int8 export is calibrated with. Run by tract, whichever engine runs the base.
    pub fn tensor_statistics(
        &self,
        tensors: &[String],
        inputs: &[ndarray::ArrayD<f32>],
    ) -> Result<Vec<TensorStatistics>> {
        let inner: Vec<String> = tensors
            .iter()
            .filter(|t| **t != self.input_name)
            .cloned()
            .collect();
        let mut inner_stats =
            tract::tensor_statistics(&self.model_proto()?, &self.known_input, &inner, inputs)?
                .into_iter();
        let mut input_stats = TensorStatistics::new();
        for input in inputs {
            // A prepared example has no batch dimension: its channels are axis 0 (NCHW).
            input_stats.add(input.view(), Some(0));
        }
        tensors
            .iter()
            .map(|t| match *t == self.input_name {
                true => Ok(input_stats.clone()),
                false => inner_stats.next().ok_or_else(|| {
                    Error::Internal("fewer calibration statistics than tensors".into())
                }),
            })
            .collect()
    }
}

/// The values one tensor takes over calibration examples (see [`BaseModel::tensor_statistics`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorStatistics {
    /// The smallest value seen (`+inf` before any).
    pub lo: f32,
    /// The largest value seen (`-inf` before any).
    pub hi: f32,
    /// Per channel (axis 1 of a batched `[N, C, ...]` tensor, as ONNX convolutions read them),
    /// the sum of its values and how many there were, over every position and example.
    sums: Vec<f64>,
    counts: Vec<u64>,
}

impl Default for TensorStatistics {
    fn default() -> TensorStatistics {
        TensorStatistics::new()
    }
}

impl TensorStatistics {
    /// No values seen yet.
    pub fn new() -> TensorStatistics {
        TensorStatistics {
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
            sums: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Adds one example's values, whose channels lie along `channel_axis` (`None`: one channel).
    pub fn add(&mut self, values: ndarray::ArrayViewD<'_, f32>, channel_axis: Option<usize>) {
        for &v in values.iter() {
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
        }
        let axis = channel_axis.filter(|&a| a < values.ndim());
        let lanes: Vec<ndarray::ArrayViewD<'_, f32>> = match axis {
            Some(a) => values.axis_iter(ndarray::Axis(a)).collect(),
            None => vec![values.view()],
        };
        if self.sums.len() != lanes.len() {
            self.sums = vec![0.0; lanes.len()];
            self.counts = vec![0; lanes.len()];
        }
        for ((sum, count), lane) in self.sums.iter_mut().zip(&mut self.counts).zip(&lanes) {
            *sum += lane.iter().map(|&v| f64::from(v)).sum::<f64>();
            *count += lane.len() as u64;
        }
    }

    /// The mean of each channel over every position and example added.
    pub fn channel_means(&self) -> Vec<f64> {
        self.sums
            .iter()
            .zip(&self.counts)
            .map(|(s, &c)| s / c.max(1) as f64)
            .collect()
    }
}
