//! A KNN index with its base: build it from a folder, add examples, classify files or bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::answer::{answer_files, embed_bytes, single, FileAnswer};
use super::embed::{embed_folder, embed_unlabelled, stack_rows, EmbedReport};
use super::Progress;
use crate::base::{BaseModel, EngineOptions};
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::embeddings::Embeddings;
use crate::gpu::{DeviceChoice, Gpu};
use crate::knn::{Knn, KnnPrediction, ScanOptions, Storage, DEFAULT_K};
use crate::reject::UnknownOptions;
use crate::Result;

/// A KNN index holding every example of `embeddings`, under their class names.
pub fn knn_index(embeddings: &Embeddings) -> Result<Knn> {
    let mut knn = Knn::new(embeddings.base().clone());
    for (class, name) in embeddings.classes().iter().enumerate() {
        let rows = embeddings.of_class(class);
        if !rows.is_empty() {
            knn.add_many(name, rows.vectors())?;
        }
    }
    Ok(knn)
}

/// A KNN index and the base whose embeddings it holds, ready to answer; the similarity product
/// runs on a GPU when one was asked for.
#[derive(Clone)]
pub struct KnnClassifier {
    knn: Knn,
    base: Arc<BaseModel>,
    gpu: Option<Arc<Gpu>>,
}

impl std::fmt::Debug for KnnClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnnClassifier")
            .field("base", &self.knn.base().name)
            .field("examples", &self.knn.len())
            .field("gpu", &self.gpu.is_some())
            .finish()
    }
}

impl KnnClassifier {
    /// `knn` with `base`, which must be the base its embeddings come from; classification on
    /// the GPU `device` selects (none for `Cpu`, and for `Auto` without a hardware GPU).
    pub fn new(knn: Knn, base: Arc<BaseModel>, device: Option<DeviceChoice>) -> Result<Self> {
        knn.base().check_same(&base.reference()?, "the KNN index")?;
        let gpu = DeviceChoice::resolve(device)?.open_gpu()?.map(Arc::new);
        Ok(KnnClassifier { knn, base, gpu })
    }

    /// Embeds every example of `data` with `base` (cached) into a new index, with the default
    /// "unknown" rule ([`KnnClassifier::build_with`]).
    pub fn build(
        base: Arc<BaseModel>,
        data: &Dataset,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<(KnnClassifier, EmbedReport)> {
        let options = UnknownOptions::default();
        let (classifier, report, _) = Self::build_with(base, data, &options, cache, progress)?;
        Ok((classifier, report))
    }

    /// Embeds every example of `data` with `base` (cached) into a new index and calibrates its
    /// "unknown" rule as `unknown` says (for votes of [`DEFAULT_K`] neighbours; its unknown data
    /// embedded too); the third value says what the rule is, or why there is none.
    pub fn build_with(
        base: Arc<BaseModel>,
        data: &Dataset,
        unknown: &UnknownOptions,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<(KnnClassifier, EmbedReport, String)> {
        unknown.validate()?;
        let embedded = embed_folder(&base, data, cache, progress)?;
        let mut knn = knn_index(&embedded.embeddings)?;
        let out = match &unknown.unknown_data {
            Some(dir) if unknown.accept > 0.0 => {
                Some(embed_unlabelled(&base, dir, cache, progress)?.0)
            }
            _ => None,
        };
        let calibration =
            knn.calibrate_unknown(DEFAULT_K, unknown.accept, out.as_ref().map(|o| o.view()))?;
        Ok((
            KnnClassifier::new(knn, base, Some(DeviceChoice::Cpu))?,
            embedded.report,
            calibration.note,
        ))
    }

    /// Loads an index file and reopens its base on the engine `options` names (a zoo base not
    /// built here yet is built first, reported on `progress`).
    pub fn load(
        path: &Path,
        engine: &EngineOptions,
        device: Option<DeviceChoice>,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let knn = Knn::load(path)?;
        let base = BaseModel::from_ref_with(knn.base(), &engine.clone().into(), progress)?;
        KnnClassifier::new(knn, Arc::new(base), device)
    }

    /// The index.
    pub fn knn(&self) -> &Knn {
        &self.knn
    }

    /// Converts the index's vectors to `storage` (see [`Storage`]).
    pub fn set_storage(&mut self, storage: Storage) {
        self.knn.set_storage(storage);
    }

    /// Sets how the CPU scans the index (see [`ScanOptions`]).
    pub fn set_scan_options(&mut self, options: ScanOptions) -> Result<()> {
        self.knn.set_scan_options(options)
    }

    /// The base, shared.
    pub fn base(&self) -> &Arc<BaseModel> {
        &self.base
    }

    /// Adds example files under `label` (tfjs knn-classifier's `addExample`); a file that cannot
    /// be used is an error naming it, and then nothing is added.
    pub fn add_files(
        &mut self,
        label: &str,
        files: &[PathBuf],
        cache: &CacheOptions,
    ) -> Result<()> {
        let root = cache.root();
        let rows = crate::embeddings::embed_files(&self.base, files, root.as_deref(), &|_| {})?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        let rows = stack_rows(&rows)?;
        // One call: the index checks everything before it changes.
        self.knn.add_many(label, rows.view())
    }

    /// Each file's class by its `k` nearest stored examples, in order; a file that cannot be used
    /// gets its error in place.
    pub fn classify_files(
        &self,
        files: &[PathBuf],
        k: usize,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileAnswer<KnnPrediction>>> {
        answer_files(&self.base, files, cache, progress, |row| {
            single(self.knn.classify_with(row, k, self.gpu.clone())?)
        })
    }

    /// The class of one example file's bytes; `name` stands for the file in errors.
    pub fn classify_bytes(&self, bytes: &[u8], name: &str, k: usize) -> Result<KnnPrediction> {
        let embedding = embed_bytes(&self.base, bytes, name)?;
        single(
            self.knn
                .classify_with(embedding.view(), k, self.gpu.clone())?,
        )
    }
}
