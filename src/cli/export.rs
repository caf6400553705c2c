//! `graft export`: base (cut) + head + softmax as one ONNX file, with labels.txt and MODEL_CARD.md.

use std::path::PathBuf;

use anyhow::{Context, Result};
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
    let loaded = Classifier::load(&args.recognizer, &EngineOptions::default(), &ui.progress());
    let classifier = match args.options.smaller() {
        // The calibration and the comparison run the base itself.
        true => loaded.with_context(|| {
            format!(
                "a smaller export of {} (--quantize, --precision) needs the recognizer's base, \
                 which cannot be opened",
                args.recognizer.display()
            )
        })?,
        false => loaded?,
    };
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
    if let Some(s) = &r.smaller {
        ui.say(match (s.form, s.activations) {
            ("fp16", _) => format!("fp16: {} weight tensors stored as float16", s.weights),
            (form, 0) => format!(
                "{form}: {} convolution weights as int8 ({}); activations and the head are float",
                s.weights,
                s.weight_scales.unwrap_or("per-tensor"),
            ),
            (form, n) => format!(
                "{form}: {} convolution weights as int8 ({}), {n} activations quantised, \
                 calibrated on {} training examples; the head is float",
                s.weights,
                s.weight_scales.unwrap_or("per-tensor"),
                s.calibration_examples
            ),
        });
        if r.comparison.is_none() {
            ui.say("not compared with the float export: give --data, the training folder");
        }
    }
    if let Some(c) = &r.comparison {
        ui.say(c.to_string());
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
        "smaller": r.smaller,
        "comparison": r.comparison,
    }));
    Ok(())
}
