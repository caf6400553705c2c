//! An ONNX file written by `graft export`, used as a classifier: its labels, input form and
//! preprocessing come from its metadata.
//!
//! A tensor-in file runs as it is. An image-in file runs from the tensor its built-in
//! preprocessing gives the base (named in the metadata), fed by graft's own preprocessing, which
//! the graph reproduces: so graft decodes every image format it reads (alpha, grey) the same way
//! for both, and either engine (tract, ONNX Runtime) runs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::ArrayViewD;
use prost::Message;
use serde_json::Value;
use tract_onnx::pb;

use super::answer::{answer_files, embed_bytes, single, FileAnswer};
use super::Progress;
use crate::base::{batch_value_info, parse_onnx, prune_to, BaseModel, BaseOptions, EngineOptions};
use crate::cache::CacheOptions;
use crate::export::{InputForm, IMAGE_INPUT, PROBABILITIES};
use crate::input::InputSpec;
use crate::recognizer::{answers, Prediction};
use crate::{Error, Result};

/// A graft export, ready to answer.
#[derive(Debug)]
pub struct ExportedClassifier {
    labels: Vec<String>,
    form: InputForm,
    /// The graph from the base's input to the probabilities, shared.
    model: Arc<BaseModel>,
}

/// The metadata value under `key`, parsed as JSON.
fn meta_json(proto: &pb::ModelProto, key: &str, path: &Path) -> Result<Value> {
    let text = proto
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
        .ok_or_else(|| Error::Model {
            path: path.to_path_buf(),
            msg: format!("no `{key}` in its metadata: not written by graft export"),
        })?;
    serde_json::from_str(text).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        msg: format!("metadata `{key}` is not valid JSON: {e}"),
    })
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str, path: &Path) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        msg: format!("metadata {what}: {e}"),
    })
}

/// Whether `bytes` (a file's first 9) look like an ONNX file rather than a safetensors one (a
/// recognizer or an index: 8 bytes of header size, then its JSON header).
pub(super) fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.get(8) != Some(&b'{')
}

impl ExportedClassifier {
    /// Loads an ONNX file graft exported, on the engine `engine` names.
    pub fn load(path: &Path, engine: &EngineOptions) -> Result<ExportedClassifier> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut proto = parse_onnx(&bytes, path)?;
        let labels: Vec<String> = decode(meta_json(&proto, "labels", path)?, "labels", path)?;
        let input = meta_json(&proto, "graft.input", path)?;
        let mut preprocessing = meta_json(&proto, "graft.preprocessing", path)?;
        let spec: InputSpec = decode(preprocessing["spec"].take(), "preprocessing", path)?;
        let form: InputForm = decode(input["form"].clone(), "input form", path)?;
        let bytes = match form {
            InputForm::Tensor => bytes,
            InputForm::Image => {
                let prepared = input["prepared"].as_str().ok_or_else(|| Error::Model {
                    path: path.to_path_buf(),
                    msg: "metadata graft.input names no prepared tensor".into(),
                })?;
                without_front(&mut proto, prepared, &spec, labels.len(), path)?;
                proto.encode_to_vec()
            }
        };
        let options = BaseOptions {
            cut: Some(PROBABILITIES.into()),
            input_shape: Some(spec.shape()),
            engine: engine.clone(),
            ..BaseOptions::default()
        };
        let model = BaseModel::from_bytes(bytes, &path.display().to_string(), &options)?
            .with_input_spec(spec)?;
        ExportedClassifier::from_parts(labels, form, model, path)
    }

    /// A classifier from its labels and the model (from the prepared input to the
    /// probabilities) loaded from `path`; an error when they do not fit.
    pub(super) fn from_parts(
        labels: Vec<String>,
        form: InputForm,
        model: BaseModel,
        path: &Path,
    ) -> Result<ExportedClassifier> {
        if model.embedding_dim() != labels.len() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                msg: format!(
                    "{} probabilities for {} labels",
                    model.embedding_dim(),
                    labels.len()
                ),
            });
        }
        Ok(ExportedClassifier {
            labels,
            form,
            model: Arc::new(model),
        })
    }

    /// Class names, in the order of the file's probabilities.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// What the file takes.
    pub fn form(&self) -> InputForm {
        self.form
    }

    /// The engine that runs it.
    pub fn backend(&self) -> crate::base::Backend {
        self.model.backend()
    }

    /// The `top_k` best classes of each file (embedded through the cache unless
    /// `cache.no_cache`), in order; a file that cannot be used gets its error in place.
    pub fn predict_files(
        &self,
        files: &[PathBuf],
        top_k: usize,
        cache: &CacheOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<FileAnswer<Prediction>>> {
        answer_files(&self.model, files, cache, progress, |row| {
            single(answers(row, &self.labels, top_k)?)
        })
    }

    /// The answer for one example file's bytes; `name` stands for the file in errors.
    pub fn predict_bytes(&self, bytes: &[u8], name: &str, top_k: usize) -> Result<Prediction> {
        let probs = embed_bytes(&self.model, bytes, name)?;
        single(answers(probs.view(), &self.labels, top_k)?)
    }

    /// Class probabilities `[N, classes]` for a batch of prepared inputs `[N, base input...]`.
    pub fn probabilities(&self, batch: ArrayViewD<f32>) -> Result<ndarray::Array2<f32>> {
        self.model.embed(batch)
    }
}

/// Makes `prepared` (the float tensor the built-in preprocessing gives the base) the graph's
/// input in place of the image: the node that computes it goes, and what only fed it is left
/// for the cut to drop.
fn without_front(
    proto: &mut pb::ModelProto,
    prepared: &str,
    spec: &InputSpec,
    classes: usize,
    path: &Path,
) -> Result<()> {
    let graph = proto.graph.as_mut().ok_or_else(|| Error::Model {
        path: path.to_path_buf(),
        msg: "no graph".into(),
    })?;
    let before = graph.node.len();
    graph
        .node
        .retain(|n| !n.output.iter().any(|o| o == prepared));
    if graph.node.len() + 1 != before {
        return Err(Error::Model {
            path: path.to_path_buf(),
            msg: format!("no single node computes the prepared tensor `{prepared}`"),
        });
    }
    prune_to(graph, PROBABILITIES);
    graph.input.retain(|i| i.name != IMAGE_INPUT);
    graph
        .input
        .insert(0, batch_value_info(prepared, &spec.shape()));
    graph.output = vec![batch_value_info(PROBABILITIES, &[classes])];
    Ok(())
}
