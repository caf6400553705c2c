//! The studio's projects (`graft serve --projects DIR`): labelled examples collected over HTTP and
//! stored as `DIR/<project>/<class>/<file>` plus `DIR/<project>/project.json` — the layout
//! `graft train --data` reads — trained in the background, with progress streamed to the page.
//!
//! Every stored example is written atomically (synced, then renamed) before its upload is
//! acknowledged, and a trained recognizer is saved the same way (`DIR/<project>/recognizer.safetensors`)
//! and then served under the project's name: a crash or `kill -9` loses no acknowledged example and
//! no saved model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::base::{BaseModel, BaseOptions, EngineOptions};
use crate::dataset::Dataset;
use crate::progress::{Event, Phase};
use crate::task::{create, CreateOptions};
use crate::{Error, Result};

/// The recognizer a project's training writes, inside its folder.
pub(super) const RECOGNIZER_FILE: &str = "recognizer.safetensors";

/// A project's own file.
const PROJECT_FILE: &str = "project.json";

/// What `project.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ProjectFile {
    pub name: String,
    /// The base examples are embedded with: a zoo name.
    pub base: String,
}

/// A project's training: its state, the epochs so far and the result.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct Training {
    /// "idle", "embedding", "training", "done" or "failed".
    pub state: &'static str,
    pub epochs: Vec<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// The projects folder and what runs in it.
pub(super) struct Studio {
    pub dir: PathBuf,
    engine: EngineOptions,
    runs: Mutex<BTreeMap<String, Arc<Run>>>,
}

/// One project's training status and the channel its events go out on.
pub(super) struct Run {
    pub status: Mutex<Training>,
    pub events: broadcast::Sender<String>,
}

/// A project or class name: 1-64 letters, digits, `_` or `-` (they are folder names).
pub(super) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {name:?}: use 1-64 letters, digits, '_' or '-'"
        )))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Studio {
    /// The studio over `dir` (created if missing).
    pub fn open(dir: &Path, engine: EngineOptions) -> Result<Studio> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Studio {
            dir: dir.to_path_buf(),
            engine,
            runs: Mutex::new(BTreeMap::new()),
        })
    }

    fn project_dir(&self, name: &str) -> Result<PathBuf> {
        check_name("project", name)?;
        Ok(self.dir.join(name))
    }

    /// A project's file, or an error when there is no such project.
    pub fn project(&self, name: &str) -> Result<ProjectFile> {
        let path = self.project_dir(name)?.join(PROJECT_FILE);
        if !path.is_file() {
            return Err(Error::Invalid(format!("no project named {name:?}")));
        }
        let text = crate::limits::read_text(&path, crate::limits::FileKind::Text)?;
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Creates a project on `base` (a zoo model).
    pub fn create(&self, name: &str, base: &str) -> Result<ProjectFile> {
        let dir = self.project_dir(name)?;
        if dir.join(PROJECT_FILE).is_file() {
            return Err(Error::Invalid(format!("project {name:?} exists")));
        }
        crate::zoo::manifest(base)?;
        let project = ProjectFile {
            name: name.to_string(),
            base: base.to_string(),
        };
        let text =
            serde_json::to_vec_pretty(&project).map_err(|e| Error::Internal(e.to_string()))?;
        crate::atomic::write_atomic(&dir.join(PROJECT_FILE), &text)?;
        Ok(project)
    }

    /// Every project with its classes and example counts.
    pub fn list(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| check_name("project", n).is_ok())
            .collect();
        names.sort();
        for name in names {
            if let Ok(v) = self.describe(&name) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// A project: its base, classes (with their example files) and training.
    pub fn describe(&self, name: &str) -> Result<Value> {
        let project = self.project(name)?;
        let dir = self.project_dir(name)?;
        let mut classes = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let class = entry.file_name().to_string_lossy().into_owned();
            let mut files: Vec<String> = std::fs::read_dir(entry.path())
                .map_err(|e| Error::io(entry.path(), e))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect();
            files.sort();
            classes.push(json!({ "name": class, "examples": files.len(), "files": files }));
        }
        Ok(json!({
            "name": project.name,
            "base": project.base,
            "classes": classes,
            "model": dir.join(RECOGNIZER_FILE).is_file(),
            "training": self.run(name).status.lock().map(|s| s.clone()).unwrap_or_default(),
        }))
    }

    /// Stores one example of `class` (created if new) in `project`; its file name is its
    /// content's hash (so the same upload twice is one example). Gives the file name.
    pub fn add_example(&self, project: &str, class: &str, bytes: &[u8]) -> Result<String> {
        self.project(project)?;
        check_name("class", class)?;
        let ext = crate::input::FileFormat::sniff(bytes)
            .ok_or_else(|| Error::Invalid("an example must be a PNG, a JPEG or a WAV file".into()))?
            .extension();
        let hash = crate::cache::sha256_hex(bytes);
        let file = format!("{}.{ext}", &hash[..16]);
        let path = self.project_dir(project)?.join(class).join(&file);
        crate::atomic::write_atomic(&path, bytes)?;
        Ok(file)
    }

    /// The bytes of a stored example.
    pub fn example(&self, project: &str, class: &str, file: &str) -> Result<Vec<u8>> {
        check_name("class", class)?;
        let (stem, ext) = file.split_once('.').unwrap_or((file, ""));
        check_name("file", stem)?;
        if !matches!(ext, "png" | "jpg" | "wav") {
            return Err(Error::Invalid(format!("no example {file:?}")));
        }
        let path = self.project_dir(project)?.join(class).join(file);
        if !path.is_file() {
            return Err(Error::Invalid(format!("no example {file:?}")));
        }
        let kind = match ext {
            "wav" => crate::limits::FileKind::Audio,
            _ => crate::limits::FileKind::Image,
        };
        crate::limits::read(&path, kind)
    }

    /// The trained recognizer's path, when there is one.
    pub fn recognizer(&self, project: &str) -> Result<PathBuf> {
        let path = self.project_dir(project)?.join(RECOGNIZER_FILE);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Invalid(format!(
                "project {project:?} has no trained model yet"
            )))
        }
    }

    /// The run record of `project` (made on first use).
    pub fn run(&self, project: &str) -> Arc<Run> {
        let mut runs = lock(&self.runs);
        runs.entry(project.to_string())
            .or_insert_with(|| {
                Arc::new(Run {
                    status: Mutex::new(Training {
                        state: "idle",
                        ..Training::default()
                    }),
                    events: broadcast::channel(1024).0,
                })
            })
            .clone()
    }

    /// Starts training `project` on a thread of its own; `done` gets the saved recognizer's path.
    /// Refused while the project trains.
    pub fn train(
        self: &Arc<Self>,
        project: &str,
        done: impl FnOnce(&Path) + Send + 'static,
    ) -> Result<()> {
        let file = self.project(project)?;
        let run = self.run(project);
        {
            let mut status = lock(&run.status);
            if matches!(status.state, "embedding" | "training") {
                return Err(Error::Invalid(format!("project {project:?} is training")));
            }
            *status = Training {
                state: "embedding",
                ..Training::default()
            };
        }
        let studio = self.clone();
        let dir = self.project_dir(project)?;
        std::thread::Builder::new()
            .name(format!("graft-train-{project}"))
            .spawn(move || {
                let outcome = studio.train_now(&file, &dir, &run);
                let status = lock(&run.status);
                match outcome {
                    Ok((path, result)) => {
                        // Served first, so that whoever hears "done" can use it.
                        drop(status);
                        done(&path);
                        let mut status = lock(&run.status);
                        status.state = "done";
                        status.result = Some(result.clone());
                        drop(status);
                        let _ = run
                            .events
                            .send(json!({"type": "done", "result": result}).to_string());
                    }
                    Err(e) => {
                        let mut status = status;
                        status.state = "failed";
                        status.error = Some(e.to_string());
                        drop(status);
                        let _ = run
                            .events
                            .send(json!({"type": "failed", "error": e.to_string()}).to_string());
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("starting a training thread: {e}")))?;
        Ok(())
    }

    fn train_now(&self, file: &ProjectFile, dir: &Path, run: &Run) -> Result<(PathBuf, Value)> {
        let progress = |event: Event<'_>| {
            let message = match event {
                Event::Started(phase, total) => {
                    let state = match phase {
                        Phase::Training => "training",
                        _ => "embedding",
                    };
                    lock(&run.status).state = state;
                    json!({"type": "phase", "phase": phase.name(), "total": total})
                }
                Event::Epoch(r) => {
                    let epoch = json!({
                        "epoch": r.epoch, "train_loss": r.train_loss, "train_acc": r.train_acc,
                        "val_loss": r.val_loss, "val_acc": r.val_acc,
                    });
                    lock(&run.status).epochs.push(epoch.clone());
                    json!({"type": "epoch", "epoch": epoch})
                }
                Event::Advanced(n) => json!({"type": "advanced", "n": n}),
                Event::Finished(phase) => json!({"type": "finished", "phase": phase.name()}),
                Event::Notice(line) => json!({"type": "notice", "line": line}),
            };
            let _ = run.events.send(message.to_string());
        };
        let options = BaseOptions::from(self.engine.clone());
        let base = BaseModel::open_with(&file.base, &options, &progress)?;
        let data = Dataset::from_folder(dir)?;
        let created = create(&base, &data, &CreateOptions::default(), &progress)?;
        let path = dir.join(RECOGNIZER_FILE);
        created.recognizer.save(&path)?;
        let validation = created
            .recognizer
            .training()
            .and_then(|t| t.validation.clone());
        // Each validation example by its class and file name (the studio's example routes): what
        // a cell of the confusion matrix opens.
        let labels = created.recognizer.labels();
        let examples: Vec<Value> = created
            .report
            .validation
            .iter()
            .filter_map(|a| {
                let file = a.file.file_name()?.to_str()?;
                Some(json!({
                    "class": labels.get(a.label)?, "file": file,
                    "predicted": a.predicted, "probability": a.probability,
                }))
            })
            .collect();
        let result = json!({
            "labels": labels,
            "validation": validation,
            "validation_examples": examples,
            "split": created.report.split,
        });
        Ok((path, result))
    }
}
