//! The pose feature normalisation (see the module docs of [`crate::pose`]) as ONNX nodes appended
//! to a keypoint model, so that the model with its features is one frozen base.

use std::path::Path;

use graft_converters::onnx_builder::{
    attr_int, attr_ints, default_opset, encode, DataType, Dim, GraphBuilder, OPSET,
};
use tract_onnx::pb;

use super::parse_onnx;
use crate::{Error, Result};

/// The 17 COCO keypoints, in the order pose models report them.
pub const KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// Numbers per pose in `pose::features`: x, y and score of each of the 17 keypoints.
pub const FEATURE_DIM: usize = 51;

/// Smallest torso length `pose::normalise` divides by (in the keypoints' units; the ONNX graph uses
/// the same value in units of the model's input): a degenerate pose gives finite features.
pub const MIN_TORSO: f32 = 1e-6;

pub(crate) const LEFT_SHOULDER: usize = 5;
pub(crate) const LEFT_HIP: usize = 11;

/// Name of the pose features tensor `[N, 51]` in a [`feature_model`].
pub const FEATURES_TENSOR: &str = "pose_features";

/// The ONNX model `bytes` (one float input; opset 13, as graft's converters write) with the pose
/// features of its keypoint tensor `keypoints` (`[N, 1, 17, 3]` = (y, x, score), y and x in 0..1
/// of the input) appended as [`FEATURES_TENSOR`] `[N, 51]`, a further graph output. `path` names
/// the model in errors. Deterministic: the same bytes give the same model, wherever they are.
pub fn feature_model(bytes: &[u8], keypoints: &str, path: &Path) -> Result<Vec<u8>> {
    let model_err = |msg: String| Error::Model {
        path: path.to_path_buf(),
        msg,
    };
    let model = parse_onnx(bytes, path)?;
    let opset = default_opset(&model);
    if opset != Some(OPSET) {
        return Err(model_err(format!(
            "pose features are appended to opset-{OPSET} models, this one is {opset:?}"
        )));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| model_err("no graph".into()))?;
    if !graph
        .node
        .iter()
        .any(|n| n.output.iter().any(|o| o == keypoints))
    {
        return Err(model_err(format!(
            "no tensor `{keypoints}` to compute pose features from"
        )));
    }
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let [input] = inputs[..] else {
        return Err(model_err(format!(
            "a pose model has one input, this one has {}",
            inputs.len()
        )));
    };
    let dims = declared_dims(input).ok_or_else(|| {
        model_err(format!(
            "input `{}` is not a float tensor of known rank",
            input.name
        ))
    })?;
    let batch = dims.first().cloned().unwrap_or(Dim::Symbolic("N".into()));

    let mut g = GraphBuilder::new("pose-features");
    let image = g.input_f32(&input.name, &dims);
    let outputs = g.append_graph(graph, "", &[(input.name.as_str(), image.as_str())])?;
    for name in &outputs {
        g.output(name, DataType::Float, None);
    }
    let features = append_features(&mut g, keypoints);
    g.output_f32(&features, &[batch, Dim::Fixed(FEATURE_DIM as i64)]);
    let doc = format!(
        "graft's pose features: keypoints `{keypoints}` centred on the hip midpoint, in torso \
         lengths, with their scores -> `{FEATURES_TENSOR}` [N, {FEATURE_DIM}]"
    );
    let mut model = g.finish("graft", &doc);
    // The bytes (and so the base's sha256, which recognizers and caches record) depend only on
    // the keypoint model and this graph, not on where or by which graft version it was built.
    model.producer_version.clear();
    Ok(encode(&model))
}

/// The dims of a float tensor declaration (`None`: not a float tensor, or no shape).
fn declared_dims(info: &pb::ValueInfoProto) -> Option<Vec<Dim>> {
    use pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(tensor)) = info.r#type.as_ref()?.value.as_ref()
    else {
        return None;
    };
    if tensor.elem_type != DataType::Float as i32 {
        return None;
    }
    tensor
        .shape
        .as_ref()?
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(Value::DimValue(v)) if *v > 0 => Some(Dim::Fixed(*v)),
            Some(Value::DimParam(p)) if !p.is_empty() => Some(Dim::Symbolic(p.clone())),
            _ => Some(Dim::Symbolic(format!("d{i}"))),
        })
        .collect()
}

/// Appends the normalisation of `keypoints` (`[N, 1, 17, 3]` = (y, x, score)) to `g`: x and y
/// minus the hip midpoint, divided by Max(torso length, MIN_TORSO), then the scores, as
/// [`FEATURES_TENSOR`] `[N, 51]` (x, y, score per keypoint). Returns its name.
fn append_features(g: &mut GraphBuilder, keypoints: &str) -> String {
    let n = KEYPOINT_NAMES.len() as i64;
    let shape = g.initializer_i64("pose_keypoints_shape", &[3], &[-1, n, 3]);
    let k = g.node("Reshape", &[keypoints, &shape], "pose_keypoints", vec![]);
    // [N, 17, 1] each.
    let y = slice(g, &k, 2, 0, "pose_y");
    let x = slice(g, &k, 2, 1, "pose_x");
    let score = slice(g, &k, 2, 2, "pose_score");
    // Midpoints of a left/right pair: [N, 1, 1].
    let midpoint = |g: &mut GraphBuilder, t: &str, left: usize, name: &str| {
        let pair = slice_range(g, t, 1, left as i64, left as i64 + 2, name);
        g.node(
            "ReduceMean",
            &[&pair],
            name,
            vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)],
        )
    };
    let hip_x = midpoint(g, &x, LEFT_HIP, "pose_hip_x");
    let hip_y = midpoint(g, &y, LEFT_HIP, "pose_hip_y");
    let shoulder_x = midpoint(g, &x, LEFT_SHOULDER, "pose_shoulder_x");
    let shoulder_y = midpoint(g, &y, LEFT_SHOULDER, "pose_shoulder_y");
    let dx = g.node("Sub", &[&shoulder_x, &hip_x], "pose_torso_dx", vec![]);
    let dy = g.node("Sub", &[&shoulder_y, &hip_y], "pose_torso_dy", vec![]);
    let dx2 = g.node("Mul", &[&dx, &dx], "pose_torso_dx2", vec![]);
    let dy2 = g.node("Mul", &[&dy, &dy], "pose_torso_dy2", vec![]);
    let squared = g.node("Add", &[&dx2, &dy2], "pose_torso_squared", vec![]);
    let length = g.node("Sqrt", &[&squared], "pose_torso_length", vec![]);
    let floor = g.initializer_f32("pose_min_torso", &[], &[MIN_TORSO]);
    let torso = g.node("Max", &[&length, &floor], "pose_torso", vec![]);
    let centred_x = g.node("Sub", &[&x, &hip_x], "pose_centred_x", vec![]);
    let centred_y = g.node("Sub", &[&y, &hip_y], "pose_centred_y", vec![]);
    let nx = g.node("Div", &[&centred_x, &torso], "pose_normalised_x", vec![]);
    let ny = g.node("Div", &[&centred_y, &torso], "pose_normalised_y", vec![]);
    let joined = g.node(
        "Concat",
        &[&nx, &ny, &score],
        "pose_normalised",
        vec![attr_int("axis", 2)],
    );
    let flat = g.initializer_i64("pose_features_shape", &[2], &[-1, FEATURE_DIM as i64]);
    if g.reserve(FEATURES_TENSOR) {
        g.node_reserved("Reshape", &[&joined, &flat], FEATURES_TENSOR, vec![]);
        FEATURES_TENSOR.to_string()
    } else {
        // The model already has a tensor of that name: the builder picks another.
        g.node("Reshape", &[&joined, &flat], FEATURES_TENSOR, vec![])
    }
}

/// `t[.., i..i + 1, ..]` along `axis`.
fn slice(g: &mut GraphBuilder, t: &str, axis: i64, i: i64, name: &str) -> String {
    slice_range(g, t, axis, i, i + 1, name)
}

/// `t[.., start..end, ..]` along `axis`.
fn slice_range(
    g: &mut GraphBuilder,
    t: &str,
    axis: i64,
    start: i64,
    end: i64,
    name: &str,
) -> String {
    let starts = g.initializer_i64(&format!("{name}_start"), &[1], &[start]);
    let ends = g.initializer_i64(&format!("{name}_end"), &[1], &[end]);
    let axes = g.initializer_i64(&format!("{name}_axis"), &[1], &[axis]);
    g.node(
        "Slice",
        &[t, &starts, &ends, &axes],
        &format!("{name}_slice"),
        vec![],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::{features, normalise, Keypoint};
    use tract_onnx::prelude::*;

    /// A model that is only an Identity from keypoints to `keypoints`, with the features added.
    fn features_only() -> Vec<u8> {
        let mut g = GraphBuilder::new("keypoints");
        let batch = Dim::Symbolic("N".into());
        let dims = [batch, Dim::Fixed(1), Dim::Fixed(17), Dim::Fixed(3)];
        let input = g.input_f32("raw", &dims);
        let out = g.node("Identity", &[&input], "keypoints", vec![]);
        g.output_f32(&out, &dims);
        let bytes = encode(&g.finish("test", ""));
        feature_model(&bytes, "keypoints", Path::new("test.onnx")).unwrap()
    }

    /// Runs the features-only model on poses given as (y, x, score) per keypoint.
    fn run(model: &[u8], poses: &[Vec<[f32; 3]>]) -> Vec<Vec<f32>> {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &model[..])
            .unwrap()
            .with_outputs_by_name([FEATURES_TENSOR])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let flat: Vec<f32> = poses.iter().flatten().flatten().copied().collect();
        let input = tract_ndarray::Array4::from_shape_vec((poses.len(), 1, 17, 3), flat).unwrap();
        let out = plan.run(tvec!(input.into_tensor().into())).unwrap();
        let view = out[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(view.shape(), [poses.len(), 51]);
        view.rows().into_iter().map(|r| r.to_vec()).collect()
    }

    fn keypoints(yxs: &[[f32; 3]]) -> Vec<Keypoint> {
        KEYPOINT_NAMES
            .iter()
            .zip(yxs)
            .map(|(&name, &[y, x, score])| Keypoint { name, x, y, score })
            .collect()
    }

    #[test]
    fn onnx_features_equal_the_rust_features() {
        let model = features_only();
        let mut poses: Vec<Vec<[f32; 3]>> = (0..3)
            .map(|p| {
                (0..17)
                    .map(|i| {
                        let t = (i * 7 + p * 3) as f32;
                        [
                            0.1 + 0.05 * (t % 13.0),
                            0.9 - 0.04 * (t % 17.0),
                            0.05 * i as f32,
                        ]
                    })
                    .collect()
            })
            .collect();
        // A degenerate torso: shoulders on the hips.
        let mut flat = poses[0].clone();
        flat[5] = flat[11];
        flat[6] = flat[12];
        poses.push(flat);
        let got = run(&model, &poses);
        for (pose, onnx) in poses.iter().zip(&got) {
            let want = features(&normalise(&keypoints(pose)).unwrap());
            assert!(onnx.iter().all(|v| v.is_finite()), "{onnx:?}");
            for (a, b) in onnx.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn the_feature_model_depends_only_on_the_bytes() {
        let mut g = GraphBuilder::new("keypoints");
        let dims = [Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(17), Dim::Fixed(3)];
        let input = g.input_f32("raw", &dims);
        let out = g.node("Identity", &[&input], "keypoints", vec![]);
        g.output_f32(&out, &dims);
        let bytes = encode(&g.finish("test", ""));
        let a = feature_model(&bytes, "keypoints", Path::new("/a/model.onnx")).unwrap();
        let b = feature_model(&bytes, "keypoints", Path::new("/b/other.onnx")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_models_are_errors() {
        let path = Path::new("x.onnx");
        let err = feature_model(&features_only(), "nope", path).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(feature_model(b"junk", "keypoints", path).is_err());
    }
}
