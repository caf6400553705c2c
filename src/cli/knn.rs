//! `graft knn`: build a KNN index from a labelled folder, classify files with it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Subcommand;
use graft::base::EngineOptions;
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::gpu::DeviceChoice;
use graft::knn::{ScanOptions, Storage};
use graft::reject::UnknownOptions;
use graft::task::KnnClassifier;
use serde_json::json;

use super::args::BaseArgs;
use super::predict::report_answers;
use super::train::say_embedded;
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
        #[command(flatten)]
        unknown: UnknownOptions,
        #[command(flatten)]
        cache: CacheOptions,
        /// How the index stores its vectors: f32, or f16 for half the memory and file size.
        #[arg(long, default_value_t = Storage::F32)]
        storage: Storage,
        /// Where to write the index.
        #[arg(short, long, default_value = "index.safetensors")]
        out: PathBuf,
    },
    /// Classify files by their nearest stored examples.
    Classify {
        /// An index written by `graft knn build`.
        index: PathBuf,
        /// Files to classify.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Number of neighbours that vote.
        #[arg(short, long, default_value_t = graft::knn::DEFAULT_K)]
        k: usize,
        /// Where the similarity product runs: auto, cpu or gpu. Default: $GRAFT_DEVICE, else auto.
        #[arg(long)]
        device: Option<DeviceChoice>,
        #[command(flatten)]
        cache: CacheOptions,
        #[command(flatten)]
        engine: EngineOptions,
        #[command(flatten)]
        scan: ScanOptions,
    },
}

pub fn run(command: KnnCommand, ui: Ui) -> Result<()> {
    match command {
        KnnCommand::Build {
            data,
            base,
            unknown,
            cache,
            storage,
            out,
        } => {
            let model = Arc::new(base.open(ui)?);
            let data = Dataset::from_folder(&data)?;
            let (mut index, embedded, note) =
                KnnClassifier::build_with(model, &data, &unknown, &cache, &ui.progress())?;
            index.set_storage(storage);
            say_embedded(&embedded, ui);
            let knn = index.knn();
            knn.save(&out)?;
            let counts = knn.class_counts();
            for (label, n) in &counts {
                ui.say(format!("{label:<16} {n:>6}"));
            }
            ui.say(&note);
            ui.say(format!("saved {} ({} examples)", out.display(), knn.len()));
            ui.finish(json!({ "index": out, "classes": counts, "unknown": knn.unknown_rule() }));
        }
        KnnCommand::Classify {
            index,
            files,
            k,
            device,
            cache,
            engine,
            scan,
        } => {
            let mut classifier = KnnClassifier::load(&index, &engine, device, &ui.progress())?;
            classifier.set_scan_options(scan)?;
            let answers = classifier.classify_files(&files, k, &cache, &ui.progress())?;
            report_answers(answers, ui, |p| {
                let votes: Vec<String> = p
                    .confidences
                    .iter()
                    .filter(|(_, c)| *c > 0.0)
                    .map(|(l, c)| format!("{l} {c:.2}"))
                    .collect();
                let answer = match p.unknown {
                    true => format!("unknown (closest: {})", p.label),
                    false => p.label.clone(),
                };
                let line = format!("{answer}  ({})", votes.join(", "));
                (line, json!({ "prediction": p }))
            })?;
        }
    }
    Ok(())
}
