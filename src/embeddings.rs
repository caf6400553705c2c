//! Labelled embeddings: what the frozen base made of each example, and which base made them.

use std::path::PathBuf;

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::dataset::{count_labels, stratified_split};
use crate::input::ImageSpec;
use crate::Result;

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
    pub input: ImageSpec,
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
