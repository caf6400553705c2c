//! `graft predict` and `graft eval`: use a saved recognizer on files or on a labelled folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::BaseModel;
use graft::embeddings::embed_files;
use graft::recognizer::Recognizer;
use ndarray::{ArrayView2, Axis};
use serde_json::{json, Value};

use super::args::BackendArgs;
use super::train::embed_folder;
use super::{AlreadyReported, Ui};

#[derive(Args)]
pub struct PredictArgs {
    /// A recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// Image files to classify.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// How many classes to show per file.
    #[arg(short = 'k', long, default_value_t = 3)]
    pub top_k: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// Folder with one sub-folder of examples per class (class names as in training).
    #[arg(long)]
    pub data: PathBuf,
    /// Do not read or write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: PredictArgs, ui: Ui) -> Result<()> {
    let recognizer = Recognizer::load(&args.recognizer)?;
    let base = args.backend.reopen(&recognizer.base)?;
    for_each_file(&base, &args.files, ui, |embedding| {
        let p = recognizer.predict(embedding, args.top_k)?.remove(0);
        let top: Vec<String> = p.top.iter().map(|(l, q)| format!("{l} {q:.3}")).collect();
        let line = format!("{}  ({})", p.label, top.join(", "));
        Ok((
            line,
            json!({ "label": p.label, "probability": p.probability, "top": p.top }),
        ))
    })
}

/// Embeds `files` with `base` and answers each with `answer` (a line for people, a JSON value);
/// files that fail are reported in place and make the command fail after the others are done.
pub fn for_each_file(
    base: &BaseModel,
    files: &[PathBuf],
    ui: Ui,
    answer: impl Fn(ArrayView2<f32>) -> graft::Result<(String, Value)>,
) -> Result<()> {
    let cache = graft::zoo::cache_dir().ok();
    let bar = ui.bar(files.len() as u64, "embedding");
    let results = embed_files(base, files, cache.as_deref(), &|n| bar.inc(n))?;
    bar.finish_and_clear();
    let mut out = Vec::new();
    let mut failed = 0;
    for (path, result) in files.iter().zip(results) {
        match result.and_then(|v| answer(v.view().insert_axis(Axis(0)))) {
            Ok((line, mut value)) => {
                ui.say(format!("{}: {line}", path.display()));
                value["file"] = json!(path);
                out.push(value);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                out.push(json!({ "file": path, "error": e.to_string() }));
            }
        }
    }
    ui.finish(json!({ "predictions": out }));
    if failed > 0 {
        return Err(AlreadyReported(format!(
            "{failed} of {} file(s) could not be classified",
            files.len()
        ))
        .into());
    }
    Ok(())
}

pub fn eval(args: EvalArgs, ui: Ui) -> Result<()> {
    let recognizer = Recognizer::load(&args.recognizer)?;
    let base = args.backend.reopen(&recognizer.base)?;
    let cache = if args.no_cache {
        None
    } else {
        graft::zoo::cache_dir().ok()
    };
    let data = embed_folder(&base, &args.data, cache.as_deref(), ui)?;
    let metrics = recognizer.evaluate(&data)?;
    ui.say(metrics.to_string());
    ui.finish(json!({ "recognizer": args.recognizer, "data": args.data, "metrics": metrics }));
    Ok(())
}
