//! Background-noise recordings cut into clips, each embedded as an example of the noise class.

use std::path::Path;

use ndarray::{Array1, Axis};

use super::engine::base_cache;
use super::Source;
use crate::base::BaseModel;
use crate::cache::sha256_hex;
use crate::input::audio;
use crate::input::InputSpec;
use crate::{Error, Result};

/// An embedding with the example it came from.
type SourcedEmbedding = (Source, Array1<f32>);

/// A background-noise recording cut into clips ([`audio::noise_clips`]), each embedded (through
/// the cache, keyed by the file's content and the clip's index): `(source, embedding)` per clip,
/// the source a [`Source::NoiseClip`]. `Ok(Err(..))` when the file is unusable, `Err(..)` when the
/// base failed.
pub(super) fn embed_noise_file(
    base: &BaseModel,
    path: &Path,
    cache_root: Option<&Path>,
) -> Result<Result<Vec<SourcedEmbedding>>> {
    let spec = base.input_spec()?;
    let InputSpec::Audio(audio_spec) = spec else {
        return Err(Error::Invalid(
            "background noise needs an audio base".into(),
        ));
    };
    let bytes = match crate::limits::read(path, crate::limits::FileKind::Audio) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let samples = match audio::load(&bytes, path, audio_spec) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let cache = base_cache(base, cache_root)?;
    let file_key = sha256_hex(&bytes);
    let mut out = Vec::new();
    for (k, clip) in audio::noise_clips(&samples, audio_spec.clip_samples)
        .iter()
        .enumerate()
    {
        let key = format!("{file_key}-clip{k}");
        let source = Source::NoiseClip {
            file: path.to_path_buf(),
            index: k,
        };
        if let Some(hit) = cache.as_ref().and_then(|c| c.get(&key)) {
            out.push((source, Array1::from(hit)));
            continue;
        }
        let input = audio::to_input(clip, audio_spec).insert_axis(Axis(0));
        let row = base.embed(input.into_dyn().view())?.row(0).to_owned();
        if let Some(c) = &cache {
            // A cache that cannot be written only costs time later.
            let _ = c.put(&key, row.as_slice().unwrap_or(&[]));
        }
        out.push((source, row));
    }
    Ok(Ok(out))
}
