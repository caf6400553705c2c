//! TF.js models (`model.json` plus binary weight shards) to ONNX: layers models (a Keras topology)
//! and graph models (a TensorFlow GraphDef as JSON).
//!
//! [`convert`] reads `model.json`, loads the weights its manifest names (paths confined to the
//! model's folder, sizes checked exactly, quantised and float16 weights decoded) and detects the
//! kind of model.

pub mod base64;
pub mod fold;
pub mod graph;
pub mod layers;
pub mod net;
pub mod npm;
pub mod weights;

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// The parts of model.json the converters read.
#[derive(Debug, Deserialize)]
pub struct ModelJson {
    /// "layers-model", "graph-model", or absent (older layers models).
    #[serde(default)]
    pub format: Option<String>,
    #[serde(rename = "modelTopology")]
    pub topology: serde_json::Value,
    #[serde(rename = "weightsManifest", default)]
    pub weights_manifest: Vec<weights::Group>,
    /// Graph models: input and output tensors.
    #[serde(default)]
    pub signature: Option<serde_json::Value>,
}

/// Which converter a model.json needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Layers,
    Graph,
}

impl ModelJson {
    /// Parses model.json text.
    pub fn parse(text: &str) -> Result<ModelJson, Error> {
        serde_json::from_str(text).map_err(|e| Error::Format(format!("model.json: {e}")))
    }

    /// Layers or graph model: by `format`, else by the topology's shape (a GraphDef has `node`).
    pub fn kind(&self) -> Result<Kind, Error> {
        match self.format.as_deref() {
            Some("graph-model") => Ok(Kind::Graph),
            Some("layers-model") => Ok(Kind::Layers),
            Some(other) => Err(Error::Format(format!(
                "model.json: unknown format {other:?} (layers-model or graph-model)"
            ))),
            None if self.topology.get("node").is_some() => Ok(Kind::Graph),
            None if self.topology.get("model_config").is_some()
                || self.topology.get("class_name").is_some() =>
            {
                Ok(Kind::Layers)
            }
            None => Err(Error::Format(
                "model.json: modelTopology is neither a Keras model nor a GraphDef".into(),
            )),
        }
    }
}

/// Converts the TF.js model described by `model_json` (weight shards next to it) to ONNX bytes.
pub fn convert(model_json: &Path) -> Result<Vec<u8>, Error> {
    let limit = crate::limits::ReadLimit {
        max_bytes: crate::limits::MAX_MODEL_JSON_BYTES,
        allow_special_files: false,
    };
    let bytes = crate::limits::read_file(model_json, limit, "a model.json")
        .map_err(|e| Error::Format(format!("{}: {e}", model_json.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::Format(format!("{}: not UTF-8 text: {e}", model_json.display())))?;
    let model = ModelJson::parse(&text)?;
    let kind = model.kind()?;
    let dir = match model_json.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let weights = weights::load(dir, &model.weights_manifest)?;
    let proto = match kind {
        Kind::Layers => layers::convert(&model.topology, &weights)?,
        Kind::Graph => graph::convert(&model, &weights)?,
    };
    Ok(crate::onnx_builder::encode(&proto))
}
