//! Reading files out of registry packages: a PyPI wheel (a zip archive) or an npm tarball (a
//! gzipped tar whose entries sit under one top folder, `package/`).

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

/// The bytes of each of `entries` (paths relative to the package root, i.e. without the tarball's
/// top folder) in the npm tarball `archive`, in the order asked, each read up to `limit` bytes.
pub fn read_npm_entries(
    archive: &[u8],
    entries: &[&str],
    limit: u64,
) -> Result<Vec<Vec<u8>>, Error> {
    let tar_err = |e: std::io::Error| Error::Format(format!("npm tarball: {e}"));
    let mut found: Vec<Option<Vec<u8>>> = vec![None; entries.len()];
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().map_err(tar_err)? {
        let entry = entry.map_err(tar_err)?;
        let path = entry.path().map_err(tar_err)?.into_owned();
        let mut parts = path.components();
        parts.next();
        let inner = parts.as_path().to_string_lossy().replace('\\', "/");
        if let Some(i) = entries.iter().position(|e| *e == inner) {
            let mut out = Vec::new();
            entry.take(limit).read_to_end(&mut out).map_err(tar_err)?;
            found[i] = Some(out);
        }
    }
    entries
        .iter()
        .zip(found)
        .map(|(e, f)| f.ok_or_else(|| Error::Format(format!("npm tarball has no {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tarball() -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, data) in [
            ("package/a/model.json", &b"{}"[..]),
            ("package/b.bin", &[9u8; 50][..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn reads_npm_entries_in_the_order_asked() {
        let got = read_npm_entries(&tarball(), &["b.bin", "a/model.json"], 1000).unwrap();
        assert_eq!(got, vec![vec![9u8; 50], b"{}".to_vec()]);
        assert_eq!(
            read_npm_entries(&tarball(), &["b.bin"], 10).unwrap()[0].len(),
            10
        );
        let err = read_npm_entries(&tarball(), &["c.bin"], 10).unwrap_err();
        assert!(err.to_string().contains("c.bin"), "{err}");
        assert!(read_npm_entries(b"not gzip", &["x"], 10).is_err());
    }

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
