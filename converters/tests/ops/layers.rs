//! TF.js layers models: one layer class each, after an input `x`.

use graft_converters::tfjs::convert;
use serde_json::{json, Value};

use crate::reference as r;
use crate::tfjs_util::*;

/// Input shape NHWC [1, 5, 4, 2].
const IMG: [usize; 4] = [1, 5, 4, 2];

fn img() -> Vec<f32> {
    values(IMG.iter().product(), 31)
}

fn input_layer(shape: &[usize]) -> Value {
    let mut batch: Vec<Value> = vec![Value::Null];
    batch.extend(shape[1..].iter().map(|&d| json!(d)));
    layer(
        "InputLayer",
        "x",
        json!({"batch_input_shape": batch, "dtype": "float32"}),
        &[],
    )
}

/// Converts a functional model `x -> layers... -> out` and runs it on `input` of shape `xs`.
fn run_model(
    layers: Vec<Value>,
    out: &str,
    weights: &[Weight],
    xs: &[usize],
    input: &[f32],
) -> (Vec<usize>, Vec<f32>) {
    let mut all = vec![input_layer(xs)];
    all.extend(layers);
    let (_dir, path) = write_model(
        Some("layers-model"),
        functional(all, &["x"], &[out]),
        weights,
    );
    let onnx = convert(&path).unwrap();
    run_all(&onnx, xs, input.to_vec()).remove(0)
}

/// One layer `class` with `config` applied to `x` [1, 5, 4, 2].
fn one(class: &str, config: Value, weights: &[Weight]) -> (Vec<usize>, Vec<f32>) {
    run_model(
        vec![layer(class, "y", config, &["x"])],
        "y",
        weights,
        &IMG,
        &img(),
    )
}

/// A layer that passes its input through at inference.
fn identity_case(class: &str) {
    let (shape, got) = one(class, json!({"rate": 0.5, "stddev": 0.1}), &[]);
    assert_eq!(shape, IMG);
    assert_eq!(got, img(), "{class}");
}

/// A merge of `x` and `relu(x)`.
fn merge_case(class: &str, f: impl Fn(f32, f32) -> f32) {
    let layers = vec![
        layer("Activation", "r", json!({"activation": "relu"}), &["x"]),
        layer(class, "y", json!({}), &["x", "r"]),
    ];
    let input = img();
    let (shape, got) = run_model(layers, "y", &[], &IMG, &input);
    let want: Vec<f32> = input.iter().map(|&v| f(v, v.max(0.0))).collect();
    assert_eq!(shape, IMG);
    assert_close(&got, &want, 1e-6, class);
}

fn pool_case(class: &str, config: Value, k: [usize; 2], s: [usize; 2], same: bool, max: bool) {
    let (shape, got) = one(class, config, &[]);
    let (want, os) = r::pool(&img(), IMG, k, s, same, max);
    assert_eq!(shape, os, "{class}");
    assert_close(&got, &want, 1e-5, class);
}

fn global_pool_case(class: &str, max: bool) {
    let (shape, got) = one(class, json!({}), &[]);
    let input = img();
    let want: Vec<f32> = (0..2)
        .map(|c| {
            let it = input.iter().skip(c).step_by(2);
            if max {
                it.copied().fold(f32::MIN, f32::max)
            } else {
                it.sum::<f32>() / 20.0
            }
        })
        .collect();
    assert_eq!(shape, [1, 2]);
    assert_close(&got, &want, 1e-5, class);
}

fn activation(v: f32) -> f32 {
    v.tanh()
}

fn dense_model(top: &str) -> Value {
    let dense = json!({"class_name": "Dense", "config": {
        "name": "d", "units": 2, "activation": "linear", "use_bias": true,
        "batch_input_shape": [null, 3]
    }});
    json!({"class_name": top, "config": {"name": "m", "layers": [dense]}})
}

fn dense_weights() -> Vec<Weight<'static>> {
    vec![
        ("d/kernel", vec![3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
        ("d/bias", vec![2], vec![0.5, -0.5]),
    ]
}

/// `x [1, 3] = [1, 2, 3]` through Dense `d` (rows [1, 0], [0, 1], [1, 1], bias [0.5, -0.5]).
fn check_dense(onnx: &[u8]) {
    let out = run_all(onnx, &[1, 3], vec![1.0, 2.0, 3.0]);
    assert_eq!(out[0], (vec![1, 2], vec![4.5, 4.5]));
}

fn functional_case(class: &str) {
    let dense = layer(
        "Dense",
        "d",
        json!({"units": 2, "activation": "linear", "use_bias": true}),
        &["x"],
    );
    let mut topology = functional(vec![input_layer(&[1, 3]), dense], &["x"], &["d"]);
    topology["model_config"]["class_name"] = json!(class);
    let (_dir, path) = write_model(Some("layers-model"), topology, &dense_weights());
    check_dense(&convert(&path).unwrap());
}

op_tests! {
    "InputLayer" => input_layer_then_relu {
        let (shape, got) = one("ReLU", json!({}), &[]);
        assert_eq!(shape, IMG);
        assert_eq!(got, img().iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
    }
    "Conv2D" => conv2d_same_stride_2 {
        let ws = [3, 3, 2, 3];
        let (k, b) = (values(54, 32), values(3, 33));
        let cfg = json!({"filters": 3, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
            "activation": "linear", "use_bias": true});
        let (shape, got) = one("Conv2D", cfg, &[("y/kernel", ws.to_vec(), k.clone()), ("y/bias", vec![3], b.clone())]);
        let (want, os) = r::conv(&img(), IMG, &k, ws, Some(&b), 2, 1, true, None);
        assert_eq!(shape, os);
        assert_close(&got, &want, 1e-4, "conv2d");
    }
    "DepthwiseConv2D" => depthwise_conv2d_valid_multiplier_2 {
        let ws = [2, 2, 2, 2];
        let (k, b) = (values(16, 34), values(4, 35));
        let cfg = json!({"kernel_size": [2, 2], "depth_multiplier": 2, "padding": "valid",
            "activation": "relu", "use_bias": true});
        let (shape, got) = one("DepthwiseConv2D", cfg, &[("y/depthwise_kernel", ws.to_vec(), k.clone()), ("y/bias", vec![4], b.clone())]);
        let (want, os) = r::conv(&img(), IMG, &k, ws, Some(&b), 1, 1, false, Some(2));
        let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(shape, os);
        assert_close(&got, &want, 1e-4, "depthwise");
    }
    "SeparableConv2D" => separable_conv2d {
        let (dk, pk, b) = (values(18, 36), values(6, 37), values(3, 38));
        let cfg = json!({"filters": 3, "kernel_size": [3, 3], "padding": "same",
            "activation": "linear", "use_bias": true});
        let weights = [
            ("y/depthwise_kernel", vec![3, 3, 2, 1], dk.clone()),
            ("y/pointwise_kernel", vec![1, 1, 2, 3], pk.clone()),
            ("y/bias", vec![3], b.clone()),
        ];
        let (shape, got) = one("SeparableConv2D", cfg, &weights);
        let (d, ds) = r::conv(&img(), IMG, &dk, [3, 3, 2, 1], None, 1, 1, true, Some(1));
        let (want, os) = r::conv(&d, ds, &pk, [1, 1, 2, 3], Some(&b), 1, 1, false, None);
        assert_eq!(shape, os);
        assert_close(&got, &want, 1e-4, "separable");
    }
    "BatchNormalization" => batch_normalization {
        let p = [vec![2.0, 0.5], vec![0.0, 1.0], vec![0.5, -0.5], vec![4.0, 0.25]];
        let weights = [
            ("y/gamma", vec![2], p[0].clone()),
            ("y/beta", vec![2], p[1].clone()),
            ("y/moving_mean", vec![2], p[2].clone()),
            ("y/moving_variance", vec![2], p[3].clone()),
        ];
        let (_, got) = one("BatchNormalization", json!({"axis": -1, "epsilon": 0.001}), &weights);
        let want = r::batch_norm(&img(), 2, [&p[0], &p[1], &p[2], &p[3]], 0.001);
        assert_close(&got, &want, 1e-4, "batch norm");
    }
    "ReLU" => relu_with_max_value {
        let (_, got) = one("ReLU", json!({"max_value": 0.5}), &[]);
        let want: Vec<f32> = img().iter().map(|v| v.clamp(0.0, 0.5)).collect();
        assert_close(&got, &want, 0.0, "relu");
    }
    "LeakyReLU" => leaky_relu {
        let (_, got) = one("LeakyReLU", json!({"alpha": 0.1}), &[]);
        let want: Vec<f32> = img().iter().map(|&v| if v < 0.0 { 0.1 * v } else { v }).collect();
        assert_close(&got, &want, 1e-6, "leaky relu");
    }
    "Activation" => activation_tanh {
        let (_, got) = one("Activation", json!({"activation": "tanh"}), &[]);
        let want: Vec<f32> = img().iter().map(|&v| activation(v)).collect();
        assert_close(&got, &want, 1e-6, "tanh");
    }
    "Softmax" => softmax_over_channels {
        let (_, got) = one("Softmax", json!({"axis": -1}), &[]);
        assert_close(&got, &r::softmax(&img(), 2), 1e-6, "softmax");
    }
    "ZeroPadding2D" => zero_padding_2d {
        let (shape, got) = one("ZeroPadding2D", json!({"padding": [[1, 0], [0, 2]]}), &[]);
        let input = img();
        let os = [1, 6, 6, 2];
        let mut want = vec![0f32; 72];
        for y in 0..5 {
            for x in 0..4 {
                for c in 0..2 {
                    want[r::at(os, 0, y + 1, x, c)] = input[r::at(IMG, 0, y, x, c)];
                }
            }
        }
        assert_eq!(shape, os);
        assert_eq!(got, want);
    }
    "Add" => add { merge_case("Add", |a, b| a + b) }
    "Subtract" => subtract { merge_case("Subtract", |a, b| a - b) }
    "Multiply" => multiply { merge_case("Multiply", |a, b| a * b) }
    "Average" => average { merge_case("Average", |a, b| (a + b) / 2.0) }
    "Maximum" => maximum { merge_case("Maximum", f32::max) }
    "Minimum" => minimum { merge_case("Minimum", f32::min) }
    "Concatenate" => concatenate_channels {
        let layers = vec![
            layer("Activation", "r", json!({"activation": "relu"}), &["x"]),
            layer("Concatenate", "y", json!({"axis": -1}), &["x", "r"]),
        ];
        let input = img();
        let (shape, got) = run_model(layers, "y", &[], &IMG, &input);
        let want: Vec<f32> = input
            .chunks(2)
            .flat_map(|px| [px[0], px[1], px[0].max(0.0), px[1].max(0.0)])
            .collect();
        assert_eq!(shape, [1, 5, 4, 4]);
        assert_eq!(got, want);
    }
    "GlobalAveragePooling2D" => global_average_pooling { global_pool_case("GlobalAveragePooling2D", false) }
    "GlobalMaxPooling2D" => global_max_pooling { global_pool_case("GlobalMaxPooling2D", true) }
    "AveragePooling2D" => average_pooling_valid {
        pool_case("AveragePooling2D", json!({"pool_size": [2, 2], "padding": "valid"}), [2, 2], [2, 2], false, false)
    }
    "MaxPooling2D" => max_pooling_same {
        pool_case("MaxPooling2D", json!({"pool_size": [3, 3], "strides": [2, 2], "padding": "same"}), [3, 3], [2, 2], true, true)
    }
    "Dense" => dense_with_relu {
        let k = values(6, 39);
        let b = [0.25, -0.25, 0.0];
        let layers = vec![layer("Dense", "y", json!({"units": 3, "activation": "relu", "use_bias": true}), &["x"])];
        let input = values(4, 40);
        let weights = [("y/kernel", vec![2, 3], k.clone()), ("y/bias", vec![3], b.to_vec())];
        let (shape, got) = run_model(layers, "y", &weights, &[2, 2], &input);
        let want: Vec<f32> = r::matmul(&input, &k, 2, 3)
            .iter()
            .enumerate()
            .map(|(i, v)| (v + b[i % 3]).max(0.0))
            .collect();
        assert_eq!(shape, [2, 3]);
        assert_close(&got, &want, 1e-5, "dense");
    }
    "Dropout" => dropout { identity_case("Dropout") }
    "SpatialDropout2D" => spatial_dropout { identity_case("SpatialDropout2D") }
    "GaussianNoise" => gaussian_noise { identity_case("GaussianNoise") }
    "GaussianDropout" => gaussian_dropout { identity_case("GaussianDropout") }
    "AlphaDropout" => alpha_dropout { identity_case("AlphaDropout") }
    "Flatten" => flatten_keeps_channels_last_order {
        let (shape, got) = one("Flatten", json!({}), &[]);
        assert_eq!(shape, [1, 40]);
        assert_eq!(got, img());
    }
    "Reshape" => reshape {
        let (shape, got) = one("Reshape", json!({"target_shape": [10, -1]}), &[]);
        assert_eq!(shape, [1, 10, 4]);
        assert_eq!(got, img());
    }
    "Sequential" => sequential_model {
        let (_dir, path) = write_model(Some("layers-model"), json!({"model_config": dense_model("Sequential")}), &dense_weights());
        check_dense(&convert(&path).unwrap());
    }
    "Model" => functional_model_class_model { functional_case("Model") }
    "Functional" => functional_model_class_functional { functional_case("Functional") }
}
