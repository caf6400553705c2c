//! Export of the whole recognizer (the base up to its cut, then the head, a softmax and an
//! argmax) as one ONNX file, runnable by any ONNX runtime without graft, with its metadata and,
//! beside it, `labels.txt` and `MODEL_CARD.md`.
//!
//! Image recognizers take `uint8` RGB images of any size by default ([`InputForm::Image`]: the
//! preprocessing is part of the graph, `preprocess`); [`InputForm::Tensor`] keeps the base's
//! prepared float input. `card` writes what the file says about itself.

mod card;
mod preprocess;
mod quantize;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use graft_converters::onnx_builder::attr_int;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tract_onnx::pb;

use crate::atomic::{refuse_same_file, write_atomic};
use crate::base::{batch_value_info, prune_to, BaseModel};
use crate::input::InputSpec;
use crate::recognizer::TrainingRecord;
use crate::reject::{RejectRule, ScoreKind};
use crate::{Error, Head, Result};

pub use preprocess::IMAGE_OPSET;
use preprocess::{float_initializer, int64_initializer, node, Names};
pub use quantize::MAX_CALIBRATION_EXAMPLES;
pub use quantize::{split_folder, FolderSplit, Precision, Quantize, Smaller};

/// Name of the exported graph's class-probability output, `[N, classes]`.
pub const PROBABILITIES: &str = "probabilities";
/// Name of the exported graph's predicted-class output, int64 `[N]` (index into the labels).
pub const LABEL: &str = "label";
/// Name of the exported graph's embedding output, `[N, embedding_dim]`.
pub const EMBEDDING: &str = "embedding";
/// Name of the exported graph's "unknown" output, bool `[N]` (only with a rule): true when the
/// rule rejects the answer.
pub const UNKNOWN: &str = "unknown";
/// Name of the exported graph's rule-score output, float32 `[N]` (only with a rule): `unknown` is
/// `score < threshold`, the threshold in the metadata's `graft.unknown`.
pub const SCORE: &str = "score";
/// Oldest ONNX opset the unknown rule's operators run at (GatherElements).
pub const UNKNOWN_OPSET: i64 = 11;
/// Name of the image input of an [`InputForm::Image`] export, `uint8 [N, H, W, 3]`.
pub const IMAGE_INPUT: &str = "image";
/// File written beside the export: one label a line.
pub const LABELS_FILE: &str = "labels.txt";
/// File written beside the export: what the model is, how it was made, its base's licence.
pub const MODEL_CARD_FILE: &str = "MODEL_CARD.md";

/// What an exported file takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputForm {
    /// `uint8` RGB `[N, H, W, 3]`, any H and W: resized and normalised inside the graph.
    Image,
    /// The base's own input, prepared by the caller as graft prepares it (float).
    Tensor,
}

impl InputForm {
    /// `image` or `tensor`.
    pub fn name(self) -> &'static str {
        match self {
            InputForm::Image => "image",
            InputForm::Tensor => "tensor",
        }
    }
}

impl fmt::Display for InputForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InputForm {
    type Err = Error;

    fn from_str(s: &str) -> Result<InputForm> {
        match s {
            "image" => Ok(InputForm::Image),
            "tensor" => Ok(InputForm::Tensor),
            _ => Err(Error::Invalid(format!(
                "unknown export input '{s}': give image or tensor"
            ))),
        }
    }
}

/// How to export. `ExportOptions::default()`: image-in where the graph can reproduce graft's
/// preprocessing, float32, no comparison folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ExportOptions {
    /// What the exported file takes: image (uint8 RGB [N, H, W, 3], any size, resized and
    /// normalised inside the graph; ONNX opset 18) or tensor (the base's prepared float input, the
    /// base's opset). Default: image for image bases that resize without crop or letterbox and
    /// whose graph can be read at opset 18, tensor otherwise (audio, pose).
    #[cfg_attr(feature = "cli", arg(long))]
    pub input: Option<InputForm>,
    /// Quantise: int8 stores the base's convolution weights as int8 (per-channel scales) and
    /// quantises their inputs to uint8 with ranges calibrated on the training split of `--data`
    /// (QuantizeLinear/DequantizeLinear, which ONNX Runtime and tract run); int8-weights stores
    /// the weights alone as int8 (activations float, no calibration). The head stays float.
    /// Needs the recognizer's base; int8 needs `--data`. Default: none (float).
    #[cfg_attr(feature = "cli", arg(long))]
    pub quantize: Option<Quantize>,
    /// How float weights are stored: fp32, or fp16 (the weights of Conv, Gemm and MatMul as
    /// float16, cast to float in the graph, which still computes in float32). Not with
    /// `--quantize`. Default fp32.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Precision::default()))]
    pub precision: Precision,
    /// The labelled folder the recognizer was trained on, split as `graft train` split it (30 %
    /// held out per class, the training seed): int8 calibrates on its training part, and a
    /// smaller export (int8 or fp16) is compared with the float one on its validation part
    /// (accuracy, top-1 agreement, size, ms per image in ONNX Runtime and tract). Required by
    /// `--quantize`; default none (an fp16 export is then not compared).
    #[cfg_attr(feature = "cli", arg(long))]
    pub data: Option<PathBuf>,
}

impl ExportOptions {
    /// Whether these options ask for a smaller form than float32.
    pub fn smaller(&self) -> bool {
        self.quantize.is_some() || self.precision != Precision::Fp32
    }

    /// The same options for the float32 file.
    pub fn float(&self) -> ExportOptions {
        ExportOptions {
            quantize: None,
            precision: Precision::Fp32,
            ..self.clone()
        }
    }
}

/// What [`export_onnx`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exported {
    pub onnx: PathBuf,
    pub labels: PathBuf,
    pub model_card: PathBuf,
    pub form: InputForm,
    /// Why the default was the tensor form (`None` when it was chosen or the form is image).
    pub tensor_because: Option<String>,
    /// The graph's input name, element type and dims (`"N"`, `"H"`, `"W"` for free ones).
    pub input: String,
    pub input_type: String,
    pub input_dims: Vec<Value>,
    pub opset: i64,
    pub classes: usize,
    pub embedding_dim: usize,
    /// What a smaller form (int8, fp16) changed; `None` for float32.
    pub smaller: Option<Smaller>,
    /// The smaller form measured against the float one, when a folder was given.
    pub comparison: Option<Comparison>,
}

/// One form of an export, measured on the comparison examples (the graph after graft's own
/// preprocessing, batch 1).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormFigures {
    /// `float32`, `int8` or `fp16`.
    pub form: String,
    /// Size of the ONNX file in bytes.
    pub bytes: u64,
    /// Top-1 accuracy in tract.
    pub accuracy: f64,
    /// Mean milliseconds per image in tract.
    pub ms_tract: f64,
    /// Top-1 accuracy in ONNX Runtime; `None` when its library could not be had.
    pub accuracy_onnxruntime: Option<f64>,
    /// Mean milliseconds per image in ONNX Runtime.
    pub ms_onnxruntime: Option<f64>,
}

/// A smaller export against the float one, on the validation split of a labelled folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub data: PathBuf,
    /// Examples compared (the validation split).
    pub examples: usize,
    /// Whether the split's counts per class are the training record's (then it is the
    /// training run's validation split).
    pub same_split_as_training: bool,
    pub float: FormFigures,
    pub smaller: FormFigures,
    /// Fraction of examples whose top-1 is the same in both forms (tract).
    pub agreement: f64,
    /// The same in ONNX Runtime.
    pub agreement_onnxruntime: Option<f64>,
    /// The smaller file's size over the float one's.
    pub size_ratio: f64,
    /// Why there are no ONNX Runtime figures, when there are none.
    pub onnxruntime_note: Option<String>,
}

impl fmt::Display for Comparison {
    /// The comparison as an aligned text table, for the terminal (the model card has its own
    /// Markdown section).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<f64>, pct: bool| match (v, pct) {
            (Some(v), true) => format!("{:>7.1} %", v * 100.0),
            (Some(v), false) => format!("{v:>9.2}"),
            (None, _) => format!("{:>9}", "-"),
        };
        writeln!(
            f,
            "on {} validation examples of {}{}:",
            self.examples,
            self.data.display(),
            if self.same_split_as_training {
                " (the training run's split)"
            } else {
                " (not the training run's split)"
            }
        )?;
        writeln!(
            f,
            "  {:<8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "form", "size", "acc tract", "acc ort", "ms tract", "ms ort"
        )?;
        for form in [&self.float, &self.smaller] {
            writeln!(
                f,
                "  {:<8} {:>7.2} MB {} {} {} {}",
                form.form,
                form.bytes as f64 / 1e6,
                opt(Some(form.accuracy), true),
                opt(form.accuracy_onnxruntime, true),
                opt(Some(form.ms_tract), false),
                opt(form.ms_onnxruntime, false)
            )?;
        }
        write!(
            f,
            "  size {:.3}x float; top-1 agreement with float {} (tract), {} (ONNX Runtime)",
            self.size_ratio,
            opt(Some(self.agreement), true).trim(),
            opt(self.agreement_onnxruntime, true).trim()
        )?;
        if let Some(note) = &self.onnxruntime_note {
            write!(f, "\n  no ONNX Runtime figures: {note}")?;
        }
        Ok(())
    }
}

/// Adds `comparison` to what `exported` says about itself: `exported.comparison` and a section
/// of its model card (rewritten atomically).
pub fn record_comparison(exported: &mut Exported, comparison: Comparison) -> Result<()> {
    let card = std::fs::read_to_string(&exported.model_card)
        .map_err(|e| Error::io(&exported.model_card, e))?;
    let card = card + &card::comparison_section(&comparison);
    write_atomic(&exported.model_card, card.as_bytes())?;
    exported.comparison = Some(comparison);
    Ok(())
}

/// Checks that `head` and `labels` fit `base`.
fn check_fit(base: &BaseModel, head: &Head, labels: &[String]) -> Result<()> {
    if head.layers.is_empty() {
        return Err(Error::Invalid("the head has no layers".into()));
    }
    if head.input_dim() != base.embedding_dim() {
        return Err(Error::Invalid(format!(
            "the head takes embeddings of size {}, the base gives {}",
            head.input_dim(),
            base.embedding_dim()
        )));
    }
    if labels.len() != head.classes() {
        return Err(Error::Invalid(format!(
            "{} labels for a head with {} classes",
            labels.len(),
            head.classes()
        )));
    }
    for (i, pair) in head.layers.windows(2).enumerate() {
        if pair[0].weight.ncols() != pair[1].weight.nrows() {
            return Err(Error::Invalid(format!(
                "head layer {i} gives {} values, layer {} takes {}",
                pair[0].weight.ncols(),
                i + 1,
                pair[1].weight.nrows()
            )));
        }
    }
    Ok(())
}

/// The form to write: the one asked for (an error when the image form cannot be built for this
/// base), else image where it can be built, with the reason when not.
fn choose_form(
    asked: Option<InputForm>,
    spec: &InputSpec,
    model: &pb::ModelProto,
) -> Result<(InputForm, Option<String>)> {
    let blocker = match spec {
        InputSpec::Image(s) => preprocess::blocker(s, model),
        InputSpec::Audio(_) => Some("the base takes audio, not images".into()),
        InputSpec::Vector(_) => Some("the base takes numbers, not images".into()),
    };
    match (asked, blocker) {
        (Some(InputForm::Tensor), _) => Ok((InputForm::Tensor, None)),
        (Some(InputForm::Image) | None, None) => Ok((InputForm::Image, None)),
        (Some(InputForm::Image), Some(why)) => Err(Error::Invalid(format!(
            "cannot export an image-in file: {why}; export with input tensor"
        ))),
        (None, Some(why)) => Ok((InputForm::Tensor, Some(why))),
    }
}

/// Writes `base` (pruned to what computes its cut) followed by `head`, a softmax and an argmax as
/// one ONNX file at `out`, with outputs `probabilities`, `label` and `embedding`, taking what
/// `options.input` says; its metadata holds the labels, input form, preprocessing, base (with the
/// zoo's source and licence when it is a zoo model), `training` options and validation metrics
/// when given, the `unknown` rule and graft's version. With a rule the graph also computes it:
/// outputs `score` and `unknown`. `labels.txt` and `MODEL_CARD.md` are written beside it. Every
/// file is written atomically, none over `input_file` (the recognizer exported) when given.
#[allow(clippy::too_many_arguments)]
pub fn export_onnx(
    base: &BaseModel,
    head: &Head,
    labels: &[String],
    training: Option<&TrainingRecord>,
    unknown: Option<&RejectRule>,
    options: &ExportOptions,
    out: &Path,
    input_file: Option<&Path>,
) -> Result<Exported> {
    check_fit(base, head, labels)?;
    if options.quantize.is_some() && options.precision != Precision::Fp32 {
        return Err(Error::Invalid(
            "give --quantize int8 or --precision fp16, not both".into(),
        ));
    }
    let calibration = match (options.quantize, &options.data) {
        (None | Some(Quantize::Int8Weights), _) => None,
        (Some(Quantize::Int8), None) => {
            return Err(Error::Invalid(
                "--quantize int8 calibrates on the training examples: give --data, the folder \
                 the recognizer was trained on"
                    .into(),
            ))
        }
        (Some(Quantize::Int8), Some(data)) => {
            let split = split_folder(data, labels, training)?;
            Some(quantize::calibration_inputs(
                &split.train,
                base.input_spec()?,
            )?)
        }
    };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let labels_path = dir.join(LABELS_FILE);
    let card_path = dir.join(MODEL_CARD_FILE);
    if out
        .file_name()
        .is_some_and(|n| n == LABELS_FILE || n == MODEL_CARD_FILE)
    {
        return Err(Error::Invalid(format!(
            "{} is the name of a file written beside the export: give the ONNX file another name",
            out.display()
        )));
    }
    if let Some(input) = input_file {
        for path in [out, &labels_path, &card_path] {
            refuse_same_file(input, path)?;
        }
    }
    let spec = base.input_spec()?;
    let mut model = base.model_proto()?;
    let base_opset = preprocess::default_opset(&model);
    let (form, tensor_because) = choose_form(options.input, spec, &model)?;
    let opset_then = match form {
        InputForm::Image => preprocess::default_opset(&model).max(IMAGE_OPSET),
        InputForm::Tensor => preprocess::default_opset(&model),
    };
    if unknown.is_some() && opset_then < UNKNOWN_OPSET {
        return Err(Error::Invalid(format!(
            "the base imports ONNX opset {opset_then}, older than the {UNKNOWN_OPSET} the unknown \
             rule's operators need (GatherElements): export it as an image-in file, or train \
             with --accept 0 for a recognizer without the rule"
        )));
    }
    let model_path = base.path().to_path_buf();
    let graph = model.graph.as_mut().ok_or_else(|| Error::Model {
        path: model_path.clone(),
        msg: "no graph".into(),
    })?;
    prune_to(graph, base.cut());
    let with_rule = unknown.map_or(&[][..], |_| &[SCORE, UNKNOWN][..]);
    let mut smaller = None;
    if let Some(quantize) = options.quantize {
        // Per-axis DequantizeLinear needs opset 13; the image form raises the opset to 18.
        let per_channel = form == InputForm::Image || base_opset >= 13;
        let mut names = Names::new(tensor_names(graph));
        smaller = Some(quantize::int8(
            graph,
            &mut names,
            base,
            calibration
                .as_deref()
                .filter(|_| quantize == Quantize::Int8),
            per_channel,
        )?);
    }
    let reserved = [PROBABILITIES, LABEL, EMBEDDING]
        .into_iter()
        .chain(with_rule.iter().copied())
        .chain((form == InputForm::Image).then_some(IMAGE_INPUT));
    let mut names = Names::new(tensor_names(graph));
    let mut prepared = None;
    let (input, input_type, input_dims) = match (form, spec) {
        (InputForm::Image, InputSpec::Image(s)) => {
            let front_out = names.fresh("graft_prepared");
            let prepared = prepared.insert(front_out).as_str();
            rename_input(graph, base.input_name(), prepared);
            names = Names::new(tensor_names(graph));
            check_free(&names, reserved, base)?;
            preprocess::append_front(graph, &mut names, s, IMAGE_INPUT, prepared);
            graph.input.retain(|i| i.name != prepared);
            graph
                .input
                .insert(0, preprocess::image_value_info(IMAGE_INPUT));
            (
                IMAGE_INPUT.to_string(),
                "uint8",
                vec![json!("N"), json!("H"), json!("W"), json!(3)],
            )
        }
        _ => {
            check_free(&names, reserved, base)?;
            let dims = std::iter::once(json!("N"))
                .chain(base.input_shape().iter().map(|&d| json!(d)))
                .collect();
            (base.input_name().to_string(), "float32", dims)
        }
    };
    append_head(graph, &mut names, base, head)?;
    // fp16 weights for the base and the head; the unknown rule's numbers stay float32, so that
    // its threshold means what it meant in training.
    if options.precision == Precision::Fp16 {
        smaller = Some(quantize::fp16(graph, &mut names));
    }
    if let Some(rule) = unknown {
        append_unknown(
            graph,
            &mut names,
            rule,
            head.classes(),
            base.embedding_dim(),
        )?;
    }
    if form == InputForm::Image {
        preprocess::raise_opset(&mut model);
    }
    let opset = preprocess::default_opset(&model);

    let manifest = crate::zoo::manifest(base.name()).ok();
    let facts = card::Facts {
        labels,
        form,
        input_name: &input,
        input_dims: &input_dims,
        input_type,
        prepared: prepared.as_deref(),
        preprocessing: spec,
        base_name: base.name(),
        base_sha256: base.sha256(),
        base_cut: base.cut(),
        embedding_dim: base.embedding_dim(),
        manifest: manifest.as_ref(),
        training,
        unknown,
        opset,
        smaller: smaller.as_ref(),
    };
    model.producer_name = "graft".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let props = facts.metadata()?;
    model
        .metadata_props
        .retain(|p| !props.iter().any(|(k, _)| *k == p.key));
    model.metadata_props.extend(
        props
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto { key, value }),
    );
    let onnx_name = out.file_name().map_or_else(
        || out.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    // As the reference `onnx` package writes it (repeated ints unpacked), for strict readers.
    write_atomic(
        out,
        &graft_converters::onnx_builder::encode_unpacked(&model)?,
    )?;
    write_atomic(&labels_path, facts.labels_txt().as_bytes())?;
    write_atomic(&card_path, facts.model_card(&onnx_name).as_bytes())?;
    Ok(Exported {
        onnx: out.to_path_buf(),
        labels: labels_path,
        model_card: card_path,
        form,
        tensor_because,
        input,
        input_type: input_type.to_string(),
        input_dims,
        opset,
        classes: labels.len(),
        embedding_dim: base.embedding_dim(),
        smaller,
        comparison: None,
    })
}

/// An error when the graph already uses one of the names the export adds.
fn check_free<'a>(
    names: &Names,
    reserved: impl Iterator<Item = &'a str>,
    base: &BaseModel,
) -> Result<()> {
    for name in reserved {
        if name != base.cut() && names.contains(name) {
            return Err(Error::Model {
                path: base.path().to_path_buf(),
                msg: format!("the base already has a tensor named `{name}`, an exported name"),
            });
        }
    }
    Ok(())
}

/// Renames tensor `from` (the base's input) to `to` wherever the graph reads or declares it.
fn rename_input(graph: &mut pb::GraphProto, from: &str, to: &str) {
    for n in &mut graph.node {
        for i in n.input.iter_mut().filter(|i| *i == from) {
            *i = to.to_string();
        }
    }
    for v in graph.input.iter_mut().chain(&mut graph.value_info) {
        if v.name == from {
            v.name = to.to_string();
        }
    }
}

/// Every tensor name a graph's nodes, inputs and initializers mention.
fn tensor_names(graph: &pb::GraphProto) -> HashSet<String> {
    let nodes = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output));
    nodes
        .chain(graph.input.iter().map(|i| &i.name))
        .chain(graph.initializer.iter().map(|t| &t.name))
        .cloned()
        .collect()
}

/// Appends a flatten (or identity) giving `embedding`, the head's Gemm/Relu layers, a softmax
/// giving `probabilities` and an argmax giving `label` after the cut, and declares the three
/// outputs.
fn append_head(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    base: &BaseModel,
    head: &Head,
) -> Result<()> {
    let cut = base.cut();
    let flat = base.cut_shape().len() == 1;
    match (cut == EMBEDDING, flat) {
        (true, true) => {}
        (true, false) => {
            return Err(Error::Model {
                path: base.path().to_path_buf(),
                msg: format!("the cut tensor is named `{EMBEDDING}` but is not [N, D]"),
            })
        }
        (false, true) => {
            let identity = node(
                "Identity",
                &names.fresh("graft_embedding"),
                &[cut],
                EMBEDDING,
            );
            graph.node.push(identity);
        }
        (false, false) => {
            let mut flatten = node("Flatten", &names.fresh("graft_flatten"), &[cut], EMBEDDING);
            flatten.attribute.push(attr_int("axis", 1));
            graph.node.push(flatten);
        }
    }
    let mut h = EMBEDDING.to_string();
    let last = head.layers.len() - 1;
    for (i, layer) in head.layers.iter().enumerate() {
        let (rows, cols) = layer.weight.dim();
        if layer.bias.len() != cols {
            return Err(Error::Invalid(format!(
                "head layer {i}: {} biases for {cols} outputs",
                layer.bias.len()
            )));
        }
        let w = names.fresh(&format!("graft_head_{i}_weight"));
        let b = names.fresh(&format!("graft_head_{i}_bias"));
        graph.initializer.push(float_initializer(
            &w,
            &[rows, cols],
            layer.weight.iter().copied(),
        ));
        graph
            .initializer
            .push(float_initializer(&b, &[cols], layer.bias.iter().copied()));
        let z = if i == last {
            names.fresh("logits")
        } else {
            names.fresh(&format!("graft_head_{i}_out"))
        };
        let gemm = names.fresh(&format!("graft_head_{i}_gemm"));
        graph.node.push(node("Gemm", &gemm, &[&h, &w, &b], &z));
        h = z;
        if i < last {
            let r = names.fresh(&format!("graft_head_{i}_relu"));
            graph.node.push(node("Relu", &r, &[&h], &r));
            h = r;
        }
    }
    let mut softmax = node(
        "Softmax",
        &names.fresh("graft_softmax"),
        &[&h],
        PROBABILITIES,
    );
    softmax.attribute.push(attr_int("axis", 1));
    graph.node.push(softmax);
    let mut argmax = node(
        "ArgMax",
        &names.fresh("graft_argmax"),
        &[PROBABILITIES],
        LABEL,
    );
    argmax.attribute.push(attr_int("axis", 1));
    argmax.attribute.push(attr_int("keepdims", 0));
    graph.node.push(argmax);
    let label = of_type(
        batch_value_info(LABEL, &[]),
        pb::tensor_proto::DataType::Int64,
    );
    graph.output = vec![
        batch_value_info(PROBABILITIES, &[head.classes()]),
        label,
        batch_value_info(EMBEDDING, &[base.embedding_dim()]),
    ];
    Ok(())
}

/// Appends the "unknown" rule after the head: `score` (float32 `[N]`: the answered class's
/// probability, or the cosine similarity of the centred embedding to its centroid) and
/// `unknown` (bool `[N]`: `score < threshold`), and declares both outputs. Only operators of
/// opset [`UNKNOWN_OPSET`] or older whose form has not changed since (ArgMax, GatherElements,
/// Sub, Mul, MatMul, Sqrt, Max, Div, Reshape, Less), so it runs at the base's own opset too.
fn append_unknown(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    rule: &RejectRule,
    classes: usize,
    dim: usize,
) -> Result<()> {
    let answered = names.fresh("graft_unknown_answered");
    let mut argmax = node(
        "ArgMax",
        &names.fresh("graft_unknown_argmax"),
        &[PROBABILITIES],
        &answered,
    );
    argmax.attribute.push(attr_int("axis", 1));
    argmax.attribute.push(attr_int("keepdims", 1));
    graph.node.push(argmax);
    let per_class = match (rule.kind, &rule.centroids) {
        (ScoreKind::MaxProbability, _) => PROBABILITIES.to_string(),
        (ScoreKind::CentroidCosine, Some(c)) => {
            if c.unit.dim() != (classes, dim) || c.mean.len() != dim {
                return Err(Error::Invalid(format!(
                    "unknown-rule centroids {:?} for {classes} classes of {dim}-d embeddings",
                    c.unit.dim()
                )));
            }
            let mean = names.fresh("graft_unknown_mean");
            let ones = names.fresh("graft_unknown_ones");
            let eps = names.fresh("graft_unknown_eps");
            let centroids = names.fresh("graft_unknown_centroids");
            graph
                .initializer
                .push(float_initializer(&mean, &[dim], c.mean.iter().copied()));
            graph.initializer.push(float_initializer(
                &ones,
                &[dim, 1],
                std::iter::repeat_n(1.0, dim),
            ));
            graph.initializer.push(float_initializer(
                &eps,
                &[1],
                std::iter::once(f32::MIN_POSITIVE),
            ));
            let t = c.unit.t();
            graph.initializer.push(float_initializer(
                &centroids,
                &[dim, classes],
                t.iter().copied(),
            ));
            let mut step = |op: &str, inputs: &[&str], stem: &str| {
                let out = names.fresh(stem);
                let n = node(op, &names.fresh(&format!("{stem}_node")), inputs, &out);
                graph.node.push(n);
                out
            };
            let centred = step("Sub", &[EMBEDDING, &mean], "graft_unknown_centred");
            let squares = step("Mul", &[&centred, &centred], "graft_unknown_squares");
            let sum = step("MatMul", &[&squares, &ones], "graft_unknown_sum");
            let norm = step("Sqrt", &[&sum], "graft_unknown_norm");
            let norm = step("Max", &[&norm, &eps], "graft_unknown_safe_norm");
            let dots = step("MatMul", &[&centred, &centroids], "graft_unknown_dots");
            step("Div", &[&dots, &norm], "graft_unknown_similarity")
        }
        (kind, None) => {
            return Err(Error::Invalid(format!(
                "a {} unknown rule without its centroids",
                kind.name()
            )))
        }
        (ScoreKind::NeighbourCosine, _) => {
            return Err(Error::Invalid(
                "a KNN index's unknown rule cannot be exported with a head".into(),
            ))
        }
    };
    let picked = names.fresh("graft_unknown_picked");
    let mut gather = node(
        "GatherElements",
        &names.fresh("graft_unknown_gather"),
        &[&per_class, &answered],
        &picked,
    );
    gather.attribute.push(attr_int("axis", 1));
    graph.node.push(gather);
    let flat = names.fresh("graft_unknown_flat");
    graph.initializer.push(int64_initializer(&flat, &[-1]));
    graph.node.push(node(
        "Reshape",
        &names.fresh("graft_unknown_reshape"),
        &[&picked, &flat],
        SCORE,
    ));
    let threshold = names.fresh("graft_unknown_threshold");
    graph.initializer.push(float_initializer(
        &threshold,
        &[1],
        std::iter::once(rule.threshold),
    ));
    graph.node.push(node(
        "Less",
        &names.fresh("graft_unknown_less"),
        &[SCORE, &threshold],
        UNKNOWN,
    ));
    let unknown = of_type(
        batch_value_info(UNKNOWN, &[]),
        pb::tensor_proto::DataType::Bool,
    );
    graph.output.push(batch_value_info(SCORE, &[]));
    graph.output.push(unknown);
    Ok(())
}

/// `info` with its tensor element type set to `elem`.
fn of_type(mut info: pb::ValueInfoProto, elem: pb::tensor_proto::DataType) -> pb::ValueInfoProto {
    if let Some(pb::type_proto::Value::TensorType(t)) =
        info.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = elem as i32;
    }
    info
}
