//! `graft demo`: the whole job on what ships in the repository ([`graft::task::demo`]).

use anyhow::Result;
use graft::task::demo::{self, DemoOptions};

use super::train::{say_created, say_embedded};
use super::Ui;

pub fn run(options: DemoOptions, ui: Ui) -> Result<()> {
    let report = demo::run(&options, &ui.progress())?;
    ui.say(format!(
        "base: {}, cut at '{}' ({}-d embedding), frozen, run by {}",
        report.base, report.cut, report.embedding_dim, report.engine
    ));
    say_embedded(&report.embedded, ui);
    say_created(&report.created, report.training.as_ref(), ui);
    ui.say(format!(
        "saved and reloaded {}",
        report.recognizer.display()
    ));
    for p in &report.predictions {
        let name = p
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ui.say(format!(
            "  {name:<40} true {:<11} predicted {:<11} p={:.3}",
            p.truth, p.predicted, p.probability
        ));
    }
    ui.say(format!(
        "exported {} (base + head + softmax); its probabilities differ from graft's by at most {:.1e}",
        report.onnx.display(),
        report.export_max_abs_diff
    ));
    ui.say(format!(
        "KNN (k=3, cosine) over {} training embeddings: validation accuracy {:.3} ({}/{}); saved {}",
        report.knn_examples,
        report.knn_accuracy,
        report.knn_correct,
        report.knn_val,
        report.knn_index.display()
    ));
    ui.say(format!("demo finished in {:.1} s", report.seconds));
    ui.finish(serde_json::to_value(&report)?);
    Ok(())
}
