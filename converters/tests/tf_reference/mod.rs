//! TensorFlow's semantics of the spatial ops written out directly (NHWC tensors, HWIO filters),
//! as references for the converter tests.
#![allow(dead_code)]

/// NHWC index.
pub fn at(s: [usize; 4], b: usize, y: usize, x: usize, c: usize) -> usize {
    ((b * s[1] + y) * s[2] + x) * s[3] + c
}

/// Output size and padding before the data of one axis: SAME (`ceil(in / stride)`, the odd extra
/// cell after) or VALID.
pub fn window(
    input: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    same: bool,
) -> (usize, usize) {
    let span = (k - 1) * dilation + 1;
    if same {
        let out = input.div_ceil(stride);
        let total = ((out - 1) * stride + span).saturating_sub(input);
        (out, total / 2)
    } else {
        ((input - span) / stride + 1, 0)
    }
}

/// A 2-d convolution. `w` is HWIO `[kh, kw, cin, cout]`; with `multiplier` it is depthwise
/// (`[kh, kw, c, m]`, output channel `c * m + k` reads input channel `c`).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    bias: Option<&[f32]>,
    stride: usize,
    dilation: usize,
    same: bool,
    multiplier: Option<usize>,
) -> (Vec<f32>, [usize; 4]) {
    let [kh, kw, wi, wo] = ws;
    let oc = if multiplier.is_some() { wi * wo } else { wo };
    let (oh, pt) = window(xs[1], kh, stride, dilation, same);
    let (ow, pl) = window(xs[2], kw, stride, dilation, same);
    let os = [xs[0], oh, ow, oc];
    let mut out = vec![0f32; os.iter().product()];
    for b in 0..xs[0] {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let mut acc = bias.map_or(0.0, |b| b[o]);
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
                                    acc += x[at(xs, b, iy, ix, o / m)] * w[(ky * kw + kx) * oc + o];
                                }
                                None => {
                                    for c in 0..wi {
                                        acc += x[at(xs, b, iy, ix, c)]
                                            * w[((ky * kw + kx) * wi + c) * wo + o];
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

/// A TFLite `[o, kh, kw, i]` filter as TF's HWIO `[kh, kw, i, o]`; returns it with that shape.
pub fn ohwi_to_hwio(w: &[f32], [o, kh, kw, i]: [usize; 4]) -> (Vec<f32>, [usize; 4]) {
    let mut out = vec![0f32; w.len()];
    for k in 0..o {
        for y in 0..kh {
            for x in 0..kw {
                for c in 0..i {
                    out[((y * kw + x) * i + c) * o + k] = w[((k * kh + y) * kw + x) * i + c];
                }
            }
        }
    }
    (out, [kh, kw, i, o])
}

/// Max or average pooling; the average counts only the cells inside the input.
pub fn pool(
    x: &[f32],
    xs: [usize; 4],
    k: [usize; 2],
    stride: [usize; 2],
    same: bool,
    max: bool,
) -> (Vec<f32>, [usize; 4]) {
    let (oh, pt) = window(xs[1], k[0], stride[0], 1, same);
    let (ow, pl) = window(xs[2], k[1], stride[1], 1, same);
    let os = [xs[0], oh, ow, xs[3]];
    let mut out = vec![0f32; os.iter().product()];
    for b in 0..xs[0] {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..xs[3] {
                    let (mut m, mut sum, mut n) = (f32::MIN, 0.0, 0.0);
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let iy = (oy * stride[0] + ky) as isize - pt as isize;
                            let ix = (ox * stride[1] + kx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= xs[1] as isize || ix >= xs[2] as isize {
                                continue;
                            }
                            let v = x[at(xs, b, iy as usize, ix as usize, c)];
                            m = m.max(v);
                            sum += v;
                            n += 1.0;
                        }
                    }
                    out[at(os, b, oy, ox, c)] = if max { m } else { sum / n };
                }
            }
        }
    }
    (out, os)
}

/// Bilinear resize to `oh x ow` with TF's `align_corners` / `half_pixel_centers`.
pub fn resize(
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
        let hi = (v.ceil().max(0.0) as usize).min(input - 1);
        (lo.min(input - 1), hi, v - v.floor().max(0.0))
    };
    let os = [xs[0], oh, ow, xs[3]];
    let mut out = vec![0f32; os.iter().product()];
    for b in 0..xs[0] {
        for y in 0..oh {
            let (y0, y1, fy) = axis(y, xs[1], oh);
            for x_ in 0..ow {
                let (x0, x1, fx) = axis(x_, xs[2], ow);
                for c in 0..xs[3] {
                    let p = |yy, xx| x[at(xs, b, yy, xx, c)];
                    let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                    let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                    out[at(os, b, y, x_, c)] = top + (bottom - top) * fy;
                }
            }
        }
    }
    out
}

/// Softmax of each row of `n` values.
pub fn softmax(v: &[f32], n: usize) -> Vec<f32> {
    v.chunks(n)
        .flat_map(|row| {
            let m = row.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = row.iter().map(|x| (x - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(move |x| x / s)
        })
        .collect()
}

/// Inference batch norm over the last axis.
pub fn batch_norm(x: &[f32], c: usize, p: [&[f32]; 4], eps: f32) -> Vec<f32> {
    let [gamma, beta, mean, var] = p;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = i % c;
            (v - mean[k]) / (var[k] + eps).sqrt() * gamma[k] + beta[k]
        })
        .collect()
}

/// `[a, b]` matrix times `[b, n]`.
pub fn matmul(x: &[f32], w: &[f32], b: usize, n: usize) -> Vec<f32> {
    x.chunks(b)
        .flat_map(|row| (0..n).map(move |j| (0..b).map(|k| row[k] * w[k * n + j]).sum::<f32>()))
        .collect()
}

pub const SELU_ALPHA: f32 = 1.673_263_2;
pub const SELU_SCALE: f32 = 1.050_701;
