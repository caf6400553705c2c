//! `graft convert`: other frameworks' files to safetensors / ONNX.

use std::path::PathBuf;

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
    }
    Ok(())
}
