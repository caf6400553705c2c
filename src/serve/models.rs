//! What the server serves: recognizers and KNN indexes loaded from files and watched folders, each
//! with the (shared) base it was made with and that base's batcher.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::batch::Batcher;
use super::stats::Stats;
use super::studio::{Studio, RECOGNIZER_FILE};
use super::ServeOptions;
use crate::base::{BaseModel, BaseOptions, BaseRef, EngineOptions};
use crate::input::InputSpec;
use crate::knn::Knn;
use crate::metrics::Metrics;
use crate::recognizer::Recognizer;
use crate::{Error, Result};

/// What a served model is.
pub(super) enum Kind {
    Recognizer(Box<Recognizer>),
    Knn(Box<Knn>),
}

/// One served model.
pub(super) struct Served {
    pub kind: Kind,
    pub batcher: Arc<Batcher>,
    pub info: ModelInfo,
}

/// What `GET /v1/models/{name}` says about a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The file name without `.safetensors`.
    pub name: String,
    /// "recognizer" or "knn".
    pub kind: &'static str,
    pub file: PathBuf,
    pub labels: Vec<String>,
    pub base: BaseInfo,
    /// What the predict route takes: "image" (PNG or JPEG), "audio" (WAV) or "numbers" (`.npy`
    /// or CSV text, for a raw base).
    pub takes: &'static str,
    pub input: InputSpec,
    /// Validation metrics recorded when the recognizer was trained.
    pub metrics: Option<Metrics>,
    /// Stored examples (KNN indexes).
    pub examples: Option<usize>,
    /// The threshold of the model's "unknown" rule (`graft::reject`); `None`: it has none, and
    /// never answers unknown.
    pub unknown_threshold: Option<f32>,
}

/// The base of a served model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BaseInfo {
    pub name: String,
    pub sha256: String,
    pub cut: String,
    pub embedding_dim: usize,
    /// The engine running it: "ort" or "tract".
    pub engine: &'static str,
}

/// A base opened for the models made with it: (name@sha256#cut, the base, its batcher).
type SharedBase = (String, Arc<BaseModel>, Arc<Batcher>);

/// A file's size and modification time: a file is loaded once it stays the same for one look.
type Signature = (u64, Option<SystemTime>);

/// The server's state, shared by its handlers.
pub(super) struct State {
    pub settings: Settings,
    pub stats: Stats,
    models: RwLock<BTreeMap<String, Arc<Served>>>,
    /// Bases (and their batchers) by (name, sha256, cut), shared by the models made with them.
    bases: Mutex<Vec<SharedBase>>,
    /// Watched folders.
    folders: Vec<PathBuf>,
    /// What was last seen of each file in a watched folder, and whether it is loaded as seen.
    seen: Mutex<BTreeMap<PathBuf, (Signature, bool)>>,
    stopping: AtomicBool,
    /// Tells event streams that the server stops.
    stop_signal: tokio::sync::watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
    studio: Option<Arc<Studio>>,
    /// Permits to decode an upload: one per core.
    pub decoders: tokio::sync::Semaphore,
    /// Uploads waiting for a decode permit (at most the queue's bound).
    pub decode_waiting: std::sync::atomic::AtomicUsize,
}

/// The limits handlers apply.
pub(super) struct Settings {
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub queue: usize,
    pub timeout: Duration,
    pub batch_window: Duration,
    pub max_batch: usize,
    pub engine: EngineOptions,
}

/// A model name: the file stem, of letters, digits, `.`, `_` and `-`, not starting with `.`.
fn model_name(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a model's file name must be letters, digits, '.', '_' or '-' (it is its name \
                 in URLs)",
                path.display()
            ))
        })?;
    Ok(stem.to_string())
}

/// The model files in a watched folder: regular `.safetensors` files (no symlinks, nothing
/// hidden, no graft temporaries).
fn folder_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if regular && !hidden && path.extension().is_some_and(|e| e == "safetensors") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn signature(path: &Path) -> Option<Signature> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_file().then(|| (meta.len(), meta.modified().ok()))
}

impl State {
    /// Loads every model `options` names (files now; folders as they are now, then watched).
    pub fn load(options: &ServeOptions, token: Option<String>) -> Result<State> {
        let mut files = Vec::new();
        let mut folders = Vec::new();
        for path in &options.paths {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                files.extend(folder_files(path)?);
                folders.push(path.clone());
            } else {
                files.push(path.clone());
            }
        }
        let state = State {
            settings: Settings {
                token,
                max_body_bytes: options.max_body_bytes,
                queue: options.queue,
                timeout: Duration::from_millis(options.timeout_ms),
                batch_window: Duration::from_millis(options.batch_window_ms),
                max_batch: options.max_batch,
                engine: options.engine.clone(),
            },
            stats: Stats::default(),
            models: RwLock::new(BTreeMap::new()),
            bases: Mutex::new(Vec::new()),
            folders,
            seen: Mutex::new(BTreeMap::new()),
            stopping: AtomicBool::new(false),
            stop_signal: tokio::sync::watch::channel(false).0,
            runtime: tokio::runtime::Handle::current(),
            studio: match &options.projects {
                Some(dir) => Some(Arc::new(Studio::open(dir, options.engine.clone())?)),
                None => None,
            },
            decoders: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            decode_waiting: std::sync::atomic::AtomicUsize::new(0),
        };
        for file in files {
            let served = state.open(&file)?;
            let name = served.info.name.clone();
            if state.read().contains_key(&name) {
                return Err(Error::Invalid(format!(
                    "two models are named '{name}' (the second is {})",
                    file.display()
                )));
            }
            if let Some(sig) = signature(&file) {
                lock(&state.seen).insert(file.clone(), (sig, true));
            }
            state.write().insert(name, Arc::new(served));
        }
        // Projects trained before are served under their names.
        if let Some(studio) = &state.studio {
            for project in studio.list()? {
                let Some(name) = project["name"].as_str() else {
                    continue;
                };
                let path = studio.dir.join(name).join(RECOGNIZER_FILE);
                if path.is_file() {
                    state.install(name, &path)?;
                }
            }
        }
        Ok(state)
    }

    /// The studio, when `--projects` gave it a folder.
    pub fn studio(&self) -> Option<Arc<Studio>> {
        self.studio.clone()
    }

    /// Serves the model file at `path` as `name` (replacing what was served under that name).
    pub fn install(&self, name: &str, path: &Path) -> Result<()> {
        let mut served = self.open(path)?;
        served.info.name = name.to_string();
        self.write().insert(name.to_string(), Arc::new(served));
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Served>>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Served>>> {
        self.models.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The model named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Served>> {
        self.read().get(name).cloned()
    }

    /// What is served, by name.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.read().values().map(|s| s.info.clone()).collect()
    }

    /// Whether the server can answer: not stopping, and at least one model or the studio.
    pub fn ready(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst) && (!self.read().is_empty() || self.studio.is_some())
    }

    /// Marks the server as stopping (`/readyz` answers 503 from now on).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop_signal.send(true);
    }

    /// Resolves once the server stops (for streams that would otherwise stay open).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut told = self.stop_signal.subscribe();
        async move {
            let _ = told.wait_for(|t| *t).await;
        }
    }

    /// The batchers, for `/metrics`.
    pub fn batchers(&self) -> Vec<(String, Arc<Batcher>)> {
        lock(&self.bases)
            .iter()
            .map(|(key, _, b)| (key.clone(), b.clone()))
            .collect()
    }

    /// The shared base (and batcher) for `reference`, opened now if no model uses it yet.
    fn base_for(&self, reference: &BaseRef) -> Result<(Arc<BaseModel>, Arc<Batcher>)> {
        let key = format!("{}@{}#{}", reference.name, &reference.sha256, reference.cut);
        let mut bases = lock(&self.bases);
        if let Some((_, base, batcher)) = bases.iter().find(|(k, _, _)| *k == key) {
            return Ok((base.clone(), batcher.clone()));
        }
        let options = BaseOptions::from(self.settings.engine.clone());
        // What the base's loading says (a download, the engine it falls back to) goes to the
        // server's log.
        let log = |event: crate::progress::Event<'_>| {
            if let crate::progress::Event::Notice(line) = event {
                eprintln!("{line}");
            }
        };
        let base = Arc::new(BaseModel::from_ref_with(reference, &options, &log)?);
        let label = format!("{}:{}", reference.name, reference.cut);
        let batcher = Arc::new(Batcher::start(
            base.clone(),
            label,
            self.settings.queue,
            self.settings.max_batch,
            self.settings.batch_window,
            &self.runtime,
        ));
        bases.push((key, base.clone(), batcher.clone()));
        Ok((base, batcher))
    }

    /// Loads one model file: a recognizer, else a KNN index.
    fn open(&self, path: &Path) -> Result<Served> {
        let name = model_name(path)?;
        let (kind, reference) = match Recognizer::load(path) {
            Ok(r) => {
                let reference = r.base().clone();
                (Kind::Recognizer(Box::new(r)), reference)
            }
            Err(as_recognizer) => match Knn::load(path) {
                Ok(k) => {
                    let reference = k.base().clone();
                    (Kind::Knn(Box::new(k)), reference)
                }
                Err(_) => return Err(as_recognizer),
            },
        };
        let (base, batcher) = self.base_for(&reference)?;
        let info = ModelInfo {
            name,
            kind: match kind {
                Kind::Recognizer(_) => "recognizer",
                Kind::Knn(_) => "knn",
            },
            file: path.to_path_buf(),
            labels: match &kind {
                Kind::Recognizer(r) => r.labels().to_vec(),
                Kind::Knn(k) => k.class_counts().into_iter().map(|(c, _)| c).collect(),
            },
            base: BaseInfo {
                name: reference.name.clone(),
                sha256: reference.sha256.clone(),
                cut: reference.cut.clone(),
                embedding_dim: reference.embedding_dim,
                engine: base.backend().name(),
            },
            takes: reference.input.kind(),
            input: reference.input.clone(),
            metrics: match &kind {
                Kind::Recognizer(r) => r.training().and_then(|t| t.validation.clone()),
                Kind::Knn(_) => None,
            },
            examples: match &kind {
                Kind::Recognizer(_) => None,
                Kind::Knn(k) => Some(k.len()),
            },
            unknown_threshold: match &kind {
                Kind::Recognizer(r) => r.unknown_rule().map(|u| u.threshold),
                Kind::Knn(k) => k.unknown_rule().map(|u| u.threshold),
            },
        };
        Ok(Served {
            kind,
            batcher,
            info,
        })
    }

    /// One look at the watched folders: files that are new or changed and have stayed the same
    /// since the last look are loaded (a failure keeps the model served before, and is retried
    /// when the file changes); files gone are unloaded.
    fn rescan(&self) {
        let mut present = Vec::new();
        for dir in &self.folders {
            match folder_files(dir) {
                Ok(files) => present.extend(files),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        for file in &present {
            let Some(now) = signature(file) else {
                continue;
            };
            let previous = lock(&self.seen).get(file).copied();
            let ready = match previous {
                Some((seen, loaded)) if seen == now => !loaded,
                _ => {
                    // New or changed: wait one look for it to stay the same.
                    lock(&self.seen).insert(file.clone(), (now, false));
                    false
                }
            };
            if !ready {
                continue;
            }
            lock(&self.seen).insert(file.clone(), (now, true));
            match self.open(file) {
                Ok(served) => {
                    let name = served.info.name.clone();
                    let clash = self
                        .read()
                        .get(&name)
                        .is_some_and(|old| old.info.file != *file);
                    if clash {
                        eprintln!(
                            "warning: {} not loaded: another file is already served as '{name}'",
                            file.display()
                        );
                    } else {
                        eprintln!("loaded {} as '{name}'", file.display());
                        self.write().insert(name, Arc::new(served));
                    }
                }
                Err(e) => eprintln!("warning: {} not loaded: {e}", file.display()),
            }
        }
        let watched = |path: &Path| self.folders.iter().any(|d| path.parent() == Some(d));
        let gone: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, s)| watched(&s.info.file) && !present.contains(&s.info.file))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            eprintln!("unloaded '{name}' (its file is gone)");
            self.write().remove(&name);
        }
        lock(&self.seen).retain(|f, _| present.contains(f) || !watched(f));
    }
}

/// Looks at the watched folders every `every`, loading on the blocking pool.
pub(super) async fn watch(state: Arc<State>, every: Duration) {
    if state.folders.is_empty() {
        return;
    }
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || state.rescan()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
