//! Converting a zoo model's original with the converter its manifest names.

use std::path::{Path, PathBuf};

use super::Converter;
use super::{fetch_original, manifest, Manifest};
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

/// Fetches, converts and writes base model `name` into the zoo folder (atomically). Nothing else is
/// changed: [`Built::matches_manifest`] says whether the result is the recorded file.
pub fn build(name: &str, local: Option<&Path>) -> Result<Built> {
    let m = manifest(name)?;
    let original = fetch_original(&m, local)?;
    let bytes = convert(&m, &original)?;
    let path = m.model_path();
    crate::atomic::write_atomic(&path, &bytes)?;
    let sha256 = crate::cache::sha256_hex(&bytes);
    Ok(Built {
        matches_manifest: sha256 == m.model.sha256,
        model: path,
        sha256,
    })
}
