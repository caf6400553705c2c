//! On-disk cache of embeddings: the frozen base runs once per example, whatever the head's settings.
//!
//! An entry is keyed by the base model's sha256, the cut tensor, the preprocessing (as JSON) and the
//! sha256 of the example file's bytes, so renaming a file keeps its entry and changing any of the four
//! makes a new one. Entries are raw little-endian f32 files written atomically; one whose length does
//! not match the embedding size is ignored and recomputed.
//!
//! The one rule for graft's cache folder (embeddings, fetched originals, the ONNX Runtime library)
//! is [`cache_dir`]; [`CacheOptions`] is how a verb is told to use it or not.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::{Error, Result};

/// graft's cache folder: `$GRAFT_CACHE`, else `$XDG_CACHE_HOME/graft`, else `$HOME/.cache/graft`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("GRAFT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("graft")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/graft")))
        .ok_or_else(|| Error::Invalid("no cache folder: set GRAFT_CACHE or HOME".into()))
}

/// Whether embeddings are read from and written to the cache (in [`cache_dir`]). Default: yes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CacheOptions {
    /// Do not read or write the embedding cache (embed every example again).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_cache: bool,
}

impl CacheOptions {
    /// The cache root to use: [`cache_dir`], or `None` with `no_cache` or when there is no cache
    /// folder (then nothing is cached).
    pub fn root(&self) -> Option<PathBuf> {
        match self.no_cache {
            true => None,
            false => cache_dir().ok(),
        }
    }
}

/// Embedding cache for one (base model, cut, preprocessing) combination.
#[derive(Clone, Debug)]
pub struct EmbeddingCache {
    dir: PathBuf,
    dim: usize,
}

impl EmbeddingCache {
    /// Opens (lazily: nothing is created until the first store) the cache under `root` for embeddings
    /// of size `dim` from the base with hash `base_sha256`, cut at `cut`, fed by `preprocessing`.
    pub fn new(root: &Path, base_sha256: &str, cut: &str, preprocessing: &str, dim: usize) -> Self {
        let key = sha256_hex(
            format!("graft-embeddings-v1\n{base_sha256}\n{cut}\n{preprocessing}\n{dim}").as_bytes(),
        );
        EmbeddingCache {
            dir: root.join("embeddings").join(&key[..32]),
            dim,
        }
    }

    /// The folder holding this combination's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached embedding of an example whose bytes hash to `content_sha256`, if present and whole.
    pub fn get(&self, content_sha256: &str) -> Option<Vec<f32>> {
        // Only a regular file of exactly one embedding is read (never a FIFO or a huge file).
        let path = self.entry(content_sha256);
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.len() != self.dim as u64 * 4 {
            return None;
        }
        let bytes = std::fs::read(path).ok()?;
        if bytes.len() != self.dim * 4 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// Stores an embedding for the example whose bytes hash to `content_sha256`.
    pub fn put(&self, content_sha256: &str, embedding: &[f32]) -> Result<()> {
        if embedding.len() != self.dim {
            return Err(Error::Invalid(format!(
                "embedding cache holds vectors of size {}, got {}",
                self.dim,
                embedding.len()
            )));
        }
        let bytes: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_atomic(&self.entry(content_sha256), &bytes)
    }

    fn entry(&self, content_sha256: &str) -> PathBuf {
        self.dir.join(format!("{content_sha256}.f32"))
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_separates_bases_cuts_and_preprocessing() {
        let root = tempfile::tempdir().unwrap();
        let a = EmbeddingCache::new(root.path(), "base1", "features", "224", 3);
        let key = sha256_hex(b"image bytes");
        assert_eq!(a.get(&key), None);
        a.put(&key, &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(a.get(&key), Some(vec![1.0, -2.5, 3.25]));
        for other in [
            EmbeddingCache::new(root.path(), "base2", "features", "224", 3),
            EmbeddingCache::new(root.path(), "base1", "logits", "224", 3),
            EmbeddingCache::new(root.path(), "base1", "features", "256", 3),
        ] {
            assert_eq!(other.get(&key), None);
        }
    }

    #[test]
    fn wrong_sized_entries_are_ignored_and_refused() {
        let root = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::new(root.path(), "b", "c", "p", 4);
        assert!(cache.put("k", &[1.0]).is_err());
        std::fs::create_dir_all(cache.dir()).unwrap();
        std::fs::write(cache.dir().join("k.f32"), [0u8; 7]).unwrap();
        assert_eq!(cache.get("k"), None);
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
