//! The frozen base recognizer: an ONNX model cut at its feature layer, run through tract (or,
//! with the `onnxruntime` feature, ONNX Runtime).
//!
//! The cut is either a tensor (or node) the user names, or found automatically: the input of the
//! final classifier layer, above a global pooling. Everything is inference only; the base is never
//! trained.

mod graph;
mod inspect;
mod onnxruntime;

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayD, ArrayViewD};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

pub(crate) use graph::{batch_value_info, prune_to};
pub use graph::{parse_onnx, FEATURES_OUTPUT};
pub use inspect::{inspect, CutCandidate, Dim, Inspection, TensorInfo};
pub use onnxruntime::{default_library, library_path, FETCH_SCRIPT, ORT_DYLIB_ENV, ORT_VERSION};

use crate::cache::sha256_hex;
use crate::embeddings::BaseRef;
use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout};
use crate::{zoo, Error, Result};
use graph::{cut_model, GraphIndex};
use inspect::dtype_name;
use onnxruntime::OrtSession;

/// How to ask for a cut, appended to errors about it.
const CUT_HINT: &str =
    "pass the embedding tensor's name with --cut NAME (see `graft inspect MODEL` \
                        for the tensors and candidate cuts)";

/// Runs `f` (a call into tract or ONNX Runtime), turning its error or panic into a message.
fn guard<T, E: fmt::Display>(
    what: &str,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:#}")),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: panicked ({detail})"))
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

/// tract plans for the model cut at `cuts`: the decluttered model with a symbolic batch and its
/// plan for batch 1, or when the graph cannot keep a symbolic batch, a plan for batch 1 made from
/// the ONNX file; with the cut tensor's type.
fn prepare_tract(
    proto: &pb::ModelProto,
    known: &[Option<usize>],
    cuts: &[String],
) -> std::result::Result<(PlanSource, Arc<TypedSimplePlan>, TypedFact), String> {
    let symbolic = guard("cannot prepare the model", || {
        let typed = typed_model(proto, None, known, cuts)?;
        let fact = typed.output_fact(0)?.clone();
        let batch = typed.symbols.sym("N");
        let model = typed.into_decluttered()?;
        let plan = fix_batch(&model, &batch, 1)?
            .into_optimized()?
            .into_runnable()?;
        Ok::<_, TractError>((PlanSource::Symbolic { model, batch }, plan, fact))
    });
    symbolic.or_else(|_| {
        guard("cannot prepare the model", || {
            let typed = typed_model(proto, Some(1), known, cuts)?;
            let fact = typed.output_fact(0)?.clone();
            Ok::<_, TractError>((
                PlanSource::Onnx,
                typed.into_optimized()?.into_runnable()?,
                fact,
            ))
        })
    })
}

/// The type of the cut tensor as tract infers it, with a symbolic batch (`true`) or, when the
/// graph cannot keep one, with batch 1 (`false`): what another engine is checked with.
fn cut_fact(
    proto: &pb::ModelProto,
    known: &[Option<usize>],
    cuts: &[String],
) -> std::result::Result<(TypedFact, bool), String> {
    let fact = |batch| {
        guard("cannot prepare the model", || {
            let typed = typed_model(proto, batch, known, cuts)?;
            Ok::<_, TractError>(typed.output_fact(0)?.clone())
        })
    };
    fact(None)
        .map(|f| (f, true))
        .or_else(|_| fact(Some(1)).map(|f| (f, false)))
}

/// The inference engine that runs a base. Both give the same embeddings (within float rounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// tract, in pure Rust (always built).
    #[default]
    Tract,
    /// ONNX Runtime, a shared library loaded at run time (cargo feature `onnxruntime`; see
    /// [`library_path`]).
    Ort,
}

impl Backend {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "tract" => Ok(Backend::Tract),
            "ort" => Ok(Backend::Ort),
            _ => Err(Error::Invalid(format!(
                "unknown backend '{s}': give tract or ort"
            ))),
        }
    }
}

/// A frozen base model cut at its embedding, run by one engine.
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
    engine: Engine,
}

/// What runs the cut model.
enum Engine {
    /// tract plans, optimised per batch size met.
    Tract {
        source: Box<PlanSource>,
        /// Optimised plans by batch size.
        plans: Mutex<HashMap<usize, Arc<TypedSimplePlan>>>,
    },
    /// An ONNX Runtime session over the cut graph (any batch size).
    Ort(OrtSession),
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
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// How to load a base: where to cut it, when the file leaves them open its input sizes, and which
/// engine runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaseOptions {
    /// Tensor name, `node:index` or node name to cut at; `None`: the automatic embedding.
    pub cut: Option<String>,
    /// Input dims after the batch (e.g. `[3, 224, 224]`); needed when the file does not fix them,
    /// checked against the file otherwise.
    pub input_shape: Option<Vec<usize>>,
    /// The inference engine.
    pub backend: Backend,
    /// For [`Backend::Ort`]: the ONNX Runtime library file; `None`: as [`library_path`] says
    /// (`$ORT_DYLIB_PATH`, else [`default_library`]). One process loads one library file.
    pub ort_library: Option<PathBuf>,
}

impl BaseOptions {
    /// Fails early, before any model work, when the engine cannot run here: ONNX Runtime not
    /// built in, or its library not found.
    fn check_backend(&self) -> Result<()> {
        match self.backend {
            Backend::Tract => Ok(()),
            Backend::Ort => OrtSession::runtime_ready(self.ort_library.as_deref()),
        }
    }
}

impl BaseModel {
    /// Loads an ONNX file and cuts it at `cut` (a tensor or node name), or at the automatic
    /// embedding when `cut` is `None`.
    pub fn load(path: &Path, cut: Option<&str>) -> Result<BaseModel> {
        let options = BaseOptions {
            cut: cut.map(str::to_string),
            ..BaseOptions::default()
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
        options.check_backend()?;
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
        // tract types the model in both cases: the cut's shape is checked the same way.
        let (tract, cut_fact, symbolic_batch) = match options.backend {
            Backend::Tract => {
                let (source, plan, fact) =
                    prepare_tract(&proto, &known, cuts).map_err(model_err)?;
                let symbolic = matches!(source, PlanSource::Symbolic { .. });
                (Some((source, plan)), fact, symbolic)
            }
            Backend::Ort => {
                let (fact, symbolic) = cut_fact(&proto, &known, cuts).map_err(model_err)?;
                (None, fact, symbolic)
            }
        };

        let dims = cut_fact.shape.dims();
        let batch_first = dims.first().is_some_and(|d| {
            if symbolic_batch {
                d.to_i64().is_err() && d.symbols().len() == 1
            } else {
                d.to_i64().is_ok_and(|v| v == 1)
            }
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
        let engine = match tract {
            Some((source, plan)) => Engine::Tract {
                source: Box::new(source),
                plans: Mutex::new(HashMap::from([(1, plan)])),
            },
            None => {
                let cut_graph = cut_model(&proto, &input_name, &input_shape, &cut, &cut_shape);
                Engine::Ort(OrtSession::new(
                    &cut_graph.encode_to_vec(),
                    &input_name,
                    options.ort_library.as_deref(),
                )?)
            }
        };
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
            engine,
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
        let input = input.as_standard_layout();
        let output = match &self.engine {
            Engine::Tract { source, plans } => self.run_tract(source, plans, input.view(), n)?,
            Engine::Ort(session) => session.run(input.view())?,
        };
        if output.len() != n * self.embedding_dim {
            return Err(Error::Inference(format!(
                "embedding has shape {:?}, expected [{n}, {}]",
                output.shape(),
                self.embedding_dim
            )));
        }
        let flat: Vec<f32> = output.iter().copied().collect();
        Array2::from_shape_vec((n, self.embedding_dim), flat)
            .map_err(|e| Error::Inference(e.to_string()))
    }

    /// The cut tensor for a batch of `n` (`input`, in standard layout) through tract.
    fn run_tract(
        &self,
        source: &PlanSource,
        plans: &Mutex<HashMap<usize, Arc<TypedSimplePlan>>>,
        input: ArrayViewD<f32>,
        n: usize,
    ) -> Result<ArrayD<f32>> {
        let tensor = Tensor::from(input.to_owned());
        let plan = self.plan_for(source, plans, n)?;
        let outputs = guard("running the base model", || {
            plan.run(tvec![tensor.into_tvalue()])
        })
        .map_err(Error::Inference)?;
        let view = outputs
            .first()
            .ok_or_else(|| Error::Inference("the model gave no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(format!("embedding is not float32: {e}")))?;
        Ok(view.to_owned())
    }

    /// The tract plan that runs a batch of `n`, optimised on first use.
    fn plan_for(
        &self,
        source: &PlanSource,
        plans: &Mutex<HashMap<usize, Arc<TypedSimplePlan>>>,
        n: usize,
    ) -> Result<Arc<TypedSimplePlan>> {
        let mut cache = plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(plan) = cache.get(&n) {
            return Ok(plan.clone());
        }
        let batch = i64::try_from(n).map_err(|_| Error::Invalid(format!("batch of {n}")))?;
        let plan = match source {
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

    /// The engine that runs this base.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Tract { .. } => Backend::Tract,
            Engine::Ort(_) => Backend::Ort,
        }
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
    /// Runs on tract; see [`BaseModel::open_with`].
    pub fn open(
        name_or_path: &str,
        cut: Option<&str>,
        mean: Option<[f32; 3]>,
        std: Option<[f32; 3]>,
    ) -> Result<BaseModel> {
        let options = BaseOptions {
            cut: cut.map(str::to_string),
            ..BaseOptions::default()
        };
        Self::open_with(name_or_path, &options, mean, std)
    }

    /// Like [`BaseModel::open`], with the cut, the engine and (for an ONNX file) the input sizes
    /// from `options`; a zoo model's input sizes are its manifest's (`options.input_shape`, when
    /// given, must equal them).
    pub fn open_with(
        name_or_path: &str,
        options: &BaseOptions,
        mean: Option<[f32; 3]>,
        std: Option<[f32; 3]>,
    ) -> Result<BaseModel> {
        options.check_backend()?;
        let path = Path::new(name_or_path);
        let Ok(m) = zoo::manifest(name_or_path) else {
            if !path.exists() {
                let known: Vec<String> = zoo::list()?.into_iter().map(|m| m.name).collect();
                return Err(Error::Invalid(format!(
                    "'{name_or_path}' is neither a zoo model ({}) nor an existing file",
                    known.join(", ")
                )));
            }
            let mut base = Self::load_with(path, options)?;
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
        let shape = m.input.shape();
        if options.input_shape.as_ref().is_some_and(|s| *s != shape) {
            return Err(Error::Invalid(format!(
                "zoo model '{}' takes input {shape:?}, not {:?}",
                m.name, options.input_shape
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
        let bytes = std::fs::read(&model_path).map_err(|e| Error::io(&model_path, e))?;
        let sha256 = sha256_hex(&bytes);
        if sha256 != m.model.sha256 {
            return Err(Error::Zoo(format!(
                "{} has sha256 {sha256} but its manifest says {}: rebuild it with `graft zoo build {}`",
                model_path.display(),
                m.model.sha256,
                m.name
            )));
        }
        // With features, the base is the model with them appended (its sha256 is that graph's).
        let (bytes, embedding) = match m.embedding.features {
            None => (bytes, m.embedding.tensor.clone()),
            Some(zoo::Features::Pose) => (
                crate::pose::feature_model(&bytes, &m.embedding.tensor, &model_path)?,
                crate::pose::FEATURES_TENSOR.to_string(),
            ),
        };
        let options = BaseOptions {
            cut: Some(options.cut.clone().unwrap_or(embedding)),
            input_shape: Some(shape),
            ..options.clone()
        };
        let mut base = Self::build(bytes, model_path, m.name.clone(), &options)?;
        base.input = Some(m.input.clone());
        Ok(base)
    }

    /// Reopens the base a recognizer or index was made with, and checks it is the same file.
    /// Runs on tract; see [`BaseModel::from_ref_with`].
    pub fn from_ref(reference: &BaseRef) -> Result<BaseModel> {
        Self::from_ref_with(reference, &BaseOptions::default())
    }

    /// Like [`BaseModel::from_ref`] on the engine `options` names. The reference fixes the cut and
    /// the input sizes: `options.cut` and `options.input_shape`, when given, must equal them.
    pub fn from_ref_with(reference: &BaseRef, options: &BaseOptions) -> Result<BaseModel> {
        let shape = reference.input.shape();
        let differs = options.cut.as_ref().is_some_and(|c| *c != reference.cut)
            || options.input_shape.as_ref().is_some_and(|s| *s != shape);
        if differs {
            return Err(Error::Invalid(format!(
                "base '{}' was used cut at '{}' with input {shape:?}; the options ask for cut {:?}, \
                 input {:?}",
                reference.name, reference.cut, options.cut, options.input_shape
            )));
        }
        options.check_backend()?;
        let by_name = BaseOptions {
            cut: Some(reference.cut.clone()),
            input_shape: None,
            ..options.clone()
        };
        let mut base = Self::open_with(&reference.name, &by_name, None, None).or_else(|_| {
            let as_file = BaseOptions {
                input_shape: Some(shape),
                ..by_name.clone()
            };
            Self::load_with(Path::new(&reference.name), &as_file)
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
        letterbox: false,
    })
}
