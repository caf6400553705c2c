//! Bounded reads: how many bytes a file of each kind may hold, checked from its metadata before
//! reading and again while reading (a file that grows, or a device such as `/dev/zero`, stops at
//! the limit), and whether non-regular files (FIFOs, devices) may be read at all.
//!
//! The defaults here are the converters' (a model to convert, a TF.js shard); graft keeps the
//! limits of the files it reads itself in `graft::limits`, and reads through [`read_file`].

use std::io::Read;
use std::path::Path;

use crate::Error;

/// Default size limit of a model file to convert (PyTorch checkpoint, TFLite flatbuffer, ONNX
/// file merged by a converter): 4 GiB.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 4 << 30;

/// Largest TF.js model.json read (its topology; weights live in the shards): 64 MiB.
pub const MAX_MODEL_JSON_BYTES: u64 = 64 << 20;

/// The most a checkpoint's storages may inflate to, as a multiple of the checkpoint's size on
/// disk: PyTorch stores its entries uncompressed (ratio 1); a re-zipped checkpoint of real
/// weights compresses by far less than this. Larger claims are a zip bomb.
pub const MAX_INFLATION: u64 = 32;

/// How one read is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    /// The most bytes the file may hold.
    pub max_bytes: u64,
    /// Whether a file that is not a regular file (a FIFO, a character or block device) may be
    /// read; such files have no size to check and may never end.
    pub allow_special_files: bool,
}

impl ReadLimit {
    /// The converters' default for a model to convert: [`DEFAULT_MAX_MODEL_BYTES`], regular
    /// files only.
    pub const MODEL: ReadLimit = ReadLimit {
        max_bytes: DEFAULT_MAX_MODEL_BYTES,
        allow_special_files: false,
    };
}

/// Reads the file at `path` whole, refusing (with an error that names the limit) a file larger
/// than `limit.max_bytes` from its metadata without reading it, a non-regular file unless
/// `limit.allow_special_files`, and a file that turns out larger while it is read. The buffer is
/// reserved fallibly: a failed allocation is an error. `what` names the kind of file in errors
/// with its article (e.g. "a model").
pub fn read_file(path: &Path, limit: ReadLimit, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind};
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("is a folder, not {what} file"),
        ));
    }
    if !meta.is_file() && !limit.allow_special_files {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!(
                "is not a regular file (a FIFO, socket or device); {what} file is read only \
                 from a regular file unless special files are allowed"
            ),
        ));
    }
    let too_large = |size: String| {
        IoError::new(
            ErrorKind::FileTooLarge,
            format!(
                "{size} is larger than the limit of {} bytes for {what} file",
                limit.max_bytes
            ),
        )
    };
    if meta.is_file() && meta.len() > limit.max_bytes {
        return Err(too_large(format!("{} bytes", meta.len())));
    }
    let mut out = Vec::new();
    if meta.is_file() {
        // The size may still change while reading; the bounded reader below has the last word.
        let expected =
            usize::try_from(meta.len()).map_err(|_| too_large(meta.len().to_string()))?;
        out.try_reserve_exact(expected).map_err(|e| {
            IoError::new(
                ErrorKind::OutOfMemory,
                format!("cannot allocate {expected} bytes to read it: {e}"),
            )
        })?;
    }
    let file = std::fs::File::open(path)?;
    file.take(limit.max_bytes.saturating_add(1))
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit.max_bytes {
        return Err(too_large("the file (still growing, or a device)".into()));
    }
    Ok(out)
}

/// [`read_file`] for the converters: a [`Error::Format`] that names the file.
pub(crate) fn read_model(path: &Path) -> Result<Vec<u8>, Error> {
    read_file(path, ReadLimit::MODEL, "a model")
        .map_err(|e| Error::Format(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_limit_are_refused_from_their_size_and_others_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        std::fs::write(&path, [1u8; 100]).unwrap();
        let limit = |max_bytes| ReadLimit {
            max_bytes,
            allow_special_files: false,
        };
        assert_eq!(read_file(&path, limit(100), "a model").unwrap(), [1u8; 100]);
        let err = read_file(&path, limit(99), "a model").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("limit of 99 bytes"), "{err}");
        // A sparse 5 GiB file is refused without reading it.
        let big = std::fs::File::create(&path).unwrap();
        big.set_len(5 << 30).unwrap();
        let err = read_file(&path, ReadLimit::MODEL, "a model").unwrap_err();
        assert!(err.to_string().contains("5368709120 bytes"), "{err}");
        let err = read_file(dir.path(), ReadLimit::MODEL, "a model").unwrap_err();
        assert!(err.to_string().contains("folder"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_refused_unless_allowed_and_then_stop_at_the_limit() {
        let zero = Path::new("/dev/zero");
        let err = read_file(zero, ReadLimit::MODEL, "a model").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let allowed = ReadLimit {
            max_bytes: 1000,
            allow_special_files: true,
        };
        let err = read_file(zero, allowed, "a model").unwrap_err();
        assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
    }
}
