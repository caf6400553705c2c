//! `diagnose`: a labelled folder -> the data doctor's findings (what `graft doctor` runs).

use serde::Serialize;

use super::embed::{embed_folder, EmbedReport, Embedded};
use super::Progress;
use crate::base::BaseModel;
use crate::cache::CacheOptions;
use crate::dataset::Dataset;
use crate::doctor::{examine, Diagnosis, DoctorOptions};
use crate::Result;

/// The doctor's findings on a folder, with what embedding it did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnosed {
    pub diagnosis: Diagnosis,
    pub embedded: EmbedReport,
}

/// Embeds every file of `data` with `base` (through the cache) and examines them as
/// [`crate::doctor`] says, with the train/validation split `graft train` makes with `seed`.
/// Clips cut from `_background_noise_` recordings are not examined.
pub fn diagnose(
    base: &BaseModel,
    data: &Dataset,
    seed: u64,
    options: &DoctorOptions,
    cache: &CacheOptions,
    progress: &dyn Progress,
) -> Result<Diagnosed> {
    options.validate()?;
    let embedded = embed_folder(base, data, cache, progress)?;
    Ok(Diagnosed {
        diagnosis: diagnose_embedded(&embedded, seed, options)?,
        embedded: embedded.report,
    })
}

/// [`diagnose`] on a folder already embedded by [`embed_folder`].
pub fn diagnose_embedded(
    embedded: &Embedded,
    seed: u64,
    options: &DoctorOptions,
) -> Result<Diagnosis> {
    let files: Vec<usize> = (0..embedded.embeddings.len())
        .filter(|&i| embedded.embeddings.sources()[i].is_file())
        .collect();
    let embeddings = embedded.embeddings.subset(&files);
    examine(&embeddings, &embedded.report.skipped, seed, options)
}
