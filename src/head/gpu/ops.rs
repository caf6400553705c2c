//! One-shot GPU versions of [`crate::head::cpu`]'s per-operation functions: upload, run one
//! kernel, read back. They check the kernels against the CPU reference; training itself keeps
//! everything on the device ([`super::GpuBackend`]). Same maths types ([`crate::head::maths`])
//! and the same mapping onto the kernels as the backend ([`super`]).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::{dropout_hash, labels_u32, optimizer_step as kernel_step};
use crate::gpu::context::Gpu;
use crate::gpu::kernels::{MatMul, Recorder};
use crate::head::maths::{self, CrossEntropy, DenseGrad, DropoutStep, SmoothedTargets};
use crate::head::optim::StepScalars;
use crate::head::{Dense, Optimizer};
use crate::{Error, Result};

/// Row-major contents of a matrix.
fn values(x: ArrayView2<f32>) -> Vec<f32> {
    x.iter().copied().collect()
}

fn matrix(rows: usize, cols: usize, data: Vec<f32>) -> Result<Array2<f32>> {
    Array2::from_shape_vec((rows, cols), data).map_err(|e| Error::Gpu(e.to_string()))
}

fn check_layer(x_cols: usize, layer: &Dense) -> Result<()> {
    let (inputs, outputs) = layer.weight.dim();
    if x_cols != inputs || layer.bias.len() != outputs {
        return Err(Error::Invalid(format!(
            "a {inputs}x{outputs} layer with {} biases cannot take {x_cols} inputs",
            layer.bias.len()
        )));
    }
    Ok(())
}

/// `x · weight + bias` ([`crate::head::cpu::dense_forward`]).
pub fn dense_forward(gpu: &Gpu, x: ArrayView2<f32>, layer: &Dense) -> Result<Array2<f32>> {
    check_layer(x.ncols(), layer)?;
    let (rows, (inputs, outputs)) = (x.nrows(), layer.weight.dim());
    let xb = gpu.upload("x", &values(x))?;
    let w = gpu.upload("weight", &values(layer.weight.view()))?;
    let b = gpu.upload("bias", &layer.bias.to_vec())?;
    let out = gpu.storage("output", (rows * outputs * 4) as u64)?;
    let mut rec = Recorder::new(gpu);
    rec.matmul(
        &xb,
        &w,
        Some(&b),
        &out,
        MatMul::plain(rows, inputs, outputs),
        false,
    )?;
    rec.submit();
    matrix(rows, outputs, gpu.read(&out, rows * outputs)?)
}

/// Gradients of a dense layer ([`crate::head::cpu::dense_backward`]).
pub fn dense_backward(
    gpu: &Gpu,
    a: ArrayView2<f32>,
    dz: ArrayView2<f32>,
    layer: &Dense,
    want_input_grad: bool,
) -> Result<(DenseGrad, Option<Array2<f32>>)> {
    check_layer(a.ncols(), layer)?;
    let (rows, (inputs, outputs)) = (a.nrows(), layer.weight.dim());
    if dz.dim() != (rows, outputs) {
        return Err(Error::Invalid(format!(
            "output gradient {:?} for {rows} rows of {outputs} outputs",
            dz.dim()
        )));
    }
    let ab = gpu.upload("input", &values(a))?;
    let dzb = gpu.upload("output gradient", &values(dz))?;
    let w = gpu.upload("weight", &values(layer.weight.view()))?;
    let gw = gpu.storage("weight gradient", (inputs * outputs * 4) as u64)?;
    let gb = gpu.storage("bias gradient", (outputs * 4) as u64)?;
    let da = gpu.storage("input gradient", (rows * inputs * 4) as u64)?;
    let mut rec = Recorder::new(gpu);
    let grad_shape = MatMul::transpose_a(rows, inputs, outputs);
    rec.matmul(&ab, &dzb, None, &gw, grad_shape, false)?;
    rec.column_sums(&dzb, &gb, rows, outputs, false)?;
    if want_input_grad {
        let input_shape = MatMul::transpose_b(rows, outputs, inputs);
        rec.matmul(&dzb, &w, None, &da, input_shape, false)?;
    }
    rec.submit();
    let grad = DenseGrad {
        weight: matrix(inputs, outputs, gpu.read(&gw, inputs * outputs)?)?,
        bias: Array1::from(gpu.read(&gb, outputs)?),
    };
    let da = if want_input_grad {
        Some(matrix(rows, inputs, gpu.read(&da, rows * inputs)?)?)
    } else {
        None
    };
    Ok((grad, da))
}

/// ReLU with optional dropout of hidden layer `layer`
/// ([`crate::head::cpu::relu_dropout`]); returns the activations and the backward scale.
pub fn relu_dropout(
    gpu: &Gpu,
    z: ArrayView2<f32>,
    dropout: Option<&DropoutStep>,
    layer: u32,
) -> Result<(Array2<f32>, f32)> {
    let (rows, cols) = z.dim();
    let buffer = gpu.upload("activations", &values(z))?;
    let mut rec = Recorder::new(gpu);
    rec.relu_dropout(&buffer, rows, cols, dropout_hash(dropout), layer, 0)?;
    rec.submit();
    let scale = dropout.map_or(1.0, DropoutStep::scale);
    Ok((matrix(rows, cols, gpu.read(&buffer, rows * cols)?)?, scale))
}

/// `da * scale` where `a > 0`, 0 elsewhere ([`crate::head::cpu::relu_dropout_backward`]).
pub fn relu_dropout_backward(
    gpu: &Gpu,
    da: ArrayView2<f32>,
    a: ArrayView2<f32>,
    scale: f32,
) -> Result<Array2<f32>> {
    if da.dim() != a.dim() {
        return Err(Error::Invalid(format!(
            "gradient {:?} and activations {:?} differ in shape",
            da.dim(),
            a.dim()
        )));
    }
    let (rows, cols) = da.dim();
    let dab = gpu.upload("gradient", &values(da))?;
    let ab = gpu.upload("activations", &values(a))?;
    let mut rec = Recorder::new(gpu);
    rec.relu_backward(&dab, &ab, rows * cols, scale)?;
    rec.submit();
    matrix(rows, cols, gpu.read(&dab, rows * cols)?)
}

/// Smoothed, class-weighted softmax cross-entropy
/// ([`crate::head::cpu::softmax_cross_entropy`]); the weighted sum is added up in `f64` on the
/// host from the per-row losses.
pub fn softmax_cross_entropy(
    gpu: &Gpu,
    logits: ArrayView2<f32>,
    labels: &[usize],
    class_weights: &[f32],
    smoothing: f32,
) -> Result<CrossEntropy> {
    let (rows, classes) = logits.dim();
    if classes == 0 {
        return Err(Error::Invalid(format!(
            "cross-entropy of {rows}x0 logits: there are no classes"
        )));
    }
    maths::check_cross_entropy(rows, classes, labels, class_weights)?;
    let labels32 = labels_u32("", labels, classes)?;
    let zb = gpu.upload("logits", &values(logits))?;
    let yb = gpu.upload("labels", &labels32)?;
    let wb = gpu.upload("class weights", class_weights)?;
    let db = gpu.storage("logit gradient", (rows * classes * 4) as u64)?;
    let loss = gpu.storage("row losses", (rows * 4) as u64)?;
    let correct = gpu.storage("row correct", (rows * 4) as u64)?;
    let mut rec = Recorder::new(gpu);
    let inv_batch = maths::inv_batch(rows);
    let targets = SmoothedTargets::new(smoothing, classes);
    rec.softmax_ce(
        &zb,
        &yb,
        &wb,
        Some(&db),
        &loss,
        &correct,
        rows,
        classes,
        (targets.off, targets.on),
        inv_batch,
    )?;
    rec.submit();
    let row_loss: Vec<f32> = gpu.read(&loss, rows)?;
    let row_correct: Vec<u32> = gpu.read(&correct, rows)?;
    Ok(CrossEntropy {
        weighted_sum: row_loss.iter().map(|&l| f64::from(l)).sum(),
        correct: row_correct.iter().map(|&c| c as usize).sum(),
        dlogits: matrix(rows, classes, gpu.read(&db, rows * classes)?)?,
    })
}

/// Column sums of `x` (the bias gradient).
pub fn column_sums(gpu: &Gpu, x: ArrayView2<f32>) -> Result<Array1<f32>> {
    let (rows, cols) = x.dim();
    let xb = gpu.upload("matrix", &values(x))?;
    let sums = gpu.storage("sums", (cols * 4) as u64)?;
    let mut rec = Recorder::new(gpu);
    rec.column_sums(&xb, &sums, rows, cols, false)?;
    rec.submit();
    Ok(Array1::from(gpu.read(&sums, cols)?))
}

/// One optimiser step on every element ([`Optimizer::update`]); returns `(w, s1, s2)`.
pub fn optimizer_step(
    gpu: &Gpu,
    optimizer: &Optimizer,
    k: &StepScalars,
    weight_decay: f32,
    w: ArrayView1<f32>,
    g: ArrayView1<f32>,
    state: (ArrayView1<f32>, ArrayView1<f32>),
) -> Result<(Array1<f32>, Array1<f32>, Array1<f32>)> {
    let n = w.len();
    if g.len() != n || state.0.len() != n || state.1.len() != n {
        return Err(Error::Invalid(
            "weights, gradient and state differ in length".into(),
        ));
    }
    let wb = gpu.upload("weights", &w.to_vec())?;
    let gb = gpu.upload("gradient", &g.to_vec())?;
    let s1 = gpu.upload("state 1", &state.0.to_vec())?;
    let s2 = gpu.upload("state 2", &state.1.to_vec())?;
    let mut rec = Recorder::new(gpu);
    let step = kernel_step(optimizer, k, weight_decay);
    rec.optimizer_step(&step, &wb, &gb, &s1, &s2, n)?;
    rec.submit();
    Ok((
        Array1::from(gpu.read(&wb, n)?),
        Array1::from(gpu.read(&s1, n)?),
        Array1::from(gpu.read(&s2, n)?),
    ))
}
