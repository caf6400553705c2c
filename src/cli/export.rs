//! `graft export`: base (cut) + head + softmax as one ONNX file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::EngineOptions;
use graft::task::Classifier;
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
    let classifier = Classifier::load(&args.recognizer, &EngineOptions::default(), &ui.progress())?;
    let r = classifier.export(&args.out)?;
    ui.say(format!(
        "wrote {}: input '{}' {:?} -> 'probabilities' [N, {}] and 'embedding' [N, {}]",
        r.onnx.display(),
        r.input,
        r.input_shape,
        r.classes,
        r.embedding_dim
    ));
    let labels = &classifier.recognizer().labels();
    ui.finish(json!({ "onnx": r.onnx, "labels": labels, "input": r.input }));
    Ok(())
}
