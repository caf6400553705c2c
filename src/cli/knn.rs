//! `graft knn`: build a KNN index from a labelled folder, classify files with it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use graft::embeddings::Embeddings;
use graft::knn::Knn;
use ndarray::Axis;
use serde_json::json;

use std::sync::Arc;

use super::args::{BackendArgs, BaseArgs, DeviceArgs};
use super::predict::for_each_file;
use super::train::embed_folder;
use super::Ui;

#[derive(Subcommand)]
pub enum KnnCommand {
    /// Embed every example of a labelled folder into a new index.
    Build {
        /// Folder with one sub-folder of examples per class.
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        base: BaseArgs,
        /// Where to write the index.
        #[arg(short, long, default_value = "index.safetensors")]
        out: PathBuf,
    },
    /// Classify files by their nearest stored examples.
    Classify {
        /// An index written by `graft knn build`.
        index: PathBuf,
        /// Image files to classify.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Number of neighbours that vote.
        #[arg(short, long, default_value_t = 3)]
        k: usize,
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        backend: BackendArgs,
    },
}

pub fn run(command: KnnCommand, ui: Ui) -> Result<()> {
    match command {
        KnnCommand::Build { data, base, out } => {
            let model = base.open()?;
            let embeddings = embed_folder(&model, &data, base.cache()?.as_deref(), ui)?;
            let knn = index_of(&embeddings)?;
            knn.save(&out)?;
            let counts = knn.class_counts();
            for (label, n) in &counts {
                ui.say(format!("{label:<16} {n:>6}"));
            }
            ui.say(format!("saved {} ({} examples)", out.display(), knn.len()));
            ui.finish(json!({ "index": out, "classes": counts }));
        }
        KnnCommand::Classify {
            index,
            files,
            k,
            device,
            backend,
        } => {
            let knn = Knn::load(&index)?;
            let gpu = device.choice()?.open_gpu()?.map(Arc::new);
            let model = backend.reopen(knn.base())?;
            for_each_file(&model, &files, ui, |embedding| {
                let p = knn.classify_with(embedding, k, gpu.clone())?.remove(0);
                let votes: Vec<String> = p
                    .confidences
                    .iter()
                    .filter(|(_, c)| *c > 0.0)
                    .map(|(l, c)| format!("{l} {c:.2}"))
                    .collect();
                let line = format!("{}  ({})", p.label, votes.join(", "));
                Ok((line, json!({ "prediction": p })))
            })?;
        }
    }
    Ok(())
}

/// A KNN index holding every example of `embeddings`.
pub fn index_of(embeddings: &Embeddings) -> Result<Knn> {
    let mut knn = Knn::new(embeddings.base.clone());
    for (class, name) in embeddings.classes.iter().enumerate() {
        let rows: Vec<usize> = (0..embeddings.len())
            .filter(|&i| embeddings.labels[i] == class)
            .collect();
        if !rows.is_empty() {
            knn.add_many(name, embeddings.vectors.select(Axis(0), &rows).view())?;
        }
    }
    Ok(knn)
}
