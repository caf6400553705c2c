//! Atomic file writing: a crash never leaves a half-written model, recognizer or index.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Name prefix of graft's temporary files (`.graft-tmp-XXXXXX` beside the file being written).
pub(crate) const TEMP_PREFIX: &str = ".graft-tmp-";

/// A temporary file of graft's older than this was left by a save that was killed, and is
/// removed by the next save into its folder (a live save writes its file in one go, far faster).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes graft's temporary files in `dir` left by killed saves ([`STALE_AFTER`]); what cannot
/// be read or removed is left as it is.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if ours && stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and then renamed over
/// `path`, so readers see either the old file or the whole new one. The result keeps the
/// permissions of the file it replaces (0644 for a new file on Unix).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    remove_stale_temporaries(dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    #[cfg(unix)]
    {
        // Temporary files are created private (0600).
        use std::os::unix::fs::PermissionsExt;
        let permissions = std::fs::metadata(path)
            .map(|old| old.permissions())
            .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o644));
        tmp.as_file()
            .set_permissions(permissions)
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// An error when `out` is the file `input` (after resolving links and `..`).
pub(crate) fn refuse_same_file(input: &Path, out: &Path) -> Result<()> {
    let same = match (input.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Invalid(format!(
            "the output {} is the input file itself: give another output path",
            out.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        write_atomic(&path, b"first version").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "a new file must not stay private");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files left behind: {names:?}");
    }

    #[test]
    fn temporaries_left_by_a_killed_save_are_removed_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(format!("{TEMP_PREFIX}killed"));
        let fresh = dir.path().join(format!("{TEMP_PREFIX}running"));
        let other = dir.path().join(".tmpNotOurs");
        for p in [&old, &fresh, &other] {
            std::fs::write(p, b"half a model").unwrap();
        }
        let two_hours = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&old, &other] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(two_hours)
                .unwrap();
        }
        write_atomic(&dir.path().join("model.bin"), b"whole").unwrap();
        assert!(!old.exists(), "a stale temporary of graft's stays");
        assert!(fresh.exists(), "a live save's temporary was removed");
        assert!(other.exists(), "a file that is not graft's was removed");
    }

    #[test]
    fn unwritable_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = write_atomic(&blocker.join("sub/model.bin"), b"x").unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}
