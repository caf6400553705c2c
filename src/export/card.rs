//! What an exported file says about itself: the ONNX `metadata_props`, and the `labels.txt` and
//! `MODEL_CARD.md` written beside it.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::input::{ChannelOrder, InputSpec};
use crate::recognizer::TrainingRecord;
use crate::reject::RejectRule;
use crate::zoo::Manifest;
use crate::{Error, Result};

use super::{Comparison, FormFigures, InputForm, Smaller};

/// Everything the metadata and the card are made from.
pub struct Facts<'a> {
    pub labels: &'a [String],
    pub form: InputForm,
    /// The graph's input name and dims (`"N"`, `"H"`, `"W"` for free ones, else numbers).
    pub input_name: &'a str,
    pub input_dims: &'a [Value],
    pub input_type: &'a str,
    /// With [`InputForm::Image`]: the float tensor the built-in preprocessing gives the base.
    pub prepared: Option<&'a str>,
    /// How graft prepares an example for the base (done in the graph with [`InputForm::Image`]).
    pub preprocessing: &'a InputSpec,
    pub base_name: &'a str,
    pub base_sha256: &'a str,
    pub base_cut: &'a str,
    pub embedding_dim: usize,
    /// The base's zoo manifest, when it is a zoo model.
    pub manifest: Option<&'a Manifest>,
    pub training: Option<&'a TrainingRecord>,
    /// The "unknown" rule the graph applies (outputs `unknown` and `score`).
    pub unknown: Option<&'a RejectRule>,
    pub opset: i64,
    /// What a smaller form (int8, fp16) changed.
    pub smaller: Option<&'a Smaller>,
}

/// How graft's resize is described, in the metadata and the card.
const RESIZE: &str = "bilinear (triangle filter) with half-pixel centres, antialiased when \
                      shrinking (the filter widened by the shrink factor, as PIL's bilinear \
                      resize), taps outside the image dropped and the rest renormalised";

/// A unit enum's name as the manifests spell it (`RGB`, `NCHW`).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("{what} as JSON: {e}")))
}

impl Facts<'_> {
    fn input_json(&self) -> Value {
        let mut input = json!({
            "form": self.form.name(),
            "name": self.input_name,
            "type": self.input_type,
            "shape": self.input_dims,
        });
        if self.form == InputForm::Image {
            input["channels"] = json!("RGB");
            input["values"] = json!("0..255");
        }
        if let Some(p) = self.prepared {
            input["prepared"] = json!(p);
        }
        input
    }

    fn base_json(&self) -> Value {
        let mut base = json!({
            "name": self.base_name,
            "sha256": self.base_sha256,
            "cut": self.base_cut,
            "embedding_dim": self.embedding_dim,
        });
        if let Some(m) = self.manifest {
            base["source"] = json!({
                "registry": m.source.registry,
                "package": m.source.package,
                "version": m.source.version,
                "path": m.source.path,
                "sha256": m.source.sha256,
            });
            base["licence"] =
                json!({ "spdx": m.licence.spdx, "attribution": m.licence.attribution });
        }
        base
    }

    fn outputs_json(&self) -> Value {
        let mut outputs = vec![
            (
                super::PROBABILITIES,
                "float32 [N, classes], softmax".to_string(),
            ),
            (
                super::LABEL,
                "int64 [N], index of the most probable class in labels".to_string(),
            ),
            (
                super::EMBEDDING,
                format!("float32 [N, {}], the base's embedding", self.embedding_dim),
            ),
        ];
        if let Some(rule) = self.unknown {
            outputs.push((super::SCORE, score_text(rule)));
            outputs.push((super::UNKNOWN, unknown_text(rule)));
        }
        Value::Object(
            outputs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect(),
        )
    }

    /// The `metadata_props` entries (key, value); structured values are JSON.
    pub fn metadata(&self) -> Result<Vec<(String, String)>> {
        let mut props = vec![
            ("labels".to_string(), to_json("labels", &self.labels)?),
            ("producer".into(), "graft".into()),
            ("graft.version".into(), env!("CARGO_PKG_VERSION").into()),
            ("graft.input".into(), self.input_json().to_string()),
            ("graft.outputs".into(), self.outputs_json().to_string()),
            (
                "graft.preprocessing".into(),
                json!({
                    "in_graph": self.form == InputForm::Image,
                    "spec": self.preprocessing,
                    "resize": RESIZE,
                })
                .to_string(),
            ),
            ("graft.base".into(), self.base_json().to_string()),
            ("graft.base_sha256".into(), self.base_sha256.to_string()),
            ("graft.base_cut".into(), self.base_cut.to_string()),
        ];
        props.push((
            "graft.unknown".into(),
            to_json("unknown rule", &self.unknown)?,
        ));
        if let Some(small) = self.smaller {
            props.push(("graft.weights".into(), to_json("weights", small)?));
        }
        if let Some(t) = self.training {
            let training = json!({
                "options": t.options,
                "train_counts": t.train_counts,
                "val_counts": t.val_counts,
                "backend": t.report.backend,
                "epochs_run": t.report.history.len(),
                "best_epoch": t.report.best_epoch,
                "weights_epoch": t.report.weights_epoch,
            });
            props.push(("graft.training".into(), training.to_string()));
            if let Some(v) = &t.validation {
                props.push(("graft.validation".into(), to_json("validation metrics", v)?));
            }
        }
        Ok(props)
    }

    /// `labels.txt`: one label a line, in the order of the `probabilities` columns.
    pub fn labels_txt(&self) -> String {
        self.labels.iter().map(|l| format!("{l}\n")).collect()
    }

    /// `MODEL_CARD.md` for the exported file named `onnx_name`.
    pub fn model_card(&self, onnx_name: &str) -> String {
        let mut c = String::new();
        let kind = self.preprocessing.kind();
        let things = match self.preprocessing {
            InputSpec::Image(_) => "images",
            InputSpec::Audio(_) => "recordings",
            InputSpec::Vector(_) => "lists of numbers",
        };
        let _ = writeln!(c, "# Model card: {onnx_name}\n");
        if crate::base::is_raw(self.base_name) {
            let _ = writeln!(
                c,
                "A classifier of {things} made with graft {} and trained from scratch: the raw \
                 base `{}` passes the prepared input itself on ({} numbers, flattened), and the \
                 trained head is the whole model.\n",
                env!("CARGO_PKG_VERSION"),
                self.base_name,
                self.embedding_dim
            );
        } else {
            let _ = writeln!(
                c,
                "An {kind} classifier made with graft {} by transfer learning: the frozen base \
                 `{}` (cut at `{}`, {}-d embedding) and a small trained head.\n",
                env!("CARGO_PKG_VERSION"),
                self.base_name,
                self.base_cut,
                self.embedding_dim
            );
        }
        let _ = writeln!(c, "## What it recognises\n");
        let counts = self.training.map(|t| (&t.train_counts, &t.val_counts));
        match counts {
            Some((train, val)) => {
                let _ = writeln!(
                    c,
                    "| index | class | training examples | validation examples |"
                );
                let _ = writeln!(c, "|---|---|---|---|");
                for (i, label) in self.labels.iter().enumerate() {
                    let n = |v: &Vec<usize>| v.get(i).map_or("?".into(), |n| n.to_string());
                    let _ = writeln!(c, "| {i} | {label} | {} | {} |", n(train), n(val));
                }
            }
            None => {
                let _ = writeln!(c, "| index | class |\n|---|---|");
                for (i, label) in self.labels.iter().enumerate() {
                    let _ = writeln!(c, "| {i} | {label} |");
                }
                let _ = writeln!(c, "\nThe head was not trained by graft: no example counts.");
            }
        }
        let _ = writeln!(c, "\n## Input and outputs\n");
        let dims: Vec<String> = self
            .input_dims
            .iter()
            .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string))
            .collect();
        let _ = writeln!(
            c,
            "- input `{}`: {} `[{}]`",
            self.input_name,
            self.input_type,
            dims.join(", ")
        );
        match (self.form, self.preprocessing) {
            (InputForm::Image, InputSpec::Image(s)) => {
                let n = s.channels.count();
                let channels = match s.channels {
                    ChannelOrder::Gray => "converts to grey (0.299 R + 0.587 G + 0.114 B)".into(),
                    other => format!("orders the channels {}", serde_name(&other)),
                };
                let _ = writeln!(
                    c,
                    "  — RGB pixels 0..255, any height and width (a batch shares one size). The \
                     graph resizes to {}x{} ({RESIZE}), {channels}, computes \
                     (x - {:?}) / {:?} and lays the tensor out {}, as graft does: give it the \
                     decoded image as it is.",
                    s.width,
                    s.height,
                    &s.mean[..n],
                    &s.std[..n],
                    serde_name(&s.layout)
                );
            }
            (_, spec) => {
                let _ = writeln!(
                    c,
                    "  — already prepared as graft prepares examples (the file's metadata \
                     `graft.preprocessing` says how): `{}`",
                    serde_json::to_string(spec).unwrap_or_default()
                );
            }
        }
        let _ = writeln!(
            c,
            "- output `{}`: float32 `[N, {}]`, class probabilities (softmax) in the order of \
             `labels.txt`\n- output `{}`: int64 `[N]`, the most probable class's index\n- output \
             `{}`: float32 `[N, {}]`, the base's embedding",
            super::PROBABILITIES,
            self.labels.len(),
            super::LABEL,
            super::EMBEDDING,
            self.embedding_dim,
        );
        if let Some(rule) = self.unknown {
            let _ = writeln!(
                c,
                "- output `{}`: {}\n- output `{}`: {}",
                super::SCORE,
                score_text(rule),
                super::UNKNOWN,
                unknown_text(rule)
            );
        }
        let _ = writeln!(
            c,
            "\nONNX opset {}; runs in ONNX Runtime and tract. The metadata (`metadata_props`) \
             holds the labels, input format, preprocessing, base, training options, validation \
             metrics and the unknown rule as JSON.",
            self.opset
        );
        if let Some(small) = self.smaller {
            let _ = writeln!(c, "\n{}", smaller_text(small));
        }
        let _ = writeln!(c, "\n## Validation\n");
        match self.training.and_then(|t| t.validation.as_ref()) {
            Some(m) => {
                let _ = writeln!(
                    c,
                    "Accuracy on the held-out validation split: {:.1} %.\n",
                    m.accuracy * 100.0
                );
                let _ = writeln!(
                    c,
                    "| class | examples | correct | accuracy |\n|---|---|---|---|"
                );
                for p in &m.per_class {
                    let acc = p
                        .accuracy
                        .map_or("-".into(), |a| format!("{:.1} %", a * 100.0));
                    let _ = writeln!(c, "| {} | {} | {} | {acc} |", p.label, p.support, p.correct);
                }
                let _ = writeln!(
                    c,
                    "\nConfusion matrix (rows: true class, columns: predicted):\n"
                );
                let _ = writeln!(c, "| true \\ predicted | {} |", self.labels.join(" | "));
                let _ = writeln!(c, "|---|{}", "---|".repeat(self.labels.len()));
                for (label, row) in self.labels.iter().zip(&m.confusion) {
                    let cells: Vec<String> = row.iter().map(|n| n.to_string()).collect();
                    let _ = writeln!(c, "| {label} | {} |", cells.join(" | "));
                }
            }
            None => {
                let _ = writeln!(c, "No validation split was measured.");
            }
        }
        let unknown = match self.unknown {
            Some(rule) => format!(
                "It answers `unknown` (output `{}`) for inputs unlike its classes: the rule was \
                 set to keep {:.0} % of the correct validation answers ({} of them), and \
                 rejected {} of {} {} out-of-class examples; inputs close to a class are still \
                 answered as that class.",
                super::UNKNOWN,
                100.0 * rule.accept,
                rule.calibrated_on,
                rule.candidates
                    .iter()
                    .find(|c| c.kind == rule.kind)
                    .and_then(|c| c.rejected)
                    .map_or("-".into(), |r| format!("{:.1} %", 100.0 * r)),
                rule.judged.examples,
                rule.judged.on
            ),
            None => "It always answers one of its classes, also for inputs that belong to none \
                     of them: check the probability before acting on an answer."
                .into(),
        };
        let _ = writeln!(
            c,
            "\n## Intended use\n\nSorting {} like the training examples into the classes \
             above, in apps and prototypes. {unknown} Few training examples make a narrow model; \
             measure it on your own data before relying on it.",
            things
        );
        let _ = writeln!(c, "\n## Base model, licence and attribution\n");
        match self.manifest {
            Some(m) => {
                let _ = writeln!(
                    c,
                    "- base: `{}` — {}\n- original: {} package `{}` {} (`{}`, sha256 `{}`)\n- \
                     licence: {}\n- attribution: {}\n- conversion: {}",
                    m.name,
                    m.description,
                    serde_name(&m.source.registry),
                    m.source.package,
                    m.source.version,
                    m.source.path,
                    m.source.sha256,
                    m.licence.spdx,
                    m.licence.attribution,
                    m.conversion.notes
                );
            }
            None if crate::base::is_raw(self.base_name) => {
                let _ = writeln!(
                    c,
                    "- base: `{}` (sha256 `{}`), no pretrained model: a one-node graph (Flatten) \
                     that graft writes; the weights are the head's alone, learnt from the \
                     training examples.",
                    self.base_name, self.base_sha256
                );
            }
            None => {
                let _ = writeln!(
                    c,
                    "- base: `{}` (sha256 `{}`), not a graft zoo model: its licence and \
                     attribution are those of whoever published it.",
                    self.base_name, self.base_sha256
                );
            }
        }
        c
    }
}

/// What the `score` output holds under `rule`.
fn score_text(rule: &RejectRule) -> String {
    let what = match rule.kind {
        crate::reject::ScoreKind::MaxProbability => "the answered class's probability",
        _ => {
            "the cosine similarity of the embedding to the answered class's training centroid \
             (both centred on the training mean)"
        }
    };
    format!("float32 [N], {what}")
}

/// What the `unknown` output holds under `rule`.
fn unknown_text(rule: &RejectRule) -> String {
    format!(
        "bool [N], true when `score` < {} ({}): the input is like none of the classes",
        rule.threshold,
        rule.kind.name()
    )
}

/// What a smaller form is, in a sentence for the card.
fn smaller_text(small: &Smaller) -> String {
    if small.form == "fp16" {
        return format!(
            "**fp16.** {} weight tensors (of Conv, Gemm and MatMul) are stored as float16 and \
             cast to float32 in the graph, which computes in float32.",
            small.weights
        );
    }
    let activations = match small.activations {
        0 => "activations stay float".to_string(),
        n => format!(
            "their {n} input tensors are quantised to uint8 (QuantizeLinear -> \
             DequantizeLinear) with ranges measured on {} training examples",
            small.calibration_examples
        ),
    };
    format!(
        "**{}.** The weights of the base's {} convolutions are stored as int8 ({} scales, read \
         through DequantizeLinear); {activations}. Biases, the other ops and the head are float.",
        small.form,
        small.weights,
        small.weight_scales.unwrap_or("per-tensor")
    )
}

/// The card's section on a smaller export measured against the float one.
pub fn comparison_section(c: &Comparison) -> String {
    let mut s = String::new();
    let which = match c.same_split_as_training {
        true => "the training run's validation split",
        false => "a 70/30 split (training seed) that differs from the training run's",
    };
    let _ = writeln!(
        s,
        "\n## Smaller export against float\n\nOn {} examples of `{}` ({which}), the graph run \
         after graft's preprocessing, one image at a time:\n",
        c.examples,
        c.data.display()
    );
    let _ = writeln!(
        s,
        "| form | file size | accuracy (tract) | accuracy (ONNX Runtime) | ms/image tract | \
         ms/image ONNX Runtime |\n|---|---|---|---|---|---|"
    );
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1} %", v * 100.0));
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    for f in [&c.float, &c.smaller] {
        let row = |f: &FormFigures| {
            format!(
                "| {} | {:.2} MB | {} | {} | {} | {} |",
                f.form,
                f.bytes as f64 / 1e6,
                pct(Some(f.accuracy)),
                pct(f.accuracy_onnxruntime),
                ms(Some(f.ms_tract)),
                ms(f.ms_onnxruntime)
            )
        };
        let _ = writeln!(s, "{}", row(f));
    }
    let _ = writeln!(
        s,
        "\nSize {:.3}x the float file; top-1 agreement with float {} (tract), {} (ONNX Runtime).",
        c.size_ratio,
        pct(Some(c.agreement)),
        pct(c.agreement_onnxruntime)
    );
    if let Some(note) = &c.onnxruntime_note {
        let _ = writeln!(s, "\nNo ONNX Runtime figures: {note}");
    }
    s
}
