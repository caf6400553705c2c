//! What `graft predict` loads: a recognizer, a KNN index or a file graft exported, told apart by
//! content, or a Teachable Machine export folder.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::answer::FileAnswer;
use super::classify::Classifier;
use super::exported::{looks_like_onnx, ExportedClassifier};
use super::knn::KnnClassifier;
use super::teachable::{self, is_teachable_machine};
use super::Progress;
use crate::base::EngineOptions;
use crate::cache::CacheOptions;
use crate::knn::{Knn, KnnPrediction, DEFAULT_K};
use crate::recognizer::{Prediction, Recognizer};
use crate::{Error, Result};

/// What `graft predict` answers with: a recognizer or a KNN index (with its base), a file graft
/// exported (told apart by content), or a Teachable Machine image export (a folder with
/// `model.json` and `metadata.json`).
#[derive(Debug)]
pub enum Predictor {
    Recognizer(Classifier),
    /// A KNN index, answering by its [`DEFAULT_K`] nearest stored examples: the probability of a
    /// class is its share of their votes.
    Knn(Box<KnnClassifier>),
    Exported(ExportedClassifier),
    /// A Teachable Machine image export (a folder), converted on load.
    TeachableMachine(ExportedClassifier),
}

impl Predictor {
    /// Loads a recognizer, a KNN index, an exported ONNX file or a Teachable Machine folder, on
    /// the engine `engine` names (a zoo base not built here yet is built first, reported on
    /// `progress`).
    pub fn load(path: &Path, engine: &EngineOptions, progress: &dyn Progress) -> Result<Predictor> {
        if is_teachable_machine(path) {
            return teachable::load(path, engine).map(Predictor::TeachableMachine);
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = Vec::with_capacity(9);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, 9), &mut head)
            .map_err(|e| Error::io(path, e))?;
        if head.len() == 9 && looks_like_onnx(&head) {
            return ExportedClassifier::load(path, engine).map(Predictor::Exported);
        }
        // A recognizer, else an index; a file that is neither gets the recognizer's complaint.
        match Recognizer::load(path) {
            Ok(_) => Classifier::load(path, engine, progress).map(Predictor::Recognizer),
            Err(as_recognizer) => match Knn::load(path) {
                Ok(_) => KnnClassifier::load(path, engine, None, progress)
                    .map(|k| Predictor::Knn(Box::new(k))),
                Err(_) => Err(as_recognizer),
            },
        }
    }

    /// The answer for one example's bytes (an image, or a WAV for a speech recognizer); `name`
    /// stands for it in errors.
    pub fn predict_bytes(&self, bytes: &[u8], name: &str, top_k: usize) -> Result<Prediction> {
        match self {
            Predictor::Recognizer(c) => c.predict_bytes(bytes, name, top_k),
            Predictor::Knn(k) => Ok(knn_answer(k.classify_bytes(bytes, name, DEFAULT_K)?, top_k)),
            Predictor::Exported(e) | Predictor::TeachableMachine(e) => {
                e.predict_bytes(bytes, name, top_k)
            }
        }
    }

    /// The `top_k` best classes for each of `inputs`, in order: a file; a folder, standing for
    /// its files (see [`example_files`]); or `-`, one example read whole from `stdin` (once).
    /// An input that cannot be used gets its error in place.
    pub fn predict_inputs(
        &self,
        inputs: &[PathBuf],
        stdin: &mut dyn Read,
        top_k: usize,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileAnswer<Prediction>>> {
        let files = example_files(inputs)?;
        let stdin_name = Path::new(STDIN);
        let on_disk: Vec<PathBuf> = files.iter().filter(|f| *f != stdin_name).cloned().collect();
        let mut answers = self
            .predict_files(&on_disk, top_k, cache, progress)?
            .into_iter();
        let mut from_stdin = None;
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            if file != stdin_name {
                out.extend(answers.next());
                continue;
            }
            let answer = from_stdin.get_or_insert_with(|| {
                let mut bytes = Vec::new();
                stdin
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(STDIN, e))
                    .map(|_| bytes)
            });
            let answer = match answer {
                Ok(bytes) => self.predict_bytes(bytes, STDIN, top_k),
                Err(e) => Err(Error::Input {
                    path: file.clone(),
                    msg: format!("cannot read standard input: {e}"),
                }),
            };
            out.push(FileAnswer { file, answer });
        }
        Ok(out)
    }

    /// The `top_k` best classes of each file, as [`Classifier::predict_files`] gives them.
    pub fn predict_files(
        &self,
        files: &[PathBuf],
        top_k: usize,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileAnswer<Prediction>>> {
        match self {
            Predictor::Recognizer(c) => c.predict_files(files, top_k, cache, progress),
            Predictor::Knn(k) => Ok(k
                .classify_files(files, DEFAULT_K, cache, progress)?
                .into_iter()
                .map(|a| FileAnswer {
                    file: a.file,
                    answer: a.answer.map(|p| knn_answer(p, top_k)),
                })
                .collect()),
            Predictor::Exported(e) | Predictor::TeachableMachine(e) => {
                e.predict_files(files, top_k, cache, progress)
            }
        }
    }
}

/// A KNN answer as a recognizer's: the winning class with its share of the votes, the `top_k`
/// classes by share (ties in class order), and the unknown flag.
fn knn_answer(p: KnnPrediction, top_k: usize) -> Prediction {
    let mut top = p.confidences;
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let probability = top
        .iter()
        .find(|(l, _)| *l == p.label)
        .map_or(0.0, |(_, q)| *q);
    top.truncate(top_k);
    Prediction {
        label: p.label,
        probability,
        top,
        unknown: p.unknown,
    }
}

/// The input name that stands for standard input.
pub const STDIN: &str = "-";

/// `inputs` with every folder replaced by the files under it (sorted, sub-folders in place,
/// hidden entries skipped); files and `-` ([`STDIN`]) stay as they are. A folder without files
/// is an error.
pub fn example_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
            .collect::<Result<_>>()?;
        entries.sort();
        for path in entries {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            match (hidden, path.is_dir()) {
                (true, _) => {}
                (false, true) => walk(&path, out)?,
                (false, false) => out.push(path),
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.as_os_str() != STDIN && input.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                return Err(Error::Invalid(format!(
                    "{} holds no files to classify",
                    input.display()
                )));
            }
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_stand_for_their_files_and_dash_stays() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        for f in ["z.png", "b/a.jpg", "b/c/d.png", ".hidden.png", "b/.x"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let inputs = [root.to_path_buf(), PathBuf::from(STDIN), root.join("z.png")];
        let files = example_files(&inputs).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap_or(f).display().to_string())
            .collect();
        assert_eq!(names, ["b/a.jpg", "b/c/d.png", "z.png", "-", "z.png"]);
        let err = example_files(&[root.join("empty")]).unwrap_err();
        assert!(err.to_string().contains("holds no files"), "{err}");
    }
}
