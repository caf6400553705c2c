//! The frozen base recognizer: an ONNX model cut at its feature layer, run through tract.
//!
//! The cut is either a tensor (or node) the user names, or found automatically: the input of the
//! final classifier layer, above a global pooling. Everything is inference only; the base is never
//! trained.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayViewD};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::cache::sha256_hex;
use crate::embeddings::BaseRef;
use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout};
use crate::{zoo, Error, Result};

/// Name of a graph output that graft takes as the embedding when no cut is given.
pub const FEATURES_OUTPUT: &str = "features";

/// Ops that only reshape, copy or post-process scores, skipped when walking back from the output.
const PASS_THROUGH_OPS: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "Identity",
    "Dropout",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Cast",
];
/// Ops that reduce the spatial dimensions to one value per channel.
const POOLING_OPS: &[&str] = &[
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceMax",
    "AveragePool",
];
/// Elementwise ops (activations, arithmetic with constants as in HardSwish, batch norm) allowed
/// between the pooling and the final classifier.
const ELEMENTWISE_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Div",
    "BatchNormalization",
    "Erf",
    "Relu",
    "Clip",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Mul",
];

/// Most nodes looked through between a global pooling and the final classifier: a classifier
/// head is short; a longer walk would wander into the backbone.
const MAX_HEAD_NODES: usize = 24;

/// Decodes ONNX bytes into the protobuf model and checks it has a graph with nodes, an input and an
/// output. Shared by [`BaseModel`], [`inspect`] and the exporter.
pub fn parse_onnx(bytes: &[u8], path: &Path) -> Result<pb::ModelProto> {
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.is_empty() {
        return Err(model_err("the file is empty".into()));
    }
    let proto = pb::ModelProto::decode(bytes).map_err(|e| {
        model_err(format!(
            "not a valid ONNX file (protobuf decoding failed: {e}); is it truncated or another format?"
        ))
    })?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| model_err("not an ONNX model: it has no graph".into()))?;
    if graph.node.is_empty() {
        return Err(model_err(
            "not an ONNX model: its graph has no nodes".into(),
        ));
    }
    if graph.output.is_empty() {
        return Err(model_err("the ONNX graph declares no output".into()));
    }
    if GraphIndex::new(graph).real_inputs().next().is_none() {
        return Err(model_err("the ONNX graph declares no input".into()));
    }
    Ok(proto)
}

/// Who produces and who consumes each tensor of an ONNX graph.
struct GraphIndex<'a> {
    graph: &'a pb::GraphProto,
    producer: HashMap<&'a str, usize>,
    constants: HashSet<&'a str>,
}

impl<'a> GraphIndex<'a> {
    fn new(graph: &'a pb::GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut constants: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for (i, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(out.as_str(), i);
                if node.op_type == "Constant" {
                    constants.insert(out.as_str());
                }
            }
        }
        GraphIndex {
            graph,
            producer,
            constants,
        }
    }

    /// Graph inputs that are not initializers: what the caller feeds.
    fn real_inputs(&self) -> impl Iterator<Item = &'a pb::ValueInfoProto> + '_ {
        self.graph
            .input
            .iter()
            .filter(|i| !self.constants.contains(i.name.as_str()))
    }

    fn producer(&self, tensor: &str) -> Option<&'a pb::NodeProto> {
        self.producer.get(tensor).map(|&i| &self.graph.node[i])
    }

    fn is_constant(&self, tensor: &str) -> bool {
        self.constants.contains(tensor)
    }

    /// Whether `tensor` is a tensor of this graph (an input or a node output).
    fn has_tensor(&self, tensor: &str) -> bool {
        self.producer.contains_key(tensor) || self.graph.input.iter().any(|i| i.name == tensor)
    }

    /// Dims of an initializer, if `tensor` is one.
    fn initializer_dims(&self, tensor: &str) -> Option<&'a [i64]> {
        self.graph
            .initializer
            .iter()
            .find(|t| t.name == tensor)
            .map(|t| t.dims.as_slice())
    }

    /// If `node` is a dense layer (Gemm, MatMul, MatMul + Add, 1x1 Conv) with constant weights,
    /// the tensor it takes as input.
    fn dense_layer_input(&self, node: &'a pb::NodeProto) -> Option<&'a str> {
        let input = |i: usize| node.input.get(i).map(String::as_str);
        match node.op_type.as_str() {
            "Gemm" | "MatMul" if input(1).is_some_and(|w| self.is_constant(w)) => input(0),
            "Conv" => {
                let w = input(1)?;
                let dims = self.initializer_dims(w)?;
                (dims.len() == 4 && dims[2] == 1 && dims[3] == 1).then_some(input(0)?)
            }
            "Add" => {
                let (a, b) = (input(0)?, input(1)?);
                let other = if self.is_constant(b) {
                    a
                } else if self.is_constant(a) {
                    b
                } else {
                    return None;
                };
                let matmul = self.producer(other)?;
                (matmul.op_type == "MatMul" || matmul.op_type == "Gemm")
                    .then(|| self.dense_layer_input(matmul))
                    .flatten()
            }
            _ => None,
        }
    }

    /// Walks back from `tensor` over Dropout/Identity, which do nothing at inference.
    fn skip_identities(&self, mut tensor: &'a str) -> &'a str {
        while let Some(node) = self.producer(tensor) {
            match (node.op_type.as_str(), node.input.first()) {
                ("Dropout" | "Identity", Some(input)) => tensor = input,
                _ => break,
            }
        }
        tensor
    }

    /// The tensors from `tensor` up to a global pooling's output, when one lies above it and is
    /// reached only through reshapes, elementwise ops and dense layers (a classifier's hidden
    /// layers).
    fn path_to_pooling(&self, mut tensor: &'a str) -> Option<Vec<&'a str>> {
        let mut path = vec![tensor];
        for _ in 0..MAX_HEAD_NODES {
            let node = self.producer(tensor)?;
            let op = node.op_type.as_str();
            if POOLING_OPS.contains(&op) {
                return Some(path);
            }
            tensor = if let Some(x) = self.dense_layer_input(node) {
                x
            } else if PASS_THROUGH_OPS.contains(&op) || ELEMENTWISE_OPS.contains(&op) {
                node.input
                    .iter()
                    .map(String::as_str)
                    .find(|i| !self.is_constant(i))?
            } else {
                return None;
            };
            path.push(tensor);
        }
        None
    }

    /// Walks back from graph output `output` over post-processing to a dense layer; gives that
    /// layer's input (the classifier input) and the op seen last.
    fn classifier_input(&self, output: &'a str) -> (Option<&'a str>, &'a str) {
        let mut tensor = output;
        let mut last_op = "graph input";
        for _ in 0..=self.graph.node.len() {
            let Some(node) = self.producer(tensor) else {
                break;
            };
            last_op = node.op_type.as_str();
            if let Some(input) = self.dense_layer_input(node) {
                return (Some(self.skip_identities(input)), last_op);
            }
            match (PASS_THROUGH_OPS.contains(&last_op), node.input.first()) {
                (true, Some(input)) => tensor = input,
                _ => break,
            }
        }
        (None, last_op)
    }

    /// The automatic cut: a `features` output, or the input of the final classifier.
    fn auto_cut(&self) -> std::result::Result<String, String> {
        if self.graph.output.iter().any(|o| o.name == FEATURES_OUTPUT) {
            return Ok(FEATURES_OUTPUT.to_string());
        }
        let output = self.graph.output.first().map_or("", |o| o.name.as_str());
        match self.classifier_input(output) {
            (Some(cut), _) if self.path_to_pooling(cut).is_some() => Ok(cut.to_string()),
            (Some(_), op) => Err(format!(
                "the classifier layer before output `{output}` ({op}) does not sit on a global pooling"
            )),
            (None, op) => Err(format!(
                "no classifier layer (Gemm, MatMul, 1x1 Conv) found before output `{output}` \
                 (last op: {op})"
            )),
        }
    }

    /// Tensors that make sensible cuts, best first: for each output, the classifier input and the
    /// tensors up to the pooling above it; a `features` output; the last global pooling.
    fn candidates(&self) -> Vec<String> {
        let mut out: Vec<&str> = Vec::new();
        for o in &self.graph.output {
            if o.name == FEATURES_OUTPUT {
                out.push(&o.name);
            } else if let (Some(cut), _) = self.classifier_input(&o.name) {
                out.extend(self.path_to_pooling(cut).unwrap_or_default());
            }
        }
        let last_pool = self
            .graph
            .node
            .iter()
            .rev()
            .find(|n| POOLING_OPS.contains(&n.op_type.as_str()) && n.op_type != "AveragePool");
        out.extend(last_pool.and_then(|n| n.output.first()).map(String::as_str));
        let mut seen = HashSet::new();
        out.into_iter()
            .filter(|t| !t.is_empty() && seen.insert(*t))
            .map(str::to_string)
            .collect()
    }

    /// Resolves a user's cut (tensor name, `node:ix` or node name) to an ONNX tensor name.
    fn resolve_cut(&self, cut: &str) -> Option<String> {
        if self.has_tensor(cut) {
            return Some(cut.to_string());
        }
        if let Some((node, ix)) = cut.rsplit_once(':') {
            if let Ok(ix) = ix.parse::<usize>() {
                if let Some(n) = self.graph.node.iter().find(|n| n.name == node) {
                    return n.output.get(ix).filter(|o| !o.is_empty()).cloned();
                }
            }
        }
        self.graph
            .node
            .iter()
            .find(|n| n.name == cut)
            .and_then(|n| n.output.first())
            .filter(|o| !o.is_empty())
            .cloned()
    }
}

/// How to ask for a cut, appended to errors about it.
const CUT_HINT: &str =
    "pass the embedding tensor's name with --cut NAME (see `graft inspect MODEL` \
                        for the tensors and candidate cuts)";

/// Runs `f`, turning a panic inside tract into an error message.
fn guard<T>(what: &str, f: impl FnOnce() -> TractResult<T>) -> std::result::Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:#}")),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: tract panicked ({detail})"))
        }
    }
}

/// The model's single input: its name and its declared dims after the batch (`None`: not fixed).
fn declared_input(index: &GraphIndex, path: &Path) -> Result<(String, Vec<Option<usize>>)> {
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    let inputs: Vec<_> = index.real_inputs().collect();
    let [input] = inputs.as_slice() else {
        let names: Vec<_> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(model_err(format!(
            "graft needs a model with exactly one input, this one has {}: {names:?}",
            names.len()
        )));
    };
    let Some(pb::type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(model_err(format!("input `{}` is not a tensor", input.name)));
    };
    if tensor.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(model_err(format!(
            "input `{}` has element type {}, graft feeds float32",
            input.name,
            dtype_name(tensor.elem_type)
        )));
    }
    let dims = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    if dims.len() < 2 {
        return Err(model_err(format!(
            "input `{}` has rank {}, graft needs [batch, ...] with at least one more dimension",
            input.name,
            dims.len()
        )));
    }
    let rest = dims[1..]
        .iter()
        .map(|d| match d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                usize::try_from(v).ok()
            }
            _ => None,
        })
        .collect();
    Ok((input.name.clone(), rest))
}

/// The input dims after the batch: the declared ones, filled in or checked by `given`.
fn resolve_input_shape(
    name: &str,
    declared: &[Option<usize>],
    given: Option<&[usize]>,
    path: &Path,
) -> Result<Vec<usize>> {
    let show = |dims: &[Option<usize>]| {
        let dims: Vec<String> = dims
            .iter()
            .map(|d| d.map_or("?".into(), |v| v.to_string()))
            .collect();
        format!("[N, {}]", dims.join(", "))
    };
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    match given {
        Some(given) => {
            let fits = given.len() == declared.len()
                && given.iter().all(|&g| g > 0)
                && given
                    .iter()
                    .zip(declared)
                    .all(|(g, d)| d.is_none_or(|d| d == *g));
            if fits {
                Ok(given.to_vec())
            } else {
                Err(model_err(format!(
                    "input `{name}` is declared {}, which does not fit the given input shape {given:?}",
                    show(declared)
                )))
            }
        }
        None => declared
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                model_err(format!(
                "input `{name}` has shape {}: give the sizes after the batch (input shape, e.g. \
                 3,224,224)",
                show(declared)
            ))
            }),
    }
}

/// The typed tract model of `proto` with batch `batch` (`None`: a symbol `N`) before `input_shape`, giving
/// `outputs` (tensor or node names), not yet optimised; unknown input dims become symbols.
fn typed_model(
    proto: &pb::ModelProto,
    batch: Option<usize>,
    input_shape: &[Option<usize>],
    outputs: &[String],
) -> TractResult<TypedModel> {
    let mut model = tract_onnx::onnx().model_for_proto_model(proto)?;
    let mut dims: TVec<TDim> = tvec![match batch {
        Some(n) => n.to_dim(),
        None => model.symbols.sym("N").into(),
    }];
    for (i, d) in input_shape.iter().enumerate() {
        dims.push(match d {
            Some(d) => d.to_dim(),
            None => model.symbols.sym(&format!("d{}", i + 1)).into(),
        });
    }
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), dims))?;
    model.with_outputs_by_name(outputs)?.into_typed()
}

/// `model` with its batch symbol fixed to `n`.
fn fix_batch(model: &TypedModel, batch: &Symbol, n: i64) -> TractResult<TypedModel> {
    model.set_symbols(&HashMap::from([(batch.clone(), TDim::Val(n))]))
}

/// A frozen base model cut at its embedding; tract plans are optimised per batch size met.
pub struct BaseModel {
    path: PathBuf,
    name: String,
    sha256: String,
    bytes: Vec<u8>,
    cut: String,
    input_name: String,
    input_shape: Vec<usize>,
    cut_shape: Vec<usize>,
    embedding_dim: usize,
    known_input: Vec<Option<usize>>,
    input: Option<InputSpec>,
    source: PlanSource,
    /// Optimised plans by batch size.
    plans: Mutex<HashMap<usize, Arc<TypedSimplePlan>>>,
}

/// At most this many batch sizes keep an optimised plan (the cache is emptied when full).
const MAX_CACHED_PLANS: usize = 8;

/// Where plans for a new batch size come from. tract plans optimised for a fixed batch size run
/// about 3x faster than one plan with a symbolic batch (EfficientNet-Lite0), so the symbolic
/// model is kept, decluttered, and fixed to each batch size met.
enum PlanSource {
    /// The decluttered model with batch symbol `batch`.
    Symbolic { model: TypedModel, batch: Symbol },
    /// The graph cannot keep a symbolic batch (Paddle's Shape -> Cast -> Reshape flatten): each
    /// batch size is prepared from the ONNX file again.
    Onnx,
}

impl fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseModel")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("cut", &self.cut)
            .field("input_shape", &self.input_shape)
            .field("cut_shape", &self.cut_shape)
            .finish_non_exhaustive()
    }
}

/// How to load a base: where to cut it and, when the file leaves them open, its input sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaseOptions {
    /// Tensor name, `node:index` or node name to cut at; `None`: the automatic embedding.
    pub cut: Option<String>,
    /// Input dims after the batch (e.g. `[3, 224, 224]`); needed when the file does not fix them,
    /// checked against the file otherwise.
    pub input_shape: Option<Vec<usize>>,
}

impl BaseModel {
    /// Loads an ONNX file and cuts it at `cut` (a tensor or node name), or at the automatic
    /// embedding when `cut` is `None`.
    pub fn load(path: &Path, cut: Option<&str>) -> Result<BaseModel> {
        let options = BaseOptions {
            cut: cut.map(str::to_string),
            input_shape: None,
        };
        Self::load_with(path, &options)
    }

    /// Loads an ONNX file as `options` say.
    pub fn load_with(path: &Path, options: &BaseOptions) -> Result<BaseModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::build(bytes, path.to_path_buf(), name, options)
    }

    /// Like [`BaseModel::load_with`] for ONNX bytes already in memory; `name` stands for the path
    /// in messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str, options: &BaseOptions) -> Result<BaseModel> {
        Self::build(bytes, PathBuf::from(name), name.to_string(), options)
    }

    fn build(
        bytes: Vec<u8>,
        path: PathBuf,
        name: String,
        options: &BaseOptions,
    ) -> Result<BaseModel> {
        let model_err = |msg: String| Error::Model {
            path: path.clone(),
            msg,
        };
        let proto = parse_onnx(&bytes, &path)?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| model_err("no graph".into()))?;
        let index = GraphIndex::new(graph);
        let cut = match options.cut.as_deref() {
            Some(c) => index.resolve_cut(c).ok_or_else(|| {
                let mut names = index.candidates();
                for o in &graph.output {
                    if !names.contains(&o.name) {
                        names.push(o.name.clone());
                    }
                }
                model_err(format!(
                    "no tensor or node named `{c}`; candidates: {}",
                    names.join(", ")
                ))
            })?,
            None => index.auto_cut().map_err(|why| {
                model_err(format!("cannot find the embedding: {why}; {CUT_HINT}"))
            })?,
        };
        let (input_name, declared) = declared_input(&index, &path)?;
        let input_shape = resolve_input_shape(
            &input_name,
            &declared,
            options.input_shape.as_deref(),
            &path,
        )?;
        let known: Vec<Option<usize>> = input_shape.iter().copied().map(Some).collect();

        let cuts = std::slice::from_ref(&cut);
        let symbolic = guard("cannot prepare the model", || {
            let typed = typed_model(&proto, None, &known, cuts)?;
            let fact = typed.output_fact(0)?.clone();
            let batch = typed.symbols.sym("N");
            let model = typed.into_decluttered()?;
            let plan = fix_batch(&model, &batch, 1)?
                .into_optimized()?
                .into_runnable()?;
            Ok((PlanSource::Symbolic { model, batch }, plan, fact))
        });
        let (source, plan, cut_fact) = match symbolic {
            Ok(prepared) => prepared,
            Err(_) => guard("cannot prepare the model", || {
                let typed = typed_model(&proto, Some(1), &known, cuts)?;
                let fact = typed.output_fact(0)?.clone();
                Ok((
                    PlanSource::Onnx,
                    typed.into_optimized()?.into_runnable()?,
                    fact,
                ))
            })
            .map_err(model_err)?,
        };

        let dims = cut_fact.shape.dims();
        let batch_first = dims.first().is_some_and(|d| match &source {
            PlanSource::Symbolic { .. } => d.to_i64().is_err() && d.symbols().len() == 1,
            PlanSource::Onnx => d.to_i64().is_ok_and(|v| v == 1),
        });
        let cut_shape = dims
            .get(1..)
            .unwrap_or_default()
            .iter()
            .map(|d| d.to_i64().ok().and_then(|v| usize::try_from(v).ok()))
            .collect::<Option<Vec<usize>>>();
        let (true, Some(cut_shape)) = (batch_first, cut_shape) else {
            return Err(model_err(format!(
                "tensor `{cut}` has shape {:?}: an embedding needs the batch first and fixed sizes \
                 after it; {CUT_HINT}",
                cut_fact.shape
            )));
        };
        if cut_fact.datum_type != f32::datum_type() {
            return Err(model_err(format!(
                "tensor `{cut}` is {:?}, an embedding must be float32; {CUT_HINT}",
                cut_fact.datum_type
            )));
        }
        let embedding_dim = cut_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&d| d > 0)
            .ok_or_else(|| model_err(format!("tensor `{cut}` has an empty or huge shape")))?;
        let input = guess_image_spec(&input_shape).map(InputSpec::Image);
        Ok(BaseModel {
            input,
            sha256: sha256_hex(&bytes),
            bytes,
            path,
            name,
            cut,
            input_name,
            input_shape,
            cut_shape,
            embedding_dim,
            known_input: known,
            source,
            plans: Mutex::new(HashMap::from([(1, plan)])),
        })
    }

    /// Embeddings `[N, embedding_dim]` for a batch `[N, input_shape...]`.
    pub fn embed(&self, input: ArrayViewD<f32>) -> Result<Array2<f32>> {
        let shape = input.shape();
        if shape.len() != self.input_shape.len() + 1 || shape[1..] != self.input_shape[..] {
            return Err(Error::Invalid(format!(
                "model {} takes [N, {}], got {shape:?}",
                self.name,
                self.input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let n = shape[0];
        if n == 0 {
            return Ok(Array2::zeros((0, self.embedding_dim)));
        }
        let tensor = Tensor::from(input.as_standard_layout().into_owned());
        let plan = self.plan_for(n)?;
        let outputs = guard("running the base model", || {
            plan.run(tvec![tensor.into_tvalue()])
        })
        .map_err(Error::Inference)?;
        let view = outputs
            .first()
            .ok_or_else(|| Error::Inference("the model gave no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(format!("embedding is not float32: {e}")))?;
        if view.len() != n * self.embedding_dim {
            return Err(Error::Inference(format!(
                "embedding has shape {:?}, expected [{n}, {}]",
                view.shape(),
                self.embedding_dim
            )));
        }
        let flat: Vec<f32> = view.iter().copied().collect();
        Array2::from_shape_vec((n, self.embedding_dim), flat)
            .map_err(|e| Error::Inference(e.to_string()))
    }

    /// The plan that runs a batch of `n`, optimised on first use.
    fn plan_for(&self, n: usize) -> Result<Arc<TypedSimplePlan>> {
        let mut cache = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(plan) = cache.get(&n) {
            return Ok(plan.clone());
        }
        let batch = i64::try_from(n).map_err(|_| Error::Invalid(format!("batch of {n}")))?;
        let plan = match &self.source {
            PlanSource::Symbolic { model, batch: sym } => guard("preparing the base model", || {
                fix_batch(model, sym, batch)?
                    .into_optimized()?
                    .into_runnable()
            }),
            PlanSource::Onnx => {
                let proto = self.model_proto()?;
                guard("preparing the base model", || {
                    let cut = std::slice::from_ref(&self.cut);
                    typed_model(&proto, Some(n), &self.known_input, cut)?
                        .into_optimized()?
                        .into_runnable()
                })
            }
        }
        .map_err(Error::Inference)?;
        if cache.len() >= MAX_CACHED_PLANS {
            cache.clear();
        }
        cache.insert(n, plan.clone());
        Ok(plan)
    }

    /// Size of one embedding (the cut tensor flattened).
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Shape of one input example (the dims after the batch).
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Name of the model's input tensor.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// ONNX name of the tensor the model is cut at.
    pub fn cut(&self) -> &str {
        &self.cut
    }

    /// Shape of the cut tensor after the batch (e.g. `[200, 1, 1]` before flattening).
    pub fn cut_shape(&self) -> &[usize] {
        &self.cut_shape
    }

    /// Hex sha256 of the ONNX bytes: the base's identity for caches and metadata.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where the model came from (the name given to `from_bytes`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File name of the model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a base by zoo name (its manifest gives the cut and the preprocessing, and the model
    /// file must match the manifest's sha256) or else as an ONNX file (cut as given or automatic;
    /// images scaled by `mean`/`std`, by default to 0..1). `cut` overrides the zoo's embedding.
    pub fn open(
        name_or_path: &str,
        cut: Option<&str>,
        mean: Option<[f32; 3]>,
        std: Option<[f32; 3]>,
    ) -> Result<BaseModel> {
        let path = Path::new(name_or_path);
        let Ok(m) = zoo::manifest(name_or_path) else {
            if !path.exists() {
                let known: Vec<String> = zoo::list()?.into_iter().map(|m| m.name).collect();
                return Err(Error::Invalid(format!(
                    "'{name_or_path}' is neither a zoo model ({}) nor an existing file",
                    known.join(", ")
                )));
            }
            let options = BaseOptions {
                cut: cut.map(str::to_string),
                input_shape: None,
            };
            let mut base = Self::load_with(path, &options)?;
            base.name = name_or_path.to_string();
            if let Some(InputSpec::Image(spec)) = &mut base.input {
                spec.mean = mean.unwrap_or(spec.mean);
                spec.std = std.unwrap_or(spec.std);
            }
            return Ok(base);
        };
        if mean.is_some() || std.is_some() {
            return Err(Error::Invalid(format!(
                "zoo model '{}' has its own preprocessing; --mean/--std are for ONNX files",
                m.name
            )));
        }
        let model_path = m.model_path();
        if !model_path.exists() {
            return Err(Error::Zoo(format!(
                "{} is not built yet: run `graft zoo build {}`",
                model_path.display(),
                m.name
            )));
        }
        let options = BaseOptions {
            cut: Some(cut.unwrap_or(&m.embedding.tensor).to_string()),
            input_shape: Some(m.input.shape()),
        };
        let mut base = Self::load_with(&model_path, &options)?;
        if base.sha256 != m.model.sha256 {
            return Err(Error::Zoo(format!(
                "{} has sha256 {} but its manifest says {}: rebuild it with `graft zoo build {}`",
                model_path.display(),
                base.sha256,
                m.model.sha256,
                m.name
            )));
        }
        base.name = m.name.clone();
        base.input = Some(m.input.clone());
        Ok(base)
    }

    /// Reopens the base a recognizer or index was made with, and checks it is the same file.
    pub fn from_ref(reference: &BaseRef) -> Result<BaseModel> {
        let mut base =
            Self::open(&reference.name, Some(&reference.cut), None, None).or_else(|_| {
                let options = BaseOptions {
                    cut: Some(reference.cut.clone()),
                    input_shape: Some(reference.input.shape()),
                };
                Self::load_with(Path::new(&reference.name), &options)
            })?;
        if base.sha256 != reference.sha256 {
            return Err(Error::Invalid(format!(
                "base '{}' now has sha256 {}, but this was trained with sha256 {}",
                reference.name, base.sha256, reference.sha256
            )));
        }
        base.name = reference.name.clone();
        base.input = Some(reference.input.clone());
        Ok(base)
    }

    /// How an example becomes this base's input: from the zoo manifest, or for an ONNX file whose
    /// input is `[3, H, W]` or `[H, W, 3]`, RGB images scaled by the given mean and std.
    pub fn input_spec(&self) -> Result<&InputSpec> {
        self.input.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "base {} takes {:?}, which graft cannot prepare examples for (expected an image \
                 [3, H, W] or [H, W, 3], or a zoo model)",
                self.name, self.input_shape
            ))
        })
    }

    /// The image preprocessing; an error for a base that does not take images.
    pub fn image_spec(&self) -> Result<&ImageSpec> {
        self.input_spec()?
            .image()
            .ok_or_else(|| Error::Invalid(format!("base {} does not take images", self.name)))
    }

    /// What identifies this base in recognizers, indexes and caches.
    pub fn reference(&self) -> Result<BaseRef> {
        Ok(BaseRef {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            cut: self.cut.clone(),
            embedding_dim: self.embedding_dim,
            input: self.input_spec()?.clone(),
        })
    }

    /// The decoded ONNX model, for export.
    pub fn model_proto(&self) -> Result<pb::ModelProto> {
        parse_onnx(&self.bytes, &self.path)
    }
}

/// One tensor dimension as declared in an ONNX file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Dim {
    Fixed(i64),
    Named(String),
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Named(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

fn format_shape(shape: &Option<Vec<Dim>>) -> String {
    match shape {
        Some(dims) => format!(
            "[{}]",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "unknown".into(),
    }
}

/// A named tensor with its declared type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// `None` when the file does not declare it.
    pub shape: Option<Vec<Dim>>,
    pub dtype: String,
}

/// A tensor that makes a sensible cut.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CutCandidate {
    pub tensor: String,
    /// Op type of the node producing it.
    pub op: String,
    /// Shape with a symbolic batch `N` (or batch 1 where the graph needs a fixed one), when tract
    /// can infer it.
    pub shape: Option<Vec<Dim>>,
}

/// What `graft inspect MODEL` shows about an ONNX file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub sha256: String,
    pub producer: String,
    pub opset: i64,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// Op type -> number of nodes.
    pub ops: BTreeMap<String, usize>,
    pub candidates: Vec<CutCandidate>,
    /// The automatic cut, or why there is none.
    pub auto_cut: std::result::Result<String, String>,
}

fn dtype_name(elem_type: i32) -> String {
    pb::tensor_proto::DataType::try_from(elem_type)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {elem_type}"))
}

fn shape_of(info: &pb::ValueInfoProto) -> Option<Vec<Dim>> {
    let Some(pb::type_proto::Value::TensorType(t)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = t.shape.as_ref()?.dim.iter().map(|d| match &d.value {
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => Dim::Fixed(*v),
        Some(pb::tensor_shape_proto::dimension::Value::DimParam(s)) if !s.is_empty() => {
            Dim::Named(s.clone())
        }
        _ => Dim::Unknown,
    });
    Some(dims.collect())
}

fn tensor_info(info: &pb::ValueInfoProto) -> TensorInfo {
    let dtype = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => dtype_name(t.elem_type),
        _ => "non-tensor".into(),
    };
    TensorInfo {
        name: info.name.clone(),
        shape: shape_of(info),
        dtype,
    }
}

/// Shapes tract infers for `tensors` with a symbolic batch, or `None` where it cannot.
fn inferred_shapes(
    proto: &pb::ModelProto,
    input_shape: &[Option<usize>],
    tensors: &[String],
) -> Vec<Option<Vec<Dim>>> {
    let shapes = guard("", || {
        let typed = typed_model(proto, None, input_shape, tensors)
            .or_else(|_| typed_model(proto, Some(1), input_shape, tensors))?;
        (0..tensors.len())
            .map(|i| {
                let fact = typed.output_fact(i)?;
                Ok(fact
                    .shape
                    .iter()
                    .map(|d| match d.to_i64() {
                        Ok(v) => Dim::Fixed(v),
                        Err(_) => Dim::Named(d.to_string()),
                    })
                    .collect())
            })
            .collect::<TractResult<Vec<Vec<Dim>>>>()
    });
    match shapes {
        Ok(s) => s.into_iter().map(Some).collect(),
        Err(_) => vec![None; tensors.len()],
    }
}

/// Reads an ONNX file and describes its inputs, outputs, ops and candidate cuts.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let proto = parse_onnx(&bytes, path)?;
    let graph = proto.graph.as_ref().ok_or_else(|| Error::Model {
        path: path.to_path_buf(),
        msg: "no graph".into(),
    })?;
    let index = GraphIndex::new(graph);
    let mut ops = BTreeMap::new();
    for node in &graph.node {
        *ops.entry(node.op_type.clone()).or_insert(0) += 1;
    }
    let names = index.candidates();
    let shapes = match declared_input(&index, path) {
        Ok((_, declared)) if !names.is_empty() => inferred_shapes(&proto, &declared, &names),
        _ => vec![None; names.len()],
    };
    let candidates = names
        .into_iter()
        .zip(shapes)
        .map(|(tensor, shape)| CutCandidate {
            op: index
                .producer(&tensor)
                .map_or_else(|| "input".into(), |n| n.op_type.clone()),
            tensor,
            shape,
        })
        .collect();
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    Ok(Inspection {
        path: path.to_path_buf(),
        sha256: sha256_hex(&bytes),
        producer: format!("{} {}", proto.producer_name, proto.producer_version)
            .trim()
            .to_string(),
        opset,
        inputs: index.real_inputs().map(tensor_info).collect(),
        outputs: graph.output.iter().map(tensor_info).collect(),
        ops,
        candidates,
        auto_cut: index.auto_cut(),
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model    {}", self.path.display())?;
        writeln!(f, "sha256   {}", self.sha256)?;
        writeln!(f, "producer {}", self.producer)?;
        writeln!(f, "opset    {}", self.opset)?;
        writeln!(f, "inputs:")?;
        for t in &self.inputs {
            writeln!(f, "  {} {} {}", t.name, t.dtype, format_shape(&t.shape))?;
        }
        writeln!(f, "outputs:")?;
        for t in &self.outputs {
            writeln!(f, "  {} {} {}", t.name, t.dtype, format_shape(&t.shape))?;
        }
        let total: usize = self.ops.values().sum();
        writeln!(f, "ops ({total} nodes):")?;
        for (op, n) in &self.ops {
            writeln!(f, "  {op:<24} {n}")?;
        }
        writeln!(f, "candidate cuts:")?;
        if self.candidates.is_empty() {
            writeln!(f, "  (none found)")?;
        }
        for c in &self.candidates {
            writeln!(f, "  {} ({}) {}", c.tensor, c.op, format_shape(&c.shape))?;
        }
        match &self.auto_cut {
            Ok(cut) => writeln!(f, "automatic cut: {cut}"),
            Err(why) => writeln!(f, "automatic cut: none ({why}); {CUT_HINT}"),
        }
    }
}

/// An image spec for an input of dims `[3, H, W]` or `[H, W, 3]`: RGB scaled to 0..1.
fn guess_image_spec(shape: &[usize]) -> Option<ImageSpec> {
    let (layout, h, w) = match *shape {
        [3, h, w] => (Layout::Nchw, h, w),
        [h, w, 3] => (Layout::Nhwc, h, w),
        _ => return None,
    };
    Some(ImageSpec {
        width: u32::try_from(w).ok()?,
        height: u32::try_from(h).ok()?,
        layout,
        channels: ChannelOrder::Rgb,
        mean: [0.0; 3],
        std: [255.0; 3],
        center_crop: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            name: format!("{op}_{output}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn value(name: &str) -> pb::ValueInfoProto {
        pb::ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    fn weight(name: &str, dims: &[i64]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    /// conv -> pool -> [hidden 1x1 conv -> relu] -> 1x1 conv classifier -> flatten -> softmax.
    fn conv_classifier(outputs: &[&str]) -> pb::GraphProto {
        pb::GraphProto {
            node: vec![
                node("Conv", &["x", "w0"], "c0"),
                node("GlobalAveragePool", &["c0"], "pooled"),
                node("Conv", &["pooled", "w1"], "hidden"),
                node("Relu", &["hidden"], "act"),
                node("Dropout", &["act"], "dropped"),
                node("Conv", &["dropped", "w2"], "scores"),
                node("Flatten", &["scores"], "flat"),
                node("Softmax", &["flat"], "probs"),
            ],
            initializer: vec![
                weight("w0", &[8, 3, 3, 3]),
                weight("w1", &[16, 8, 1, 1]),
                weight("w2", &[5, 16, 1, 1]),
            ],
            input: vec![value("x")],
            output: outputs.iter().map(|o| value(o)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn auto_cut_finds_a_conv_classifier_input_above_hidden_layers() {
        let graph = conv_classifier(&["probs"]);
        let index = GraphIndex::new(&graph);
        assert_eq!(index.auto_cut().as_deref(), Ok("act"));
        assert_eq!(index.candidates(), ["act", "hidden", "pooled"]);
        assert_eq!(index.resolve_cut("Relu_act").as_deref(), Some("act"));
        assert_eq!(index.resolve_cut("Conv_c0:0").as_deref(), Some("c0"));
        assert_eq!(index.resolve_cut("nothing"), None);
    }

    #[test]
    fn hardswish_written_as_arithmetic_is_walked_through() {
        // pooled -> 1x1 conv -> x * clip(x + 3) / 6 -> flatten -> MatMul + Add classifier.
        let graph = pb::GraphProto {
            node: vec![
                node("GlobalAveragePool", &["x"], "pooled"),
                node("Conv", &["pooled", "w1"], "h"),
                node("Add", &["h", "three"], "h3"),
                node("Clip", &["h3"], "clipped"),
                node("Mul", &["h", "clipped"], "hm"),
                node("Div", &["hm", "six"], "hs"),
                node("Flatten", &["hs"], "flat"),
                node("MatMul", &["flat", "w2"], "mm"),
                node("Add", &["mm", "b2"], "logits"),
            ],
            initializer: ["three", "six", "w2", "b2"]
                .iter()
                .map(|n| weight(n, &[1]))
                .chain([weight("w1", &[4, 4, 1, 1])])
                .collect(),
            input: vec![value("x")],
            output: vec![value("logits")],
            ..Default::default()
        };
        let index = GraphIndex::new(&graph);
        assert_eq!(index.auto_cut().as_deref(), Ok("flat"));
        assert_eq!(index.candidates(), ["flat", "hs", "hm", "h", "pooled"]);
    }

    #[test]
    fn a_features_output_wins_and_no_classifier_is_explained() {
        let mut graph = conv_classifier(&["probs", "features"]);
        graph.node.push(node("Flatten", &["pooled"], "features"));
        assert_eq!(
            GraphIndex::new(&graph).auto_cut().as_deref(),
            Ok("features")
        );

        let no_head = conv_classifier(&["c0"]);
        let why = GraphIndex::new(&no_head).auto_cut().unwrap_err();
        assert!(why.contains("no classifier layer"), "{why}");

        // A classifier straight on conv maps (no pooling) is not taken as an embedding.
        let mut unpooled = conv_classifier(&["probs"]);
        unpooled.node[1] = node("Relu", &["c0"], "pooled");
        let why = GraphIndex::new(&unpooled).auto_cut().unwrap_err();
        assert!(why.contains("global pooling"), "{why}");
    }
}
