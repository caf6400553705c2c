//! Embedding examples through the frozen base: files on all cores, through the cache; a labelled
//! folder into [`Embeddings`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ndarray::{Array1, Array2, ArrayD, Axis};

use super::{clips, Embeddings, Source};
use crate::base::BaseModel;
use crate::cache::{sha256_hex, EmbeddingCache};
use crate::dataset::{check_classes, count_labels, Dataset};
use crate::input::audio::{self, BACKGROUND_NOISE};
use crate::input::image::image_tensor;
use crate::input::vector::vector_tensor;
use crate::input::InputSpec;
use crate::limits::FileKind;
use crate::{Error, Result};

impl Embeddings {
    /// Embeds every example of `data` with the frozen `base` (through the cache under `cache_root`
    /// when given). Files that cannot be read or decoded are skipped and returned with their error;
    /// a class left without examples is an error. `progress` is told how many files were done.
    pub fn from_dataset(
        base: &BaseModel,
        data: &Dataset,
        cache_root: Option<&Path>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Embeddings, Vec<(PathBuf, Error)>)> {
        // Audio: the recordings of the background-noise class are cut into clips.
        let noise_label = match base.input_spec()? {
            InputSpec::Audio(_) => data.classes.iter().position(|c| c == BACKGROUND_NOISE),
            InputSpec::Image(_) | InputSpec::Vector(_) => None,
        };
        let is_noise = |label: usize| Some(label) == noise_label;
        let paths: Vec<PathBuf> = data
            .examples
            .iter()
            .filter(|e| !is_noise(e.label))
            .map(|e| e.path.clone())
            .collect();
        let mut results = embed_files(base, &paths, cache_root, progress)?.into_iter();
        let dim = base.embedding_dim();
        let (mut rows, mut labels, mut sources, mut skipped) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for example in &data.examples {
            let result = match is_noise(example.label) {
                true => {
                    let clips = clips::embed_noise_file(base, &example.path, cache_root)?;
                    progress(1);
                    clips
                }
                false => results
                    .next()
                    .unwrap_or_else(|| Err(Error::Inference("not embedded".into())))
                    .map(|v| vec![(Source::File(example.path.clone()), v)]),
            };
            match result {
                Ok(clips) => {
                    for (source, v) in clips {
                        rows.extend(v.iter());
                        labels.push(example.label);
                        sources.push(source);
                    }
                }
                Err(e) => skipped.push((example.path.clone(), e)),
            }
        }
        check_classes(
            &data.classes,
            &count_labels(labels.iter().copied(), data.classes.len()),
        )
        .map_err(|e| {
            let listing: Vec<String> = skipped.iter().map(|(_, err)| err.to_string()).collect();
            match listing.is_empty() {
                true => e,
                false => Error::Dataset(format!(
                    "{e}; {} file(s) skipped: {}",
                    listing.len(),
                    listing.join("; ")
                )),
            }
        })?;
        let vectors = Array2::from_shape_vec((labels.len(), dim), rows)
            .map_err(|e| Error::Internal(format!("embedding rows: {e}")))?;
        let embeddings = Embeddings::new(
            base.reference()?,
            data.classes.clone(),
            vectors,
            labels,
            sources,
        )?;
        Ok((embeddings, skipped))
    }
}

/// `f` over `items` on the machine's cores, results in order; the first error stops the work.
pub(super) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    f: &(dyn Fn(&T) -> Result<R> + Sync),
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let fatal: Mutex<Option<Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() || lock(&fatal).is_some() {
                    break;
                }
                match f(&items[i]) {
                    Ok(r) => *lock(&slots[i]) = Some(r),
                    Err(e) => *lock(&fatal) = Some(e),
                }
            });
        }
    });
    if let Some(e) = lock(&fatal).take() {
        return Err(e);
    }
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .ok_or_else(|| Error::Inference("not embedded".into()))
        })
        .collect()
}

/// Embeds example files with the frozen `base`, one result per file in order: an error in place
/// for a file that cannot be read or decoded, a hard error only when the base itself fails.
/// Work is spread over the machine's cores (tract runs fastest one image per call per thread);
/// embeddings are read from and written to the cache under `cache_root` when given.
pub fn embed_files(
    base: &BaseModel,
    paths: &[PathBuf],
    cache_root: Option<&Path>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Result<Array1<f32>>>> {
    let spec = base.input_spec()?;
    let cache = base_cache(base, cache_root)?;
    parallel_map(paths, &|path: &PathBuf| {
        let result = embed_one(base, spec, path, cache.as_ref());
        progress(1);
        result
    })
}

/// The embedding cache of `base` (its sha256, cut, preprocessing and size) under `cache_root`;
/// none for a base that takes numbers (a raw base: the cached embedding would be the example's
/// own numbers again, as costly to read as the example and as large).
pub(super) fn base_cache(
    base: &BaseModel,
    cache_root: Option<&Path>,
) -> Result<Option<EmbeddingCache>> {
    let spec = base.input_spec()?;
    if matches!(spec, InputSpec::Vector(_)) {
        return Ok(None);
    }
    let preprocessing = serde_json::to_string(spec).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(cache_root.map(|root| {
        EmbeddingCache::new(
            root,
            base.sha256(),
            base.cut(),
            &preprocessing,
            base.embedding_dim(),
        )
    }))
}

/// One file: `Ok(Err(..))` when the file is unusable, `Err(..)` when the base failed.
fn embed_one(
    base: &BaseModel,
    spec: &InputSpec,
    path: &Path,
    cache: Option<&EmbeddingCache>,
) -> Result<Result<Array1<f32>>> {
    let bytes = match crate::limits::read(path, file_kind(spec)) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let key = sha256_hex(&bytes);
    if let Some(hit) = cache.and_then(|c| c.get(&key)) {
        return Ok(Ok(Array1::from(hit)));
    }
    let tensor = match prepare(&bytes, path, spec) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let embedding = base.embed(tensor.insert_axis(Axis(0)).view())?;
    let row = embedding.row(0).to_owned();
    if !row.iter().all(|v| v.is_finite()) {
        return Ok(Err(Error::Input {
            path: path.to_path_buf(),
            msg: "the base gives a non-finite embedding for it (NaN or infinite input?)".into(),
        }));
    }
    if let Some(c) = cache {
        // A cache that cannot be written only costs time later.
        let _ = c.put(&key, row.as_slice().unwrap_or(&[]));
    }
    Ok(Ok(row))
}

/// What an example file of `spec` is, for the size limits.
fn file_kind(spec: &InputSpec) -> FileKind {
    match spec {
        InputSpec::Image(_) => FileKind::Image,
        InputSpec::Audio(_) => FileKind::Audio,
        InputSpec::Vector(_) => FileKind::Vector,
    }
}

/// One example's tensor (without the batch dim) from its file, read within the limits.
pub fn prepare_file(path: &Path, spec: &InputSpec) -> Result<ArrayD<f32>> {
    prepare(&crate::limits::read(path, file_kind(spec))?, path, spec)
}

/// One example's tensor (without the batch dim) from its file's bytes.
pub fn prepare(bytes: &[u8], path: &Path, spec: &InputSpec) -> Result<ArrayD<f32>> {
    match spec {
        InputSpec::Image(s) => Ok(image_tensor(bytes, path, s)?.into_dyn()),
        InputSpec::Audio(s) => Ok(audio::preprocess(bytes, path, s)?.into_dyn()),
        InputSpec::Vector(s) => Ok(vector_tensor(bytes, path, s)?.into_dyn()),
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
