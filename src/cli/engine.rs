//! `graft engine`: which inference engine runs bases here; `graft engine install` fetches the
//! pinned ONNX Runtime library into graft's cache.

use anyhow::Result;
use clap::{Args, Subcommand};
use graft::base::EngineOptions;

use super::{AlreadyReported, Ui};

#[derive(Args)]
pub struct EngineArgs {
    #[command(subcommand)]
    action: Option<EngineAction>,
    #[command(flatten)]
    engine: EngineOptions,
}

#[derive(Subcommand)]
enum EngineAction {
    /// Fetch the pinned ONNX Runtime library (sha256-checked, from PyPI, no pip needed) into
    /// graft's cache, where `--backend auto` finds it; prints its path.
    Install,
}

pub fn run(args: EngineArgs, ui: Ui) -> Result<()> {
    match args.action {
        Some(EngineAction::Install) => {
            let path = graft::base::install(&ui.progress())?;
            ui.say(path.display().to_string());
            ui.finish(serde_json::json!({ "library": path }));
        }
        None => {
            let report = args.engine.probe();
            let runs = if report.engine == "ort" || report.requested != "ort" {
                report.engine
            } else {
                "none"
            };
            ui.say(format!("backend: {} -> {runs}", report.requested));
            if let Some(library) = &report.library {
                ui.say(format!(
                    "ONNX Runtime library: {} ({:?})",
                    library.path.display(),
                    library.origin
                ));
            }
            if let Some(runtime) = &report.runtime {
                ui.say(format!("ONNX Runtime build: {runtime}"));
            }
            if let Some(note) = &report.note {
                ui.say(format!(
                    "ONNX Runtime not used: {note}; `{}` gets the fast engine",
                    graft::base::INSTALL_COMMAND
                ));
            }
            ui.finish(serde_json::to_value(&report)?);
            if report.requested == "ort" && report.engine != "ort" {
                return Err(AlreadyReported("ONNX Runtime cannot run here".into()).into());
            }
        }
    }
    Ok(())
}
