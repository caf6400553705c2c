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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel() -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("pkg/models/w.bin", opts).unwrap();
        w.write_all(&[7u8; 100]).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_an_entry_and_names_a_missing_one() {
        let archive = wheel();
        assert_eq!(
            read_zip_entry(&archive, "pkg/models/w.bin", 1000).unwrap(),
            [7u8; 100]
        );
        let err = read_zip_entry(&archive, "pkg/other.bin", 1000).unwrap_err();
        assert!(err.to_string().contains("pkg/other.bin"), "{err}");
        assert!(read_zip_entry(b"not a zip", "x", 10).is_err());
    }

    #[test]
    fn reading_stops_at_the_limit() {
        assert_eq!(
            read_zip_entry(&wheel(), "pkg/models/w.bin", 10)
                .unwrap()
                .len(),
            10
        );
    }
}
