//! The TFLite converter on small models assembled here operator by operator, run with tract and
//! compared with direct implementations of TFLite's semantics (NHWC, SAME padding, fused
//! activations, depth multipliers, resize modes), plus refusals of unsupported or broken files.

use graft_converters::tflite::convert_bytes;
use graft_converters::Error;
use tract_onnx::prelude::*;

// ---------- a minimal FlatBuffers writer (forward layout: children after their parents) ----------

enum Field {
    U8(u8),
    I32(i32),
    U32(u32),
    Table(Obj),
    Tables(Vec<Obj>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
    I64s(Vec<i64>),
    Bytes(Vec<u8>),
    Str(String),
}

/// A table: (field index, value) pairs.
#[derive(Default)]
struct Obj(Vec<(usize, Field)>);

impl Obj {
    fn with(mut self, index: usize, f: Field) -> Self {
        self.0.push((index, f));
        self
    }
}

fn put_u32(b: &mut [u8], pos: usize, v: u32) {
    b[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
}

fn align4(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// Writes a table (vtable first, then the table, then its children); returns the table's position.
fn write_obj(b: &mut Vec<u8>, obj: &Obj) -> usize {
    align4(b);
    let slots = obj.0.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
    let vt = b.len();
    b.extend(((4 + 2 * slots) as u16).to_le_bytes());
    b.extend(((4 + 4 * obj.0.len()) as u16).to_le_bytes());
    for slot in 0..slots {
        let off = obj
            .0
            .iter()
            .position(|(i, _)| *i == slot)
            .map_or(0, |k| 4 + 4 * k);
        b.extend((off as u16).to_le_bytes());
    }
    align4(b);
    let table = b.len();
    b.extend(((table - vt) as i32).to_le_bytes());
    for (_, f) in &obj.0 {
        match f {
            Field::U8(v) => b.extend([*v, 0, 0, 0]),
            Field::I32(v) => b.extend(v.to_le_bytes()),
            Field::U32(v) => b.extend(v.to_le_bytes()),
            _ => b.extend([0; 4]),
        }
    }
    for (k, (_, f)) in obj.0.iter().enumerate() {
        let slot = table + 4 + 4 * k;
        let child = match f {
            Field::U8(_) | Field::I32(_) | Field::U32(_) => continue,
            Field::Table(o) => write_obj(b, o),
            Field::Tables(objs) => {
                align4(b);
                let start = b.len();
                b.extend((objs.len() as u32).to_le_bytes());
                b.extend(vec![0; 4 * objs.len()]);
                for (j, o) in objs.iter().enumerate() {
                    let at = write_obj(b, o);
                    let elem = start + 4 + 4 * j;
                    put_u32(b, elem, (at - elem) as u32);
                }
                start
            }
            Field::I32s(v) => write_vec(b, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Field::F32s(v) => write_vec(b, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Field::I64s(v) => write_vec(b, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Field::Bytes(v) => write_vec(b, v.len(), v.iter().copied()),
            Field::Str(s) => {
                let at = write_vec(b, s.len(), s.bytes());
                b.push(0);
                at
            }
        };
        put_u32(b, slot, (child - slot) as u32);
    }
    table
}

fn write_vec(b: &mut Vec<u8>, len: usize, bytes: impl Iterator<Item = u8>) -> usize {
    align4(b);
    let start = b.len();
    b.extend((len as u32).to_le_bytes());
    b.extend(bytes);
    start
}

// ---------- TFLite models ----------

const F32: u8 = 0;
const F16: u8 = 1;
const I32: u8 = 2;
const I8: u8 = 9;

struct TensorDef {
    name: String,
    shape: Vec<usize>,
    dtype: u8,
    data: Option<Vec<u8>>,
    quant: Option<Obj>,
}

struct OpDef {
    code: i32,
    custom: Option<String>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    /// The options table and its union type.
    options: Option<(u8, Obj)>,
}

#[derive(Default)]
struct Tfl {
    tensors: Vec<TensorDef>,
    ops: Vec<OpDef>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
}

impl Tfl {
    fn tensor(&mut self, name: &str, shape: &[usize], dtype: u8, data: Option<Vec<u8>>) -> i32 {
        self.tensors.push(TensorDef {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
            data,
            quant: None,
        });
        self.tensors.len() as i32 - 1
    }

    fn input(&mut self, name: &str, shape: &[usize]) -> i32 {
        let t = self.tensor(name, shape, F32, None);
        self.inputs.push(t);
        t
    }

    fn act(&mut self, name: &str, shape: &[usize]) -> i32 {
        self.tensor(name, shape, F32, None)
    }

    fn f32s(&mut self, name: &str, shape: &[usize], v: &[f32]) -> i32 {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, shape, F32, Some(data))
    }

    fn i32s(&mut self, name: &str, shape: &[usize], v: &[i32]) -> i32 {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, shape, I32, Some(data))
    }

    /// Weights stored as fp16 and dequantized by a DEQUANTIZE operator, as TFLite's fp16
    /// post-training quantization does; `v` must be exactly representable in fp16.
    fn f16s(&mut self, name: &str, shape: &[usize], v: &[f32]) -> i32 {
        let data = v
            .iter()
            .flat_map(|x| f32_to_f16(*x).to_le_bytes())
            .collect();
        let h = self.tensor(&format!("{name}_fp16"), shape, F16, Some(data));
        let f = self.act(name, shape);
        self.op(6, &[h], &[f], None);
        f
    }

    fn op(&mut self, code: i32, inputs: &[i32], outputs: &[i32], options: Option<(u8, Obj)>) {
        self.ops.push(OpDef {
            code,
            custom: None,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            options,
        });
    }

    fn bytes(&self) -> Vec<u8> {
        let mut codes: Vec<(i32, Option<String>)> = Vec::new();
        let mut ops = Vec::new();
        for OpDef {
            code,
            custom,
            inputs,
            outputs,
            options,
        } in &self.ops
        {
            let key = (*code, custom.clone());
            let index = codes.iter().position(|c| *c == key).unwrap_or_else(|| {
                codes.push(key);
                codes.len() - 1
            });
            let mut o = Obj::default()
                .with(0, Field::U32(index as u32))
                .with(1, Field::I32s(inputs.clone()))
                .with(2, Field::I32s(outputs.clone()));
            if let Some((kind, table)) = options {
                o = o.with(3, Field::U8(*kind)).with(
                    4,
                    Field::Table(Obj(table
                        .0
                        .iter()
                        .map(|(i, f)| (*i, copy_field(f)))
                        .collect())),
                );
            }
            ops.push(o);
        }
        let mut buffers = vec![Obj::default()];
        let mut tensors = Vec::new();
        for t in &self.tensors {
            let buffer = match &t.data {
                Some(d) => {
                    buffers.push(Obj::default().with(0, Field::Bytes(d.clone())));
                    buffers.len() - 1
                }
                None => 0,
            };
            let mut o = Obj::default()
                .with(0, Field::I32s(t.shape.iter().map(|&d| d as i32).collect()))
                .with(1, Field::U8(t.dtype))
                .with(2, Field::U32(buffer as u32))
                .with(3, Field::Str(t.name.clone()));
            if let Some(q) = &t.quant {
                o = o.with(
                    4,
                    Field::Table(Obj(q.0.iter().map(|(i, f)| (*i, copy_field(f))).collect())),
                );
            }
            tensors.push(o);
        }
        let codes = codes
            .into_iter()
            .map(|(c, custom)| {
                let o = Obj::default()
                    .with(0, Field::U8(c.min(127) as u8))
                    .with(3, Field::I32(c));
                match custom {
                    Some(s) => o.with(1, Field::Str(s)),
                    None => o,
                }
            })
            .collect();
        let subgraph = Obj::default()
            .with(0, Field::Tables(tensors))
            .with(1, Field::I32s(self.inputs.clone()))
            .with(2, Field::I32s(self.outputs.clone()))
            .with(3, Field::Tables(ops));
        let model = Obj::default()
            .with(0, Field::U32(3))
            .with(1, Field::Tables(codes))
            .with(2, Field::Tables(vec![subgraph]))
            .with(4, Field::Tables(buffers));
        let mut b = vec![0, 0, 0, 0, b'T', b'F', b'L', b'3'];
        let root = write_obj(&mut b, &model);
        put_u32(&mut b, 0, root as u32);
        b
    }
}

fn copy_field(f: &Field) -> Field {
    match f {
        Field::U8(v) => Field::U8(*v),
        Field::I32(v) => Field::I32(*v),
        Field::U32(v) => Field::U32(*v),
        Field::I32s(v) => Field::I32s(v.clone()),
        Field::F32s(v) => Field::F32s(v.clone()),
        Field::I64s(v) => Field::I64s(v.clone()),
        Field::Bytes(v) => Field::Bytes(v.clone()),
        Field::Str(v) => Field::Str(v.clone()),
        Field::Table(o) => {
            Field::Table(Obj(o.0.iter().map(|(i, f)| (*i, copy_field(f))).collect()))
        }
        Field::Tables(v) => Field::Tables(
            v.iter()
                .map(|o| Obj(o.0.iter().map(|(i, f)| (*i, copy_field(f))).collect()))
                .collect(),
        ),
    }
}

/// fp32 to fp16 for values that fp16 represents exactly (normal numbers and zero).
fn f32_to_f16(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    let bits = v.to_bits();
    let sign = ((bits >> 31) as u16) << 15;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    assert!(
        (1..31).contains(&exp) && bits & 0x1fff == 0,
        "{v} is not exact in fp16"
    );
    sign | ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}

// ---------- running and reference implementations ----------

/// Converts and runs the model on `input`; returns each output's shape and values.
fn run(model: &Tfl, input: &[f32], shape: &[usize]) -> Vec<(Vec<usize>, Vec<f32>)> {
    let onnx = convert_bytes(&model.bytes()).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), input.to_vec()).unwrap();
    plan.run(tvec!(x.into_tensor().into()))
        .unwrap()
        .iter()
        .map(|t| {
            let v = t.to_plain_array_view::<f32>().unwrap();
            (v.shape().to_vec(), v.iter().copied().collect())
        })
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{k}]: got {g}, want {w}"
        );
    }
}

/// Deterministic test data in [-1, 1), multiples of 1/64 (exact in fp16).
fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 128) as f32 / 64.0 - 1.0
        })
        .collect()
}

/// NHWC tensor index.
fn at(shape: [usize; 4], b: usize, y: usize, x: usize, c: usize) -> usize {
    ((b * shape[1] + y) * shape[2] + x) * shape[3] + c
}

/// TFLite SAME padding before the data on one axis.
fn same_pad(input: usize, k: usize, stride: usize, dilation: usize) -> usize {
    let out = input.div_ceil(stride);
    ((out - 1) * stride + (k - 1) * dilation + 1).saturating_sub(input) / 2
}

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
    let (kh, kw) = (ws[1], ws[2]);
    let oc = if multiplier.is_some() { ws[3] } else { ws[0] };
    let os = [xs[0], xs[1].div_ceil(stride), xs[2].div_ceil(stride), oc];
    let (pt, pl) = (
        same_pad(xs[1], kh, stride, dilation),
        same_pad(xs[2], kw, stride, dilation),
    );
    let mut out = vec![0f32; os.iter().product()];
    for b in 0..os[0] {
        for oy in 0..os[1] {
            for ox in 0..os[2] {
                for o in 0..oc {
                    let mut acc = bias[o];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * stride + ky * dilation) as isize - pt as isize;
                            let ix = (ox * stride + kx * dilation) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= xs[1] as isize || ix >= xs[2] as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            match multiplier {
                                Some(m) => {
                                    acc += x[at(xs, b, iy, ix, o / m)] * w[at(ws, 0, ky, kx, o)];
                                }
                                None => {
                                    for c in 0..xs[3] {
                                        acc += x[at(xs, b, iy, ix, c)] * w[at(ws, o, ky, kx, c)];
                                    }
                                }
                            }
                        }
                    }
                    out[at(os, b, oy, ox, o)] = acc;
                }
            }
        }
    }
    (out, os)
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

/// TFLite's bilinear resize of one NHWC image.
fn resize_ref(
    x: &[f32],
    xs: [usize; 4],
    oh: usize,
    ow: usize,
    align: bool,
    half: bool,
) -> Vec<f32> {
    let axis = |o: usize, input: usize, out: usize| -> (usize, usize, f32) {
        let scale = if align && out > 1 {
            (input - 1) as f32 / (out - 1) as f32
        } else {
            input as f32 / out as f32
        };
        let v = if half {
            (o as f32 + 0.5) * scale - 0.5
        } else {
            o as f32 * scale
        };
        let lo = v.floor().max(0.0) as usize;
        let hi = (v.ceil() as usize).min(input - 1);
        (lo, hi, v - v.floor().max(0.0))
    };
    let os = [xs[0], oh, ow, xs[3]];
    let mut out = vec![0f32; os.iter().product()];
    for y in 0..oh {
        let (y0, y1, fy) = axis(y, xs[1], oh);
        for x_ in 0..ow {
            let (x0, x1, fx) = axis(x_, xs[2], ow);
            for c in 0..xs[3] {
                let p = |yy, xx| x[at(xs, 0, yy, xx, c)];
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                out[at(os, 0, y, x_, c)] = top + (bottom - top) * fy;
            }
        }
    }
    out
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
            let want = resize_ref(&input, xs, oh, ow, align, half);
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
