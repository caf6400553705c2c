//! A Teachable Machine image export used as a classifier: the folder it downloads as
//! (`model.json`, its weight file(s) and `metadata.json`), converted to ONNX in memory (the TF.js
//! layers converter) and run as an [`ExportedClassifier`], with Teachable Machine's
//! preprocessing: the largest centred square, resized to `imageSize` (224), RGB scaled to [-1, 1],
//! NHWC.

use std::path::Path;

use serde::Deserialize;

use super::exported::ExportedClassifier;
use crate::base::{parse_onnx, BaseModel, BaseOptions, EngineOptions};
use crate::export::InputForm;
use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout};
use crate::limits::FileKind;
use crate::{Error, Result};

/// The model file of a Teachable Machine export.
pub const MODEL_JSON: &str = "model.json";
/// The labels and settings file of a Teachable Machine export.
pub const METADATA_JSON: &str = "metadata.json";

/// What graft reads of `metadata.json`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    labels: Vec<String>,
    #[serde(default)]
    image_size: Option<u32>,
    #[serde(default)]
    package_name: Option<String>,
}

/// Whether `dir` looks like a Teachable Machine export (a folder with both JSON files).
pub fn is_teachable_machine(dir: &Path) -> bool {
    dir.is_dir() && dir.join(MODEL_JSON).is_file() && dir.join(METADATA_JSON).is_file()
}

/// Teachable Machine's preprocessing for images of `size` x `size`.
fn spec(size: u32) -> ImageSpec {
    ImageSpec {
        width: size,
        height: size,
        layout: Layout::Nhwc,
        channels: ChannelOrder::Rgb,
        mean: [127.5; 3],
        std: [127.5; 3],
        center_crop: Some(1.0),
        letterbox: false,
    }
}

/// Loads the Teachable Machine image export in `dir` on the engine `engine` names.
pub fn load(dir: &Path, engine: &EngineOptions) -> Result<ExportedClassifier> {
    let meta_path = dir.join(METADATA_JSON);
    let text = crate::limits::read_text(&meta_path, FileKind::Text)?;
    let meta: Metadata = serde_json::from_str(&text).map_err(|e| Error::Model {
        path: meta_path.clone(),
        msg: format!("not a Teachable Machine metadata.json: {e}"),
    })?;
    if let Some(package) = meta
        .package_name
        .as_deref()
        .filter(|p| !p.contains("image"))
    {
        return Err(Error::Model {
            path: meta_path,
            msg: format!("a {package} project: graft reads Teachable Machine image projects"),
        });
    }
    let onnx = graft_converters::tfjs::convert(&dir.join(MODEL_JSON))?;
    let model_path = dir.join(MODEL_JSON);
    let proto = parse_onnx(&onnx, &model_path)?;
    let output = proto
        .graph
        .as_ref()
        .and_then(|g| g.output.first())
        .map(|o| o.name.clone())
        .ok_or_else(|| Error::Model {
            path: model_path.clone(),
            msg: "the converted model has no output".into(),
        })?;
    let spec = InputSpec::Image(spec(meta.image_size.unwrap_or(224)));
    let options = BaseOptions {
        cut: Some(output),
        input_shape: Some(spec.shape()),
        engine: engine.clone(),
        ..BaseOptions::default()
    };
    let model = BaseModel::from_bytes(onnx, &model_path.display().to_string(), &options)?
        .with_input_spec(spec)?;
    ExportedClassifier::from_parts(meta.labels, InputForm::Tensor, None, model, &model_path)
}
