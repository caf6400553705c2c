//! Noisy copies of training clips (as TensorFlow.js speech-commands' `augmentByMixingNoiseRatio`).

use std::path::{Path, PathBuf};

use ndarray::{Array1, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::engine::{base_cache, parallel_map};
use super::{Embeddings, Source};
use crate::base::BaseModel;
use crate::cache::sha256_hex;
use crate::input::audio::{self, BACKGROUND_NOISE};
use crate::input::{AudioSpec, InputSpec};
use crate::{Error, Result};

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
        let bytes = crate::limits::read(path, crate::limits::FileKind::Audio)?;
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
            return Err(Error::BaseMismatch(
                "noise augmentation: these embeddings come from another base".into(),
            ));
        }
        let clip_len = audio_spec.clip_samples;
        let noise_label = self.classes.iter().position(|c| c == BACKGROUND_NOISE);
        let mut clips = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            if Some(self.labels[i]) == noise_label {
                continue;
            }
            let path = source.file();
            let bytes = crate::limits::read(path, crate::limits::FileKind::Audio)?;
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
        let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
        let added = ndarray::stack(Axis(0), &views)
            .map_err(|e| Error::Internal(format!("noisy copies: {e}")))?;
        let (labels, sources) = jobs
            .iter()
            .map(|(clip, _, snr)| {
                let i = clips[*clip].0;
                let source = Source::Noisy {
                    file: self.sources[i].file().to_path_buf(),
                    snr_db: *snr,
                };
                (self.labels[i], source)
            })
            .unzip();
        self.extended(added.view(), labels, sources)
    }
}

/// The WAV recordings in `dir`'s background-noise class folder (resampled to `base`'s rate), or
/// none when there is no such folder; an error for a base that does not take audio.
pub fn noise_recordings(base: &BaseModel, dir: &Path) -> Result<Vec<NoiseRecording>> {
    let InputSpec::Audio(spec) = base.input_spec()? else {
        return Err(Error::Invalid(
            "noise augmentation needs an audio base".into(),
        ));
    };
    let folder = dir.join(BACKGROUND_NOISE);
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|e| Error::io(&folder, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| NoiseRecording::load(p, spec))
        .collect()
}
