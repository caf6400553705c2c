//! `graft inspect`: what is inside an ONNX model, and where it can be cut.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Ui;

#[derive(Args)]
pub struct InspectArgs {
    /// An ONNX file, or a zoo name.
    pub model: String,
}

pub fn run(args: InspectArgs, ui: Ui) -> Result<()> {
    let path = match graft::zoo::manifest(&args.model) {
        Ok(m) => m.model_path(),
        Err(_) => PathBuf::from(&args.model),
    };
    let inspection = graft::base::inspect(&path)?;
    ui.say(inspection.to_string());
    ui.finish(serde_json::to_value(&inspection)?);
    Ok(())
}
