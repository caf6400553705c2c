//! Opening a base: a zoo name or an ONNX file (or bytes), cut at its embedding, or the base a
//! saved recognizer or index names; the input sizes and preprocessing it takes.

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::graph::{cut_model, dtype_name, parse_onnx, GraphIndex};
use super::onnxruntime::OrtSession;
use super::pose_features;
use super::raw::{is_raw, RawSpec, RAW_CUT};
use super::tract::{cut_fact, prepare_tract, PlanSource, TractPlans};
use super::{Backend, BaseModel, BaseOptions, BaseRef, Engine, EngineOptions};
use crate::cache::sha256_hex;
use crate::input::{ChannelOrder, ImageSpec, InputSpec, Layout};
use crate::progress::{Progress, Silent};
use crate::{zoo, Error, Result};

/// How to ask for a cut, appended to errors about it.
pub(super) const CUT_HINT: &str =
    "pass the embedding tensor's name with --cut NAME (see `graft inspect MODEL` \
                        for the tensors and candidate cuts)";

/// The model's single input: its name and its declared dims after the batch (`None`: not fixed).
pub(super) fn declared_input(
    index: &GraphIndex,
    path: &Path,
) -> Result<(String, Vec<Option<usize>>)> {
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

impl BaseModel {
    /// Opens a base by zoo name (its manifest gives the cut and the preprocessing, and the model
    /// file must match the manifest's sha256) or else as an ONNX file (cut as `options.cut` says
    /// or automatically; an image input `[3, H, W]` or `[H, W, 3]` scaled by `options.mean` and
    /// `options.std`, by default to 0..1), on the engine `options` names. A zoo model's input sizes
    /// are its manifest's (`options.input_shape`, when given, must equal them). A name starting
    /// with `raw:` is a raw base ([`RawSpec`]: `raw:image:28x28:gray`, `raw:vector:N`), never a
    /// file.
    ///
    /// A zoo model not built here yet is built from its registry original first (see
    /// [`zoo::ensure_model`]), silently: [`BaseModel::open_with`] reports on a [`Progress`].
    pub fn open(name_or_path: impl AsRef<Path>, options: &BaseOptions) -> Result<BaseModel> {
        Self::open_with(name_or_path, options, &Silent)
    }

    /// [`BaseModel::open`], reporting a zoo model's download and conversion on `progress`.
    pub fn open_with(
        name_or_path: impl AsRef<Path>,
        options: &BaseOptions,
        progress: &dyn Progress,
    ) -> Result<BaseModel> {
        let path = name_or_path.as_ref();
        if let Some(spec) = path.to_str().filter(|s| is_raw(s)) {
            return Self::open_raw(&RawSpec::parse(spec)?, options, progress);
        }
        let options = &options.resolved(progress)?;
        // Anything that is not a zoo name and looks like a path is read as a file.
        let looks_like_path =
            path.exists() || path.extension().is_some() || path.components().count() > 1;
        match path.to_str().map(zoo::manifest) {
            Some(Ok(m)) => Self::open_zoo(&m, options, progress),
            _ if looks_like_path => {
                let bytes = crate::limits::read(path, crate::limits::FileKind::Model)?;
                let name = path.display().to_string();
                Self::build(bytes, path.to_path_buf(), name, options)
            }
            _ => {
                let known: Vec<String> = zoo::list()?.into_iter().map(|m| m.name).collect();
                Err(Error::Invalid(format!(
                    "'{}' is neither a zoo model ({}) nor an existing file",
                    path.display(),
                    known.join(", ")
                )))
            }
        }
    }

    /// Like [`BaseModel::open`] for ONNX bytes already in memory; `name` stands for the path in
    /// messages and references.
    pub fn from_bytes(bytes: Vec<u8>, name: &str, options: &BaseOptions) -> Result<BaseModel> {
        let options = &options.resolved(&Silent)?;
        Self::build(bytes, PathBuf::from(name), name.to_string(), options)
    }

    /// Reopens the base a recognizer or index was made with, on the engine `options` names, and
    /// checks it is the same file. The reference fixes the cut, the input sizes and the
    /// preprocessing: `options.cut` and `options.input_shape`, when given, must equal them.
    pub fn from_ref(reference: &BaseRef, options: &BaseOptions) -> Result<BaseModel> {
        Self::from_ref_with(reference, options, &Silent)
    }

    /// [`BaseModel::from_ref`], reporting a zoo model's download and conversion on `progress`.
    pub fn from_ref_with(
        reference: &BaseRef,
        options: &BaseOptions,
        progress: &dyn Progress,
    ) -> Result<BaseModel> {
        reference.check().map_err(Error::BaseMismatch)?;
        let shape = reference.input.shape();
        let differs = options.cut.as_ref().is_some_and(|c| *c != reference.cut)
            || options.input_shape.as_ref().is_some_and(|s| *s != shape);
        if differs {
            return Err(Error::BaseMismatch(format!(
                "base '{}' was used cut at '{}' with input {shape:?}; the options ask for cut {:?}, \
                 input {:?}",
                reference.name, reference.cut, options.cut, options.input_shape
            )));
        }
        options.check_no_preprocessing(&format!("base '{}' of a saved model", reference.name))?;
        let mut base = match is_raw(&reference.name) {
            true => {
                let spec = RawSpec::parse(&reference.name)
                    .map_err(|e| Error::BaseMismatch(format!("the saved model's base: {e}")))?;
                if spec.input != reference.input {
                    return Err(Error::BaseMismatch(format!(
                        "raw base '{}' prepares examples as {}, but the saved model records {}",
                        spec.name,
                        serde_json::to_string(&spec.input).unwrap_or_default(),
                        serde_json::to_string(&reference.input).unwrap_or_default()
                    )));
                }
                let by_name = BaseOptions {
                    cut: Some(reference.cut.clone()),
                    input_shape: Some(shape.clone()),
                    ..options.clone()
                };
                Self::open_raw(&spec, &by_name, progress)?
            }
            false => {
                let options = &options.resolved(progress)?;
                let by_name = BaseOptions {
                    cut: Some(reference.cut.clone()),
                    input_shape: None,
                    ..options.clone()
                };
                let from_zoo = zoo::manifest(&reference.name)
                    .and_then(|m| Self::open_zoo(&m, &by_name, progress));
                // A zoo model that cannot be had (offline, download failed) is that error, not a
                // retry.
                if let Err(e @ (Error::Download(_) | Error::Io { .. })) = from_zoo {
                    return Err(e);
                }
                from_zoo.or_else(|_| {
                    let as_file = BaseOptions {
                        input_shape: Some(shape.clone()),
                        ..by_name.clone()
                    };
                    Self::open(&reference.name, &as_file)
                })?
            }
        };
        if base.sha256 != reference.sha256 {
            return Err(Error::BaseMismatch(format!(
                "base '{}' now has sha256 {}, but this was trained with sha256 {}",
                reference.name, base.sha256, reference.sha256
            )));
        }
        if base.input_shape != shape || base.embedding_dim != reference.embedding_dim {
            return Err(Error::BaseMismatch(format!(
                "base '{}' takes input {:?} and gives embeddings of {}, but this was made for \
                 input {shape:?} and embeddings of {}",
                reference.name, base.input_shape, base.embedding_dim, reference.embedding_dim
            )));
        }
        base.name = reference.name.clone();
        base.input = Some(reference.input.clone());
        Ok(base)
    }

    /// A raw base ([`super::raw`]): its generated graph, on tract unless `options` name ONNX
    /// Runtime; `options` may repeat its cut and input shape, not change them, and set no mean or
    /// std.
    fn open_raw(
        spec: &RawSpec,
        options: &BaseOptions,
        progress: &dyn Progress,
    ) -> Result<BaseModel> {
        options.check_no_preprocessing(&format!("raw base '{}'", spec.name))?;
        if let Some(cut) = options.cut.as_ref().filter(|c| *c != RAW_CUT) {
            return Err(Error::Invalid(format!(
                "raw base '{}' is its input flattened (cut {RAW_CUT}): it has no tensor '{cut}' \
                 to cut at",
                spec.name
            )));
        }
        let shape = spec.input.shape();
        if options.input_shape.as_ref().is_some_and(|s| *s != shape) {
            return Err(Error::Invalid(format!(
                "raw base '{}' takes input {shape:?}, not {:?}",
                spec.name, options.input_shape
            )));
        }
        let engine = match options.engine.backend {
            Backend::Auto => EngineOptions {
                backend: Backend::Tract,
                ort_library: None,
            },
            _ => options.engine.clone(),
        };
        let options = BaseOptions {
            cut: Some(RAW_CUT.into()),
            input_shape: Some(shape),
            engine,
            ..options.clone()
        }
        .resolved(progress)?;
        let path = PathBuf::from(&spec.name);
        let mut base = Self::build(spec.graph_bytes(), path, spec.name.clone(), &options)?;
        base.input = Some(spec.input.clone());
        Ok(base)
    }

    /// A zoo model as its manifest says, cut at `options.cut` or the manifest's embedding.
    fn open_zoo(
        m: &zoo::Manifest,
        options: &BaseOptions,
        progress: &dyn Progress,
    ) -> Result<BaseModel> {
        options.check_no_preprocessing(&format!("zoo model '{}'", m.name))?;
        let shape = m.input.shape();
        if options.input_shape.as_ref().is_some_and(|s| *s != shape) {
            return Err(Error::Invalid(format!(
                "zoo model '{}' takes input {shape:?}, not {:?}",
                m.name, options.input_shape
            )));
        }
        let (model_path, bytes) = zoo::ensure_model(m, progress)?;
        // With features, the base is the model with them appended (its sha256 is that graph's).
        let (bytes, embedding) = match m.embedding.features {
            None => (bytes, m.embedding.tensor.clone()),
            Some(zoo::Features::Pose) => (
                pose_features::feature_model(&bytes, &m.embedding.tensor, &model_path)?,
                pose_features::FEATURES_TENSOR.to_string(),
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
        // The input is checked first: a huge declared input is refused before any work.
        let (input_name, declared) = declared_input(&index, &path)?;
        let input_shape = resolve_input_shape(
            &input_name,
            &declared,
            options.input_shape.as_deref(),
            &path,
        )?;
        crate::limits::check_input_elements(&input_shape)
            .map_err(|e| model_err(format!("input `{input_name}`: {e}")))?;
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
        let known: Vec<Option<usize>> = input_shape.iter().copied().map(Some).collect();

        let cuts = std::slice::from_ref(&cut);
        // tract types the model in both cases: the cut's shape is checked the same way.
        let (tract, cut_fact, symbolic_batch) = match options.engine.backend {
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
            Backend::Auto => {
                return Err(Error::Internal(
                    "the engine was not resolved before building the base".into(),
                ))
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
            Some((source, plan)) => Engine::Tract(Box::new(TractPlans::new(source, plan))),
            None => {
                let cut_graph = cut_model(&proto, &input_name, &input_shape, &cut, &cut_shape);
                Engine::Ort(OrtSession::new(
                    &cut_graph.encode_to_vec(),
                    &input_name,
                    options.engine.ort_library.as_deref(),
                )?)
            }
        };
        let input = guess_image_spec(&input_shape, options).map(InputSpec::Image);
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
}

/// An image spec for an input of dims `[3, H, W]` or `[H, W, 3]`: RGB scaled by the options'
/// mean and std, by default to 0..1.
fn guess_image_spec(shape: &[usize], options: &BaseOptions) -> Option<ImageSpec> {
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
        mean: options.mean.unwrap_or([0.0; 3]),
        std: options.std.unwrap_or([255.0; 3]),
        center_crop: None,
        letterbox: false,
    })
}
