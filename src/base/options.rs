//! How a base is loaded: which engine runs it, where it is cut, and what the file leaves open
//! (input sizes, an ONNX image model's preprocessing).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::progress::{Event, Progress};
use crate::{Error, Result};

use super::onnxruntime::{loaded, OrtSession};

/// The inference engine that runs a base. Both give the same embeddings (within float rounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// ONNX Runtime when its library can be had, else tract (see [`EngineOptions::resolve`]).
    #[default]
    Auto,
    /// tract, in pure Rust (always built).
    Tract,
    /// ONNX Runtime, a shared library loaded at run time (cargo feature `onnxruntime`, on by
    /// default; see [`super::find_library`]); an error when it cannot be loaded.
    Ort,
}

impl Backend {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "auto" => Ok(Backend::Auto),
            "tract" => Ok(Backend::Tract),
            "ort" => Ok(Backend::Ort),
            _ => Err(Error::Invalid(format!(
                "unknown backend '{s}': give auto, tract or ort"
            ))),
        }
    }
}

/// Which engine runs a base. Default: auto (ONNX Runtime when it can be had, else tract).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct EngineOptions {
    /// Inference engine for the base: auto (ONNX Runtime when its library is found or can be
    /// fetched once, else tract), tract (pure Rust), or ort (ONNX Runtime, an error without it).
    /// Default auto.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Backend::default()))]
    pub backend: Backend,
    /// The ONNX Runtime library file; `None`: as [`super::find_library`] says
    /// (`$ORT_DYLIB_PATH`, graft's cache, the system's library folders). One process loads one
    /// library.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub ort_library: Option<PathBuf>,
}

/// The engine [`EngineOptions::resolve`] chose.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EngineChoice {
    /// [`Backend::Tract`] or [`Backend::Ort`].
    #[serde(serialize_with = "as_name")]
    pub backend: Backend,
    /// For ONNX Runtime: the library file.
    pub library: Option<PathBuf>,
    /// Why `auto` chose tract (no library, a library that cannot be loaded), with how to get the
    /// fast engine; `None` otherwise.
    pub note: Option<String>,
}

fn as_name<S: serde::Serializer>(backend: &Backend, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(backend.name())
}

/// What `auto` chose in this process, for each explicit library path: ONNX Runtime is loaded once
/// per process, so the choice (and any fetch of the library) is made once too.
static AUTO: Mutex<Vec<(Option<PathBuf>, EngineChoice)>> = Mutex::new(Vec::new());

impl EngineOptions {
    /// The engine to use. `tract`: tract. `ort`: ONNX Runtime, loaded now (an error when it
    /// cannot be). `auto`: ONNX Runtime when its library is found ([`super::find_library`]) and
    /// loads; when none is found and downloads are allowed (`GRAFT_OFFLINE` unset), the pinned
    /// library is fetched once into graft's cache ([`super::install`], reported on `progress`);
    /// in every other case tract, with a [`EngineChoice::note`] saying why and how to get the
    /// fast engine (also sent to `progress`). Decided once per process.
    pub fn resolve(&self, progress: &dyn Progress) -> Result<EngineChoice> {
        let explicit = self.ort_library.as_deref();
        let ort = |library: PathBuf| EngineChoice {
            backend: Backend::Ort,
            library: Some(library),
            note: None,
        };
        match self.backend {
            Backend::Tract => {
                return Ok(EngineChoice {
                    backend: Backend::Tract,
                    library: None,
                    note: None,
                })
            }
            Backend::Ort => {
                OrtSession::runtime_ready(explicit)?;
                let library = loaded().map(|(path, _)| path).unwrap_or_default();
                return Ok(ort(library));
            }
            Backend::Auto => {}
        }
        let mut memo = AUTO.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, choice)) = memo.iter().find(|(path, _)| path.as_deref() == explicit) {
            return Ok(choice.clone());
        }
        let choice = match auto(explicit, progress, !crate::download::offline()) {
            Ok(library) => ort(library),
            Err(why) => {
                let note = format!(
                    "running on tract (slower): {why}; `{}` gets the fast engine",
                    super::onnxruntime::INSTALL_COMMAND
                );
                progress.on(Event::Notice(&note));
                EngineChoice {
                    backend: Backend::Tract,
                    library: None,
                    note: Some(note),
                }
            }
        };
        memo.push((explicit.map(Path::to_path_buf), choice.clone()));
        Ok(choice)
    }

    /// What the engine would be, without fetching anything: the requested backend, the one that
    /// runs, the library (loaded now to be sure it works) and ONNX Runtime's build string.
    pub fn probe(&self) -> EngineReport {
        let explicit = self.ort_library.as_deref();
        let library = super::find_library(explicit).ok().flatten();
        let outcome = match self.backend {
            Backend::Tract => Err(None),
            Backend::Ort => OrtSession::runtime_ready(explicit).map_err(|e| Some(e.to_string())),
            Backend::Auto => auto(explicit, &crate::progress::Silent, false)
                .map(|_| ())
                .map_err(Some),
        };
        let runtime = loaded();
        EngineReport {
            requested: self.backend.name(),
            engine: if outcome.is_ok() { "ort" } else { "tract" },
            library,
            runtime: runtime.filter(|_| outcome.is_ok()).map(|(_, info)| info),
            note: outcome.err().flatten(),
        }
    }
}

/// What [`EngineOptions::probe`] found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EngineReport {
    /// The backend asked for: auto, tract or ort.
    pub requested: &'static str,
    /// The engine that runs: ort or tract.
    pub engine: &'static str,
    /// The ONNX Runtime library found, if any.
    pub library: Option<super::Library>,
    /// ONNX Runtime's own build string (version, commit), when it runs.
    pub runtime: Option<String>,
    /// Why ONNX Runtime does not run, when it does not.
    pub note: Option<String>,
}

/// `auto`'s search: the library it loaded, or why there is none; fetches the pinned library
/// when none is found and `fetch` allows it.
fn auto(
    explicit: Option<&Path>,
    progress: &dyn Progress,
    fetch: bool,
) -> std::result::Result<PathBuf, String> {
    if !cfg!(feature = "onnxruntime") {
        return Err("this graft was built without the `onnxruntime` feature".into());
    }
    let found = super::find_library(explicit).map_err(|e| e.to_string())?;
    let path = match found {
        Some(library) => library.path,
        None if !fetch => {
            return Err(if crate::download::offline() {
                format!(
                    "no ONNX Runtime library found and {} forbids fetching it",
                    crate::download::OFFLINE_ENV
                )
            } else {
                "no ONNX Runtime library found".into()
            })
        }
        None => super::install(progress)
            .map_err(|e| format!("ONNX Runtime could not be fetched ({e})"))?,
    };
    OrtSession::runtime_ready(Some(&path))
        .map_err(|e| format!("ONNX Runtime at {} cannot be used ({e})", path.display()))?;
    Ok(loaded().map(|(p, _)| p).unwrap_or(path))
}

/// How to load a base: where to cut it, when the file leaves them open its input sizes and
/// preprocessing, and which engine runs it. `BaseOptions::default()` is the zoo's (or the
/// automatic) cut on tract.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct BaseOptions {
    /// Tensor (or node) to cut the base at; default: the zoo's embedding, or the input of the
    /// final classifier layer of an ONNX file.
    #[cfg_attr(feature = "cli", arg(long))]
    pub cut: Option<String>,
    /// Input dims after the batch (e.g. `[3, 224, 224]`); needed when the file does not fix them,
    /// checked against the file otherwise. Default: the file's.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub input_shape: Option<Vec<usize>>,
    /// For an ONNX image model: per-channel mean subtracted from 0..255 pixels, "R,G,B" or one
    /// number. Default 0 (zoo models have their own preprocessing).
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse_triple))]
    pub mean: Option<[f32; 3]>,
    /// For an ONNX image model: per-channel divisor of 0..255 pixels, "R,G,B" or one number.
    /// Default 255.
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse_triple))]
    pub std: Option<[f32; 3]>,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub engine: EngineOptions,
}

impl From<EngineOptions> for BaseOptions {
    /// Options that name only the engine.
    fn from(engine: EngineOptions) -> BaseOptions {
        BaseOptions {
            engine,
            ..BaseOptions::default()
        }
    }
}

impl BaseOptions {
    /// Options that name only the engine.
    pub fn on(backend: Backend) -> BaseOptions {
        BaseOptions {
            engine: EngineOptions {
                backend,
                ort_library: None,
            },
            ..BaseOptions::default()
        }
    }

    /// These options with the engine resolved ([`EngineOptions::resolve`]): `tract` or `ort` with
    /// its library. Fails early, before any model work, when `ort` cannot run here.
    pub(super) fn resolved(&self, progress: &dyn Progress) -> Result<BaseOptions> {
        let choice = self.engine.resolve(progress)?;
        Ok(BaseOptions {
            engine: EngineOptions {
                backend: choice.backend,
                ort_library: choice.library,
            },
            ..self.clone()
        })
    }

    /// Errors when the options set the preprocessing (for bases that have their own).
    pub(super) fn check_no_preprocessing(&self, what: &str) -> Result<()> {
        if self.mean.is_some() || self.std.is_some() {
            return Err(Error::Invalid(format!(
                "{what} has its own preprocessing; mean/std are for ONNX files"
            )));
        }
        Ok(())
    }
}

/// Parses "R,G,B" or one number (for all three channels), as `--mean` and `--std` take.
pub fn parse_triple(text: &str) -> Result<[f32; 3]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Invalid(format!("'{text}' is not a number or R,G,B")))?;
    match values[..] {
        [v] if v.is_finite() => Ok([v; 3]),
        [r, g, b] if [r, g, b].iter().all(|v| v.is_finite()) => Ok([r, g, b]),
        _ => Err(Error::Invalid(format!(
            "'{text}': give one finite number or three (R,G,B)"
        ))),
    }
}
