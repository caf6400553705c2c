//! `graft doctor`: what in a labelled folder will make a recognizer disappoint.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::doctor::DoctorOptions;
use graft::task::diagnose;
use graft::train::TrainOptions;
use serde_json::json;

use super::args::BaseArgs;
use super::train::say_embedded;
use super::Ui;

#[derive(Args)]
pub struct DoctorArgs {
    /// Folder with one sub-folder of examples per class.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    pub options: DoctorOptions,
    /// The seed of the train/validation split to check for leaks (`graft train --seed`).
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    #[command(flatten)]
    pub cache: CacheOptions,
}

pub fn run(args: DoctorArgs, ui: Ui) -> Result<()> {
    let base = args.base.open(ui)?;
    let data = Dataset::from_folder(&args.data)?;
    let diagnosed = diagnose(
        &base,
        &data,
        args.seed,
        &args.options,
        &args.cache,
        &ui.progress(),
    )?;
    say_embedded(&diagnosed.embedded, ui);
    let d = &diagnosed.diagnosis;
    for (title, lines) in d.sections() {
        ui.say(format!("{title}:"));
        for line in lines {
            ui.say(format!("  {line}"));
        }
    }
    ui.say(format!(
        "{} finding(s) on {} examples in {} classes",
        d.findings(),
        d.examples,
        d.classes.len()
    ));
    ui.finish(json!({
        "findings": d.findings(),
        "leaks": d.leaks(),
        "diagnosis": d,
        "embedded": diagnosed.embedded,
    }));
    Ok(())
}
