//! Labelled embeddings: what the frozen base made of each example, and which base made them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ndarray::{Array1, Array2, ArrayD, Axis};
use serde::{Deserialize, Serialize};

use crate::base::BaseModel;
use crate::cache::{sha256_hex, EmbeddingCache};
use crate::dataset::{check_classes, count_labels, stratified_split, Dataset};
use crate::input::audio::{self, BACKGROUND_NOISE};
use crate::input::image::{decode_image, preprocess};
use crate::input::{AudioSpec, InputSpec};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Identifies the frozen base that turns examples into embeddings: stored with recognizers, KNN
/// indexes and caches, so that a saved head is never fed embeddings from another base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseRef {
    /// Zoo name (e.g. `efficientnet-lite0`) or the model file's path as given.
    pub name: String,
    /// sha256 of the base model file.
    pub sha256: String,
    /// Tensor the base was cut at.
    pub cut: String,
    /// Size of the embedding at the cut.
    pub embedding_dim: usize,
    /// How an example becomes the base's input.
    pub input: InputSpec,
}

/// Embeddings `[n, dim]` with their labels, class names and source files.
#[derive(Clone, Debug)]
pub struct Embeddings {
    pub base: BaseRef,
    pub classes: Vec<String>,
    pub vectors: Array2<f32>,
    pub labels: Vec<usize>,
    pub sources: Vec<PathBuf>,
}

impl Embeddings {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Examples per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        count_labels(self.labels.iter().copied(), self.classes.len())
    }

    /// The examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Embeddings {
        Embeddings {
            base: self.base.clone(),
            classes: self.classes.clone(),
            vectors: self.vectors.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            sources: indices.iter().map(|&i| self.sources[i].clone()).collect(),
        }
    }

    /// Seeded, stratified (train, validation) split; see [`stratified_split`].
    pub fn split(&self, val_fraction: f32, seed: u64) -> Result<(Embeddings, Embeddings)> {
        let (train, val) = stratified_split(&self.labels, val_fraction, seed)?;
        Ok((self.subset(&train), self.subset(&val)))
    }
}

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
            InputSpec::Image(_) => None,
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
                    let clips = embed_noise_file(base, &example.path, cache_root)?;
                    progress(1);
                    clips
                }
                false => results
                    .next()
                    .unwrap_or_else(|| Err(Error::Inference("not embedded".into())))
                    .map(|v| vec![(example.path.clone(), v)]),
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
            .map_err(|e| Error::Inference(e.to_string()))?;
        Ok((
            Embeddings {
                base: base.reference()?,
                classes: data.classes.clone(),
                vectors,
                labels,
                sources,
            },
            skipped,
        ))
    }
}

/// How [`Embeddings::augmented_with_noise`] makes noisy copies of training clips (as TensorFlow.js
/// speech-commands' `augmentByMixingNoiseRatio`).
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseAugmentation {
    /// Noisy copies per clip, 1 to [`MAX_NOISE_RATIO`].
    pub ratio: usize,
    /// Signal-to-noise ratio in dB, drawn uniformly from `low..=high` for each copy.
    pub snr_db: (f32, f32),
    /// Seed of every random choice (noise segment, offset, SNR, generated noise).
    pub seed: u64,
}

/// Most noisy copies per clip [`NoiseAugmentation`] accepts.
pub const MAX_NOISE_RATIO: usize = 100;

/// Default SNR range of noisy copies, in dB.
pub const DEFAULT_NOISE_SNR_DB: (f32, f32) = (5.0, 20.0);

/// A noise recording to mix into clips: samples at the base's rate and the sha256 of its file.
#[derive(Clone, Debug)]
pub struct NoiseRecording {
    pub sha256: String,
    pub samples: Vec<f32>,
}

impl NoiseRecording {
    /// Reads a WAV noise recording and resamples it to `spec`'s rate.
    pub fn load(path: &Path, spec: &AudioSpec) -> Result<NoiseRecording> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(NoiseRecording {
            sha256: sha256_hex(&bytes),
            samples: audio::load(&bytes, path, spec)?,
        })
    }
}

/// Where one noisy copy's noise comes from.
enum NoiseChoice {
    /// Recording index and start sample.
    Recording(usize, usize),
    /// Seed of generated pink noise.
    Generated(u64),
}

impl Embeddings {
    /// These embeddings followed by `aug.ratio` noisy copies of every clip that is not of the
    /// background-noise class: each copy is the clip (re-read from its source file) mixed at a
    /// random SNR with a random 1 s segment of a random `noise` recording, or, when `noise` is
    /// empty, with seeded generated pink noise. Seeded: the same seed gives the same copies.
    /// Copies are embedded with `base` through the cache under `cache_root`, keyed by the clip's
    /// file, the noise, the offset and the SNR. Meant for the training part of a split only.
    pub fn augmented_with_noise(
        &self,
        base: &BaseModel,
        noise: &[NoiseRecording],
        aug: &NoiseAugmentation,
        cache_root: Option<&Path>,
    ) -> Result<Embeddings> {
        let (low, high) = aug.snr_db;
        if aug.ratio == 0 || aug.ratio > MAX_NOISE_RATIO {
            return Err(Error::Invalid(format!(
                "noise augmentation ratio must be 1 to {MAX_NOISE_RATIO}, got {}",
                aug.ratio
            )));
        }
        if !(low.is_finite() && high.is_finite() && low <= high) {
            return Err(Error::Invalid(format!(
                "noise SNR range must be two finite dB values, low <= high, got {low}..{high}"
            )));
        }
        let spec = base.input_spec()?;
        let InputSpec::Audio(audio_spec) = spec else {
            return Err(Error::Invalid(
                "noise augmentation needs an audio base".into(),
            ));
        };
        if base.reference()? != self.base {
            return Err(Error::Invalid(
                "noise augmentation: these embeddings come from another base".into(),
            ));
        }
        let clip_len = audio_spec.clip_samples;
        let noise_label = self.classes.iter().position(|c| c == BACKGROUND_NOISE);
        let mut clips = Vec::new();
        for (i, path) in self.sources.iter().enumerate() {
            if Some(self.labels[i]) == noise_label {
                continue;
            }
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let samples = audio::fit_clip(&audio::load(&bytes, path, audio_spec)?, clip_len);
            clips.push((i, sha256_hex(&bytes), samples));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(aug.seed);
        let mut jobs = Vec::with_capacity(clips.len() * aug.ratio);
        for clip in 0..clips.len() {
            for _ in 0..aug.ratio {
                let choice = match noise.len() {
                    0 => NoiseChoice::Generated(rng.random()),
                    n => {
                        let r = rng.random_range(0..n);
                        let room = noise[r].samples.len().saturating_sub(clip_len);
                        NoiseChoice::Recording(r, rng.random_range(0..=room))
                    }
                };
                jobs.push((clip, choice, rng.random_range(low..=high)));
            }
        }
        let cache = base_cache(base, cache_root)?;
        let embed_job = |(clip, choice, snr): &(usize, NoiseChoice, f32)| -> Result<Array1<f32>> {
            let (_, sha, samples) = &clips[*clip];
            let (noise_key, noise_samples) = match choice {
                NoiseChoice::Recording(r, offset) => {
                    let rec = &noise[*r].samples;
                    let end = rec.len().min(offset.saturating_add(clip_len));
                    let segment = audio::fit_clip(rec.get(*offset..end).unwrap_or(&[]), clip_len);
                    (format!("{}-{offset}", noise[*r].sha256), segment)
                }
                NoiseChoice::Generated(seed) => (
                    format!("pink{seed:016x}"),
                    audio::pink_noise(clip_len, &mut ChaCha8Rng::seed_from_u64(*seed)),
                ),
            };
            let key = format!("noisy-{sha}-{noise_key}-{:08x}", snr.to_bits());
            if let Some(hit) = cache.as_ref().and_then(|c| c.get(&key)) {
                return Ok(Array1::from(hit));
            }
            let mixed = audio::mix_at_snr(samples, &noise_samples, *snr);
            let input = audio::to_input(&mixed, audio_spec).insert_axis(Axis(0));
            let row = base.embed(input.into_dyn().view())?.row(0).to_owned();
            if let Some(c) = &cache {
                // A cache that cannot be written only costs time later.
                let _ = c.put(&key, row.as_slice().unwrap_or(&[]));
            }
            Ok(row)
        };
        if jobs.is_empty() {
            return Ok(self.clone());
        }
        let rows = parallel_map(&jobs, &embed_job)?;
        let mut out = self.clone();
        let copies: Vec<usize> = jobs.iter().map(|(clip, _, _)| clips[*clip].0).collect();
        let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
        let added = ndarray::stack(Axis(0), &views).map_err(|e| Error::Inference(e.to_string()))?;
        out.vectors = ndarray::concatenate(Axis(0), &[self.vectors.view(), added.view()])
            .map_err(|e| Error::Inference(e.to_string()))?;
        for (&i, (_, _, snr)) in copies.iter().zip(&jobs) {
            out.labels.push(self.labels[i]);
            out.sources.push(PathBuf::from(format!(
                "{}#noise{snr:.1}dB",
                self.sources[i].display()
            )));
        }
        Ok(out)
    }
}

/// `f` over `items` on the machine's cores, results in order; the first error stops the work.
fn parallel_map<T: Sync, R: Send>(
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

/// Embeds image files with the frozen `base`, one result per file in order: an error in place
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

/// The embedding cache of `base` (its sha256, cut, preprocessing and size) under `cache_root`.
fn base_cache(base: &BaseModel, cache_root: Option<&Path>) -> Result<Option<EmbeddingCache>> {
    let preprocessing =
        serde_json::to_string(base.input_spec()?).map_err(|e| Error::Invalid(e.to_string()))?;
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
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(Err(Error::io(path, e))),
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
    if let Some(c) = cache {
        // A cache that cannot be written only costs time later.
        let _ = c.put(&key, row.as_slice().unwrap_or(&[]));
    }
    Ok(Ok(row))
}

/// One example's tensor (without the batch dim) from its file's bytes.
pub fn prepare(bytes: &[u8], path: &Path, spec: &InputSpec) -> Result<ArrayD<f32>> {
    match spec {
        InputSpec::Image(s) => Ok(preprocess(&decode_image(bytes, path)?, s)?.into_dyn()),
        InputSpec::Audio(s) => Ok(audio::preprocess(bytes, path, s)?.into_dyn()),
    }
}

/// An embedding with the example it came from.
type SourcedEmbedding = (PathBuf, Array1<f32>);

/// A background-noise recording cut into clips ([`audio::noise_clips`]), each embedded (through
/// the cache, keyed by the file's content and the clip's index): `(source, embedding)` per clip,
/// the source being `path#clipK`. `Ok(Err(..))` when the file is unusable, `Err(..)` when the
/// base failed.
fn embed_noise_file(
    base: &BaseModel,
    path: &Path,
    cache_root: Option<&Path>,
) -> Result<Result<Vec<SourcedEmbedding>>> {
    let spec = base.input_spec()?;
    let InputSpec::Audio(audio_spec) = spec else {
        return Err(Error::Invalid(
            "background noise needs an audio base".into(),
        ));
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(Err(Error::io(path, e))),
    };
    let samples = match audio::load(&bytes, path, audio_spec) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let cache = base_cache(base, cache_root)?;
    let file_key = sha256_hex(&bytes);
    let mut out = Vec::new();
    for (k, clip) in audio::noise_clips(&samples, audio_spec.clip_samples)
        .iter()
        .enumerate()
    {
        let key = format!("{file_key}-clip{k}");
        let source = PathBuf::from(format!("{}#clip{k}", path.display()));
        if let Some(hit) = cache.as_ref().and_then(|c| c.get(&key)) {
            out.push((source, Array1::from(hit)));
            continue;
        }
        let input = audio::to_input(clip, audio_spec).insert_axis(Axis(0));
        let row = base.embed(input.into_dyn().view())?.row(0).to_owned();
        if let Some(c) = &cache {
            // A cache that cannot be written only costs time later.
            let _ = c.put(&key, row.as_slice().unwrap_or(&[]));
        }
        out.push((source, row));
    }
    Ok(Ok(out))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
