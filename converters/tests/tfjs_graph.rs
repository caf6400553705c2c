//! TF.js graph models built by hand, converted and run with tract, against values worked out from
//! the TensorFlow op definitions.

mod tfjs_util;

use graft_converters::tfjs::convert;
use graft_converters::Error;
use serde_json::json;
use tfjs_util::*;

#[test]
fn resize_fused_conv_concat_and_index_ops() {
    let nodes = vec![
        placeholder("x", &[1, 2, 2, 1], "DT_FLOAT"),
        node(
            "r",
            "ResizeBilinear",
            &["x", "size"],
            json!({"align_corners": {"b": true}, "half_pixel_centers": {"b": false}}),
        ),
        node(
            "c",
            "_FusedConv2D",
            &["r", "w", "b"],
            json!({
                "padding": {"s": "VkFMSUQ="}, "data_format": {"s": "TkhXQw=="},
                "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}}, "num_args": {"i": "1"}
            }),
        ),
        node("cat", "ConcatV2", &["c", "c:0", "axis"], json!({})),
        node("out1", "Identity", &["cat"], json!({})),
        node(
            "fd",
            "FloorDiv",
            &["num", "den"],
            json!({"T": {"type": "DT_INT32"}}),
        ),
        node(
            "out2",
            "Cast",
            &["fd"],
            json!({"DstT": {"type": "DT_FLOAT"}}),
        ),
        node(
            "u",
            "Unpack",
            &["x"],
            json!({"axis": {"i": "1"}, "num": {"i": "2"}}),
        ),
        node(
            "p",
            "Pack",
            &["u:1", "u", "^x"],
            json!({"axis": {"i": "1"}}),
        ),
        node("out3", "Identity", &["p"], json!({})),
    ];
    let (_dir, path) = write_graph(
        nodes,
        &[
            Konst::I32("size", vec![2], vec![3, 3]),
            Konst::F32("w", vec![1, 1, 1, 2], vec![1.0, -1.0]),
            Konst::F32("b", vec![2], vec![0.5, 0.5]),
            Konst::I32("axis", vec![], vec![-1]),
            Konst::I32("num", vec![3], vec![-7, 7, -8]),
            Konst::I32("den", vec![], vec![2]),
        ],
    );
    let onnx = convert(&path).unwrap();
    let x = vec![0.0, 2.0, 4.0, 6.0];
    let out = run(&onnx, &["out1", "out2", "out3"], &[1, 2, 2, 1], x.clone());
    // align_corners: corners kept, edges and centre averaged.
    let r = [0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0];
    let mut want = Vec::new();
    for v in r {
        let c = [(v + 0.5f32).max(0.0), (0.5 - v).max(0.0f32)];
        want.extend([c[0], c[1], c[0], c[1]]);
    }
    assert_eq!(out[0].0, [1, 3, 3, 4]);
    assert_close(&out[0].1, &want, 1e-5, "out1");
    assert_eq!(out[1].1, [-4.0, 3.0, -4.0], "floor division rounds down");
    assert_eq!(out[2].0, [1, 2, 2, 1]);
    assert_eq!(
        out[2].1,
        [4.0, 6.0, 0.0, 2.0],
        "rows swapped by unpack/pack"
    );
}

/// An int32 image input read only through a cast to float becomes a float32 input.
#[test]
fn int_image_input_cast_to_float_becomes_a_float_input() {
    let nodes = vec![
        placeholder("input", &[1, 2, 2, 3], "DT_INT32"),
        node(
            "f",
            "Cast",
            &["input"],
            json!({"DstT": {"type": "DT_FLOAT"}, "SrcT": {"type": "DT_INT32"}}),
        ),
        node("y", "Mul", &["f", "half"], json!({})),
    ];
    let (_dir, path) = write_graph(nodes, &[Konst::F32("half", vec![], vec![0.5])]);
    let onnx = convert(&path).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let out = run(&onnx, &["y"], &[1, 2, 2, 3], x.clone());
    let want: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
    assert_eq!(out[0].1, want);
}

#[test]
fn unsupported_ops_are_listed_with_counts() {
    let nodes = vec![
        placeholder("x", &[1, 4], "DT_FLOAT"),
        node("a", "Einsum", &["x"], json!({})),
        node("b", "Einsum", &["a"], json!({})),
        node("c", "TopKV2", &["b"], json!({})),
    ];
    let (_dir, path) = write_graph(nodes, &[]);
    let err = convert(&path).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("Einsum (2), TopKV2 (1)"), "{err}");
}

#[test]
fn broken_graphs_are_errors() {
    let cases = [
        (
            vec![node("y", "Relu", &["missing"], json!({}))],
            "has no producer",
        ),
        (
            vec![
                node("a", "Relu", &["b"], json!({})),
                node("b", "Relu", &["a"], json!({})),
            ],
            "cycle",
        ),
        (
            vec![
                placeholder("x", &[1, 4], "DT_FLOAT"),
                node("x", "Relu", &["x"], json!({})),
            ],
            "same name",
        ),
        (
            vec![
                placeholder("x", &[1, 2, 2, 1], "DT_FLOAT"),
                node("c", "Conv2D", &["x", "x"], json!({})),
            ],
            "filter must be a constant",
        ),
        (
            vec![node("k", "Const", &[], json!({}))],
            "no value in the weights",
        ),
    ];
    for (nodes, want) in cases {
        let (_dir, path) = write_graph(nodes, &[]);
        let err = convert(&path).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// A classifier tail: max pool, "same" average pool, spatial mean, fused matmul with bias and
/// ReLU, padding.
#[test]
fn pooling_mean_matmul_and_pad() {
    let pool = |op: &str, name: &str, input: &str, k: &str, s: &str, pad: &str| {
        node(
            name,
            op,
            &[input],
            json!({
                "ksize": {"list": {"i": ["1", k, k, "1"]}},
                "strides": {"list": {"i": ["1", s, s, "1"]}},
                "padding": {"s": pad}, "data_format": {"s": "TkhXQw=="}
            }),
        )
    };
    let nodes = vec![
        placeholder("x", &[1, 4, 4, 2], "DT_FLOAT"),
        pool("MaxPool", "mp", "x", "2", "2", "VkFMSUQ="),
        pool("AvgPool", "ap", "mp", "3", "1", "U0FNRQ=="),
        node(
            "mean",
            "Mean",
            &["ap", "axes"],
            json!({"keep_dims": {"b": false}}),
        ),
        node(
            "fc",
            "_FusedMatMul",
            &["mean", "w", "b"],
            json!({"fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}}, "transpose_b": {"b": false}}),
        ),
        node("padded", "Pad", &["fc", "paddings"], json!({})),
    ];
    let (_dir, path) = write_graph(
        nodes,
        &[
            Konst::I32("axes", vec![2], vec![1, 2]),
            Konst::F32("w", vec![2, 3], vec![1.0, 0.0, -1.0, 0.0, 1.0, -1.0]),
            Konst::F32("b", vec![3], vec![0.0, 0.5, 0.0]),
            Konst::I32("paddings", vec![2, 2], vec![0, 0, 1, 2]),
        ],
    );
    let onnx = convert(&path).unwrap();
    let x: Vec<f32> = (0..32).map(|i| ((i * 7) % 11) as f32).collect();
    let out = run(&onnx, &["mp", "mean", "padded"], &[1, 4, 4, 2], x.clone());
    // Max over each 2x2 block, per channel (x is NHWC: index (r * 4 + c) * 2 + ch).
    let mut mp = [0f32; 8];
    for (i, m) in mp.iter_mut().enumerate() {
        let (br, bc, ch) = (i / 4, (i / 2) % 2, i % 2);
        *m = (0..4)
            .map(|k| x[((2 * br + k / 2) * 4 + 2 * bc + k % 2) * 2 + ch])
            .fold(f32::MIN, f32::max);
    }
    assert_eq!(out[0].0, [1, 2, 2, 2], "held NCHW inside");
    let nchw: Vec<f32> = (0..8).map(|i| mp[(i % 4) * 2 + i / 4]).collect();
    assert_eq!(out[0].1, nchw);
    // A 3x3 "same" average over a 2x2 map covers all four cells (padding not counted) everywhere,
    // so the mean is the per-channel average.
    let mean: Vec<f32> = (0..2)
        .map(|ch| (0..4).map(|p| mp[p * 2 + ch]).sum::<f32>() / 4.0)
        .collect();
    assert_close(&out[1].1, &mean, 1e-5, "mean");
    let fc = [
        (mean[0]).max(0.0),
        (mean[1] + 0.5).max(0.0),
        (-mean[0] - mean[1]).max(0.0),
    ];
    assert_eq!(out[2].0, [1, 6]);
    assert_close(
        &out[2].1,
        &[0.0, fc[0], fc[1], fc[2], 0.0, 0.0],
        1e-5,
        "padded",
    );
}

/// Batch norm after a convolution (so on an NCHW-held tensor), then an explicit transpose.
#[test]
fn fused_batch_norm_and_transpose() {
    let nodes = vec![
        placeholder("x", &[1, 1, 2, 2], "DT_FLOAT"),
        node(
            "conv",
            "Conv2D",
            &["x", "k"],
            json!({"padding": {"s": "VkFMSUQ="}, "strides": {"list": {"i": ["1", "1", "1", "1"]}}}),
        ),
        node(
            "bn",
            "FusedBatchNormV3",
            &["conv", "gamma", "beta", "mean", "var"],
            json!({"epsilon": {"f": 0.0}, "is_training": {"b": false}}),
        ),
        node("t", "Transpose", &["bn", "perm"], json!({})),
    ];
    let (_dir, path) = write_graph(
        nodes,
        &[
            Konst::F32("k", vec![1, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]),
            Konst::F32("gamma", vec![2], vec![2.0, 1.0]),
            Konst::F32("beta", vec![2], vec![0.0, 10.0]),
            Konst::F32("mean", vec![2], vec![1.0, 0.0]),
            Konst::F32("var", vec![2], vec![4.0, 1.0]),
            Konst::I32("perm", vec![4], vec![0, 3, 1, 2]),
        ],
    );
    let onnx = convert(&path).unwrap();
    let out = run(&onnx, &["t"], &[1, 1, 2, 2], vec![3.0, 4.0, 5.0, 6.0]);
    // Channel 0: (x - 1) / 2 * 2; channel 1: x + 10; then NCHW order by the explicit transpose.
    assert_eq!(out[0].0, [1, 2, 1, 2]);
    assert_close(&out[0].1, &[2.0, 4.0, 14.0, 16.0], 1e-6, "t");
}
