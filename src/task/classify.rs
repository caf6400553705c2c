//! A loaded recognizer with its base: predict files, bytes or tensors, evaluate on a folder,
//! export. One `Classifier` serves many threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, ArrayViewD};
use serde::Serialize;

use super::answer::{answer_files, embed_bytes, single, FileAnswer};
use super::embed::{embed_folder, embed_unlabelled, EmbedReport, Embedded};
use super::figures::{embedding_map, example_answers};
use super::Progress;
use crate::base::{BaseModel, EngineOptions};
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::export::{export_onnx, record_comparison, split_folder, ExportOptions, Exported};
use crate::metrics::Metrics;
use crate::plots::{self, Chart, EmbeddingMap};
use crate::recognizer::{Prediction, Recognizer, TrainingRecord};
use crate::reject::UnknownReport;
use crate::report::ExampleAnswer;
use crate::{Error, Result};

/// A recognizer and the base it was trained on, ready to answer.
#[derive(Debug, Clone)]
pub struct Classifier {
    recognizer: Arc<Recognizer>,
    base: Arc<BaseModel>,
    /// The file it was loaded from, which exports never overwrite.
    source: Option<PathBuf>,
}

/// A recognizer's metrics on a labelled folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Top-1 figures (the closest class, whether or not it is answered unknown).
    pub metrics: Metrics,
    /// In-class acceptance of the "unknown" rule, and out-of-class rejection on the unknown data.
    pub unknown: UnknownReport,
    pub embedded: EmbedReport,
    /// Files of the unknown data that could not be used, with why.
    pub unknown_skipped: Vec<(PathBuf, String)>,
    /// Each example's top-3 answers, in the folder's order (what the report lists).
    #[serde(skip)]
    pub answers: Vec<ExampleAnswer>,
    /// The folder's embeddings on their first two principal components, mistakes marked.
    #[serde(skip)]
    pub map: Option<EmbeddingMap>,
}

impl Evaluation {
    /// The charts of this evaluation: the recognizer's training curves (from `training`), then
    /// the confusion matrix, per-class bars and embedding map of the evaluated folder.
    pub fn charts<'a>(&'a self, training: Option<&'a TrainingRecord>) -> Vec<Chart<'a>> {
        let history = training.map(|t| (t.report.history.as_slice(), t.report.best_epoch));
        plots::charts(history, Some(&self.metrics), self.map.as_ref())
    }
}

impl Classifier {
    /// `recognizer` with `base`, which must be the base it was trained on.
    pub fn new(recognizer: Recognizer, base: Arc<BaseModel>) -> Result<Classifier> {
        recognizer.check_base(&base.reference()?)?;
        Ok(Classifier {
            recognizer: Arc::new(recognizer),
            base,
            source: None,
        })
    }

    /// Loads a recognizer file and reopens its base on the engine `options` names (a zoo base
    /// not built here yet is built first, reported on `progress`).
    pub fn load(
        path: &Path,
        engine: &EngineOptions,
        progress: &dyn Progress,
    ) -> Result<Classifier> {
        let recognizer = Recognizer::load(path)?;
        let base = BaseModel::from_ref_with(recognizer.base(), &engine.clone().into(), progress)?;
        let mut classifier = Classifier::new(recognizer, Arc::new(base))?;
        classifier.source = Some(path.to_path_buf());
        Ok(classifier)
    }

    /// The recognizer.
    pub fn recognizer(&self) -> &Recognizer {
        &self.recognizer
    }

    /// The file it was loaded from, if it was.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The base, shared.
    pub fn base(&self) -> &Arc<BaseModel> {
        &self.base
    }

    /// The `top_k` best classes of each file (embedded through the cache unless
    /// `cache.no_cache`), in order; a file that cannot be used gets its error in place.
    pub fn predict_files(
        &self,
        files: &[PathBuf],
        top_k: usize,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileAnswer<Prediction>>> {
        answer_files(&self.base, files, cache, progress, |row| {
            single(self.recognizer.predict(row, top_k)?)
        })
    }

    /// The answer for one example file's bytes (an image or a WAV, as the base takes); `name`
    /// stands for the file in errors.
    pub fn predict_bytes(&self, bytes: &[u8], name: &str, top_k: usize) -> Result<Prediction> {
        let embedding = embed_bytes(&self.base, bytes, name)?;
        single(self.recognizer.predict(embedding.view(), top_k)?)
    }

    /// The answers for a batch of prepared inputs `[N, base input...]`.
    pub fn predict_tensor(&self, batch: ArrayViewD<f32>, top_k: usize) -> Result<Vec<Prediction>> {
        let embeddings = self.base.embed(batch)?;
        self.recognizer.predict(embeddings.view(), top_k)
    }

    /// Class probabilities `[N, classes]` for a batch of prepared inputs.
    pub fn probabilities(&self, batch: ArrayViewD<f32>) -> Result<Array2<f32>> {
        let embeddings = self.base.embed(batch)?;
        self.recognizer.probabilities(embeddings.view())
    }

    /// Accuracy, per-class figures and the confusion matrix on a labelled folder whose classes
    /// are among the recognizer's, with the "unknown" rule's in-class acceptance there and its
    /// out-of-class rejection on the files under `unknown_data` (examples of nothing the
    /// recognizer knows, any depth) when given.
    pub fn evaluate(
        &self,
        data: &Dataset,
        unknown_data: Option<&Path>,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Evaluation> {
        let embedded = embed_folder(&self.base, data, cache, progress)?;
        self.evaluate_embedded(embedded, unknown_data, cache, progress)
    }

    /// [`Classifier::evaluate`] on a folder already embedded (by [`embed_folder`] with this
    /// classifier's base), for callers that use the embeddings for more.
    pub fn evaluate_embedded(
        &self,
        embedded: Embedded,
        unknown_data: Option<&Path>,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Evaluation> {
        let (out, unknown_skipped) = match unknown_data {
            Some(dir) => embed_unlabelled(&self.base, dir, cache, progress)?,
            None => (Array2::zeros((0, self.base.embedding_dim())), Vec::new()),
        };
        let embeddings = &embedded.embeddings;
        Ok(Evaluation {
            metrics: self.recognizer.evaluate(embeddings)?,
            unknown: self.recognizer.evaluate_unknown(embeddings, out.view())?,
            answers: example_answers(&self.recognizer, embeddings)?,
            map: embedding_map(&self.recognizer, &[(embeddings, true)])?,
            embedded: embedded.report,
            unknown_skipped,
        })
    }

    /// Writes base (cut) + head + softmax + argmax as one ONNX file at `out`, with
    /// `labels.txt` and `MODEL_CARD.md` beside it (see [`export_onnx`]; atomically, never over
    /// the recognizer's own file), taking images or tensors as `options` says.
    ///
    /// A smaller form (`options.quantize`, `options.precision`) with a folder (`options.data`)
    /// is then measured against the float export on the folder's validation split (see
    /// [`Comparison`](crate::export::Comparison)), which goes into the model card and
    /// [`Exported::comparison`].
    pub fn export(&self, out: &Path, options: &ExportOptions) -> Result<Exported> {
        let (head, labels, training) = (
            self.recognizer.head(),
            self.recognizer.labels(),
            self.recognizer.training(),
        );
        let source = self.source.as_deref();
        let unknown = self.recognizer.unknown_rule();
        let mut exported = export_onnx(
            &self.base, head, labels, training, unknown, options, out, source,
        )?;
        let (Some(small), Some(data)) = (&exported.smaller, &options.data) else {
            return Ok(exported);
        };
        let form = small.form;
        let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let float = tmp.path().join("float.onnx");
        export_onnx(
            &self.base,
            head,
            labels,
            training,
            unknown,
            &options.float(),
            &float,
            source,
        )?;
        let split = split_folder(data, labels, training)?;
        let spec = self.base.input_spec()?;
        let comparison = super::smaller::compare(&float, out, form, data, &split, spec)?;
        record_comparison(&mut exported, comparison)?;
        Ok(exported)
    }
}
