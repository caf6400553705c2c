//! `graft export`: base (cut) + head + softmax as one ONNX file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::BaseModel;
use graft::export::export_onnx;
use graft::recognizer::Recognizer;
use serde_json::json;

use super::Ui;

#[derive(Args)]
pub struct ExportArgs {
    /// A recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// The ONNX file to write.
    #[arg(short, long)]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs, ui: Ui) -> Result<()> {
    let recognizer = Recognizer::load(&args.recognizer)?;
    let base = BaseModel::from_ref(&recognizer.base)?;
    export_onnx(&base, &recognizer.head, &recognizer.labels, &args.out)?;
    ui.say(format!(
        "wrote {}: input '{}' {:?} -> 'probabilities' [N, {}] and 'embedding' [N, {}]",
        args.out.display(),
        base.input_name(),
        base.input_shape(),
        recognizer.labels.len(),
        base.embedding_dim()
    ));
    ui.finish(json!({ "onnx": args.out, "labels": recognizer.labels, "input": base.input_name() }));
    Ok(())
}
