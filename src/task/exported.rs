//! An ONNX file written by `graft export`, used as a classifier: its labels, input form and
//! preprocessing come from its metadata.
//!
//! A tensor-in file runs as it is. An image-in file runs from the tensor its built-in
//! preprocessing gives the base (named in the metadata), fed by graft's own preprocessing, which
//! the graph reproduces: so graft decodes every image format it reads (alpha, grey) the same way
//! for both, and either engine (tract, ONNX Runtime) runs it.
//!
//! A file with an "unknown" rule (metadata `graft.unknown`, output `unknown`) answers with the
//! graph's own `unknown` decision: graft runs the file up to a tensor that holds the
//! probabilities and, in one more column, `unknown` as 0 or 1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft_converters::onnx_builder::attr_int;
use ndarray::{s, ArrayView2, ArrayViewD};
use prost::Message;
use serde_json::Value;
use tract_onnx::pb;

use super::answer::{answer_files, embed_bytes, single, FileAnswer};
use super::Progress;
use crate::base::{batch_value_info, parse_onnx, prune_to, BaseModel, BaseOptions, EngineOptions};
use crate::cache::CacheOptions;
use crate::export::{InputForm, IMAGE_INPUT, PROBABILITIES, UNKNOWN};
use crate::input::InputSpec;
use crate::recognizer::{answers, Prediction};
use crate::reject::RejectRule;
use crate::{Error, Result};

/// A graft export, ready to answer.
#[derive(Debug)]
pub struct ExportedClassifier {
    labels: Vec<String>,
    form: InputForm,
    /// The rule the graph applies; `None` for files without one.
    unknown: Option<RejectRule>,
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
        let unknown: Option<RejectRule> = match meta_json(&proto, "graft.unknown", path) {
            Ok(value) => decode(value, "unknown rule", path)?,
            Err(_) => None,
        };
        let (answer, width) = match &unknown {
            Some(_) => (with_unknown_column(&mut proto, path)?, labels.len() + 1),
            None => (PROBABILITIES.to_string(), labels.len()),
        };
        let bytes = match form {
            InputForm::Tensor if unknown.is_none() => bytes,
            InputForm::Tensor => proto.encode_to_vec(),
            InputForm::Image => {
                let prepared = input["prepared"].as_str().ok_or_else(|| Error::Model {
                    path: path.to_path_buf(),
                    msg: "metadata graft.input names no prepared tensor".into(),
                })?;
                without_front(&mut proto, prepared, &spec, (&answer, width), path)?;
                proto.encode_to_vec()
            }
        };
        let options = BaseOptions {
            cut: Some(answer),
            input_shape: Some(spec.shape()),
            engine: engine.clone(),
            ..BaseOptions::default()
        };
        let model = BaseModel::from_bytes(bytes, &path.display().to_string(), &options)?
            .with_input_spec(spec)?;
        ExportedClassifier::from_parts(labels, form, unknown, model, path)
    }

    /// A classifier from its labels, its unknown rule (whose flag is then the graph's last
    /// column) and the model (from the prepared input to the probabilities) loaded from `path`;
    /// an error when they do not fit.
    pub(super) fn from_parts(
        labels: Vec<String>,
        form: InputForm,
        unknown: Option<RejectRule>,
        model: BaseModel,
        path: &Path,
    ) -> Result<ExportedClassifier> {
        let width = labels.len() + usize::from(unknown.is_some());
        if model.embedding_dim() != width {
            return Err(Error::Model {
                path: path.to_path_buf(),
                msg: format!(
                    "{} values a row for {} labels{}",
                    model.embedding_dim(),
                    labels.len(),
                    if unknown.is_some() {
                        " and unknown"
                    } else {
                        ""
                    }
                ),
            });
        }
        Ok(ExportedClassifier {
            labels,
            form,
            unknown,
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

    /// The "unknown" rule the file applies, from its metadata.
    pub fn unknown_rule(&self) -> Option<&RejectRule> {
        self.unknown.as_ref()
    }

    /// Answers from the rows the file's graph gives (probabilities, then `unknown` with a rule).
    fn answers(&self, rows: ArrayView2<f32>, top_k: usize) -> Result<Vec<Prediction>> {
        let classes = self.labels.len();
        let mut out = answers(rows.slice(s![.., ..classes]), &self.labels, top_k)?;
        if self.unknown.is_some() {
            for (p, flag) in out.iter_mut().zip(rows.column(classes)) {
                p.unknown = *flag > 0.5;
            }
        }
        Ok(out)
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
            single(self.answers(row, top_k)?)
        })
    }

    /// The answer for one example file's bytes; `name` stands for the file in errors.
    pub fn predict_bytes(&self, bytes: &[u8], name: &str, top_k: usize) -> Result<Prediction> {
        let rows = embed_bytes(&self.model, bytes, name)?;
        single(self.answers(rows.view(), top_k)?)
    }

    /// The answers for a batch of prepared inputs `[N, base input...]`.
    pub fn predict_tensor(&self, batch: ArrayViewD<f32>, top_k: usize) -> Result<Vec<Prediction>> {
        let rows = self.model.embed(batch)?;
        self.answers(rows.view(), top_k)
    }

    /// Class probabilities `[N, classes]` for a batch of prepared inputs `[N, base input...]`.
    pub fn probabilities(&self, batch: ArrayViewD<f32>) -> Result<ndarray::Array2<f32>> {
        let rows = self.model.embed(batch)?;
        Ok(rows.slice(s![.., ..self.labels.len()]).to_owned())
    }
}

/// Tensor graft reads from a file with an "unknown" rule: `[N, classes + 1]`, the probabilities
/// and `unknown` as 0 or 1.
const ANSWERS: &str = "graft_read_answers";

/// Appends nodes computing [`ANSWERS`] from the graph's `probabilities` and `unknown` outputs;
/// returns its name.
fn with_unknown_column(proto: &mut pb::ModelProto, path: &Path) -> Result<String> {
    let graph = proto.graph.as_mut().ok_or_else(|| Error::Model {
        path: path.to_path_buf(),
        msg: "no graph".into(),
    })?;
    if !graph.output.iter().any(|o| o.name == UNKNOWN) {
        return Err(Error::Model {
            path: path.to_path_buf(),
            msg: format!("its metadata has an unknown rule but the graph no `{UNKNOWN}` output"),
        });
    }
    let as_float = format!("{ANSWERS}_unknown_float");
    let column = format!("{ANSWERS}_unknown_column");
    let shape = format!("{ANSWERS}_column_shape");
    let node = |op: &str, inputs: &[&str], output: &str| pb::NodeProto {
        op_type: op.into(),
        name: format!("{output}_node"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    };
    let mut cast = node("Cast", &[UNKNOWN], &as_float);
    cast.attribute
        .push(attr_int("to", pb::tensor_proto::DataType::Float as i64));
    graph.node.push(cast);
    graph.initializer.push(pb::TensorProto {
        name: shape.clone(),
        dims: vec![2],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: [-1i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    });
    graph
        .node
        .push(node("Reshape", &[&as_float, &shape], &column));
    let mut concat = node("Concat", &[PROBABILITIES, &column], ANSWERS);
    concat.attribute.push(attr_int("axis", 1));
    graph.node.push(concat);
    Ok(ANSWERS.to_string())
}

/// Makes `prepared` (the float tensor the built-in preprocessing gives the base) the graph's
/// input in place of the image: the node that computes it goes, and what only fed it is left
/// for the cut to drop; the graph's one output is `answer` (`[N, width]`).
fn without_front(
    proto: &mut pb::ModelProto,
    prepared: &str,
    spec: &InputSpec,
    (answer, width): (&str, usize),
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
    prune_to(graph, answer);
    graph.input.retain(|i| i.name != IMAGE_INPUT);
    graph
        .input
        .insert(0, batch_value_info(prepared, &spec.shape()));
    graph.output = vec![batch_value_info(answer, &[width])];
    Ok(())
}
