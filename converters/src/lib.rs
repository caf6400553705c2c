//! graft's importers: read other frameworks' model files safely and emit ONNX.

pub mod efficientnet_lite;
pub mod half;
pub mod limits;
pub mod onnx_builder;
pub mod package;
pub mod speech;
pub mod tensorflow;
pub mod tf;
pub mod tfjs;
pub mod tflite;
pub mod torch;

/// The ops each converter translates: (format, sorted op names) for "tfjs-graph" (TF op names),
/// "tfjs-layers" (Keras layer classes) and "tflite" (builtin operator names). A model using
/// anything else is refused, with every unsupported op listed.
pub fn supported_ops() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("tfjs-graph", tfjs::graph::supported_ops()),
        ("tfjs-layers", tfjs::layers::supported_layers()),
        ("tflite", tflite::graph::supported_ops()),
    ]
}

/// The translation of `key` in a dispatch table of (key, translation) pairs.
pub(crate) fn lookup<K: PartialEq + Copy, F: Copy>(table: &[(K, F)], key: K) -> Option<F> {
    table.iter().find(|(k, _)| *k == key).map(|&(_, f)| f)
}

/// The names of a dispatch table keyed by name, sorted.
pub(crate) fn sorted_names<F>(table: &[(&'static str, F)]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = table.iter().map(|&(n, _)| n).collect();
    names.sort_unstable();
    names
}

/// A converter refused its input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not in the expected format, or is truncated or corrupt.
    #[error("{0}")]
    Format(String),
    /// A pickle named a global outside the allow-list; nothing was executed.
    #[error("refusing global {0}: a checkpoint may only build tensors, storages and dicts")]
    UnsafeGlobal(String),
    /// The model uses layers or ops the converter cannot translate (all of them are listed).
    #[error("{0}")]
    Unsupported(String),
}
