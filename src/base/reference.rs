//! What identifies a base in the files graft writes.

use serde::{Deserialize, Serialize};

use crate::input::InputSpec;
use crate::{Error, Result};

/// Identifies the frozen base that turns examples into embeddings: stored with recognizers, KNN
/// indexes and caches, so that a saved head is never fed embeddings from another base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseRef {
    /// Zoo name (e.g. `efficientnet-lite0`) or the model file's path as given.
    pub name: String,
    /// sha256 of the base model file.
    pub sha256: String,
    /// Tensor the base was cut at.
    pub cut: String,
    /// Size of the embedding at the cut.
    pub embedding_dim: usize,
    /// How an example becomes the base's input.
    pub input: InputSpec,
}

impl BaseRef {
    /// Why this reference, read from a file, cannot be used, if it cannot: an embedding size of
    /// 1..=[`crate::limits::Limits::input_elements`] and an input spec that passes
    /// [`InputSpec::check`].
    pub fn check(&self) -> std::result::Result<(), String> {
        let limit = crate::limits::get().input_elements;
        if self.embedding_dim == 0 || self.embedding_dim as u64 > limit {
            return Err(format!(
                "base embedding size {} must be within 1..={limit}",
                self.embedding_dim
            ));
        }
        self.input
            .check()
            .map_err(|e| format!("base '{}': {e}", self.name))
    }

    /// A [`Error::BaseMismatch`] unless `other` is the same base (file and cut) as `self`, the
    /// one `what` was made with.
    pub fn check_same(&self, other: &BaseRef, what: &str) -> Result<()> {
        if other.sha256 != self.sha256 || other.cut != self.cut {
            return Err(Error::BaseMismatch(format!(
                "{what} was made with base '{}' (sha256 {}, cut {}), not with '{}' (sha256 {}, cut {})",
                self.name,
                short(&self.sha256),
                self.cut,
                other.name,
                short(&other.sha256),
                other.cut
            )));
        }
        Ok(())
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
