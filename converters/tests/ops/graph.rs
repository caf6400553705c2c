//! TF.js graph models: one op each, on a float input `x`.

use graft_converters::tfjs::convert;
use serde_json::{json, Value};

use crate::reference as r;
use crate::tfjs_util::*;

/// A string attribute (base64, as in model.json).
fn s(v: &str) -> Value {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in v.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    json!({ "s": out })
}

fn ints(v: &[i64]) -> Value {
    let v: Vec<String> = v.iter().map(i64::to_string).collect();
    json!({"list": {"i": v}})
}

fn fused(ops: &[&str]) -> Value {
    let v: Vec<Value> = ops.iter().map(|o| s(o)["s"].clone()).collect();
    json!({"list": {"s": v}})
}

fn ty(t: &str) -> Value {
    json!({ "type": t })
}

/// Converts `nodes` (after a float placeholder `x` of shape `xs`) with `consts` and runs it on
/// `input`; returns every output.
fn run_graph(
    nodes: Vec<Value>,
    consts: &[Konst],
    xs: &[usize],
    input: &[f32],
) -> Vec<(Vec<usize>, Vec<f32>)> {
    let dims: Vec<i64> = xs.iter().map(|&d| d as i64).collect();
    let mut all = vec![placeholder("x", &dims, "DT_FLOAT")];
    all.extend(nodes);
    let (_dir, path) = write_graph(all, consts);
    let onnx = convert(&path).unwrap();
    run_all(&onnx, xs, input.to_vec())
}

/// `y = op(x)` (one node with `attr`) against `f` elementwise, on `input` of shape [2, 3].
fn unary(op: &str, attr: Value, input: &[f32], f: impl Fn(f32) -> f32) {
    let out = run_graph(vec![node("y", op, &["x"], attr)], &[], &[2, 3], input);
    let want: Vec<f32> = input.iter().map(|&v| f(v)).collect();
    assert_eq!(out[0].0, [2, 3], "{op}");
    assert_close(&out[0].1, &want, 1e-5, op);
}

/// Six inputs around zero.
fn signed() -> Vec<f32> {
    vec![-2.5, -1.0, -0.25, 0.0, 0.75, 3.0]
}

/// Six positive inputs.
fn positive() -> Vec<f32> {
    vec![0.25, 0.5, 1.0, 2.0, 4.0, 9.0]
}

/// `y = op(x, k)` with a constant `k` of shape [3] broadcast over `x` [2, 3].
fn binary(op: &str, f: impl Fn(f32, f32) -> f32) {
    let k = [0.5, -2.0, 4.0];
    let input = signed();
    let out = run_graph(
        vec![node("y", op, &["x", "k"], json!({"T": ty("DT_FLOAT")}))],
        &[Konst::F32("k", vec![3], k.to_vec())],
        &[2, 3],
        &input,
    );
    let want: Vec<f32> = input
        .iter()
        .enumerate()
        .map(|(i, &v)| f(v, k[i % 3]))
        .collect();
    assert_close(&out[0].1, &want, 1e-5, op);
}

/// A float input, NHWC [1, 5, 4, 2].
const IMG: [usize; 4] = [1, 5, 4, 2];

fn img() -> Vec<f32> {
    values(IMG.iter().product(), 11)
}

/// A convolution-like node `op` on `x` [1, 5, 4, 2] with filter `w` of shape `ws` (HWIO).
#[allow(clippy::too_many_arguments)]
fn conv_case(
    op: &str,
    ws: [usize; 4],
    stride: usize,
    dilation: usize,
    same: bool,
    bias_and: Option<&str>,
    multiplier: Option<usize>,
) {
    let w = values(ws.iter().product(), 12);
    let oc = multiplier.map_or(ws[3], |m| ws[2] * m);
    let bias = values(oc, 13);
    let mut attr = json!({
        "padding": s(if same { "SAME" } else { "VALID" }),
        "data_format": s("NHWC"),
        "strides": ints(&[1, stride as i64, stride as i64, 1]),
        "dilations": ints(&[1, dilation as i64, dilation as i64, 1]),
    });
    let mut inputs = vec!["x", "w"];
    if let Some(act) = bias_and {
        attr["fused_ops"] = fused(&["BiasAdd", act]);
        inputs.push("b");
    }
    let input = img();
    let out = run_graph(
        vec![node("y", op, &inputs, attr)],
        &[
            Konst::F32("w", ws.to_vec(), w.clone()),
            Konst::F32("b", vec![oc], bias.clone()),
        ],
        &IMG,
        &input,
    );
    let b = bias_and.map(|_| &bias[..]);
    let (mut want, os) = r::conv(&input, IMG, &w, ws, b, stride, dilation, same, multiplier);
    match bias_and {
        Some("Relu") => want.iter_mut().for_each(|v| *v = v.max(0.0)),
        Some("Relu6") => want.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        _ => {}
    }
    assert_eq!(out[0].0, os, "{op}");
    assert_close(&out[0].1, &want, 1e-4, op);
}

fn pool_case(op: &str, max: bool) {
    let input = img();
    let attr = json!({
        "padding": s("SAME"), "data_format": s("NHWC"),
        "ksize": ints(&[1, 3, 3, 1]), "strides": ints(&[1, 2, 2, 1]),
    });
    let out = run_graph(vec![node("y", op, &["x"], attr)], &[], &IMG, &input);
    let (want, os) = r::pool(&input, IMG, [3, 3], [2, 2], true, max);
    assert_eq!(out[0].0, os, "{op}");
    assert_close(&out[0].1, &want, 1e-5, op);
}

fn batch_norm_case(op: &str) {
    let input = img();
    let p: Vec<Vec<f32>> = vec![
        vec![2.0, 0.5],
        vec![0.0, 1.0],
        vec![0.5, -0.5],
        vec![4.0, 0.25],
    ];
    let names = ["gamma", "beta", "mean", "var"];
    let consts: Vec<Konst> = names
        .iter()
        .zip(&p)
        .map(|(n, v)| Konst::F32(n, vec![2], v.clone()))
        .collect();
    let attr = json!({"epsilon": {"f": 0.001}, "data_format": s("NHWC")});
    let out = run_graph(
        vec![node("y", op, &["x", "gamma", "beta", "mean", "var"], attr)],
        &consts,
        &IMG,
        &input,
    );
    let want = r::batch_norm(&input, 2, [&p[0], &p[1], &p[2], &p[3]], 0.001);
    assert_close(&out[0].1, &want, 1e-4, op);
}

fn identity_case(op: &str) {
    unary(op, json!({}), &signed(), |v| v);
}

fn pad_case(op: &str, value: Option<f32>) {
    let input = signed();
    let mut inputs = vec!["x", "p"];
    let mut consts = vec![Konst::I32("p", vec![2, 2], vec![0, 1, 2, 0])];
    if let Some(v) = value {
        inputs.push("v");
        consts.push(Konst::F32("v", vec![], vec![v]));
    }
    let out = run_graph(
        vec![node("y", op, &inputs, json!({}))],
        &consts,
        &[2, 3],
        &input,
    );
    // [2, 3] -> [3, 5]: one row after, two columns before.
    let fill = value.unwrap_or(0.0);
    let mut want = vec![fill; 15];
    for i in 0..2 {
        for j in 0..3 {
            want[i * 5 + j + 2] = input[i * 3 + j];
        }
    }
    assert_eq!(out[0].0, [3, 5], "{op}");
    assert_close(&out[0].1, &want, 0.0, op);
}

fn matmul_case(op: &str, bias_relu: bool) {
    let input = signed();
    let w = values(6, 21);
    let b = [0.5, -0.5];
    let mut attr = json!({"transpose_a": {"b": false}, "transpose_b": {"b": false}});
    let mut inputs = vec!["x", "w"];
    if bias_relu {
        attr["fused_ops"] = fused(&["BiasAdd", "Relu"]);
        inputs.push("b");
    }
    let out = run_graph(
        vec![node("y", op, &inputs, attr)],
        &[
            Konst::F32("w", vec![3, 2], w.clone()),
            Konst::F32("b", vec![2], b.to_vec()),
        ],
        &[2, 3],
        &input,
    );
    let mut want = r::matmul(&input, &w, 3, 2);
    if bias_relu {
        want = want
            .iter()
            .enumerate()
            .map(|(i, v)| (v + b[i % 2]).max(0.0))
            .collect();
    }
    assert_eq!(out[0].0, [2, 2], "{op}");
    assert_close(&out[0].1, &want, 1e-5, op);
}

op_tests! {
    "Placeholder" => placeholder_with_a_free_batch {
        let mut n = vec![node("y", "Identity", &["x"], json!({}))];
        let mut all = vec![placeholder("x", &[-1, 3], "DT_FLOAT")];
        all.append(&mut n);
        let (_dir, path) = write_graph(all, &[]);
        let input: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let out = run_all(&convert(&path).unwrap(), &[3, 3], input.clone());
        assert_eq!(out[0], (vec![3, 3], input));
    }
    "Const" => constant_operand {
        let out = run_graph(
            vec![node("y", "Mul", &["x", "k"], json!({}))],
            &[Konst::F32("k", vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
            &[2, 3],
            &[1.0; 6],
        );
        assert_eq!(out[0].1, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
    "PlaceholderWithDefault" => placeholder_with_default_runs_its_default {
        // A frozen graph's feedable default (a bottleneck input) passes its default on.
        let out = run_graph(
            vec![
                node("d", "PlaceholderWithDefault", &["x"], json!({})),
                node("y", "Mul", &["d", "k"], json!({})),
            ],
            &[Konst::F32("k", vec![3], vec![1.0, -2.0, 0.5])],
            &[1, 3],
            &[4.0, 5.0, 6.0],
        );
        assert_eq!(out[0].1, [4.0, -10.0, 3.0]);
    }
    "Identity" => identity { identity_case("Identity") }
    "StopGradient" => stop_gradient { identity_case("StopGradient") }
    "Snapshot" => snapshot { identity_case("Snapshot") }
    "Conv2D" => conv2d_valid_dilated { conv_case("Conv2D", [2, 2, 2, 3], 1, 2, false, None, None) }
    "_FusedConv2D" => fused_conv2d_same_stride_2_bias_relu {
        conv_case("_FusedConv2D", [3, 3, 2, 3], 2, 1, true, Some("Relu"), None)
    }
    "DepthwiseConv2dNative" => depthwise_conv_with_multiplier {
        conv_case("DepthwiseConv2dNative", [3, 3, 2, 2], 1, 1, true, None, Some(2))
    }
    "FusedDepthwiseConv2dNative" => fused_depthwise_conv_bias_relu6 {
        conv_case("FusedDepthwiseConv2dNative", [2, 2, 2, 1], 2, 1, false, Some("Relu6"), Some(1))
    }
    "BiasAdd" => bias_add { binary("BiasAdd", |a, b| a + b) }
    "Add" => add { binary("Add", |a, b| a + b) }
    "AddV2" => add_v2 { binary("AddV2", |a, b| a + b) }
    "Sub" => sub { binary("Sub", |a, b| a - b) }
    "Mul" => mul { binary("Mul", |a, b| a * b) }
    "RealDiv" => real_div { binary("RealDiv", |a, b| a / b) }
    "Div" => div { binary("Div", |a, b| a / b) }
    "FloorDiv" => floor_div_of_floats { binary("FloorDiv", |a, b| (a / b).floor()) }
    "Maximum" => maximum { binary("Maximum", f32::max) }
    "Minimum" => minimum { binary("Minimum", f32::min) }
    "SquaredDifference" => squared_difference { binary("SquaredDifference", |a, b| (a - b) * (a - b)) }
    "Relu" => relu { unary("Relu", json!({}), &signed(), |v| v.max(0.0)) }
    "Relu6" => relu6 {
        unary("Relu6", json!({}), &[-1.0, 0.5, 5.0, 6.0, 7.5, 20.0], |v| v.clamp(0.0, 6.0))
    }
    "Elu" => elu { unary("Elu", json!({}), &signed(), |v| if v > 0.0 { v } else { v.exp() - 1.0 }) }
    "Selu" => selu {
        unary("Selu", json!({}), &signed(), |v| {
            r::SELU_SCALE * if v > 0.0 { v } else { r::SELU_ALPHA * (v.exp() - 1.0) }
        })
    }
    "Sigmoid" => sigmoid { unary("Sigmoid", json!({}), &signed(), |v| 1.0 / (1.0 + (-v).exp())) }
    "Tanh" => tanh { unary("Tanh", json!({}), &signed(), f32::tanh) }
    "Sqrt" => sqrt { unary("Sqrt", json!({}), &positive(), f32::sqrt) }
    "Rsqrt" => rsqrt { unary("Rsqrt", json!({}), &positive(), |v| 1.0 / v.sqrt()) }
    "Exp" => exp { unary("Exp", json!({}), &signed(), f32::exp) }
    "Log" => log { unary("Log", json!({}), &positive(), f32::ln) }
    "Neg" => neg { unary("Neg", json!({}), &signed(), |v| -v) }
    "Abs" => abs { unary("Abs", json!({}), &signed(), f32::abs) }
    "Floor" => floor { unary("Floor", json!({}), &signed(), f32::floor) }
    "Square" => square { unary("Square", json!({}), &signed(), |v| v * v) }
    "Softmax" => softmax_over_the_last_axis {
        let input = signed();
        let out = run_graph(vec![node("y", "Softmax", &["x"], json!({}))], &[], &[2, 3], &input);
        assert_close(&out[0].1, &r::softmax(&input, 3), 1e-6, "softmax");
    }
    "Cast" => cast_to_int_truncates {
        let nodes = vec![
            node("i", "Cast", &["x"], json!({"DstT": ty("DT_INT32")})),
            node("y", "Cast", &["i"], json!({"DstT": ty("DT_FLOAT")})),
        ];
        let out = run_graph(nodes, &[], &[2, 3], &signed());
        assert_eq!(out[0].1, [-2.0, -1.0, 0.0, 0.0, 0.0, 3.0]);
    }
    "Reshape" => reshape {
        let input = signed();
        let out = run_graph(
            vec![node("y", "Reshape", &["x", "shape"], json!({}))],
            &[Konst::I32("shape", vec![2], vec![3, -1])],
            &[2, 3],
            &input,
        );
        assert_eq!(out[0], (vec![3, 2], input));
    }
    "ExpandDims" => expand_dims {
        let out = run_graph(
            vec![node("y", "ExpandDims", &["x", "axis"], json!({}))],
            &[Konst::I32("axis", vec![], vec![1])],
            &[2, 3],
            &signed(),
        );
        assert_eq!(out[0], (vec![2, 1, 3], signed()));
    }
    "Squeeze" => squeeze {
        let out = run_graph(
            vec![node("y", "Squeeze", &["x"], json!({"squeeze_dims": ints(&[1])}))],
            &[],
            &[2, 1, 3],
            &signed(),
        );
        assert_eq!(out[0], (vec![2, 3], signed()));
    }
    "ConcatV2" => concat_v2 {
        let nodes = vec![
            node("n", "Neg", &["x"], json!({})),
            node("y", "ConcatV2", &["x", "n", "axis"], json!({})),
        ];
        let input = signed();
        let out = run_graph(nodes, &[Konst::I32("axis", vec![], vec![1])], &[2, 3], &input);
        let mut want = vec![];
        for row in input.chunks(3) {
            want.extend(row);
            want.extend(row.iter().map(|v| -v));
        }
        assert_eq!(out[0], (vec![2, 6], want));
    }
    "Pack" => pack {
        let nodes = vec![
            node("n", "Neg", &["x"], json!({})),
            node("y", "Pack", &["x", "n"], json!({"axis": {"i": "1"}})),
        ];
        let input = signed();
        let out = run_graph(nodes, &[], &[2, 3], &input);
        let mut want = vec![];
        for row in input.chunks(3) {
            want.extend(row);
            want.extend(row.iter().map(|v| -v));
        }
        assert_eq!(out[0], (vec![2, 2, 3], want));
    }
    "Unpack" => unpack {
        let nodes = vec![
            node("y", "Unpack", &["x"], json!({"axis": {"i": "0"}, "num": {"i": "2"}})),
            node("a", "Identity", &["y"], json!({})),
            node("b", "Identity", &["y:1"], json!({})),
        ];
        let input = signed();
        let out = run_graph(nodes, &[], &[2, 3], &input);
        assert_eq!(out[0], (vec![3], input[..3].to_vec()));
        assert_eq!(out[1], (vec![3], input[3..].to_vec()));
    }
    "GatherNd" => gather_nd {
        let input = signed();
        let out = run_graph(
            vec![node("y", "GatherNd", &["x", "idx"], json!({}))],
            &[Konst::I32("idx", vec![2, 2], vec![1, 2, 0, 1])],
            &[2, 3],
            &input,
        );
        assert_eq!(out[0], (vec![2], vec![input[5], input[1]]));
    }
    "ArgMax" => arg_max {
        let nodes = vec![
            node("a", "ArgMax", &["x", "dim"], json!({"output_type": ty("DT_INT32")})),
            node("y", "Cast", &["a"], json!({"DstT": ty("DT_FLOAT")})),
        ];
        let out = run_graph(
            nodes,
            &[Konst::I32("dim", vec![], vec![1])],
            &[2, 3],
            &[0.0, 5.0, 1.0, 9.0, -1.0, 2.0],
        );
        assert_eq!(out[0], (vec![2], vec![1.0, 0.0]));
    }
    "ResizeBilinear" => resize_bilinear_half_pixel {
        let input = img();
        for (align, half) in [(false, false), (true, false), (false, true)] {
            let attr = json!({"align_corners": {"b": align}, "half_pixel_centers": {"b": half}});
            let out = run_graph(
                vec![node("y", "ResizeBilinear", &["x", "size"], attr)],
                &[Konst::I32("size", vec![2], vec![7, 3])],
                &IMG,
                &input,
            );
            let want = r::resize(&input, IMG, 7, 3, align, half);
            assert_eq!(out[0].0, [1, 7, 3, 2]);
            assert_close(&out[0].1, &want, 1e-5, &format!("align {align} half {half}"));
        }
    }
    "MaxPool" => max_pool_same { pool_case("MaxPool", true) }
    "AvgPool" => avg_pool_same_excludes_padding { pool_case("AvgPool", false) }
    "Mean" => spatial_mean {
        let input = img();
        let out = run_graph(
            vec![node("y", "Mean", &["x", "axes"], json!({"keep_dims": {"b": false}}))],
            &[Konst::I32("axes", vec![2], vec![1, 2])],
            &IMG,
            &input,
        );
        let want: Vec<f32> = (0..2)
            .map(|c| input.iter().skip(c).step_by(2).sum::<f32>() / 20.0)
            .collect();
        assert_eq!(out[0].0, [1, 2]);
        assert_close(&out[0].1, &want, 1e-5, "mean");
    }
    "MatMul" => matmul { matmul_case("MatMul", false) }
    "_FusedMatMul" => fused_matmul_bias_relu { matmul_case("_FusedMatMul", true) }
    "Pad" => pad { pad_case("Pad", None) }
    "PadV2" => pad_v2_with_a_value { pad_case("PadV2", Some(0.5)) }
    "FusedBatchNorm" => fused_batch_norm { batch_norm_case("FusedBatchNorm") }
    "FusedBatchNormV3" => fused_batch_norm_v3 { batch_norm_case("FusedBatchNormV3") }
    "Transpose" => transpose {
        let input = signed();
        let out = run_graph(
            vec![node("y", "Transpose", &["x", "perm"], json!({}))],
            &[Konst::I32("perm", vec![2], vec![1, 0])],
            &[2, 3],
            &input,
        );
        let want = vec![input[0], input[3], input[1], input[4], input[2], input[5]];
        assert_eq!(out[0], (vec![3, 2], want));
    }
}
