//! TF.js layers models built by hand, converted and run with tract, against outputs computed here
//! directly from the Keras definitions (channels-last arithmetic, no transposes).

mod tfjs_util;

use graft_converters::tfjs::convert;
use graft_converters::Error;
use serde_json::json;
use tfjs_util::*;

/// Keras Conv2D on one NHWC image `[h, w, cin]` with kernel `[kh, kw, cin, cout]`, TF "same"
/// padding (the odd extra row/column at the bottom/right).
#[allow(clippy::too_many_arguments)]
fn conv_same(
    x: &[f32],
    (h, w, cin): (usize, usize, usize),
    k: &[f32],
    (kh, kw, cout): (usize, usize, usize),
    stride: usize,
    bias: &[f32],
) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
    let pad_t = ((oh - 1) * stride + kh).saturating_sub(h) / 2;
    let pad_l = ((ow - 1) * stride + kw).saturating_sub(w) / 2;
    let mut out = vec![0f32; oh * ow * cout];
    for oy in 0..oh {
        for ox in 0..ow {
            for o in 0..cout {
                let mut acc = bias[o];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (iy, ix) = (
                            (oy * stride + ky) as isize - pad_t as isize,
                            (ox * stride + kx) as isize - pad_l as isize,
                        );
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        for c in 0..cin {
                            acc += x[((iy as usize) * w + ix as usize) * cin + c]
                                * k[((ky * kw + kx) * cin + c) * cout + o];
                        }
                    }
                }
                out[(oy * ow + ox) * cout + o] = acc;
            }
        }
    }
    (out, oh, ow)
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// The shape of a Teachable Machine image export: a Sequential of Sequentials (feature extractor,
/// then classifier), weights named by layer.
#[test]
fn nested_sequential_like_teachable_machine() {
    let topology = json!({
        "class_name": "Sequential",
        "config": {"name": "sequential_4", "layers": [
            {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [
                {"class_name": "Conv2D", "config": {"name": "conv", "filters": 2, "kernel_size": [3, 3],
                    "strides": [2, 2], "padding": "same", "activation": "relu", "use_bias": true,
                    "batch_input_shape": [null, 5, 5, 1], "dtype": "float32"}},
                {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}}
            ]}},
            {"class_name": "Sequential", "config": {"name": "sequential_3", "layers": [
                {"class_name": "Dense", "config": {"name": "dense_Dense1", "units": 3,
                    "activation": "softmax", "use_bias": true}}
            ]}}
        ]},
        "keras_version": "tfjs-layers 1.3.1",
        "backend": "tensor_flow.js"
    });
    let kernel = values(18, 1);
    let bias = vec![0.1, -0.2];
    let dense = values(6, 2);
    let dense_bias = vec![0.0, 0.5, -0.5];
    let (_dir, path) = write_model(
        Some("layers-model"),
        topology,
        &[
            ("conv/kernel", vec![3, 3, 1, 2], kernel.clone()),
            ("conv/bias", vec![2], bias.clone()),
            ("dense_Dense1/kernel", vec![2, 3], dense.clone()),
            ("dense_Dense1/bias", vec![3], dense_bias.clone()),
        ],
    );
    let onnx = convert(&path).unwrap();
    let x = values(25, 3);
    let out = run(&onnx, &["gap", "dense_Dense1"], &[1, 5, 5, 1], x.clone());

    let (conv, oh, ow) = conv_same(&x, (5, 5, 1), &kernel, (3, 3, 2), 2, &bias);
    assert_eq!((oh, ow), (3, 3));
    let relu: Vec<f32> = conv.iter().map(|v| v.max(0.0)).collect();
    let gap: Vec<f32> = (0..2)
        .map(|c| (0..9).map(|p| relu[p * 2 + c]).sum::<f32>() / 9.0)
        .collect();
    let logits: Vec<f32> = (0..3)
        .map(|o| dense_bias[o] + gap[0] * dense[o] + gap[1] * dense[3 + o])
        .collect();
    assert_eq!(out[0].0, [1, 2]);
    assert_close(&out[0].1, &gap, 1e-5, "gap");
    assert_close(&out[1].1, &softmax(&logits), 1e-5, "dense_Dense1");
}

/// Flatten, Reshape and Concatenate see channels-last tensors even though convolutions run NCHW.
#[test]
fn channels_last_order_survives_convolutions() {
    let topology = functional(
        vec![
            layer(
                "InputLayer",
                "input_1",
                json!({"batch_input_shape": [null, 2, 3, 2], "dtype": "float32"}),
                &[],
            ),
            layer(
                "DepthwiseConv2D",
                "dw",
                json!({"kernel_size": [1, 1], "depth_multiplier": 2, "padding": "valid", "use_bias": false, "activation": "linear"}),
                &["input_1"],
            ),
            layer(
                "Concatenate",
                "cat",
                json!({"axis": -1}),
                &["dw", "input_1"],
            ),
            layer("Flatten", "flat", json!({}), &["cat"]),
            layer(
                "Reshape",
                "resh",
                json!({"target_shape": [6, 6]}),
                &["flat"],
            ),
        ],
        &["input_1"],
        &["resh"],
    );
    // Depthwise multiplier 2: output channel c*2+m = x[c] * k[c][m].
    let k = vec![1.0, 10.0, 100.0, 1000.0];
    let (_dir, path) = write_model(
        None,
        topology,
        &[("dw/depthwise_kernel", vec![1, 1, 2, 2], k.clone())],
    );
    let onnx = convert(&path).unwrap();
    let x = values(12, 4);
    let out = run(&onnx, &["flat", "resh"], &[1, 2, 3, 2], x.clone());
    let mut want = Vec::new();
    for p in 0..6 {
        let (a, b) = (x[p * 2], x[p * 2 + 1]);
        want.extend([a * k[0], a * k[1], b * k[2], b * k[3], a, b]);
    }
    assert_eq!(out[0].0, [1, 36]);
    assert_close(&out[0].1, &want, 1e-4, "flat");
    assert_eq!(out[1].0, [1, 6, 6]);
    assert_close(&out[1].1, &want, 1e-4, "resh");
}

#[test]
fn padding_pooling_and_batch_norm() {
    let topology = functional(
        vec![
            layer(
                "InputLayer",
                "in",
                json!({"batch_input_shape": [null, 4, 4, 1]}),
                &[],
            ),
            layer(
                "ZeroPadding2D",
                "pad",
                json!({"padding": [[1, 0], [0, 1]]}),
                &["in"],
            ),
            layer(
                "MaxPooling2D",
                "max",
                json!({"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}),
                &["pad"],
            ),
            layer(
                "BatchNormalization",
                "bn",
                json!({"axis": -1, "epsilon": 0.001, "center": true, "scale": true}),
                &["max"],
            ),
            layer(
                "AveragePooling2D",
                "avg",
                json!({"pool_size": [3, 3], "strides": [2, 2], "padding": "same"}),
                &["bn"],
            ),
            layer("Flatten", "flat", json!({}), &["avg"]),
        ],
        &["in"],
        &["flat"],
    );
    let bn = [
        ("gamma", 2.0),
        ("beta", 0.5),
        ("moving_mean", 1.0),
        ("moving_variance", 3.999),
    ];
    let names: Vec<String> = bn.iter().map(|(p, _)| format!("bn/{p}")).collect();
    let weights: Vec<Weight> = names
        .iter()
        .zip(bn)
        .map(|(n, (_, v))| (n.as_str(), vec![1], vec![v]))
        .collect();
    let (_dir, path) = write_model(None, topology, &weights);
    let onnx = convert(&path).unwrap();
    let x: Vec<f32> = (0..16).map(|i| i as f32 - 8.0).collect();
    let out = run(&onnx, &["max", "flat"], &[1, 4, 4, 1], x.clone());
    // Padded 5x5: one zero row on top, one zero column on the right; max over 2x2 blocks of the
    // top-left 4x4 of that.
    let padded = |r: usize, c: usize| {
        if r == 0 || c == 4 {
            0.0
        } else {
            x[(r - 1) * 4 + c]
        }
    };
    let max: Vec<f32> = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| {
            [(0, 0), (0, 1), (1, 0), (1, 1)]
                .iter()
                .map(|(a, b)| padded(2 * i + a, 2 * j + b))
                .fold(f32::MIN, f32::max)
        })
        .collect();
    assert_eq!(out[0].0, [1, 1, 2, 2], "internal 4-d tensors are NCHW");
    assert_close(&out[0].1, &max, 0.0, "max");
    let normed: Vec<f32> = max
        .iter()
        .map(|v| (v - 1.0) / 4.0f32.sqrt() * 2.0 + 0.5)
        .collect();
    // "same" 3x3 stride-2 average over a 2x2 map: one window covering all four (padding excluded).
    let avg = normed.iter().sum::<f32>() / 4.0;
    assert_eq!(out[1].0, [1, 1]);
    assert_close(&out[1].1, &[avg], 1e-5, "flat");
}

#[test]
fn every_unsupported_layer_is_listed_once_with_its_count() {
    let topology = functional(
        vec![
            layer(
                "InputLayer",
                "in",
                json!({"batch_input_shape": [null, 4]}),
                &[],
            ),
            layer("Lambda", "l1", json!({}), &["in"]),
            layer("Lambda", "l2", json!({}), &["l1"]),
            layer("Conv3D", "c3", json!({}), &["l2"]),
            layer(
                "Dense",
                "d",
                json!({"units": 2, "activation": "gelu"}),
                &["c3"],
            ),
        ],
        &["in"],
        &["d"],
    );
    let (_dir, path) = write_model(None, topology, &[]);
    let err = convert(&path).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("Conv3D (1), Lambda (2), activation \"gelu\" (1)"),
        "{msg}"
    );
}

/// A layer's weights may sit under a scope prefix (nested models exported by Keras).
#[test]
fn weights_under_a_scope_prefix_are_found() {
    let topology = functional(
        vec![
            layer(
                "InputLayer",
                "in",
                json!({"batch_input_shape": [null, 2]}),
                &[],
            ),
            layer(
                "Dense",
                "d",
                json!({"units": 1, "use_bias": false, "activation": "sigmoid"}),
                &["in"],
            ),
        ],
        &["in"],
        &["d"],
    );
    let (_dir, path) = write_model(
        None,
        topology,
        &[("model_1/d/kernel", vec![2, 1], vec![1.0, -2.0])],
    );
    let onnx = convert(&path).unwrap();
    let out = run(&onnx, &["d"], &[1, 2], vec![3.0, 1.0]);
    assert_close(&out[0].1, &[1.0 / (1.0 + (-1.0f32).exp())], 1e-6, "d");
}

/// float16 weights (decoded exactly) and uint16-quantised ones (`q * scale + min`) in one shard.
#[test]
fn float16_and_uint16_weights_are_decoded() {
    let topology = functional(
        vec![
            layer(
                "InputLayer",
                "in",
                json!({"batch_input_shape": [null, 2]}),
                &[],
            ),
            layer(
                "Dense",
                "d",
                json!({"units": 2, "activation": "linear"}),
                &["in"],
            ),
        ],
        &["in"],
        &["d"],
    );
    let dir = tempfile::tempdir().unwrap();
    // Kernel [[1, -2], [0.5, 65504]] as float16; bias codes [0, 1000] with min -1, scale 0.002.
    let halves: [u16; 4] = [0x3c00, 0xc000, 0x3800, 0x7bff];
    let mut shard: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    shard.extend([0u16, 1000].iter().flat_map(|q| q.to_le_bytes()));
    std::fs::write(dir.path().join("w.bin"), shard).unwrap();
    let model = json!({
        "modelTopology": topology,
        "weightsManifest": [{"paths": ["w.bin"], "weights": [
            {"name": "d/kernel", "shape": [2, 2], "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}},
            {"name": "d/bias", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "uint16", "min": -1.0, "scale": 0.002}}
        ]}]
    });
    let path = dir.path().join("model.json");
    std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
    let onnx = convert(&path).unwrap();
    let out = run(&onnx, &["d"], &[1, 2], vec![2.0, 1.0]);
    assert_close(
        &out[0].1,
        &[2.0 + 0.5 - 1.0, -4.0 + 65504.0 + 1.0],
        1e-3,
        "d",
    );
}
