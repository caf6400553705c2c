//! Labelled embeddings: what the frozen base made of each example, which base made them, and
//! where each example came from.
//!
//! - this module: the [`Embeddings`] type (checked on construction), [`Source`], the split;
//! - `engine`: embedding files and folders through the base, on all cores, through the cache;
//! - `clips`: background-noise recordings cut into clips (audio bases);
//! - `augment`: noisy copies of training clips ([`NoiseAugmentation`]).

mod augment;
mod clips;
mod engine;

use std::fmt;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2, Axis};

use crate::base::BaseRef;
use crate::dataset::{count_labels, stratified_split};
use crate::{Error, Result};

pub use augment::{
    noise_recordings, NoiseAugmentation, NoiseRecording, DEFAULT_NOISE_SNR_DB, MAX_NOISE_RATIO,
};
pub use engine::{embed_files, prepare, prepare_file};

/// Where one row of [`Embeddings`] came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A file, as it is.
    File(PathBuf),
    /// Clip `index` (from 0) of a background-noise recording cut into clips.
    NoiseClip { file: PathBuf, index: usize },
    /// A clip mixed with noise at `snr_db` (noise augmentation of a training example).
    Noisy { file: PathBuf, snr_db: f32 },
    /// The left/right mirror of a training example's pose features.
    Mirrored(Box<Source>),
}

impl Source {
    /// The file the example was made from.
    pub fn file(&self) -> &Path {
        match self {
            Source::File(file) | Source::NoiseClip { file, .. } | Source::Noisy { file, .. } => {
                file
            }
            Source::Mirrored(inner) => inner.file(),
        }
    }

    /// Whether this is a file as it is (not a clip of it or a copy made by augmentation).
    pub fn is_file(&self) -> bool {
        matches!(self, Source::File(_))
    }
}

impl fmt::Display for Source {
    /// The file, with what was made of it: `a.wav#clip3`, `a.wav#noise12.5dB`, `p.png#mirrored`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(file) => write!(f, "{}", file.display()),
            Source::NoiseClip { file, index } => write!(f, "{}#clip{index}", file.display()),
            Source::Noisy { file, snr_db } => write!(f, "{}#noise{snr_db:.1}dB", file.display()),
            Source::Mirrored(inner) => write!(f, "{inner}#mirrored"),
        }
    }
}

/// Embeddings `[n, dim]` of one base with their labels, class names and sources; checked when
/// made: one label (a class index) and one source per row, rows of the base's embedding size,
/// finite numbers.
#[derive(Clone, Debug)]
pub struct Embeddings {
    pub(crate) base: BaseRef,
    pub(crate) classes: Vec<String>,
    pub(crate) vectors: Array2<f32>,
    pub(crate) labels: Vec<usize>,
    pub(crate) sources: Vec<Source>,
}

impl Embeddings {
    /// Checked embeddings: `vectors` `[n, base.embedding_dim]` (finite), `labels` and `sources`
    /// `n` each, every label below `classes.len()`.
    pub fn new(
        base: BaseRef,
        classes: Vec<String>,
        vectors: Array2<f32>,
        labels: Vec<usize>,
        sources: Vec<Source>,
    ) -> Result<Embeddings> {
        let n = vectors.nrows();
        if vectors.ncols() != base.embedding_dim {
            return Err(Error::Invalid(format!(
                "embeddings have {} numbers per row, base '{}' gives {}",
                vectors.ncols(),
                base.name,
                base.embedding_dim
            )));
        }
        if labels.len() != n || sources.len() != n {
            return Err(Error::Invalid(format!(
                "{n} embeddings with {} labels and {} sources",
                labels.len(),
                sources.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l >= classes.len()) {
            return Err(Error::Invalid(format!(
                "label {bad} but only {} classes",
                classes.len()
            )));
        }
        if let Some(i) = vectors
            .rows()
            .into_iter()
            .position(|r| !r.iter().all(|v| v.is_finite()))
        {
            return Err(Error::Invalid(format!(
                "the embedding of {} is not finite",
                sources[i]
            )));
        }
        Ok(Embeddings {
            base,
            classes,
            vectors,
            labels,
            sources,
        })
    }

    /// The base that made them.
    pub fn base(&self) -> &BaseRef {
        &self.base
    }

    /// Class names; labels index into them.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The embeddings, one row per example.
    pub fn vectors(&self) -> ArrayView2<'_, f32> {
        self.vectors.view()
    }

    /// Each row's class index.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Where each row came from.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

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

    /// The rows of class `class`.
    pub fn of_class(&self, class: usize) -> Embeddings {
        let rows: Vec<usize> = (0..self.len())
            .filter(|&i| self.labels[i] == class)
            .collect();
        self.subset(&rows)
    }

    /// Seeded, stratified (train, validation) split; see [`stratified_split`].
    pub fn split(&self, val_fraction: f32, seed: u64) -> Result<(Embeddings, Embeddings)> {
        let (train, val) = stratified_split(&self.labels, val_fraction, seed)?;
        Ok((self.subset(&train), self.subset(&val)))
    }

    /// These embeddings followed by `rows` (`[m, dim]`) with their labels and sources: copies made
    /// by augmentation.
    pub fn extended(
        &self,
        rows: ArrayView2<f32>,
        labels: Vec<usize>,
        sources: Vec<Source>,
    ) -> Result<Embeddings> {
        let vectors = ndarray::concatenate(Axis(0), &[self.vectors.view(), rows])
            .map_err(|e| Error::Invalid(format!("augmented rows: {e}")))?;
        let mut all_labels = self.labels.clone();
        all_labels.extend(labels);
        let mut all_sources = self.sources.clone();
        all_sources.extend(sources);
        Embeddings::new(
            self.base.clone(),
            self.classes.clone(),
            vectors,
            all_labels,
            all_sources,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{AudioSpec, InputSpec};

    fn base(dim: usize) -> BaseRef {
        BaseRef {
            name: "b".into(),
            sha256: "ab".repeat(32),
            cut: "c".into(),
            embedding_dim: dim,
            input: InputSpec::Audio(AudioSpec {
                sample_rate: 16_000,
                clip_samples: 16_000,
                scale: 1.0,
            }),
        }
    }

    fn files(n: usize) -> Vec<Source> {
        (0..n)
            .map(|i| Source::File(format!("{i}.wav").into()))
            .collect()
    }

    #[test]
    fn construction_checks_sizes_labels_and_numbers() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let rows = Array2::from_shape_vec((3, 2), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let ok = Embeddings::new(
            base(2),
            classes.clone(),
            rows.clone(),
            vec![0, 1, 1],
            files(3),
        );
        assert_eq!(ok.unwrap().counts(), vec![1, 2]);
        let wrong_dim = Embeddings::new(
            base(3),
            classes.clone(),
            rows.clone(),
            vec![0, 1, 1],
            files(3),
        );
        assert!(wrong_dim
            .unwrap_err()
            .to_string()
            .contains("numbers per row"));
        let few_labels =
            Embeddings::new(base(2), classes.clone(), rows.clone(), vec![0, 1], files(3));
        assert!(few_labels.is_err());
        let bad_label = Embeddings::new(
            base(2),
            classes.clone(),
            rows.clone(),
            vec![0, 2, 1],
            files(3),
        );
        assert!(bad_label.unwrap_err().to_string().contains("label 2"));
        let mut nan = rows;
        nan[[2, 1]] = f32::NAN;
        let err = Embeddings::new(base(2), classes, nan, vec![0, 1, 1], files(3)).unwrap_err();
        assert!(err.to_string().contains("2.wav"), "{err}");
    }

    #[test]
    fn sources_name_their_file_and_what_was_made_of_it() {
        let clip = Source::NoiseClip {
            file: "n.wav".into(),
            index: 3,
        };
        assert_eq!(clip.to_string(), "n.wav#clip3");
        assert_eq!(clip.file(), Path::new("n.wav"));
        let noisy = Source::Noisy {
            file: "w.wav".into(),
            snr_db: 12.25,
        };
        assert_eq!(noisy.to_string(), "w.wav#noise12.2dB");
        let mirrored = Source::Mirrored(Box::new(Source::File("p.png".into())));
        assert_eq!(mirrored.to_string(), "p.png#mirrored");
        assert_eq!(mirrored.file(), Path::new("p.png"));
        assert!(!mirrored.is_file() && Source::File("p.png".into()).is_file());
    }
}
