//! Converting another framework's model file (`graft convert`): PyTorch checkpoints to
//! safetensors; TF.js, TensorFlow and TFLite models to ONNX.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::atomic::{refuse_same_file, write_atomic};
use crate::base::inspect;
use crate::Result;

use graft_converters::onnx_builder::unpack_repeated;
pub use graft_converters::supported_ops;

/// What `graft convert` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A PyTorch checkpoint (legacy or zip `torch.save`), read without running any code from it;
    /// written as safetensors.
    Torch,
    /// A TF.js layers or graph model (`model.json` with its weight shards); written as ONNX.
    Tfjs,
    /// A TensorFlow 1 frozen GraphDef (`.pb`); written as ONNX.
    Tf,
    /// A TFLite flatbuffer; written as ONNX.
    Tflite,
}

/// How `graft convert` converts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// TensorFlow graphs: the tensors to keep as outputs (`node` or `node:k`), with everything
    /// they need and nothing else. Default: empty, every tensor that nothing consumes. Other
    /// formats name their outputs in the file and refuse this.
    pub outputs: Vec<String>,
}

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Converted {
    pub out: PathBuf,
    pub bytes: usize,
    /// For a checkpoint: the tensors written.
    pub tensors: Option<usize>,
    /// For an ONNX model: its inputs and outputs.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// Converts `input` (of `format`) and writes the result to `out` atomically; `out` may not be
/// `input` itself.
pub fn convert(
    format: Format,
    input: &Path,
    out: &Path,
    options: &ConvertOptions,
) -> Result<Converted> {
    refuse_same_file(input, out)?;
    if !options.outputs.is_empty() && format != Format::Tf {
        return Err(crate::Error::Invalid(
            "only TensorFlow graphs take a list of outputs; the other formats name theirs".into(),
        ));
    }
    let (bytes, tensors) = match format {
        Format::Torch => {
            let state = graft_converters::torch::load_state_dict(input)?;
            (
                graft_converters::torch::to_safetensors(&state)?,
                Some(state.len()),
            )
        }
        // Written as the reference `onnx` package writes models (repeated ints unpacked).
        Format::Tfjs => (
            unpack_repeated(&graft_converters::tfjs::convert(input)?)?,
            None,
        ),
        Format::Tf => (
            unpack_repeated(&graft_converters::tensorflow::convert_frozen(
                input,
                &options.outputs,
            )?)?,
            None,
        ),
        Format::Tflite => (
            unpack_repeated(&graft_converters::tflite::convert(input)?)?,
            None,
        ),
    };
    write_atomic(out, &bytes)?;
    let (inputs, outputs) = match format {
        Format::Torch => (Vec::new(), Vec::new()),
        Format::Tfjs | Format::Tf | Format::Tflite => {
            let info = inspect(out)?;
            let names =
                |ts: &[crate::base::TensorInfo]| ts.iter().map(|t| t.name.clone()).collect();
            (names(&info.inputs), names(&info.outputs))
        }
    };
    Ok(Converted {
        out: out.to_path_buf(),
        bytes: bytes.len(),
        tensors,
        inputs,
        outputs,
    })
}
