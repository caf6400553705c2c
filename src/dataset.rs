//! Labelled examples from a folder of class folders, and the seeded, stratified train/validation split.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Fraction of each class held out for validation unless told otherwise (a 70/30 split).
pub const DEFAULT_VAL_SPLIT: f32 = 0.3;

/// One labelled example file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
}

/// A labelled data set: `root/<class>/<file>`, classes sorted by name, files sorted within a class.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub examples: Vec<Example>,
}

impl Dataset {
    /// Reads the class folders under `root`. Hidden entries (names starting with `.`) and loose files
    /// beside the class folders are ignored. Errors name what is wrong: a missing folder, no class
    /// folders, fewer than two classes, or a class folder without files.
    pub fn from_folder(root: impl AsRef<Path>) -> Result<Dataset> {
        let root = root.as_ref();
        let mut classes = Vec::new();
        for entry in sorted_entries(root)? {
            if entry.is_dir() && !is_hidden(&entry) {
                classes.push(entry);
            }
        }
        if classes.is_empty() {
            return Err(Error::Dataset(format!(
                "{} has no class folders: expected {}/<class>/<example files>",
                root.display(),
                root.display()
            )));
        }
        let mut names = Vec::with_capacity(classes.len());
        let mut examples = Vec::new();
        for (label, dir) in classes.iter().enumerate() {
            let name = dir.file_name().map(class_name).unwrap_or_default();
            if names.contains(&name) {
                return Err(Error::Dataset(format!(
                    "two class folders of {} are both named '{name}' once their names are \
                     written as text: rename one",
                    root.display()
                )));
            }
            let files: Vec<PathBuf> = sorted_entries(dir)?
                .into_iter()
                .filter(|p| p.is_file() && !is_hidden(p))
                .collect();
            if files.is_empty() {
                return Err(Error::Dataset(format!(
                    "class '{name}' ({}) has no example files",
                    dir.display()
                )));
            }
            examples.extend(files.into_iter().map(|path| Example { path, label }));
            names.push(name);
        }
        let dataset = Dataset {
            root: root.to_path_buf(),
            classes: names,
            examples,
        };
        dataset.check_classes()?;
        Ok(dataset)
    }

    /// Number of examples per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        count_labels(self.examples.iter().map(|e| e.label), self.classes.len())
    }

    /// Keeps only the examples for which `keep` is true (e.g. those that decoded), then checks that
    /// every class still has an example and that there are at least two classes.
    pub fn retain(&mut self, mut keep: impl FnMut(&Example) -> bool) -> Result<()> {
        self.examples.retain(|e| keep(e));
        self.check_classes()
    }

    fn check_classes(&self) -> Result<()> {
        check_classes(&self.classes, &self.counts())
    }
}

/// A class folder's name as a label: the name itself when it is UTF-8, else its bytes with each
/// one that is not part of valid UTF-8 written `\xNN` (lossless, so two folders never share a
/// label by accident).
fn class_name(name: &std::ffi::OsStr) -> String {
    if let Some(text) = name.to_str() {
        return text.to_string();
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut out = String::new();
        for chunk in name.as_bytes().utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy().into_owned()
    }
}

/// Errors unless there are at least two classes and every class has at least one example.
pub fn check_classes(classes: &[String], counts: &[usize]) -> Result<()> {
    if classes.len() < 2 {
        return Err(Error::Dataset(format!(
            "need at least two classes to train a classifier, found {}: {:?}",
            classes.len(),
            classes
        )));
    }
    let empty: Vec<&str> = classes
        .iter()
        .zip(counts)
        .filter(|(_, &n)| n == 0)
        .map(|(c, _)| c.as_str())
        .collect();
    if !empty.is_empty() {
        return Err(Error::Dataset(format!(
            "no usable example in class(es) {}",
            empty.join(", ")
        )));
    }
    Ok(())
}

/// Why `labels` cannot name a model's classes, if they cannot: a label that repeats.
pub fn check_labels(labels: &[String]) -> std::result::Result<(), String> {
    let mut sorted: Vec<&String> = labels.iter().collect();
    sorted.sort();
    match sorted.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(format!("label {:?} repeats among {labels:?}", w[0])),
        None => Ok(()),
    }
}

/// Counts how often each label in `0..classes` occurs.
pub fn count_labels(labels: impl IntoIterator<Item = usize>, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    counts
}

/// Splits example indices into (train, validation), class by class: each class's indices are
/// shuffled with a ChaCha8 generator seeded by `seed`, and `round(n * val_fraction)` of them go to
/// validation, but a class keeps at least one training example, and a class with two or more examples
/// gives at least one to validation when `val_fraction > 0`. Both lists come back sorted.
pub fn stratified_split(
    labels: &[usize],
    val_fraction: f32,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(Error::Invalid(format!(
            "the validation split must be in [0, 1), got {val_fraction}"
        )));
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        let n = members.len();
        if n == 0 {
            continue;
        }
        members.shuffle(&mut rng);
        let wanted = (n as f32 * val_fraction).round() as usize;
        let floor = usize::from(val_fraction > 0.0 && n >= 2);
        let n_val = wanted.max(floor).min(n - 1);
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

/// Every file under `dir` at any depth (hidden entries skipped, symbolic links to folders not
/// followed), sorted: examples without labels, such as examples of nothing a model knows. An
/// error when `dir` cannot be read or holds no file.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for path in sorted_entries(&folder)? {
            if is_hidden(&path) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            if meta.is_dir() {
                folders.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Dataset(format!("{} holds no files", dir.display())));
    }
    Ok(files)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        paths.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_tree(spec: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in spec {
            let c = dir.path().join(class);
            std::fs::create_dir_all(&c).unwrap();
            for i in 0..*n {
                std::fs::write(c.join(format!("{i:03}.png")), b"x").unwrap();
            }
        }
        dir
    }

    #[test]
    fn reads_classes_in_order_and_ignores_hidden_and_loose_files() {
        let dir = make_tree(&[("b", 2), ("a", 3), (".git", 1)]);
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("a/.DS_Store"), b"x").unwrap();
        let ds = Dataset::from_folder(dir.path()).unwrap();
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(ds.counts(), [3, 2]);
        assert_eq!(ds.examples[0].path, dir.path().join("a/000.png"));
    }

    #[cfg(unix)]
    #[test]
    fn class_names_that_are_not_utf8_keep_their_bytes_and_never_collide() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = make_tree(&[("plain", 1)]);
        // Two names that the lossy conversion would both turn into "caf\u{fffd}".
        for name in [&b"caf\xe9"[..], &b"caf\xff"[..]] {
            let c = dir.path().join(OsStr::from_bytes(name));
            std::fs::create_dir_all(&c).unwrap();
            std::fs::write(c.join("0.png"), b"x").unwrap();
        }
        let ds = Dataset::from_folder(dir.path()).unwrap();
        assert_eq!(ds.classes, ["caf\\xe9", "caf\\xff", "plain"]);
        // A folder literally named as another's escaped form is a clear error.
        let clash = dir.path().join("caf\\xe9");
        std::fs::create_dir_all(&clash).unwrap();
        std::fs::write(clash.join("0.png"), b"x").unwrap();
        let err = Dataset::from_folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains("both named"), "{err}");
    }

    #[test]
    fn one_class_empty_class_and_missing_folder_are_errors_that_say_which() {
        let one = make_tree(&[("only", 3)]);
        let err = Dataset::from_folder(one.path()).unwrap_err().to_string();
        assert!(
            err.contains("at least two classes") && err.contains("only"),
            "{err}"
        );

        let empty = make_tree(&[("cats", 2), ("dogs", 0)]);
        let err = Dataset::from_folder(empty.path()).unwrap_err().to_string();
        assert!(err.contains("'dogs'"), "{err}");

        let err = Dataset::from_folder("/nonexistent/graft")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/graft"), "{err}");
    }

    #[test]
    fn retain_reports_classes_left_without_examples() {
        let dir = make_tree(&[("a", 2), ("b", 1)]);
        let mut ds = Dataset::from_folder(dir.path()).unwrap();
        let err = ds.retain(|e| e.label == 0).unwrap_err().to_string();
        assert!(err.contains("no usable example in class(es) b"), "{err}");
    }

    #[test]
    fn split_is_stratified_seeded_and_complete() {
        let labels: Vec<usize> = [0; 10].into_iter().chain([1; 4]).chain([2; 1]).collect();
        let (train, val) = stratified_split(&labels, 0.3, 7).unwrap();
        let val_counts = count_labels(val.iter().map(|&i| labels[i]), 3);
        assert_eq!(val_counts, [3, 1, 0]);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        assert_eq!(
            stratified_split(&labels, 0.3, 7).unwrap(),
            (train.clone(), val.clone())
        );
        let other: Vec<_> = (0..20)
            .map(|s| stratified_split(&labels, 0.3, s).unwrap().1)
            .collect();
        assert!(
            other.iter().any(|v| *v != val),
            "the seed must change the split"
        );
    }

    #[test]
    fn split_rejects_fractions_outside_zero_one() {
        assert!(stratified_split(&[0, 1], 1.0, 0).is_err());
        assert!(stratified_split(&[0, 1], -0.1, 0).is_err());
        assert_eq!(
            stratified_split(&[0, 1], 0.0, 0).unwrap(),
            (vec![0, 1], vec![])
        );
    }
}
