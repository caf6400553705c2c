//! Constant folding: TF ops whose inputs are all constants, computed at conversion time.
//!
//! Frozen TensorFlow graphs keep the arithmetic that training graphs did on variables: an
//! unfolded batch norm is `gamma * rsqrt(variance + eps)` and `beta - mean * that`, all on
//! constants, and every weight is read through an `Identity`. Folding them leaves constants that
//! the converter can use as filters, biases and broadcast operands in the layout it chooses,
//! instead of run-time nodes in the channels-last layout.
//!
//! The arithmetic is TensorFlow's: float32 for floats (one IEEE operation per element, so the
//! values are those TensorFlow computes), wrapping-free int32 for integers (overflow is not
//! folded), and numpy broadcasting. A fold that would make a constant larger than its largest
//! input is not done (the op stays a run-time node), so folding never grows the model beyond
//! the file.

use super::weights::{Data, Tensor};

/// Ops that folding computes.
pub const FOLDABLE: &[&str] = &[
    "Identity",
    "StopGradient",
    "Snapshot",
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "RealDiv",
    "Maximum",
    "Minimum",
    "Rsqrt",
    "Sqrt",
    "Neg",
    "Reciprocal",
    "Square",
];

/// The value of `op` on constant `inputs`, or `None` when it is not folded (an op or dtype
/// folding does not compute, shapes that do not broadcast, a result larger than the inputs).
pub fn fold(op: &str, inputs: &[&Tensor]) -> Option<Tensor> {
    match (op, inputs) {
        ("Identity" | "StopGradient" | "Snapshot", [x]) => Some((*x).clone()),
        (_, [x]) => unary(op, x),
        (_, [a, b]) => binary(op, a, b),
        _ => None,
    }
}

fn unary(op: &str, x: &Tensor) -> Option<Tensor> {
    let Data::F32(v) = &x.data else {
        return None;
    };
    let f: fn(f32) -> f32 = match op {
        "Rsqrt" => |x| 1.0 / x.sqrt(),
        "Sqrt" => f32::sqrt,
        "Neg" => |x| -x,
        "Reciprocal" => |x| 1.0 / x,
        "Square" => |x| x * x,
        _ => return None,
    };
    Some(Tensor {
        shape: x.shape.clone(),
        data: Data::F32(v.iter().map(|&x| f(x)).collect()),
    })
}

/// The numpy broadcast of two shapes, if they broadcast.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// For each element of the broadcast `shape`, the index of the element of `s` it reads.
fn source_indices(s: &[usize], shape: &[usize]) -> Vec<usize> {
    let rank = shape.len();
    let count: usize = shape.iter().product();
    // Strides of `s` aligned to the right of `shape`, 0 where `s` broadcasts.
    let mut strides = vec![0usize; rank];
    let mut stride = 1;
    for (k, &d) in s.iter().enumerate().rev() {
        let i = rank - s.len() + k;
        strides[i] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    let mut out = Vec::with_capacity(count);
    let mut idx = vec![0usize; rank];
    for _ in 0..count {
        out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

fn binary(op: &str, a: &Tensor, b: &Tensor) -> Option<Tensor> {
    let shape = broadcast(&a.shape, &b.shape)?;
    let count: usize = shape.iter().product();
    if count > a.len().max(b.len()) {
        return None;
    }
    let (ia, ib) = (
        source_indices(&a.shape, &shape),
        source_indices(&b.shape, &shape),
    );
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let f: fn(f32, f32) -> f32 = match op {
                "Add" | "AddV2" => |a, b| a + b,
                "Sub" => |a, b| a - b,
                "Mul" => |a, b| a * b,
                "RealDiv" => |a, b| a / b,
                "Maximum" => f32::max,
                "Minimum" => f32::min,
                _ => return None,
            };
            Data::F32(ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect())
        }
        (Data::I32(x), Data::I32(y)) => {
            let f: fn(i32, i32) -> Option<i32> = match op {
                "Add" | "AddV2" => i32::checked_add,
                "Sub" => i32::checked_sub,
                "Mul" => i32::checked_mul,
                "Maximum" => |a, b| Some(a.max(b)),
                "Minimum" => |a, b| Some(a.min(b)),
                _ => return None,
            };
            Data::I32(
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| f(x[i], y[j]))
                    .collect::<Option<_>>()?,
            )
        }
        _ => return None,
    };
    Some(Tensor { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: Data::F32(v.to_vec()),
        }
    }

    #[test]
    fn batch_norm_arithmetic_folds_with_broadcasting() {
        let var = f(&[3], &[4.0, 1.0, 0.25]);
        let eps = f(&[], &[0.0]);
        let s = fold("AddV2", &[&var, &eps]).unwrap();
        let r = fold("Rsqrt", &[&s]).unwrap();
        assert_eq!(r.data, Data::F32(vec![0.5, 1.0, 2.0]));
        let m = f(&[2, 1], &[1.0, 2.0]);
        let row = f(&[1, 2], &[10.0, 20.0]);
        // [2,1] x [1,2] would make 4 elements out of 2: not folded.
        assert!(fold("Mul", &[&m, &row]).is_none());
        let full = f(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = fold("Sub", &[&full, &row]).unwrap();
        assert_eq!(y.data, Data::F32(vec![-9.0, -18.0, -7.0, -16.0]));
        let y = fold("Mul", &[&m, &full]).unwrap();
        assert_eq!(y.data, Data::F32(vec![1.0, 2.0, 6.0, 8.0]));
    }

    #[test]
    fn what_is_not_folded() {
        let a = f(&[3], &[1.0, 2.0, 3.0]);
        let b = f(&[2], &[1.0, 2.0]);
        assert!(fold("Add", &[&a, &b]).is_none());
        assert!(fold("Conv2D", &[&a, &b]).is_none());
        let i = Tensor {
            shape: vec![1],
            data: Data::I32(vec![i32::MAX]),
        };
        assert!(fold("Add", &[&i, &i]).is_none());
        assert_eq!(
            fold("Sub", &[&i, &i]).unwrap().data,
            Data::I32(vec![0]),
            "int32 arithmetic that does not overflow folds"
        );
    }
}
