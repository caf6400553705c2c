//! What every classifier of a task does with example files: embed them (cached) and answer
//! each, one answer per file, a file that cannot be used getting its error in place.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};

use super::{in_phase, Phase, Progress};
use crate::base::BaseModel;
use crate::cache::CacheOptions;
use crate::embeddings::{embed_files, prepare};
use crate::{Error, Result};

/// One file's answer, or why it has none.
#[derive(Debug)]
pub struct FileAnswer<T> {
    pub file: PathBuf,
    pub answer: Result<T>,
}

/// The embedding `[1, dim]` of one example file's bytes; `name` stands for the file in errors.
pub(super) fn embed_bytes(base: &BaseModel, bytes: &[u8], name: &str) -> Result<Array2<f32>> {
    let tensor = prepare(bytes, Path::new(name), base.input_spec()?)?;
    base.embed(tensor.insert_axis(Axis(0)).view())
}

/// The one answer for one example.
pub(super) fn single<T>(answers: Vec<T>) -> Result<T> {
    let mut answers = answers.into_iter();
    match (answers.next(), answers.next()) {
        (Some(answer), None) => Ok(answer),
        _ => Err(Error::Internal("not one answer for one example".into())),
    }
}

/// Embeds `files` with `base` (cached) and answers each embedding with `answer`.
pub(super) fn answer_files<T>(
    base: &BaseModel,
    files: &[PathBuf],
    cache: &CacheOptions,
    progress: &dyn Progress,
    answer: impl Fn(ndarray::ArrayView2<f32>) -> Result<T>,
) -> Result<Vec<FileAnswer<T>>> {
    let root = cache.root();
    let results = in_phase(progress, Phase::Embedding, files.len() as u64, |advance| {
        embed_files(base, files, root.as_deref(), advance)
    });
    Ok(files
        .iter()
        .zip(results?)
        .map(|(file, embedding)| FileAnswer {
            file: file.clone(),
            answer: embedding.and_then(|v| answer(v.view().insert_axis(Axis(0)))),
        })
        .collect())
}
