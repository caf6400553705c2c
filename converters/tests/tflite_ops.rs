//! The TFLite converter on small models assembled here operator by operator, run with tract and
//! compared with direct implementations of TFLite's semantics (NHWC, SAME padding, fused
//! activations, depth multipliers, resize modes), plus refusals of unsupported or broken files.

mod tf_reference;
mod tflite_util;

use graft_converters::tflite::convert_bytes;
use graft_converters::Error;
use tflite_util::*;
use tract_onnx::prelude::*;

// ---------- running and reference implementations ----------

/// Direct convolution, NHWC; depthwise when `multiplier` is Some (filter [1,kh,kw,c*m]), else
/// filter [o,kh,kw,c]. SAME padding.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    bias: &[f32],
    stride: usize,
    dilation: usize,
    multiplier: Option<usize>,
) -> (Vec<f32>, [usize; 4]) {
    // As TF's HWIO filter: depthwise [kh, kw, c, m] holds the same data as [1, kh, kw, c * m].
    let (w, hwio) = match multiplier {
        Some(m) => (w.to_vec(), [ws[1], ws[2], ws[3] / m, m]),
        None => tf_reference::ohwi_to_hwio(w, ws),
    };
    tf_reference::conv(
        x,
        xs,
        &w,
        hwio,
        Some(bias),
        stride,
        dilation,
        true,
        multiplier,
    )
}

fn conv_options(stride: i32, activation: u8, dilation: i32) -> Obj {
    Obj::default()
        .with(0, Field::U8(0)) // SAME
        .with(1, Field::I32(stride))
        .with(2, Field::I32(stride))
        .with(3, Field::U8(activation))
        .with(4, Field::I32(dilation))
        .with(5, Field::I32(dilation))
}

// ---------- tests ----------

#[test]
fn conv_with_fp16_weights_same_padding_stride_2_and_relu6() {
    let xs = [1, 7, 6, 3];
    let ws = [4, 3, 3, 3];
    let mut m = Tfl::default();
    let x = m.input("x", &xs);
    let w = m.f16s("w", &ws, &data(4 * 27, 1));
    let bias = [0.5, -0.25, 0.0, 1.0];
    let b = m.f16s("b", &[4], &bias);
    let y = m.act("y", &[1, 4, 3, 4]);
    m.op(3, &[x, w, b], &[y], Some((1, conv_options(2, 3, 1))));
    m.outputs.push(y);
    let input: Vec<f32> = data(7 * 6 * 3, 2).iter().map(|v| v * 8.0).collect();
    let out = run(&m, &input, &xs);
    let (want, os) = conv_ref(&input, xs, &data(4 * 27, 1), ws, &bias, 2, 1, None);
    assert_eq!(out[0].0, os);
    let want: Vec<f32> = want.iter().map(|v| v.clamp(0.0, 6.0)).collect();
    assert!(
        want.contains(&6.0) && want.contains(&0.0),
        "both bounds are hit"
    );
    assert_close(&out[0].1, &want, "conv");
}

#[test]
fn depthwise_conv_with_multiplier_and_dilation() {
    let xs = [1, 6, 5, 2];
    let ws = [1, 3, 3, 6];
    let mut m = Tfl::default();
    let x = m.input("x", &xs);
    let wv = data(54, 3);
    let w = m.f32s("w", &ws, &wv);
    let bias = data(6, 4);
    let b = m.f32s("b", &[6], &bias);
    let y = m.act("y", &[1, 6, 5, 6]);
    let options = Obj::default()
        .with(0, Field::U8(0))
        .with(1, Field::I32(1))
        .with(2, Field::I32(1))
        .with(3, Field::I32(3)) // depth multiplier
        .with(4, Field::U8(1)) // RELU
        .with(5, Field::I32(2))
        .with(6, Field::I32(2));
    m.op(4, &[x, w, b], &[y], Some((2, options)));
    m.outputs.push(y);
    let input = data(60, 5);
    let out = run(&m, &input, &xs);
    let (want, _) = conv_ref(&input, xs, &wv, ws, &bias, 1, 2, Some(3));
    let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(out[0].0, [1, 6, 5, 6]);
    assert_close(&out[0].1, &want, "depthwise");
}

#[test]
fn pad_pools_and_logistic() {
    let xs = [1, 5, 5, 2];
    let mut m = Tfl::default();
    let x = m.input("x", &xs);
    let pads = m.i32s("pads", &[4, 2], &[0, 0, 1, 0, 2, 0, 0, 0]);
    let p = m.act("p", &[1, 6, 7, 2]);
    m.op(34, &[x, pads], &[p], None);
    let pool = |filter: i32| {
        Obj::default()
            .with(0, Field::U8(0))
            .with(1, Field::I32(2))
            .with(2, Field::I32(2))
            .with(3, Field::I32(filter))
            .with(4, Field::I32(filter))
    };
    let mx = m.act("max", &[1, 3, 4, 2]);
    m.op(17, &[p], &[mx], Some((5, pool(3))));
    let av = m.act("avg", &[1, 3, 4, 2]);
    m.op(1, &[p], &[av], Some((5, pool(3))));
    let sg = m.act("sig", &[1, 3, 4, 2]);
    m.op(14, &[av], &[sg], None);
    m.outputs.extend([p, mx, sg]);
    let input = data(50, 6);
    let out = run(&m, &input, &xs);
    // Reference: pad one row on top and two columns on the left with zeros.
    let ps = [1, 6, 7, 2];
    let mut padded = vec![0f32; 84];
    for y in 0..5 {
        for x in 0..5 {
            for c in 0..2 {
                padded[at(ps, 0, y + 1, x + 2, c)] = input[at(xs, 0, y, x, c)];
            }
        }
    }
    assert_eq!(out[0].0, ps);
    assert_close(&out[0].1, &padded, "pad");
    // 3x3 stride-2 SAME pools over 6x7: padding (0 top, 1 bottom), (1 left, 1 right); the
    // average counts only the cells inside.
    let os = [1, 3, 4, 2];
    let (mut max, mut sig) = (vec![0f32; 24], vec![0f32; 24]);
    for oy in 0..3 {
        for ox in 0..4 {
            for c in 0..2 {
                let (mut mv, mut sum, mut n) = (f32::MIN, 0.0, 0.0);
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = (oy * 2 + ky, (ox * 2 + kx) as isize - 1);
                        if iy < 6 && (0..7).contains(&ix) {
                            let v = padded[at(ps, 0, iy, ix as usize, c)];
                            mv = mv.max(v);
                            sum += v;
                            n += 1.0;
                        }
                    }
                }
                max[at(os, 0, oy, ox, c)] = mv;
                sig[at(os, 0, oy, ox, c)] = 1.0 / (1.0 + (-sum / n).exp());
            }
        }
    }
    assert_close(&out[1].1, &max, "max pool");
    assert_close(&out[2].1, &sig, "average pool + logistic");
}

#[test]
fn resize_bilinear_in_every_coordinate_mode() {
    let xs = [1, 3, 4, 2];
    let input = data(24, 7);
    for (oh, ow) in [(6, 8), (5, 7)] {
        for (align, half) in [(false, false), (true, false), (false, true)] {
            let mut m = Tfl::default();
            let x = m.input("x", &xs);
            let size = m.i32s("size", &[2], &[oh as i32, ow as i32]);
            let y = m.act("y", &[1, oh, ow, 2]);
            let options = Obj::default()
                .with(2, Field::U8(align.into()))
                .with(3, Field::U8(half.into()));
            m.op(23, &[x, size], &[y], Some((15, options)));
            m.outputs.push(y);
            let out = run(&m, &input, &xs);
            let want = tf_reference::resize(&input, xs, oh, ow, align, half);
            let what = format!("{oh}x{ow} align_corners={align} half_pixel_centers={half}");
            assert_close(&out[0].1, &want, &what);
        }
    }
}

#[test]
fn elementwise_reshape_and_batch_independence() {
    // conv (NCHW inside) + constant [C] added in NHWC, times a scalar, minus another activation,
    // then reshaped to [1, 12].
    let xs = [1, 2, 2, 3];
    let mut m = Tfl::default();
    let x = m.input("x", &xs);
    let w = m.f32s("w", &[3, 1, 1, 3], &data(9, 8));
    let c = m.act("c", &xs);
    m.op(3, &[x, w], &[c], Some((1, conv_options(1, 0, 1))));
    let k = m.f32s("k", &[3], &[1.0, 2.0, 3.0]);
    let a = m.act("a", &xs);
    m.op(
        0,
        &[c, k],
        &[a],
        Some((11, Obj::default().with(0, Field::U8(0)))),
    );
    let two = m.f32s("two", &[], &[2.0]);
    let mu = m.act("mul", &xs);
    m.op(18, &[a, two], &[mu], None);
    let s = m.act("sub", &xs);
    m.op(41, &[mu, x], &[s], None);
    let shape = m.i32s("shape", &[2], &[1, 12]);
    let r = m.act("out", &[1, 12]);
    m.op(22, &[s, shape], &[r], None);
    m.outputs.push(r);
    let input = data(12, 9);
    let wv = data(9, 8);
    let want: Vec<f32> = (0..12)
        .map(|i| {
            let (p, o) = (i / 3, i % 3);
            let conv: f32 = (0..3).map(|ci| input[p * 3 + ci] * wv[o * 3 + ci]).sum();
            (conv + [1.0, 2.0, 3.0][o]) * 2.0 - input[i]
        })
        .collect();
    let out = run(&m, &input, &xs);
    assert_eq!(out[0].0, [1, 12]);
    assert_close(&out[0].1, &want, "elementwise");
    // The same graph runs a batch of two.
    let onnx = convert_bytes(&m.bytes()).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .with_input_fact(0, f32::fact([2, 2, 2, 3]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let two_inputs: Vec<f32> = input.iter().chain(&input).copied().collect();
    let x2 = tract_ndarray::Array4::from_shape_vec((2, 2, 2, 3), two_inputs).unwrap();
    let out = plan.run(tvec!(x2.into_tensor().into())).unwrap();
    let v = out[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(v.shape(), [2, 12]);
    let both: Vec<f32> = want.iter().chain(&want).copied().collect();
    assert_close(&v.iter().copied().collect::<Vec<_>>(), &both, "batch of 2");
}

#[test]
fn int8_per_channel_weights_are_dequantized() {
    let xs = [1, 1, 2, 2];
    let mut m = Tfl::default();
    let x = m.input("x", &xs);
    let q = m.tensor("wq", &[2, 1, 1, 2], I8, Some(vec![10, 0xf6, 4, 8]));
    m.tensors[q as usize].quant = Some(
        Obj::default()
            .with(2, Field::F32s(vec![0.1, 0.5]))
            .with(3, Field::I64s(vec![0, 2]))
            .with(6, Field::I32(0)),
    );
    let w = m.act("w", &[2, 1, 1, 2]);
    m.op(6, &[q], &[w], None);
    let y = m.act("y", &[1, 1, 2, 2]);
    m.op(3, &[x, w], &[y], Some((1, conv_options(1, 0, 1))));
    m.outputs.push(y);
    // Weights: out 0 = [1, -1], out 1 = [(4-2)*0.5, (8-2)*0.5] = [1, 3].
    let out = run(&m, &[1.0, 2.0, 3.0, 4.0], &xs);
    assert_close(&out[0].1, &[-1.0, 7.0, -1.0, 15.0], "int8 conv");
}

#[test]
fn unsupported_operators_are_listed_with_counts() {
    let mut m = Tfl::default();
    let x = m.input("x", &[1, 4]);
    let a = m.act("a", &[4]);
    let b = m.act("b", &[4]);
    let c = m.act("c", &[4]);
    m.op(43, &[x], &[a], None); // SQUEEZE
    m.op(43, &[a], &[b], None);
    m.op(19, &[b], &[c], None); // RELU is supported
    m.ops.push(OpDef {
        code: 32,
        custom: Some("MyOp".into()),
        inputs: vec![c],
        outputs: vec![c],
        options: None,
    });
    m.op(124, &[c], &[c], None); // DENSIFY
    m.outputs.push(c);
    let err = convert_bytes(&m.bytes()).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("SQUEEZE x2") && msg.contains("CUSTOM(MyOp) x1") && msg.contains("DENSIFY x1"),
        "{msg}"
    );
    assert!(!msg.contains("RELU"), "{msg}");
}

#[test]
fn broken_models_are_clear_errors() {
    let err = convert_bytes(b"definitely not a flatbuffer")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a TFLite"), "{err}");
    // A tensor read before anything writes it.
    let mut m = Tfl::default();
    let x = m.input("x", &[1, 4]);
    let ghost = m.act("ghost", &[1, 4]);
    let y = m.act("y", &[1, 4]);
    m.op(0, &[x, ghost], &[y], None);
    m.outputs.push(y);
    let err = convert_bytes(&m.bytes()).unwrap_err().to_string();
    assert!(err.contains("\"ghost\" is read before"), "{err}");
    // A conv whose output shape contradicts its input and filter.
    let mut m = Tfl::default();
    let x = m.input("x", &[1, 4, 4, 1]);
    let w = m.f32s("w", &[1, 3, 3, 1], &[0.0; 9]);
    let y = m.act("y", &[1, 3, 3, 1]);
    m.op(3, &[x, w], &[y], Some((1, conv_options(1, 0, 1))));
    m.outputs.push(y);
    let err = convert_bytes(&m.bytes()).unwrap_err().to_string();
    assert!(err.contains("computed output 4x4"), "{err}");
    // Weight data that does not fill the tensor's shape.
    let mut m = Tfl::default();
    let x = m.input("x", &[1, 2]);
    let k = m.tensor("k", &[1, 2], F32, Some(vec![0; 4]));
    let y = m.act("y", &[1, 2]);
    m.op(0, &[x, k], &[y], None);
    m.outputs.push(y);
    let err = convert_bytes(&m.bytes()).unwrap_err().to_string();
    assert!(err.contains("has 4 bytes"), "{err}");
}
