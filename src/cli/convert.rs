//! `graft convert`: other frameworks' files to safetensors / ONNX.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use graft::task::{self, Format};
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
    let (format, input, out) = match command {
        ConvertCommand::Torch { input, out } => (Format::Torch, input, out),
        ConvertCommand::Tfjs { input, out } => (Format::Tfjs, input, out),
        ConvertCommand::Tflite { input, out } => (Format::Tflite, input, out),
    };
    let c = task::convert(format, &input, &out)?;
    match c.tensors {
        Some(n) => ui.say(format!("wrote {n} tensors to {}", c.out.display())),
        None => ui.say(format!(
            "wrote {} ({} bytes): inputs {:?}, outputs {:?}; `graft inspect` lists cut points",
            c.out.display(),
            c.bytes,
            c.inputs,
            c.outputs
        )),
    }
    ui.finish(match c.tensors {
        Some(n) => json!({ "tensors": n, "out": c.out }),
        None => json!({ "out": c.out, "inputs": c.inputs, "outputs": c.outputs }),
    });
    Ok(())
}
