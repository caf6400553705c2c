//! ONNX Runtime as an engine for a base (cargo feature `onnxruntime`, on by default), and where
//! its library comes from.
//!
//! The runtime is a shared library loaded when the first ORT base is opened (nothing is downloaded
//! at build time). [`find_library`] looks for it: the path given in
//! [`EngineOptions::ort_library`](super::EngineOptions::ort_library), else `$ORT_DYLIB_PATH`, else
//! graft's cache ([`default_library`], where [`install`] puts the pinned build), else the system's
//! library folders. One process loads one library file.

use std::path::{Path, PathBuf};

use crate::cache::cache_dir;
use crate::download::{self, Wheel};
use crate::progress::{Event, Progress};
use crate::{Error, Result};

/// The ONNX Runtime release graft is tested with (and [`install`] fetches).
pub const ORT_VERSION: &str = "1.32.0";

/// Environment variable naming the ONNX Runtime library file.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The command that installs the pinned library into the cache.
pub const INSTALL_COMMAND: &str = "graft engine install";

/// File name of the ONNX Runtime library on this platform, as the onnxruntime wheel ships it.
pub fn library_file_name() -> String {
    if cfg!(target_os = "windows") {
        "onnxruntime.dll".into()
    } else if cfg!(target_os = "macos") {
        format!("libonnxruntime.{ORT_VERSION}.dylib")
    } else {
        format!("libonnxruntime.so.{ORT_VERSION}")
    }
}

/// The build of the library [`install`] fetches for one platform: a wheel of `onnxruntime` on
/// PyPI (the library inside does not depend on the wheel's Python version) and the library's own
/// sha256, checked after download and whenever graft loads the cached copy.
#[derive(Clone, Copy, Debug)]
pub struct Pinned {
    /// The wheel's file name on PyPI.
    pub wheel: &'static str,
    /// The library's path inside the wheel.
    pub member: &'static str,
    /// sha256 of the library.
    pub sha256: &'static str,
    /// Size of the library in bytes.
    pub bytes: u64,
}

/// The pinned build for the platform graft was compiled for; `None` where there is none.
pub fn pinned() -> Option<Pinned> {
    let linux = |wheel, sha256, bytes| Pinned {
        wheel,
        member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
        sha256,
        bytes,
    };
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Some(linux(
            "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
            34_824_680,
        ))
    } else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
        Some(linux(
            "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl",
            "49852228a93995158b2a813d4df487d47a1b76b0eaa894507ef49e91b6d7954a",
            27_165_936,
        ))
    } else if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        Some(Pinned {
            wheel: "onnxruntime-1.32.0-cp311-cp311-macosx_14_0_arm64.whl",
            member: "onnxruntime/capi/libonnxruntime.1.32.0.dylib",
            sha256: "fa585fabbea65b823b9a8f7e27d46aee3989d1be7e36b528203d3a1fd613aae7",
            bytes: 35_272_344,
        })
    } else if cfg!(all(target_os = "windows", target_arch = "x86_64")) {
        Some(Pinned {
            wheel: "onnxruntime-1.32.0-cp311-cp311-win_amd64.whl",
            member: "onnxruntime/capi/onnxruntime.dll",
            sha256: "e9feebaed867b76f741c14ae64e056a3da64a153a61994f1fb48eadc7f9b3ba8",
            bytes: 22_668_640,
        })
    } else {
        None
    }
}

/// Where graft keeps the pinned library: `<graft cache>/onnxruntime/1.32.0/libonnxruntime.so.1.32.0`
/// (the cache is `$GRAFT_CACHE`, else `$XDG_CACHE_HOME/graft`, else `~/.cache/graft`; see
/// [`cache_dir`]).
pub fn default_library() -> Result<PathBuf> {
    Ok(cache_dir()?
        .join("onnxruntime")
        .join(ORT_VERSION)
        .join(library_file_name()))
}

/// How a library was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Named by the options.
    Given,
    /// Named by `$ORT_DYLIB_PATH`.
    Environment,
    /// graft's cache ([`default_library`]).
    Cache,
    /// A system library folder.
    System,
}

/// A library file to load, and how it was found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Library {
    pub path: PathBuf,
    pub origin: Origin,
}

/// The system folders searched for the library (after the cache): `$LD_LIBRARY_PATH` (or
/// `$DYLD_LIBRARY_PATH`) and the usual install folders.
fn system_dirs() -> Vec<PathBuf> {
    let var = if cfg!(target_os = "macos") {
        "DYLD_LIBRARY_PATH"
    } else {
        "LD_LIBRARY_PATH"
    };
    let mut dirs: Vec<PathBuf> = std::env::var_os(var)
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    for d in [
        "/usr/local/lib".to_string(),
        format!("/usr/lib/{triple}"),
        "/usr/lib".to_string(),
        "/usr/lib64".to_string(),
        "/opt/homebrew/lib".to_string(),
        "/opt/onnxruntime/lib".to_string(),
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The library names looked for in system folders, the pinned version's first.
fn system_names() -> Vec<String> {
    if cfg!(target_os = "windows") {
        vec!["onnxruntime.dll".into()]
    } else if cfg!(target_os = "macos") {
        vec![library_file_name(), "libonnxruntime.dylib".into()]
    } else {
        vec![
            library_file_name(),
            "libonnxruntime.so.1".into(),
            "libonnxruntime.so".into(),
        ]
    }
}

/// The library to load: `explicit`, else `$ORT_DYLIB_PATH` when set and not empty (both returned
/// even when the file is missing, so that the error names them), else [`default_library`] when
/// it exists, else the first library in a system folder; `None` when there is none.
pub fn find_library(explicit: Option<&Path>) -> Result<Option<Library>> {
    if let Some(path) = explicit {
        return Ok(Some(Library {
            path: path.to_path_buf(),
            origin: Origin::Given,
        }));
    }
    if let Some(path) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        return Ok(Some(Library {
            path: PathBuf::from(path),
            origin: Origin::Environment,
        }));
    }
    let cached = default_library()?;
    if cached.is_file() {
        return Ok(Some(Library {
            path: cached,
            origin: Origin::Cache,
        }));
    }
    let names = system_names();
    Ok(system_dirs()
        .iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
        .map(|path| Library {
            path,
            origin: Origin::System,
        }))
}

/// Checks the cached copy of the pinned library (a copy that was cut short or changed is an
/// error that says how to fix it); other libraries are the user's and not checked.
#[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
fn check_cached(library: &Library) -> Result<()> {
    let (Origin::Cache, Some(pin)) = (library.origin, pinned()) else {
        return Ok(());
    };
    let sha256 = crate::zoo::sha256_file(&library.path)?;
    if sha256 != pin.sha256 {
        return Err(Error::Invalid(format!(
            "{} has sha256 {sha256}, not the pinned {}: it is damaged; delete it and run \
             `{INSTALL_COMMAND}`",
            library.path.display(),
            pin.sha256
        )));
    }
    Ok(())
}

/// Checks that `path` is a whole shared library for this machine before the system loader maps it:
/// a file cut short makes the loader fault (SIGBUS) instead of failing, and one built for another
/// architecture or system cannot load. Reads the file's headers with the `object` crate: its
/// format and architecture must be this build's, and every loadable segment must lie inside the
/// file.
#[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
fn check_loadable(path: &Path) -> Result<()> {
    use object::{Object, ObjectSegment};
    let bad = |msg: String| Error::Invalid(format!("{} cannot be loaded: {msg}", path.display()));
    let data = crate::limits::read(path, crate::limits::FileKind::Model)?;
    let file =
        object::File::parse(&*data).map_err(|e| bad(format!("not a shared library ({e})")))?;
    let want = if cfg!(target_os = "windows") {
        object::BinaryFormat::Pe
    } else if cfg!(target_os = "macos") {
        object::BinaryFormat::MachO
    } else {
        object::BinaryFormat::Elf
    };
    if file.format() != want {
        return Err(bad(format!(
            "it is a {:?} file, this system loads {want:?}",
            file.format()
        )));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => Some(object::Architecture::X86_64),
        "aarch64" => Some(object::Architecture::Aarch64),
        _ => None,
    };
    if let Some(arch) = arch.filter(|a| *a != file.architecture()) {
        return Err(bad(format!(
            "it is built for {:?}, this machine is {arch:?}",
            file.architecture()
        )));
    }
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        if offset.saturating_add(size) > data.len() as u64 {
            return Err(bad(format!(
                "it is cut short: a segment ends at byte {}, the file has {}",
                offset.saturating_add(size),
                data.len()
            )));
        }
    }
    Ok(())
}

/// Fetches the pinned ONNX Runtime library for this platform from PyPI (graft's own HTTPS client;
/// no pip), checks its sha256 and installs it at [`default_library`] (atomically); gives its path.
/// Nothing is downloaded when a good copy is already there. `GRAFT_OFFLINE=1` makes this an error.
pub fn install(progress: &dyn Progress) -> Result<PathBuf> {
    let target = default_library()?;
    let pin = pinned().ok_or_else(|| {
        Error::Invalid(format!(
            "graft has no pinned ONNX Runtime build for {}-{}: install ONNX Runtime {ORT_VERSION} \
             and set {ORT_DYLIB_ENV} to its library",
            std::env::consts::OS,
            std::env::consts::ARCH
        ))
    })?;
    if target.is_file() && crate::zoo::sha256_file(&target)? == pin.sha256 {
        return Ok(target);
    }
    progress.on(Event::Notice(&format!(
        "fetching ONNX Runtime {ORT_VERSION} (the fast engine; {:.0} MB, once) into {}",
        pin.bytes as f64 / 1e6,
        target.parent().unwrap_or(&target).display()
    )));
    let wheel = download::pypi_wheel(
        "onnxruntime",
        ORT_VERSION,
        Wheel::Named(pin.wheel),
        256 << 20,
        progress,
    )?;
    let library = graft_converters::package::read_zip_entry(&wheel, pin.member, pin.bytes + 1)?;
    let sha256 = crate::cache::sha256_hex(&library);
    if sha256 != pin.sha256 {
        return Err(Error::Download(format!(
            "{} in {} has sha256 {sha256}, not the pinned {}",
            pin.member, pin.wheel, pin.sha256
        )));
    }
    crate::atomic::write_atomic(&target, &library)?;
    Ok(target)
}

#[cfg(feature = "onnxruntime")]
pub(super) use with_ort::{loaded, OrtSession};

#[cfg(feature = "onnxruntime")]
mod with_ort {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use ndarray::{ArrayD, ArrayViewD};
    use ort::environment::Environment;
    use ort::session::builder::GraphOptimizationLevel;
    use ort::session::Session;
    use ort::value::TensorRef;

    use super::{check_cached, check_loadable, find_library, library_file_name, Library};
    use super::{INSTALL_COMMAND, ORT_DYLIB_ENV, ORT_VERSION};
    use crate::base::guard;
    use crate::{Error, Result};

    /// Sessions per base: one per core, each with one intra-op thread, so that the callers of
    /// one base (the folder pipeline's workers, the server's batches) run side by side instead of
    /// queueing for one session whose threads then compete with their preprocessing. Measured on
    /// this 2-core machine (EfficientNet-Lite0, batch 1, onnxruntime from Python, idle): one
    /// session with 2 threads 6.36 ms per image, two 1-thread sessions in parallel 5.77 ms per
    /// image; earlier, idle threads sleeping instead of spinning: 8.7-9.5 vs 13.7-17.6 under load.
    fn sessions() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SESSIONS))
    }

    /// At most this many sessions (each holds the model's weights once more).
    const MAX_SESSIONS: usize = 8;

    /// The error for a library file that is not there, saying how to get one.
    fn missing_library(path: &Path) -> Error {
        Error::Invalid(format!(
            "ONNX Runtime library {} not found: run `{INSTALL_COMMAND}` (it fetches ONNX Runtime \
             {ORT_VERSION} from PyPI into graft's cache), or set {ORT_DYLIB_ENV} to a {} file",
            path.display(),
            library_file_name()
        ))
    }

    /// The process's ONNX Runtime environment and the library file it was loaded from: ort allows
    /// one environment per process, and a loaded library stays loaded.
    static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

    /// The environment, loading the library at `library` (or as [`find_library`] says) on first
    /// use.
    fn environment(library: Option<&Path>) -> Result<Environment> {
        let found = match find_library(library)? {
            Some(found) => found,
            None => return Err(missing_library(&super::default_library()?)),
        };
        let Library { path, .. } = &found;
        // ort panics on a library it cannot open: look first.
        if !path.is_file() {
            return Err(missing_library(path));
        }
        let path = path.canonicalize().map_err(|e| Error::io(path, e))?;
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
        check_cached(&found)?;
        check_loadable(&path)?;
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
        sessions: Vec<Mutex<Session>>,
        /// Where the next caller that finds every session busy waits.
        next: std::sync::atomic::AtomicUsize,
        input: String,
    }

    /// The library this process loaded and ONNX Runtime's build string, once one is loaded.
    pub(in crate::base) fn loaded() -> Option<(PathBuf, String)> {
        let runtime = RUNTIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (path, _) = runtime.as_ref()?;
        let info = guard("asking ONNX Runtime its version", || {
            Ok::<_, String>(ort::info())
        })
        .unwrap_or("(unknown build)");
        Some((path.clone(), info.to_string()))
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
            let sessions = (0..sessions())
                .map(|_| {
                    guard("starting ONNX Runtime", || {
                        Session::builder(&env)?
                            .with_optimization_level(GraphOptimizationLevel::All)?
                            .with_intra_threads(1)?
                            .with_intra_op_spinning(false)?
                            .commit_from_memory(model)
                    })
                    .map(Mutex::new)
                    .map_err(Error::Inference)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(OrtSession {
                sessions,
                next: std::sync::atomic::AtomicUsize::new(0),
                input: input.to_string(),
            })
        }

        /// The first output for `input` (a standard-layout batch).
        pub(in crate::base) fn run(&self, input: ArrayViewD<f32>) -> Result<ArrayD<f32>> {
            // A free session if there is one, else wait for one in turn.
            let free = self.sessions.iter().find_map(|s| match s.try_lock() {
                Ok(guard) => Some(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            });
            let mut session = match free {
                Some(guard) => guard,
                None => {
                    let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        % self.sessions.len().max(1);
                    let Some(session) = self.sessions.get(i) else {
                        return Err(Error::Internal(
                            "an ONNX Runtime base without a session".into(),
                        ));
                    };
                    session
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                }
            };
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
pub(super) use without_ort::{loaded, OrtSession};

#[cfg(not(feature = "onnxruntime"))]
mod without_ort {
    use std::path::Path;

    use ndarray::{ArrayD, ArrayViewD};

    use crate::{Error, Result};

    /// Nothing is ever loaded in this build.
    pub(in crate::base) fn loaded() -> Option<(std::path::PathBuf, String)> {
        None
    }

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
        for backend in [Backend::Auto, Backend::Tract, Backend::Ort] {
            assert_eq!(backend.to_string().parse::<Backend>().unwrap(), backend);
        }
        assert_eq!(Backend::default(), Backend::Auto);
        let err = "onnx".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("auto, tract or ort"), "{err}");
    }

    #[test]
    fn an_explicit_library_path_wins_and_the_default_is_in_the_cache() {
        let explicit = Path::new("/opt/ort/libonnxruntime.so");
        let found = find_library(Some(explicit)).unwrap().unwrap();
        assert_eq!(
            (found.path.as_path(), found.origin),
            (explicit, Origin::Given)
        );
        let default = default_library().unwrap();
        assert!(default.starts_with(cache_dir().unwrap()), "{default:?}");
        assert!(default.ends_with(Path::new("onnxruntime/1.32.0").join(library_file_name())));
    }

    /// Libraries the system loader would fault on or refuse are refused before it sees them:
    /// bytes that are no library, an ELF cut short, an ELF for another machine.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn broken_and_foreign_libraries_are_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let elf = std::fs::read("/bin/true").unwrap();
        assert!(check_loadable(Path::new("/bin/true")).is_ok());
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let junk = write("junk.so", b"not a library at all, just text");
        let err = check_loadable(&junk).unwrap_err().to_string();
        assert!(
            err.contains("junk.so cannot be loaded: not a shared library"),
            "{err}"
        );
        let cut = write("cut.so", &elf[..elf.len() / 2]);
        let err = check_loadable(&cut).unwrap_err().to_string();
        assert!(err.contains("cut.so cannot be loaded"), "{err}");
        let mut foreign = elf.clone();
        // e_machine (bytes 18-19, little-endian): RISC-V (243), which this test never runs on.
        foreign[18..20].copy_from_slice(&243u16.to_le_bytes());
        let foreign = write("foreign.so", &foreign);
        let err = check_loadable(&foreign).unwrap_err().to_string();
        assert!(err.contains("this machine is"), "{err}");
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
        let auto = BaseOptions {
            input_shape: Some(vec![3, 48, 192]),
            ..BaseOptions::on(Backend::Auto)
        };
        let base = BaseModel::open(&model, &auto).unwrap();
        assert_eq!(base.backend(), Backend::Tract);
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
