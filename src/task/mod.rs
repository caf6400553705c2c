//! The task-level API: each flow graft's command line (and a server) runs is one call here, with
//! one options struct whose fields document their defaults.
//!
//! - [`create`]: a labelled folder -> a trained [`Recognizer`](crate::recognizer::Recognizer) and a
//!   [`CreateReport`] (embedding, split, augmentation and training figures), as MediaPipe Model
//!   Maker's `create` or tfjs speech-commands' `train`;
//! - [`Classifier`]: a loaded recognizer with its base, shared by threads (`Send + Sync`): predict
//!   files, bytes or tensors, evaluate on a folder, export;
//! - [`KnnClassifier`]: the same for a KNN index, which examples can be added to;
//! - [`embed_folder`]: a labelled folder -> [`Embeddings`](crate::embeddings::Embeddings), cached;
//! - [`convert`]: another framework's model file to ONNX (or safetensors);
//! - [`write_report`]: a recognizer on a labelled folder -> one self-contained HTML report
//!   (metrics, [`plots`](crate::plots), the examples it gets wrong or is least sure of);
//! - [`diagnose`]: a labelled folder -> the [`doctor`](crate::doctor)'s findings (duplicates,
//!   likely mislabels, outliers, small classes, unreadable and tiny files);
//! - [`demo`]: the whole job on the shipped images.
//!
//! Long calls report through a [`Progress`] (the CLI draws bars from it; [`Silent`] ignores it).
//! Nothing here holds global state.

mod answer;
mod classify;
mod convert;
mod create;
pub mod demo;
mod doctor;
mod embed;
mod exported;
mod figures;
mod knn;
mod predictor;
mod report;
mod smaller;
mod teachable;

pub use crate::export::{Comparison, ExportOptions, Exported, FormFigures, InputForm};
pub use crate::export::{Precision, Quantize, Smaller};
pub use answer::FileAnswer;
pub use classify::{Classifier, Evaluation};
pub use convert::{convert, supported_ops, ConvertOptions, Converted, Format};
pub use create::{create, create_from_embeddings, Augmentation, Augmentations, ClassSplit};
pub use create::{AugmentReport, CreateOptions, CreateReport, Created};
pub use doctor::{diagnose, diagnose_embedded, Diagnosed};
pub use embed::{embed_folder, EmbedReport, Embedded};
pub use exported::ExportedClassifier;
pub use figures::{embedding_map, example_answers, training_charts, PLOT_FORMATS};
pub use knn::{knn_index, KnnClassifier};
pub use predictor::{example_files, Predictor, STDIN};
pub use report::{write_report, WrittenReport};
pub use teachable::{is_teachable_machine, METADATA_JSON, MODEL_JSON};

pub(crate) use crate::progress::in_phase;
pub use crate::progress::{Event, Phase, Progress, Silent};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn loaded_models_can_be_shared_by_threads() {
        assert_send_sync::<Classifier>();
        assert_send_sync::<KnnClassifier>();
        assert_send_sync::<ExportedClassifier>();
        assert_send_sync::<crate::base::BaseModel>();
    }
}
