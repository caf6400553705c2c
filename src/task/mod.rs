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
//! - [`demo`]: the whole job on the shipped images.
//!
//! Long calls report through a [`Progress`] (the CLI draws bars from it; [`Silent`] ignores it).
//! Nothing here holds global state.

mod classify;
mod convert;
mod create;
pub mod demo;
mod embed;
mod exported;
mod knn;

use crate::train::EpochRecord;

pub use crate::export::{ExportOptions, Exported, InputForm};
pub use classify::{Classifier, Evaluation, FileAnswer};
pub use convert::{convert, supported_ops, Converted, Format};
pub use create::{create, create_from_embeddings, Augmentation, Augmentations, ClassSplit};
pub use create::{AugmentReport, CreateOptions, CreateReport, Created};
pub use embed::{embed_folder, EmbedReport, Embedded};
pub use exported::{ExportedClassifier, Predictor};
pub use knn::{knn_index, KnnClassifier};

/// A phase of a long task, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Embedding examples through the base (steps: files).
    Embedding,
    /// Embedding augmented copies (steps: none reported; one phase).
    Augmenting,
    /// Training the head (steps: epochs).
    Training,
}

impl Phase {
    /// A short name for displays.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Embedding => "embedding",
            Phase::Augmenting => "augmenting",
            Phase::Training => "training",
        }
    }
}

/// What a long task says while it runs.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A phase starts, with its number of steps (0: unknown).
    Started(Phase, u64),
    /// More steps of the current phase are done (may come from several threads).
    Advanced(u64),
    /// A training epoch ended.
    Epoch(&'a EpochRecord),
    /// The current phase ended.
    Finished(Phase),
}

/// Where a long task's [`Event`]s go; any `Fn(Event) + Sync` closure is one.
pub trait Progress: Sync {
    /// Takes one event.
    fn on(&self, event: Event<'_>);
}

impl<F: Fn(Event<'_>) + Sync> Progress for F {
    fn on(&self, event: Event<'_>) {
        self(event)
    }
}

/// Runs `work` as `phase` of `total` steps: `Started` before, `Finished` after (also when it
/// fails); `work` reports its steps through the function it is given.
pub(crate) fn in_phase<R>(
    progress: &dyn Progress,
    phase: Phase,
    total: u64,
    work: impl FnOnce(&(dyn Fn(u64) + Sync)) -> R,
) -> R {
    progress.on(Event::Started(phase, total));
    let result = work(&|n| progress.on(Event::Advanced(n)));
    progress.on(Event::Finished(phase));
    result
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn on(&self, _: Event<'_>) {}
}

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
