//! How a base is loaded: which engine runs it, where it is cut, and what the file leaves open
//! (input sizes, an ONNX image model's preprocessing).

use std::fmt;
use std::path::PathBuf;

use crate::{Error, Result};

use super::onnxruntime::OrtSession;

/// The inference engine that runs a base. Both give the same embeddings (within float rounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// tract, in pure Rust (always built).
    #[default]
    Tract,
    /// ONNX Runtime, a shared library loaded at run time (cargo feature `onnxruntime`; see
    /// [`super::library_path`]).
    Ort,
}

impl Backend {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
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
            "tract" => Ok(Backend::Tract),
            "ort" => Ok(Backend::Ort),
            _ => Err(Error::Invalid(format!(
                "unknown backend '{s}': give tract or ort"
            ))),
        }
    }
}

/// Which engine runs a base. Default: tract.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct EngineOptions {
    /// Inference engine for the base: tract, or ort (ONNX Runtime; needs a build with the
    /// `onnxruntime` feature and its library: $ORT_DYLIB_PATH, or scripts/fetch-onnxruntime.sh).
    /// Default tract.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Backend::default()))]
    pub backend: Backend,
    /// For [`Backend::Ort`]: the ONNX Runtime library file; `None`: as [`super::library_path`]
    /// says (`$ORT_DYLIB_PATH`, else [`super::default_library`]). One process loads one library.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub ort_library: Option<PathBuf>,
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

    /// Fails early, before any model work, when the engine cannot run here: ONNX Runtime not
    /// built in, or its library not found.
    pub(super) fn check_backend(&self) -> Result<()> {
        match self.engine.backend {
            Backend::Tract => Ok(()),
            Backend::Ort => OrtSession::runtime_ready(self.engine.ort_library.as_deref()),
        }
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
