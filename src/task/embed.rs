//! A labelled folder embedded through the base (cached), with what was skipped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, Axis};
use serde::Serialize;

use super::{in_phase, Phase, Progress};
use crate::base::BaseModel;
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::embeddings::embed_files;
use crate::embeddings::Embeddings;
use crate::{Error, Result};

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

/// Files that could not be used, with why.
pub type Skipped = Vec<(PathBuf, String)>;

/// Embeddings `[m, dim]` of every file under `dir` (at any depth, see
/// [`crate::dataset::files_under`]): examples of nothing a model knows. Files the base cannot use
/// are skipped and returned with why; none usable is an error.
pub fn embed_unlabelled(
    base: &BaseModel,
    dir: &Path,
    cache: &CacheOptions,
    progress: &dyn Progress,
) -> Result<(Array2<f32>, Skipped)> {
    let files = crate::dataset::files_under(dir)?;
    let root = cache.root();
    let results = in_phase(progress, Phase::Embedding, files.len() as u64, |advance| {
        embed_files(base, &files, root.as_deref(), advance)
    })?;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (file, result) in files.into_iter().zip(results) {
        match result {
            Ok(row) => rows.push(row),
            Err(e) => skipped.push((file, e.to_string())),
        }
    }
    if rows.is_empty() {
        return Err(Error::Dataset(format!(
            "none of the {} file(s) under {} could be used by base {}",
            skipped.len(),
            dir.display(),
            base.name()
        )));
    }
    Ok((stack_rows(&rows)?, skipped))
}

/// Embeddings `[n, dim]` from their rows.
pub(super) fn stack_rows(rows: &[ndarray::Array1<f32>]) -> Result<Array2<f32>> {
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    ndarray::stack(Axis(0), &views)
        .map_err(|e| Error::Internal(format!("stacking embeddings: {e}")))
}
