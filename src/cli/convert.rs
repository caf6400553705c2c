//! `graft convert`: other frameworks' files to safetensors / ONNX.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Ui;

#[derive(Subcommand)]
pub enum ConvertCommand {
    /// A PyTorch checkpoint (legacy or zip `torch.save`) to safetensors, read without running any
    /// code from the file.
    Torch {
        /// The checkpoint (.pth / .pt / .bin).
        input: PathBuf,
        /// The safetensors file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A TF.js model (layers or graph model: `model.json` with its weight shards beside it) to ONNX.
    Tfjs {
        /// The model.json file.
        input: PathBuf,
        /// The ONNX file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A TFLite model (flatbuffer) to ONNX.
    Tflite {
        /// The .tflite file.
        input: PathBuf,
        /// The ONNX file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
}

pub fn run(command: ConvertCommand, ui: Ui) -> Result<()> {
    match command {
        ConvertCommand::Torch { input, out } => {
            let state =
                graft_converters::torch::load_state_dict(&input).map_err(graft::Error::from)?;
            let bytes =
                graft_converters::torch::to_safetensors(&state).map_err(graft::Error::from)?;
            graft::atomic::write_atomic(&out, &bytes)?;
            ui.say(format!(
                "wrote {} tensors to {}",
                state.len(),
                out.display()
            ));
            ui.finish(json!({ "tensors": state.len(), "out": out }));
        }
        ConvertCommand::Tfjs { input, out } => {
            let onnx = graft_converters::tfjs::convert(&input).map_err(graft::Error::from)?;
            write_onnx(&out, &onnx, ui)?;
        }
        ConvertCommand::Tflite { input, out } => {
            let onnx = graft_converters::tflite::convert(&input).map_err(graft::Error::from)?;
            write_onnx(&out, &onnx, ui)?;
        }
    }
    Ok(())
}

/// Writes a converted model and says what it holds (`graft inspect` shows more).
fn write_onnx(out: &Path, onnx: &[u8], ui: Ui) -> Result<()> {
    graft::atomic::write_atomic(out, onnx)?;
    let info = graft::base::inspect(out)?;
    let names =
        |ts: &[graft::base::TensorInfo]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    ui.say(format!(
        "wrote {} ({} bytes): inputs {:?}, outputs {:?}; `graft inspect` lists cut points",
        out.display(),
        onnx.len(),
        names(&info.inputs),
        names(&info.outputs)
    ));
    ui.finish(
        json!({ "out": out, "inputs": names(&info.inputs), "outputs": names(&info.outputs) }),
    );
    Ok(())
}
