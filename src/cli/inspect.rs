//! `graft inspect`: what is inside an ONNX model, and where it can be cut.

use anyhow::Result;
use clap::Args;

use super::{AlreadyReported, Ui};

#[derive(Args)]
pub struct InspectArgs {
    /// An ONNX file, or a zoo name.
    pub model: String,
}

pub fn run(args: InspectArgs, ui: Ui) -> Result<()> {
    let inspection = graft::base::inspect(&graft::zoo::model_file(&args.model, &ui.progress())?)?;
    ui.say(inspection.to_string());
    ui.finish(serde_json::to_value(&inspection)?);
    match &inspection.problem {
        None => Ok(()),
        Some(why) => Err(AlreadyReported(format!(
            "{} cannot be used: {why}",
            inspection.path.display()
        ))
        .into()),
    }
}
