//! `graft export`: base (cut) + head + softmax as one ONNX file, with labels.txt and MODEL_CARD.md.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::EngineOptions;
use graft::task::{Classifier, ExportOptions};
use serde_json::json;

use super::Ui;

#[derive(Args)]
pub struct ExportArgs {
    /// A recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// The ONNX file to write (labels.txt and MODEL_CARD.md are written beside it).
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub options: ExportOptions,
}

pub fn run(args: ExportArgs, ui: Ui) -> Result<()> {
    let classifier = Classifier::load(&args.recognizer, &EngineOptions::default(), &ui.progress())?;
    let r = classifier.export(&args.out, &args.options)?;
    let dims: Vec<String> = r
        .input_dims
        .iter()
        .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string))
        .collect();
    ui.say(format!(
        "wrote {} (opset {}): input '{}' {} [{}] -> 'probabilities' [N, {}], 'label' [N] and \
         'embedding' [N, {}]; {} and {} beside it",
        r.onnx.display(),
        r.opset,
        r.input,
        r.input_type,
        dims.join(", "),
        r.classes,
        r.embedding_dim,
        r.labels.display(),
        r.model_card.display()
    ));
    if let Some(rule) = classifier.recognizer().unknown_rule() {
        ui.say(format!(
            "and 'score' [N], 'unknown' [N] (true when score < {} by {})",
            rule.threshold,
            rule.kind.name()
        ));
    }
    if let Some(why) = &r.tensor_because {
        ui.say(format!("it takes the prepared tensor, not images: {why}"));
    }
    let labels = &classifier.recognizer().labels();
    ui.finish(json!({
        "onnx": r.onnx,
        "labels": labels,
        "input": r.input,
        "input_form": r.form,
        "input_type": r.input_type,
        "input_dims": r.input_dims,
        "opset": r.opset,
        "labels_file": r.labels,
        "model_card": r.model_card,
        "unknown": classifier.recognizer().unknown_rule(),
    }));
    Ok(())
}
