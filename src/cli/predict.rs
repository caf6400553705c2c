//! `graft predict` and `graft eval`: use a saved recognizer on files or on a labelled folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::EngineOptions;
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::task::{Classifier, FileAnswer, Predictor, PLOT_FORMATS};
use serde_json::{json, Value};

use super::train::say_embedded;
use super::{AlreadyReported, Ui};

#[derive(Args)]
pub struct PredictArgs {
    /// A recognizer written by `graft train`, a KNN index written by `graft knn build` (it
    /// answers by its 3 nearest examples' votes), an ONNX file written by `graft export` (its
    /// metadata gives the labels and the input), or a Teachable Machine image export folder
    /// (`model.json`, its weights and `metadata.json`).
    pub recognizer: PathBuf,
    /// Files to classify (images, or WAVs for a speech recognizer): files, folders (their files,
    /// sub-folders included, hidden ones skipped) or `-` (one file read from standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// How many classes to show per file.
    #[arg(short = 'k', long, default_value_t = 3)]
    pub top_k: usize,
    #[command(flatten)]
    pub cache: CacheOptions,
    #[command(flatten)]
    pub engine: EngineOptions,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// Folder with one sub-folder of examples per class (class names as in training).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder of examples of nothing the recognizer knows (files at any depth): report the share
    /// its "unknown" rule rejects.
    #[arg(long, value_name = "DIR")]
    pub unknown_data: Option<PathBuf>,
    /// Folder to write plots to, as SVG and PNG: the recognizer's training curves, and on this
    /// folder the confusion matrix, per-class precision and recall and the embedding map
    /// (mistakes circled).
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheOptions,
    #[command(flatten)]
    pub engine: EngineOptions,
}

pub fn run(args: PredictArgs, ui: Ui) -> Result<()> {
    let predictor = Predictor::load(&args.recognizer, &args.engine, &ui.progress())?;
    let answers = predictor.predict_inputs(
        &args.files,
        &mut std::io::stdin().lock(),
        args.top_k,
        &args.cache,
        &ui.progress(),
    )?;
    report_answers(answers, ui, |p| {
        let top: Vec<String> = p.top.iter().map(|(l, q)| format!("{l} {q:.3}")).collect();
        let answer = match p.unknown {
            true => format!("unknown (closest: {})", p.label),
            false => p.label.clone(),
        };
        let line = format!("{answer}  ({})", top.join(", "));
        (
            line,
            json!({
                "label": p.label,
                "probability": p.probability,
                "top": p.top,
                "unknown": p.unknown,
            }),
        )
    })
}

/// Prints each file's answer (a line for people, a JSON value); files that failed are reported in
/// place and make the command fail after the others are printed.
pub fn report_answers<T>(
    answers: Vec<FileAnswer<T>>,
    ui: Ui,
    show: impl Fn(&T) -> (String, Value),
) -> Result<()> {
    let total = answers.len();
    let mut out = Vec::with_capacity(total);
    let mut failed = 0;
    for FileAnswer { file, answer } in answers {
        match answer {
            Ok(answer) => {
                let (line, mut value) = show(&answer);
                ui.say(format!("{}: {line}", file.display()));
                value["file"] = json!(file);
                out.push(value);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                out.push(json!({ "file": file, "error": e.to_string() }));
            }
        }
    }
    ui.finish(json!({ "predictions": out }));
    if failed > 0 {
        return Err(AlreadyReported(format!(
            "{failed} of {total} file(s) could not be classified"
        ))
        .into());
    }
    Ok(())
}

pub fn eval(args: EvalArgs, ui: Ui) -> Result<()> {
    let classifier = Classifier::load(&args.recognizer, &args.engine, &ui.progress())?;
    let data = Dataset::from_folder(&args.data)?;
    let unknown_data = args.unknown_data.as_deref();
    let evaluation = classifier.evaluate(&data, unknown_data, &args.cache, &ui.progress())?;
    say_embedded(&evaluation.embedded, ui);
    for (path, err) in &evaluation.unknown_skipped {
        ui.warn(format!("skipped {}: {err}", path.display()));
    }
    ui.say(evaluation.metrics.to_string());
    let unknown = &evaluation.unknown;
    ui.say(unknown.to_string());
    let plots = match &args.plots {
        Some(dir) => {
            let charts = evaluation.charts(classifier.recognizer().training());
            let written = graft::plots::write_charts(dir, &charts, &PLOT_FORMATS)?;
            ui.say(format!(
                "{} plot file(s) written to {}",
                written.len(),
                dir.display()
            ));
            written
        }
        None => Vec::new(),
    };
    ui.finish(json!({
        "plots": plots,
        "recognizer": args.recognizer,
        "data": args.data,
        "metrics": evaluation.metrics,
        "unknown": {
            "report": unknown,
            "in_class_acceptance": unknown.acceptance(),
            "correct_acceptance": unknown.correct_acceptance(),
            "out_of_class_rejection": unknown.rejection(),
        },
    }));
    Ok(())
}
