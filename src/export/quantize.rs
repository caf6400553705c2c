//! Smaller exports: `int8` (static quantisation, QDQ form) and `fp16` weights.
//!
//! **int8.** Every `Conv` of the base reads its weight through a `DequantizeLinear` of an int8
//! initializer (symmetric, zero point 0; one scale per output channel from opset 13, one per
//! tensor below it), and its input through a `QuantizeLinear` -> `DequantizeLinear` pair (uint8,
//! asymmetric) whose scale and zero point come from the range that tensor takes on the
//! calibration examples (the training split, the float base run by tract with those tensors as
//! outputs). Biases, the other ops and the head stay
//! float; each convolution's bias is corrected for the mean shift its int8 weights cause (their
//! rounding error times the measured mean of its input, per channel). (`bench/compare_exports.py`
//! measures what each step does: README, "Smaller exports"). These are the ops of ONNX Runtime's
//! QDQ format (it fuses the pairs into integer kernels where it can) and tract reads them too
//! (opset 10, per-axis scales from 13).
//!
//! **fp16.** The float weights of `Conv`, `Gemm` and `MatMul` (the head's included) are stored
//! as float16 initializers, each read through a `Cast` to float: the graph computes in float32 as
//! before, so every engine that runs the float file runs this one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use graft_converters::onnx_builder::attr_int;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use super::preprocess::{initializer, node, Names};
use crate::base::BaseModel;
use crate::dataset::{stratified_split, Dataset, DEFAULT_VAL_SPLIT};
use crate::input::InputSpec;
use crate::recognizer::TrainingRecord;
use crate::train::TrainOptions;
use crate::{Error, Result};

/// At most this many training examples calibrate an int8 export (evenly spread over the split).
pub const MAX_CALIBRATION_EXAMPLES: usize = 256;

/// A quantised export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// int8 weights and calibrated uint8 activations into every convolution of the base.
    Int8,
    /// int8 weights only (activations stay float; no calibration).
    #[serde(rename = "int8-weights")]
    Int8Weights,
}

impl Quantize {
    /// `int8` or `int8-weights`.
    pub fn name(self) -> &'static str {
        match self {
            Quantize::Int8 => "int8",
            Quantize::Int8Weights => "int8-weights",
        }
    }
}

impl fmt::Display for Quantize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quantize {
    type Err = Error;

    fn from_str(s: &str) -> Result<Quantize> {
        match s {
            "int8" => Ok(Quantize::Int8),
            "int8-weights" => Ok(Quantize::Int8Weights),
            _ => Err(Error::Invalid(format!(
                "unknown quantisation '{s}': give int8 or int8-weights"
            ))),
        }
    }
}

/// How the float weights are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32.
    #[default]
    Fp32,
    /// float16, cast to float32 in the graph.
    Fp16,
}

impl Precision {
    /// `fp32` or `fp16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "fp16" => Ok(Precision::Fp16),
            _ => Err(Error::Invalid(format!(
                "unknown precision '{s}': give fp32 or fp16"
            ))),
        }
    }
}

/// What a smaller export changed in the graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Smaller {
    /// `int8` or `fp16`.
    pub form: &'static str,
    /// Weight tensors stored smaller.
    pub weights: usize,
    /// int8: `per-channel` or `per-tensor` weight scales.
    pub weight_scales: Option<&'static str>,
    /// int8: activation tensors quantised (the inputs of the convolutions).
    pub activations: usize,
    /// int8: the training examples the activation ranges were measured on.
    pub calibration_examples: usize,
}

/// A labelled folder split as `graft train` splits it: per class, seeded by the recognizer's
/// training seed, [`DEFAULT_VAL_SPLIT`] held out. Labels index the recognizer's labels.
#[derive(Clone, Debug)]
pub struct FolderSplit {
    pub train: Vec<(PathBuf, usize)>,
    pub val: Vec<(PathBuf, usize)>,
    /// Whether its examples per class on each side are those the recognizer's training record
    /// holds (then it is, in all likelihood, the training run's own split).
    pub same_as_training: bool,
}

/// Splits the labelled folder `data`, whose classes must be among `labels`.
pub fn split_folder(
    data: &Path,
    labels: &[String],
    training: Option<&TrainingRecord>,
) -> Result<FolderSplit> {
    let set = Dataset::from_folder(data)?;
    let index: Vec<usize> = set
        .classes
        .iter()
        .map(|c| {
            labels.iter().position(|l| l == c).ok_or_else(|| {
                Error::Dataset(format!(
                    "class '{c}' of {} is not one of the recognizer's ({})",
                    data.display(),
                    labels.join(", ")
                ))
            })
        })
        .collect::<Result<_>>()?;
    let folder_labels: Vec<usize> = set.examples.iter().map(|e| e.label).collect();
    let seed = training.map_or(TrainOptions::default().seed, |t| t.options.seed);
    let (train, val) = stratified_split(&folder_labels, DEFAULT_VAL_SPLIT, seed)?;
    let side = |ids: Vec<usize>| -> Vec<(PathBuf, usize)> {
        ids.into_iter()
            .map(|i| (set.examples[i].path.clone(), index[set.examples[i].label]))
            .collect()
    };
    let (train, val) = (side(train), side(val));
    let counts = |side: &[(PathBuf, usize)]| {
        crate::dataset::count_labels(side.iter().map(|(_, l)| *l), labels.len())
    };
    let same_as_training =
        training.is_some_and(|t| t.train_counts == counts(&train) && t.val_counts == counts(&val));
    Ok(FolderSplit {
        train,
        val,
        same_as_training,
    })
}

/// The prepared inputs of at most [`MAX_CALIBRATION_EXAMPLES`] of `files` (evenly spread); files
/// that cannot be read are left out, as training leaves them out.
pub(super) fn calibration_inputs(
    files: &[(PathBuf, usize)],
    spec: &InputSpec,
) -> Result<Vec<ArrayD<f32>>> {
    let step = files.len().div_ceil(MAX_CALIBRATION_EXAMPLES).max(1);
    let inputs: Vec<ArrayD<f32>> = files
        .iter()
        .step_by(step)
        .filter_map(|(path, _)| crate::embeddings::prepare_file(path, spec).ok())
        .collect();
    if inputs.is_empty() {
        return Err(Error::Dataset(
            "no training example could be read to calibrate the int8 export".into(),
        ));
    }
    Ok(inputs)
}

/// The float values of an initializer stored in the file (not external data).
fn floats(t: &pb::TensorProto) -> Option<Vec<f32>> {
    let external = t.data_location == Some(pb::tensor_proto::DataLocation::External as i32);
    if t.data_type != DataType::Float as i32 || external {
        return None;
    }
    let n: i64 = t.dims.iter().product();
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    (values.len() as i64 == n).then_some(values)
}

/// A 0-d or 1-d initializer.
fn params(name: &str, len: Option<usize>, data_type: DataType, raw: Vec<u8>) -> pb::TensorProto {
    let dims: Vec<i64> = len.map(|n| n as i64).into_iter().collect();
    initializer(name, &dims, data_type, raw)
}

/// Symmetric int8 values of `w` and their scales: one per slice along axis 0 of `dims`
/// (`per_channel`), else one.
fn quantize_weight(w: &[f32], dims: &[i64], per_channel: bool) -> (Vec<i8>, Vec<f32>) {
    let channels = match (per_channel, dims.first()) {
        (true, Some(&m)) if m > 0 => m as usize,
        _ => 1,
    };
    let per = w.len() / channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for slice in w.chunks(per.max(1)) {
        let max = slice.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        scales.push(scale);
        q.extend(
            slice
                .iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// The uint8 scale and zero point that cover `[lo, hi]` (and 0).
fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / 255.0;
    if !(scale > 0.0 && scale.is_finite()) {
        return (1.0, 0);
    }
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// The shift of each output channel's mean that a convolution's weight rounding `error` (laid
/// out as its weight, `[M, C / group, kh, kw]`) causes on an input whose channel means are
/// `means` (`C` of them): `sum over its inputs and taps of error x mean`. `None` where the
/// shapes do not fit together.
fn mean_shift(error: &[f32], dims: &[i64], group: i64, means: &[f64]) -> Option<Vec<f64>> {
    let outputs = usize::try_from(*dims.first()?).ok()?;
    let per_group_in = usize::try_from(*dims.get(1)?).ok()?;
    let group = usize::try_from(group).ok()?;
    let taps = error.len().checked_div(outputs * per_group_in)?;
    if outputs == 0
        || taps == 0
        || outputs % group != 0
        || means.len() != per_group_in * group
        || error.len() != outputs * per_group_in * taps
    {
        return None;
    }
    let per_group_out = outputs / group;
    Some(
        (0..outputs)
            .map(|m| {
                let first_in = (m / per_group_out) * per_group_in;
                (0..per_group_in)
                    .map(|c| {
                        let start = (m * per_group_in + c) * taps;
                        let sum: f64 = error[start..start + taps]
                            .iter()
                            .map(|&e| f64::from(e))
                            .sum();
                        sum * means[first_in + c]
                    })
                    .sum()
            })
            .collect(),
    )
}

/// How many times each tensor is read by a node or is a graph output.
fn readers(graph: &pb::GraphProto) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    let names = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(graph.output.iter().map(|o| &o.name));
    for name in names {
        *count.entry(name.clone()).or_insert(0) += 1;
    }
    count
}

/// Quantises the base graph `graph` (pruned to its cut, before the head is added) as the module
/// says, calibrating on `calibration` (prepared inputs of `base`).
pub(super) fn int8(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    base: &BaseModel,
    calibration: Option<&[ArrayD<f32>]>,
    per_channel: bool,
) -> Result<Smaller> {
    let float_inits: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .filter(|(_, t)| t.data_type == DataType::Float as i32)
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let convs: Vec<usize> = (0..graph.node.len())
        .filter(|&i| {
            let n = &graph.node[i];
            n.op_type == "Conv"
                && (n.domain.is_empty() || n.domain == "ai.onnx")
                && n.input.len() >= 2
                && float_inits.contains_key(&n.input[1])
                && !float_inits.contains_key(&n.input[0])
        })
        .collect();
    if convs.is_empty() {
        return Err(Error::Model {
            path: base.path().to_path_buf(),
            msg: "the base has no convolution with stored weights: nothing to quantise to int8"
                .into(),
        });
    }
    let mut activations: Vec<String> = Vec::new();
    let mut weights: Vec<String> = Vec::new();
    for &i in &convs {
        let n = &graph.node[i];
        if calibration.is_some() && !activations.contains(&n.input[0]) {
            activations.push(n.input[0].clone());
        }
        if !weights.contains(&n.input[1]) {
            weights.push(n.input[1].clone());
        }
    }
    let stats = match calibration {
        Some(inputs) => base.tensor_statistics(&activations, inputs)?,
        None => Vec::new(),
    };

    // Weights: int8 initializer -> DequantizeLinear, at the front of the graph.
    let mut front = Vec::new();
    let mut new_inits = Vec::new();
    let mut dequantized: HashMap<String, String> = HashMap::new();
    // Each weight's rounding error (dequantised minus float), for the bias correction.
    let mut rounding: HashMap<String, (Vec<f32>, Vec<i64>)> = HashMap::new();
    for w in &weights {
        let t = &graph.initializer[float_inits[w]];
        let values = floats(t).ok_or_else(|| Error::Model {
            path: base.path().to_path_buf(),
            msg: format!("the weight `{w}` is not stored as float data in the file"),
        })?;
        let (q, scales) = quantize_weight(&values, &t.dims, per_channel);
        let per = values.len() / scales.len().max(1);
        let error: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| f32::from(q[i]) * scales[i / per.max(1)] - v)
            .collect();
        rounding.insert(w.clone(), (error, t.dims.clone()));
        let channels = per_channel.then_some(scales.len());
        let q_name = names.fresh(&format!("{w}_int8"));
        let s_name = names.fresh(&format!("{w}_scale"));
        let z_name = names.fresh(&format!("{w}_zero_point"));
        let out = names.fresh(&format!("{w}_dequantized"));
        new_inits.push(initializer(
            &q_name,
            &t.dims,
            DataType::Int8,
            q.iter().map(|v| *v as u8).collect(),
        ));
        new_inits.push(params(
            &s_name,
            channels,
            DataType::Float,
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        new_inits.push(params(
            &z_name,
            channels,
            DataType::Int8,
            vec![0; scales.len()],
        ));
        let mut dq = node(
            "DequantizeLinear",
            &names.fresh(&format!("{w}_dequantize")),
            &[&q_name, &s_name, &z_name],
            &out,
        );
        if channels.is_some() {
            dq.attribute.push(attr_int("axis", 0));
        }
        front.push(dq);
        dequantized.insert(w.clone(), out);
    }

    // Activations: QuantizeLinear -> DequantizeLinear just before their first convolution.
    let mut pairs: HashMap<String, (Vec<pb::NodeProto>, String)> = HashMap::new();
    for (a, stat) in activations.iter().zip(&stats) {
        if !(stat.lo.is_finite() && stat.hi.is_finite()) {
            return Err(Error::Inference(format!(
                "tensor `{a}` takes non-finite values on the calibration examples"
            )));
        }
        let (scale, zero) = activation_params(stat.lo, stat.hi);
        let s_name = names.fresh(&format!("{a}_scale"));
        let z_name = names.fresh(&format!("{a}_zero_point"));
        let q_out = names.fresh(&format!("{a}_uint8"));
        let dq_out = names.fresh(&format!("{a}_dequantized"));
        new_inits.push(params(
            &s_name,
            None,
            DataType::Float,
            scale.to_le_bytes().to_vec(),
        ));
        new_inits.push(params(&z_name, None, DataType::Uint8, vec![zero]));
        let q = node(
            "QuantizeLinear",
            &names.fresh(&format!("{a}_quantize")),
            &[a, &s_name, &z_name],
            &q_out,
        );
        let dq = node(
            "DequantizeLinear",
            &names.fresh(&format!("{a}_dequantize")),
            &[&q_out, &s_name, &z_name],
            &dq_out,
        );
        pairs.insert(a.clone(), (vec![q, dq], dq_out));
    }

    // Bias correction: int8 weights shift each output channel's mean by their rounding error
    // times the mean input; each convolution's bias takes that shift back (measured means of its
    // input on the calibration examples).
    let input_means: HashMap<&String, Vec<f64>> = activations
        .iter()
        .zip(&stats)
        .map(|(a, s)| (a, s.channel_means()))
        .collect();
    let mut corrected: HashMap<usize, String> = HashMap::new();
    let mut replaced_biases: Vec<String> = Vec::new();
    for &i in &convs {
        let n = &graph.node[i];
        let (Some(means), Some((error, dims))) =
            (input_means.get(&n.input[0]), rounding.get(&n.input[1]))
        else {
            continue;
        };
        let group = n
            .attribute
            .iter()
            .find(|a| a.name == "group")
            .map_or(1, |a| a.i.max(1));
        let Some(shift) = mean_shift(error, dims, group, means) else {
            continue;
        };
        let old = n.input.get(2).filter(|b| !b.is_empty());
        let bias: Vec<f32> = match old {
            Some(b) => match float_inits
                .get(b)
                .and_then(|&j| floats(&graph.initializer[j]))
            {
                Some(values) if values.len() == shift.len() => values,
                _ => continue,
            },
            None => vec![0.0; shift.len()],
        };
        let name = names.fresh(&format!("{}_bias_corrected", n.input[1]));
        let values: Vec<u8> = bias
            .iter()
            .zip(&shift)
            .flat_map(|(b, s)| ((f64::from(*b) - s) as f32).to_le_bytes())
            .collect();
        new_inits.push(params(&name, Some(shift.len()), DataType::Float, values));
        if let Some(b) = old {
            replaced_biases.push(b.clone());
        }
        corrected.insert(i, name);
    }

    let conv_set: HashSet<usize> = convs.iter().copied().collect();
    let mut nodes = front;
    for (i, mut n) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        if let Some(bias) = corrected.get(&i) {
            n.input.resize(2.max(n.input.len()), String::new());
            if n.input.len() == 2 {
                n.input.push(bias.clone());
            } else {
                n.input[2] = bias.clone();
            }
        }
        if conv_set.contains(&i) {
            if let Some((pair, out)) = pairs.get_mut(&n.input[0]) {
                nodes.append(pair);
                n.input[0] = out.clone();
            }
            if let Some(out) = dequantized.get(&n.input[1]) {
                n.input[1] = out.clone();
            }
        }
        nodes.push(n);
    }
    graph.node = nodes;
    // The float weights nothing reads any more go.
    let read = readers(graph);
    let unread = |name: &String| {
        (weights.contains(name) || replaced_biases.contains(name)) && !read.contains_key(name)
    };
    graph.initializer.retain(|t| !unread(&t.name));
    graph.input.retain(|i| !unread(&i.name));
    graph.initializer.extend(new_inits);
    Ok(Smaller {
        form: match calibration {
            Some(_) => "int8",
            None => "int8-weights",
        },
        weights: weights.len(),
        weight_scales: Some(if per_channel {
            "per-channel"
        } else {
            "per-tensor"
        }),
        activations: activations.len(),
        calibration_examples: calibration.map_or(0, |c| c.len()),
    })
}

/// Stores the float weights of every `Conv`, `Gemm` and `MatMul` of `graph` as float16, each
/// read through a `Cast` to float under its old name.
pub(super) fn fp16(graph: &mut pb::GraphProto, names: &mut Names) -> Smaller {
    let mut weights: HashSet<String> = HashSet::new();
    for n in &graph.node {
        let slots: &[usize] = match n.op_type.as_str() {
            "Conv" | "Gemm" => &[1, 2],
            "MatMul" => &[0, 1],
            _ => &[],
        };
        weights.extend(slots.iter().filter_map(|&s| n.input.get(s).cloned()));
    }
    let mut casts = Vec::new();
    let mut converted = HashSet::new();
    for t in &mut graph.initializer {
        if !weights.contains(&t.name) {
            continue;
        }
        let Some(values) = floats(t) else { continue };
        let old = std::mem::take(&mut t.name);
        t.name = names.fresh(&format!("{old}_fp16"));
        t.data_type = DataType::Float16 as i32;
        t.float_data.clear();
        t.raw_data = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let mut cast = node(
            "Cast",
            &names.fresh(&format!("{old}_cast")),
            &[&t.name],
            &old,
        );
        cast.attribute.push(attr_int("to", DataType::Float as i64));
        casts.push(cast);
        converted.insert(old);
    }
    graph.input.retain(|i| !converted.contains(&i.name));
    casts.append(&mut graph.node);
    graph.node = casts;
    Smaller {
        form: "fp16",
        weights: converted.len(),
        weight_scales: None,
        activations: 0,
        calibration_examples: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_quantise_per_channel_within_half_a_step() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.02, -0.01];
        let (q, scales) = quantize_weight(&w, &[2, 3], true);
        assert_eq!(scales.len(), 2);
        assert_eq!(q[1], -127);
        for (i, v) in w.iter().enumerate() {
            let back = f32::from(q[i]) * scales[i / 3];
            assert!(
                (back - v).abs() <= scales[i / 3] / 2.0 + 1e-7,
                "{back} vs {v}"
            );
        }
        let (_, one) = quantize_weight(&w, &[2, 3], false);
        assert_eq!(one, vec![1.0 / 127.0]);
    }

    #[test]
    fn mean_shift_sums_rounding_error_times_input_means_per_group() {
        // Two outputs, two inputs, 1x2 taps, one group: shift[m] = sum_c sum_t e[m,c,t] mean[c].
        let e = [0.1, 0.2, -0.1, 0.0, 0.5, 0.5, 0.0, -0.25];
        let shift = mean_shift(&e, &[2, 2, 1, 2], 1, &[2.0, 4.0]).unwrap();
        let want = [
            (0.1 + 0.2) * 2.0 - 0.1 * 4.0,
            (0.5 + 0.5) * 2.0 - 0.25 * 4.0,
        ];
        for (s, w) in shift.iter().zip(want) {
            assert!((s - w).abs() < 1e-6, "{shift:?}");
        }
        // Depthwise (two groups of one): each output sees only its own channel.
        let shift = mean_shift(&[1.0, 1.0, 2.0, 2.0], &[2, 1, 1, 2], 2, &[3.0, 5.0]).unwrap();
        assert!((shift[0] - 6.0).abs() < 1e-9 && (shift[1] - 20.0).abs() < 1e-9);
        // Shapes that do not fit are left alone.
        assert!(mean_shift(&e, &[2, 2, 1, 2], 1, &[1.0]).is_none());
        assert!(mean_shift(&e, &[3, 2, 1, 2], 1, &[1.0, 1.0]).is_none());
    }

    #[test]
    fn activation_ranges_cover_zero_and_their_ends() {
        let (scale, zero) = activation_params(0.0, 6.0);
        assert_eq!(zero, 0);
        assert!((scale * 255.0 - 6.0).abs() < 1e-5);
        let (scale, zero) = activation_params(-2.0, 2.0);
        let back = |q: u8| (f32::from(q) - f32::from(zero)) * scale;
        assert!((back(0) + 2.0).abs() < scale && (back(255) - 2.0).abs() < scale);
        assert_eq!(activation_params(3.0, 3.0).1, 0);
        assert_eq!(activation_params(0.0, 0.0), (1.0, 0));
    }
}
