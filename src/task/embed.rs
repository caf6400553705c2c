//! A labelled folder embedded through the base (cached), with what was skipped.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::{in_phase, Phase, Progress};
use crate::base::BaseModel;
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::embeddings::Embeddings;
use crate::Result;

/// Embeddings of a folder with what it cost.
#[derive(Clone, Debug)]
pub struct Embedded {
    pub embeddings: Embeddings,
    pub report: EmbedReport,
}

/// What embedding a folder did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmbedReport {
    /// Examples embedded (clips of background-noise recordings count one each).
    pub examples: usize,
    /// Classes found.
    pub classes: usize,
    /// The base's name and embedding size.
    pub base: String,
    pub dim: usize,
    /// Files that could not be used, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Wall time.
    pub seconds: f64,
}

/// Embeds every example of `data` with `base` (through the cache unless `cache.no_cache`). Files
/// that cannot be read or decoded are skipped and listed in the report; a class left without
/// examples is an error.
pub fn embed_folder(
    base: &BaseModel,
    data: &Dataset,
    cache: &CacheOptions,
    progress: &dyn Progress,
) -> Result<Embedded> {
    let start = Instant::now();
    let root = cache.root();
    let total = data.examples.len() as u64;
    let (embeddings, skipped) = in_phase(progress, Phase::Embedding, total, |advance| {
        Embeddings::from_dataset(base, data, root.as_deref(), advance)
    })?;
    let report = EmbedReport {
        examples: embeddings.len(),
        classes: embeddings.classes().len(),
        base: base.name().to_string(),
        dim: base.embedding_dim(),
        skipped: skipped
            .into_iter()
            .map(|(path, err)| (path, err.to_string()))
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(Embedded { embeddings, report })
}
