//! What `graft predict` loads: a recognizer or a file graft exported, told apart by content.

use std::path::{Path, PathBuf};

use super::answer::FileAnswer;
use super::classify::Classifier;
use super::exported::{looks_like_onnx, ExportedClassifier};
use super::Progress;
use crate::base::EngineOptions;
use crate::cache::CacheOptions;
use crate::recognizer::Prediction;
use crate::{Error, Result};

/// What `graft predict` answers with: a recognizer (with its base) or a file graft exported,
/// told apart by content.
#[derive(Debug)]
pub enum Predictor {
    Recognizer(Classifier),
    Exported(ExportedClassifier),
}

impl Predictor {
    /// Loads a recognizer or an exported ONNX file, on the engine `engine` names (a recognizer's
    /// zoo base not built here yet is built first, reported on `progress`).
    pub fn load(path: &Path, engine: &EngineOptions, progress: &dyn Progress) -> Result<Predictor> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = Vec::with_capacity(9);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, 9), &mut head)
            .map_err(|e| Error::io(path, e))?;
        if head.len() == 9 && looks_like_onnx(&head) {
            ExportedClassifier::load(path, engine).map(Predictor::Exported)
        } else {
            Classifier::load(path, engine, progress).map(Predictor::Recognizer)
        }
    }

    /// The `top_k` best classes of each file, as [`Classifier::predict_files`] gives them.
    pub fn predict_files(
        &self,
        files: &[PathBuf],
        top_k: usize,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileAnswer<Prediction>>> {
        match self {
            Predictor::Recognizer(c) => c.predict_files(files, top_k, cache, progress),
            Predictor::Exported(e) => e.predict_files(files, top_k, cache, progress),
        }
    }
}
