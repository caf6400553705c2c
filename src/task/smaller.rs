//! A smaller export (int8, fp16) measured against the float one on a labelled folder's
//! validation split: accuracy, top-1 agreement, file size and milliseconds per image, in tract
//! and in ONNX Runtime, both files run as [`ExportedClassifier`]s (the graph after graft's own
//! preprocessing, one image at a time).

use std::path::Path;
use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD, Axis};

use super::exported::ExportedClassifier;
use crate::base::{Backend, EngineOptions};
use crate::embeddings::prepare_file;
use crate::export::{Comparison, FolderSplit, FormFigures};
use crate::input::InputSpec;
use crate::{Error, Result};

/// One example as a batch of one.
fn batch(x: &ArrayD<f32>) -> ArrayViewD<'_, f32> {
    x.view().insert_axis(Axis(0))
}

/// One file's top-1 answers on `inputs` and its mean milliseconds per image.
fn run(file: &ExportedClassifier, inputs: &[ArrayD<f32>]) -> Result<(Vec<usize>, f64)> {
    if let Some(first) = inputs.first() {
        // The first run pays for lazy set-up in either engine.
        file.probabilities(batch(first))?;
    }
    let start = Instant::now();
    let mut top = Vec::with_capacity(inputs.len());
    for x in inputs {
        let probs = file.probabilities(batch(x))?;
        let row = probs.row(0);
        let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        top.push(best);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / inputs.len().max(1) as f64;
    Ok((top, ms))
}

fn fraction(hits: usize, n: usize) -> f64 {
    hits as f64 / n.max(1) as f64
}

/// What one engine gives for both files: (float top-1, its ms), (smaller top-1, its ms).
type EngineRun = ((Vec<usize>, f64), (Vec<usize>, f64));

fn on_engine(
    float: &Path,
    smaller: &Path,
    engine: &EngineOptions,
    inputs: &[ArrayD<f32>],
) -> Result<(Backend, EngineRun)> {
    let f = ExportedClassifier::load(float, engine)?;
    let s = ExportedClassifier::load(smaller, engine)?;
    Ok((f.backend(), (run(&f, inputs)?, run(&s, inputs)?)))
}

/// `smaller` (form `form`) against `float` on `split.val` (prepared as `spec` says), the folder
/// `data`. ONNX Runtime is the one `--backend auto` finds; without it, its figures are `None`
/// and the note says why.
pub(super) fn compare(
    float: &Path,
    smaller: &Path,
    form: &str,
    data: &Path,
    split: &FolderSplit,
    spec: &InputSpec,
) -> Result<Comparison> {
    let (inputs, truth): (Vec<ArrayD<f32>>, Vec<usize>) = split
        .val
        .iter()
        .filter_map(|(path, label)| prepare_file(path, spec).ok().map(|x| (x, *label)))
        .unzip();
    if inputs.is_empty() {
        return Err(Error::Dataset(format!(
            "no validation example of {} could be read to compare the exports",
            data.display()
        )));
    }
    let n = inputs.len();
    let accuracy =
        |top: &[usize]| fraction(top.iter().zip(&truth).filter(|(a, b)| a == b).count(), n);
    let agreement =
        |a: &[usize], b: &[usize]| fraction(a.iter().zip(b).filter(|(x, y)| x == y).count(), n);
    let tract = EngineOptions {
        backend: Backend::Tract,
        ..EngineOptions::default()
    };
    let (_, ((tf, tf_ms), (ts, ts_ms))) = on_engine(float, smaller, &tract, &inputs)?;
    let (ort, note) = match on_engine(float, smaller, &EngineOptions::default(), &inputs) {
        Ok((Backend::Ort, run)) => (Some(run), None),
        Ok(_) => (
            None,
            Some("ONNX Runtime's library was not found".to_string()),
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| Error::io(p, e))
    };
    let (float_bytes, smaller_bytes) = (size(float)?, size(smaller)?);
    let figures =
        |form: &str, bytes, top: &[usize], ms, ort: Option<&(Vec<usize>, f64)>| FormFigures {
            form: form.to_string(),
            bytes,
            accuracy: accuracy(top),
            ms_tract: ms,
            accuracy_onnxruntime: ort.map(|(t, _)| accuracy(t)),
            ms_onnxruntime: ort.map(|(_, ms)| *ms),
        };
    Ok(Comparison {
        data: data.to_path_buf(),
        examples: n,
        same_split_as_training: split.same_as_training,
        float: figures(
            "float32",
            float_bytes,
            &tf,
            tf_ms,
            ort.as_ref().map(|o| &o.0),
        ),
        smaller: figures(form, smaller_bytes, &ts, ts_ms, ort.as_ref().map(|o| &o.1)),
        agreement: agreement(&tf, &ts),
        agreement_onnxruntime: ort.as_ref().map(|(f, s)| agreement(&f.0, &s.0)),
        size_ratio: smaller_bytes as f64 / float_bytes.max(1) as f64,
        onnxruntime_note: note,
    })
}
