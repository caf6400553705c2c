//! `diagnose`: a labelled folder -> the data doctor's findings (what `graft doctor` runs).

use serde::Serialize;

use super::embed::{embed_folder, EmbedReport};
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
    let files: Vec<usize> = (0..embedded.embeddings.len())
        .filter(|&i| embedded.embeddings.sources()[i].is_file())
        .collect();
    let embeddings = embedded.embeddings.subset(&files);
    let diagnosis = examine(&embeddings, &embedded.report.skipped, seed, options)?;
    Ok(Diagnosed {
        diagnosis,
        embedded: embedded.report,
    })
}
