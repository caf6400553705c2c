//! `graft report`: a recognizer on a labelled folder -> one self-contained HTML file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::base::EngineOptions;
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::report::ReportOptions;
use graft::task::{write_report, Classifier};
use serde_json::json;

use super::train::say_embedded;
use super::Ui;

#[derive(Args)]
pub struct ReportArgs {
    /// A recognizer written by `graft train`.
    pub recognizer: PathBuf,
    /// Folder with one sub-folder of examples per class (class names as in training).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the HTML file.
    #[arg(short, long, default_value = "report.html")]
    pub out: PathBuf,
    #[command(flatten)]
    pub options: ReportOptions,
    #[command(flatten)]
    pub cache: CacheOptions,
    #[command(flatten)]
    pub engine: EngineOptions,
}

pub fn run(args: ReportArgs, ui: Ui) -> Result<()> {
    let classifier = Classifier::load(&args.recognizer, &args.engine, &ui.progress())?;
    let data = Dataset::from_folder(&args.data)?;
    let written = write_report(
        &classifier,
        &data,
        &args.out,
        &args.options,
        &args.cache,
        &ui.progress(),
    )?;
    say_embedded(&written.embedded, ui);
    ui.say(format!(
        "accuracy {:.1}% on {} examples ({} wrong)",
        written.metrics.accuracy * 100.0,
        written.examples,
        written.mistakes
    ));
    ui.say(format!(
        "wrote {} ({} kB)",
        written.path.display(),
        written.bytes.div_ceil(1024)
    ));
    ui.finish(json!({
        "report": written.path,
        "bytes": written.bytes,
        "examples": written.examples,
        "mistakes": written.mistakes,
        "metrics": written.metrics,
    }));
    Ok(())
}
