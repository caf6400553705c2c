//! ONNX Runtime as a second engine for a base (cargo feature `onnxruntime`, `--backend ort`).
//!
//! The runtime is a shared library loaded when the first ORT base is opened: the path given in
//! [`BaseOptions::ort_library`](super::BaseOptions::ort_library), else `$ORT_DYLIB_PATH`, else
//! [`default_library`], where `scripts/fetch-onnxruntime.sh` puts it. One process loads one
//! library file.

use std::path::{Path, PathBuf};

use crate::cache::cache_dir;
use crate::Result;

/// The ONNX Runtime release graft is tested with (and the fetch script installs).
pub const ORT_VERSION: &str = "1.32.0";

/// Environment variable naming the ONNX Runtime library file.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The script (in graft's repository) that installs the library at [`default_library`].
pub const FETCH_SCRIPT: &str = "scripts/fetch-onnxruntime.sh";

/// File name of the ONNX Runtime library on this platform, as the onnxruntime wheel ships it.
fn library_file_name() -> String {
    if cfg!(target_os = "windows") {
        "onnxruntime.dll".into()
    } else if cfg!(target_os = "macos") {
        format!("libonnxruntime.{ORT_VERSION}.dylib")
    } else {
        format!("libonnxruntime.so.{ORT_VERSION}")
    }
}

/// Where graft looks for ONNX Runtime when neither a path nor `$ORT_DYLIB_PATH` is given:
/// `<graft cache>/onnxruntime/1.32.0/libonnxruntime.so.1.32.0` (the cache is `$GRAFT_CACHE`, else
/// `$XDG_CACHE_HOME/graft`, else `~/.cache/graft`; see [`cache_dir`]).
pub fn default_library() -> Result<PathBuf> {
    Ok(cache_dir()?
        .join("onnxruntime")
        .join(ORT_VERSION)
        .join(library_file_name()))
}

/// The library to load: `explicit`, else `$ORT_DYLIB_PATH` when set and not empty, else
/// [`default_library`].
pub fn library_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    match std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        Some(path) => Ok(PathBuf::from(path)),
        None => default_library(),
    }
}

#[cfg(feature = "onnxruntime")]
pub(super) use with_ort::OrtSession;

#[cfg(feature = "onnxruntime")]
mod with_ort {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use ndarray::{ArrayD, ArrayViewD};
    use ort::environment::Environment;
    use ort::session::builder::GraphOptimizationLevel;
    use ort::session::Session;
    use ort::value::TensorRef;

    use super::{library_file_name, library_path, FETCH_SCRIPT, ORT_DYLIB_ENV, ORT_VERSION};
    use crate::base::guard;
    use crate::{Error, Result};

    /// ORT intra-op threads per session: one per core, as a session runs one call at a time.
    /// Idle threads sleep instead of spinning. Measured on a shared 2-core machine
    /// (EfficientNet-Lite0, batch 1, ms per image): 2 sleeping threads 8.7-9.5, 1 thread 9.2-12.3,
    /// 2 spinning threads 13.7-17.6 (27-36 while other builds loaded the machine, when 2 sleeping
    /// threads took 15 and 1 thread 14).
    fn intra_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The error for a library file that is not there, saying how to get one.
    fn missing_library(path: &Path) -> Error {
        Error::Invalid(format!(
            "ONNX Runtime library {} not found: run {FETCH_SCRIPT} (from graft's repository; it \
             installs ONNX Runtime {ORT_VERSION} from PyPI at the default location), or set \
             {ORT_DYLIB_ENV} to a {} file",
            path.display(),
            library_file_name()
        ))
    }

    /// The process's ONNX Runtime environment and the library file it was loaded from: ort allows
    /// one environment per process, and a loaded library stays loaded.
    static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

    /// The environment, loading the library at `library` (or as [`library_path`] says) on first use.
    fn environment(library: Option<&Path>) -> Result<Environment> {
        let path = library_path(library)?;
        // ort panics on a library it cannot open: look first.
        if !path.is_file() {
            return Err(missing_library(&path));
        }
        let path = path.canonicalize().map_err(|e| Error::io(&path, e))?;
        let mut runtime = RUNTIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((loaded, env)) = runtime.as_ref() {
            if *loaded == path {
                return Ok(env.clone());
            }
            return Err(Error::Invalid(format!(
                "ONNX Runtime is already loaded from {} in this process; it cannot load {} as well",
                loaded.display(),
                path.display()
            )));
        }
        let env = guard("loading ONNX Runtime", || {
            ort::init_from(&path)
                .map_err(|e| e.to_string())?
                .with_name("graft")
                .with_telemetry(false)
                .build()
                .map_err(|e| e.to_string())
        })
        .map_err(Error::Inference)?;
        *runtime = Some((path, env.clone()));
        Ok(env)
    }

    /// An ONNX Runtime session over a cut model; `run` needs it exclusively, hence the lock.
    pub(in crate::base) struct OrtSession {
        session: Mutex<Session>,
        input: String,
    }

    impl OrtSession {
        /// Loads the runtime (once per process) or says why it cannot be.
        pub(in crate::base) fn runtime_ready(library: Option<&Path>) -> Result<()> {
            environment(library).map(|_| ())
        }

        /// A session for the ONNX `model` (already cut: its first output is the embedding) fed
        /// through input `input`, with full graph optimisation.
        pub(in crate::base) fn new(
            model: &[u8],
            input: &str,
            library: Option<&Path>,
        ) -> Result<OrtSession> {
            let env = environment(library)?;
            let session = guard("starting ONNX Runtime", || {
                Session::builder(&env)?
                    .with_optimization_level(GraphOptimizationLevel::All)?
                    .with_intra_threads(intra_threads())?
                    .with_intra_op_spinning(false)?
                    .commit_from_memory(model)
            })
            .map_err(Error::Inference)?;
            Ok(OrtSession {
                session: Mutex::new(session),
                input: input.to_string(),
            })
        }

        /// The first output for `input` (a standard-layout batch).
        pub(in crate::base) fn run(&self, input: ArrayViewD<f32>) -> Result<ArrayD<f32>> {
            let mut session = self
                .session
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            guard("running the base model in ONNX Runtime", || {
                let tensor = TensorRef::from_array_view(input)?;
                let outputs = session.run(ort::inputs![self.input.as_str() => tensor])?;
                let first = outputs
                    .values()
                    .next()
                    .ok_or_else(|| ort::Error::new("the model gave no output"))?;
                Ok::<_, ort::Error>(first.try_extract_array::<f32>()?.to_owned())
            })
            .map_err(Error::Inference)
        }
    }
}

#[cfg(not(feature = "onnxruntime"))]
pub(super) use without_ort::OrtSession;

#[cfg(not(feature = "onnxruntime"))]
mod without_ort {
    use std::path::Path;

    use ndarray::{ArrayD, ArrayViewD};

    use crate::{Error, Result};

    /// Stands for the ONNX Runtime session in a build without it: it cannot be made.
    pub(in crate::base) enum OrtSession {}

    /// The error for any use of ONNX Runtime in this build.
    fn not_built() -> Error {
        Error::Invalid(
            "graft was built without the `onnxruntime` feature; rebuild with --features \
             onnxruntime"
                .into(),
        )
    }

    impl OrtSession {
        /// Always the error that says how to get the backend.
        pub(in crate::base) fn runtime_ready(_library: Option<&Path>) -> Result<()> {
            Err(not_built())
        }

        /// Always the error that says how to get the backend.
        pub(in crate::base) fn new(
            _model: &[u8],
            _input: &str,
            _library: Option<&Path>,
        ) -> Result<OrtSession> {
            Err(not_built())
        }

        pub(in crate::base) fn run(&self, _input: ArrayViewD<f32>) -> Result<ArrayD<f32>> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::base::Backend;

    #[test]
    fn backend_names_round_trip_and_unknown_names_are_refused() {
        for backend in [Backend::Tract, Backend::Ort] {
            assert_eq!(backend.to_string().parse::<Backend>().unwrap(), backend);
        }
        assert_eq!(Backend::default(), Backend::Tract);
        let err = "onnx".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("tract or ort"), "{err}");
    }

    #[test]
    fn an_explicit_library_path_wins_and_the_default_is_in_the_cache() {
        let explicit = Path::new("/opt/ort/libonnxruntime.so");
        assert_eq!(library_path(Some(explicit)).unwrap(), explicit);
        let default = default_library().unwrap();
        assert!(default.starts_with(cache_dir().unwrap()), "{default:?}");
        assert!(default.ends_with(Path::new("onnxruntime/1.32.0").join(library_file_name())));
    }

    #[cfg(not(feature = "onnxruntime"))]
    #[test]
    fn without_the_feature_ort_is_a_clear_error() {
        use crate::base::{BaseModel, BaseOptions};

        let model = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
        let options = BaseOptions {
            input_shape: Some(vec![3, 48, 192]),
            ..BaseOptions::on(Backend::Ort)
        };
        let err = BaseModel::open(&model, &options).unwrap_err().to_string();
        assert!(err.contains("--features onnxruntime"), "{err}");
        let options = BaseOptions::on(Backend::Ort);
        let err = BaseModel::open("efficientnet-lite0", &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built without the `onnxruntime` feature"),
            "{err}"
        );
    }
}
