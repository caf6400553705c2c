//! TFLite models: one builtin operator each, on a float input `x`.

use crate::reference as r;
use crate::tflite_util::*;

/// Input NHWC [1, 5, 4, 2].
const IMG: [usize; 4] = [1, 5, 4, 2];

fn img() -> Vec<f32> {
    data(IMG.iter().product(), 41)
}

/// Runs the one-output model on `img()`.
fn run_img(m: &mut Tfl, y: i32) -> (Vec<usize>, Vec<f32>) {
    m.outputs.push(y);
    run(m, &img(), &IMG).remove(0)
}

/// An activation operator `code` on `x`.
fn activation_case(code: i32, f: impl Fn(f32) -> f32) {
    let mut m = Tfl::default();
    let x = m.input("x", &IMG);
    let y = m.act("y", &IMG);
    m.op(code, &[x], &[y], None);
    let input: Vec<f32> = img().iter().map(|v| v * 8.0).collect();
    m.outputs.push(y);
    let out = run(&m, &input, &IMG).remove(0);
    let want: Vec<f32> = input.iter().map(|&v| f(v)).collect();
    assert_close(&out.1, &want, &format!("operator {code}"));
}

/// ADD / SUB / MUL (`code`, options type `kind`) of `x` and a [2] constant, with fused RELU.
fn elementwise_case(code: i32, kind: u8, f: impl Fn(f32, f32) -> f32) {
    let mut m = Tfl::default();
    let x = m.input("x", &IMG);
    let k = m.f32s("k", &[2], &[0.5, -0.25]);
    let y = m.act("y", &IMG);
    let options = Obj::default().with(0, Field::U8(1)); // RELU
    m.op(code, &[x, k], &[y], Some((kind, options)));
    let out = run_img(&mut m, y);
    let want: Vec<f32> = img()
        .iter()
        .enumerate()
        .map(|(i, &v)| f(v, [0.5, -0.25][i % 2]).max(0.0))
        .collect();
    assert_close(&out.1, &want, &format!("operator {code}"));
}

fn pool_case(code: i32, max: bool) {
    let mut m = Tfl::default();
    let x = m.input("x", &IMG);
    let y = m.act("y", &[1, 3, 2, 2]);
    let options = Obj::default()
        .with(0, Field::U8(0)) // SAME
        .with(1, Field::I32(2))
        .with(2, Field::I32(2))
        .with(3, Field::I32(3))
        .with(4, Field::I32(3));
    m.op(code, &[x], &[y], Some((5, options)));
    let out = run_img(&mut m, y);
    let (want, os) = r::pool(&img(), IMG, [3, 3], [2, 2], true, max);
    assert_eq!(out.0, os);
    assert_close(&out.1, &want, &format!("operator {code}"));
}

op_tests! {
    "ADD" => add_with_fused_relu { elementwise_case(0, 11, |a, b| a + b) }
    "SUB" => sub_with_fused_relu { elementwise_case(41, 28, |a, b| a - b) }
    "MUL" => mul_with_fused_relu { elementwise_case(18, 21, |a, b| a * b) }
    "AVERAGE_POOL_2D" => average_pool_same { pool_case(1, false) }
    "MAX_POOL_2D" => max_pool_same { pool_case(17, true) }
    "CONV_2D" => conv_valid_stride_2_relu_n1_to_1 {
        let ohwi = data(24, 42);
        let (w, ws) = r::ohwi_to_hwio(&ohwi, [3, 2, 2, 2]);
        let bias = [0.25, 0.0, -0.25];
        let mut m = Tfl::default();
        let x = m.input("x", &IMG);
        let wt = m.f32s("w", &[3, 2, 2, 2], &ohwi);
        let b = m.f32s("b", &[3], &bias);
        let y = m.act("y", &[1, 2, 2, 3]);
        let options = Obj::default()
            .with(0, Field::U8(1)) // VALID
            .with(1, Field::I32(2))
            .with(2, Field::I32(2))
            .with(3, Field::U8(2)); // RELU_N1_TO_1
        m.op(3, &[x, wt, b], &[y], Some((1, options)));
        let out = run_img(&mut m, y);
        let (want, os) = r::conv(&img(), IMG, &w, ws, Some(&bias), 2, 1, false, None);
        let want: Vec<f32> = want.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
        assert_eq!(out.0, os);
        assert_close(&out.1, &want, "conv");
    }
    "DEPTHWISE_CONV_2D" => depthwise_conv_same_multiplier_2 {
        // TFLite's [1, kh, kw, c * m] is TF's [kh, kw, c, m] with the same data.
        let w = data(36, 43);
        let mut m = Tfl::default();
        let x = m.input("x", &IMG);
        let wt = m.f32s("w", &[1, 3, 3, 4], &w);
        let y = m.act("y", &[1, 5, 4, 4]);
        let options = Obj::default()
            .with(0, Field::U8(0))
            .with(1, Field::I32(1))
            .with(2, Field::I32(1))
            .with(3, Field::I32(2)); // depth multiplier
        m.op(4, &[x, wt], &[y], Some((2, options)));
        let out = run_img(&mut m, y);
        let (want, os) = r::conv(&img(), IMG, &w, [3, 3, 2, 2], None, 1, 1, true, Some(2));
        assert_eq!(out.0, os);
        assert_close(&out.1, &want, "depthwise");
    }
    "DEQUANTIZE" => dequantize_fp16_constant {
        let mut m = Tfl::default();
        let x = m.input("x", &IMG);
        let k = m.f16s("k", &[2], &[0.5, -2.0]);
        let y = m.act("y", &IMG);
        m.op(18, &[x, k], &[y], None);
        let out = run_img(&mut m, y);
        let want: Vec<f32> = img().iter().enumerate().map(|(i, v)| v * [0.5, -2.0][i % 2]).collect();
        assert_close(&out.1, &want, "dequantize");
    }
    "LOGISTIC" => logistic { activation_case(14, |v| 1.0 / (1.0 + (-v).exp())) }
    "RELU" => relu { activation_case(19, |v| v.max(0.0)) }
    "RELU6" => relu6 { activation_case(21, |v| v.clamp(0.0, 6.0)) }
    "TANH" => tanh { activation_case(28, f32::tanh) }
    "PAD" => pad_rows_and_columns {
        let mut m = Tfl::default();
        let x = m.input("x", &IMG);
        let p = m.i32s("p", &[4, 2], &[0, 0, 0, 1, 2, 0, 0, 0]);
        let y = m.act("y", &[1, 6, 6, 2]);
        m.op(34, &[x, p], &[y], None);
        let out = run_img(&mut m, y);
        let (input, os) = (img(), [1, 6, 6, 2]);
        let mut want = vec![0f32; 72];
        for yy in 0..5 {
            for xx in 0..4 {
                for c in 0..2 {
                    want[r::at(os, 0, yy, xx + 2, c)] = input[r::at(IMG, 0, yy, xx, c)];
                }
            }
        }
        assert_eq!(out, (os.to_vec(), want));
    }
    "RESHAPE" => reshape {
        let mut m = Tfl::default();
        let x = m.input("x", &IMG);
        let s = m.i32s("s", &[2], &[1, 40]);
        let y = m.act("y", &[1, 40]);
        m.op(22, &[x, s], &[y], None);
        let out = run_img(&mut m, y);
        assert_eq!(out, (vec![1, 40], img()));
    }
    "RESIZE_BILINEAR" => resize_bilinear_half_pixel {
        let mut m = Tfl::default();
        let x = m.input("x", &IMG);
        let size = m.i32s("size", &[2], &[7, 3]);
        let y = m.act("y", &[1, 7, 3, 2]);
        let options = Obj::default().with(3, Field::U8(1)); // half_pixel_centers
        m.op(23, &[x, size], &[y], Some((15, options)));
        let out = run_img(&mut m, y);
        assert_close(&out.1, &r::resize(&img(), IMG, 7, 3, false, true), "resize");
    }
}
