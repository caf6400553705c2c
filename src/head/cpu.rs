//! The reference training maths on the CPU (ndarray), one small public function per operation, and
//! [`CpuBackend`] built from them. Other backends must match these functions (1e-5 per op); the
//! formulas they all meet are [`crate::head::maths`]'s.
//!
//! - Hidden layers: [`dense_forward`], then [`relu_dropout`]; output layer: [`dense_forward`].
//! - Loss: [`softmax_cross_entropy`].
//! - Backward: [`dense_backward`] per layer, [`relu_dropout_backward`] through the hidden ones;
//!   [`forward_backward`] runs the whole pass.
//! - Update: [`crate::head::Optimizer::update_all`] on every weight and bias.

use ndarray::{Array, Array1, Array2, ArrayView2, Axis, Dimension, Zip};

use crate::head::backend::{
    check_begin, check_epoch_order, not_begun, EpochStats, Examples, HeadBackend, StepSettings,
};
use crate::head::maths::{self, SmoothedTargets};
use crate::head::optim::StepScalars;
use crate::head::random::{self, DropoutSite};
use crate::head::{argmax_rows, Dense, Head};
use crate::{Error, Result};

// The maths types these functions take and give, at their older paths.
pub use crate::head::maths::{CrossEntropy, DenseGrad, DropoutStep};

/// `x · weight + bias`.
pub fn dense_forward(x: ArrayView2<f32>, layer: &Dense) -> Array2<f32> {
    x.dot(&layer.weight) + &layer.bias
}

/// In place `z = max(z, 0) * factor` for hidden layer `layer`; returns the scale `s` the backward
/// pass needs (`1 / (1 - p)` with dropout, else 1).
pub fn relu_dropout(z: &mut Array2<f32>, dropout: Option<&DropoutStep>, layer: u32) -> f32 {
    match dropout {
        Some(d) if d.is_active() => {
            for (row, mut values) in z.axis_iter_mut(Axis(0)).enumerate() {
                for (unit, v) in values.iter_mut().enumerate() {
                    let site = DropoutSite {
                        seed: d.seed,
                        epoch: d.epoch,
                        step: d.step,
                        layer,
                        row: row as u32,
                        unit: unit as u32,
                    };
                    *v = v.max(0.0) * random::dropout_factor(&site, d.rate);
                }
            }
            d.scale()
        }
        _ => {
            z.mapv_inplace(|v| v.max(0.0));
            1.0
        }
    }
}

/// In place `da = da * scale` where the layer's output `a > 0`, `0` elsewhere.
pub fn relu_dropout_backward(da: &mut Array2<f32>, a: ArrayView2<f32>, scale: f32) {
    Zip::from(da)
        .and(a)
        .for_each(|d, &a| *d = if a > 0.0 { *d * scale } else { 0.0 });
}

/// Gradients of a dense layer from its input `a` and output gradient `dz`, and the input gradient
/// `dz · Wᵀ` when `want_input_grad`.
pub fn dense_backward(
    a: ArrayView2<f32>,
    dz: ArrayView2<f32>,
    layer: &Dense,
    want_input_grad: bool,
) -> (DenseGrad, Option<Array2<f32>>) {
    let grad = DenseGrad {
        weight: a.t().dot(&dz),
        bias: dz.sum_axis(Axis(0)),
    };
    let da = want_input_grad.then(|| dz.dot(&layer.weight.t()));
    (grad, da)
}

/// Smoothed, class-weighted softmax cross-entropy of `logits` `[B, C]` (see
/// [`crate::head::maths`]).
pub fn softmax_cross_entropy(
    logits: ArrayView2<f32>,
    labels: &[usize],
    class_weights: &[f32],
    smoothing: f32,
) -> Result<CrossEntropy> {
    let (rows, classes) = logits.dim();
    maths::check_cross_entropy(rows, classes, labels, class_weights)?;
    let SmoothedTargets { off, on } = SmoothedTargets::new(smoothing, classes);
    let inv_batch = maths::inv_batch(rows);
    let predicted = argmax_rows(logits);
    let mut weighted_sum = 0.0f64;
    let mut dlogits = Array2::zeros((rows, classes));
    for (i, (z, mut dz)) in logits
        .axis_iter(Axis(0))
        .zip(dlogits.axis_iter_mut(Axis(0)))
        .enumerate()
    {
        let y = labels[i];
        let w = class_weights[y];
        let max = z.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max + z.fold(0.0f32, |s, &v| s + (v - max).exp()).ln();
        let mut ce = 0.0f32;
        for (c, (&zc, d)) in z.iter().zip(dz.iter_mut()).enumerate() {
            let logp = zc - lse;
            let t = if c == y { on } else { off };
            ce -= t * logp;
            *d = w * (logp.exp() - t) * inv_batch;
        }
        weighted_sum += f64::from(w * ce);
    }
    let correct = predicted.iter().zip(labels).filter(|(p, y)| p == y).count();
    Ok(CrossEntropy {
        weighted_sum,
        correct,
        dlogits,
    })
}

/// One forward and backward pass over a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Pass {
    /// Loss and accuracy counts of the batch (and the logits' gradient).
    pub loss: CrossEntropy,
    /// Gradient of the batch loss for each layer, first to last (no weight decay).
    pub grads: Vec<DenseGrad>,
}

/// Forward pass (with dropout when `dropout` is given) and backward pass of the batch loss.
pub fn forward_backward(
    head: &Head,
    x: ArrayView2<f32>,
    labels: &[usize],
    class_weights: &[f32],
    smoothing: f32,
    dropout: Option<&DropoutStep>,
) -> Result<Pass> {
    head.check()?;
    let last = head.layers.len() - 1;
    if x.ncols() != head.input_dim() {
        return Err(Error::Invalid(format!(
            "the head takes embeddings of size {}, got {}",
            head.input_dim(),
            x.ncols()
        )));
    }
    // Outputs of the hidden layers (after ReLU and dropout) and their backward scales.
    let mut hidden: Vec<Array2<f32>> = Vec::with_capacity(last);
    let mut scales = Vec::with_capacity(last);
    for (l, layer) in head.layers[..last].iter().enumerate() {
        let input = hidden.last().map_or(x, |a| a.view());
        let mut z = dense_forward(input, layer);
        scales.push(relu_dropout(&mut z, dropout, l as u32));
        hidden.push(z);
    }
    let input = hidden.last().map_or(x, |a| a.view());
    let logits = dense_forward(input, &head.layers[last]);
    let loss = softmax_cross_entropy(logits.view(), labels, class_weights, smoothing)?;

    let mut grads = Vec::with_capacity(head.layers.len());
    let mut dz = loss.dlogits.clone();
    for l in (0..=last).rev() {
        let input = if l == 0 { x } else { hidden[l - 1].view() };
        let (grad, da) = dense_backward(input, dz.view(), &head.layers[l], l > 0);
        grads.push(grad);
        if let Some(mut da) = da {
            relu_dropout_backward(&mut da, hidden[l - 1].view(), scales[l - 1]);
            dz = da;
        }
    }
    grads.reverse();
    Ok(Pass { loss, grads })
}

/// Optimiser state of one layer (slots `s1`, `s2` of [`crate::head::Optimizer::update`]).
#[derive(Clone, Debug)]
struct LayerState {
    weight: [Array2<f32>; 2],
    bias: [Array1<f32>; 2],
}

/// Applies one optimiser step to `layer` (weight decay on the weights only).
fn apply_update(
    settings: &StepSettings,
    t: u64,
    layer: &mut Dense,
    grad: &DenseGrad,
    state: &mut LayerState,
) -> Result<()> {
    let k = settings.step_scalars(t);
    let decay = settings.weight_decay;
    let [w1, w2] = &mut state.weight;
    update_params(settings, &k, decay, &mut layer.weight, &grad.weight, w1, w2)?;
    let [b1, b2] = &mut state.bias;
    update_params(settings, &k, 0.0, &mut layer.bias, &grad.bias, b1, b2)
}

/// [`crate::head::Optimizer::update_all`] on one parameter array, its gradient and its state.
fn update_params<D: Dimension>(
    settings: &StepSettings,
    k: &StepScalars,
    weight_decay: f32,
    w: &mut Array<f32, D>,
    g: &Array<f32, D>,
    s1: &mut Array<f32, D>,
    s2: &mut Array<f32, D>,
) -> Result<()> {
    let (Some(w), Some(g), Some(s1), Some(s2)) = (
        w.as_slice_mut(),
        g.as_slice(),
        s1.as_slice_mut(),
        s2.as_slice_mut(),
    ) else {
        return Err(Error::Invalid(
            "head parameters are not contiguous in memory".into(),
        ));
    };
    settings.optimizer.update_all(k, weight_decay, w, g, s1, s2);
    Ok(())
}

/// Everything a training run keeps between calls.
#[derive(Clone, Debug)]
struct Session {
    head: Head,
    best: Option<Head>,
    state: Vec<LayerState>,
    /// Optimiser steps taken so far.
    steps: u64,
    train_x: Array2<f32>,
    train_y: Vec<usize>,
    val_x: Array2<f32>,
    val_y: Vec<usize>,
    class_weights: Vec<f32>,
    settings: StepSettings,
}

/// The reference backend: ndarray on the CPU.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    session: Option<Session>,
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend::default()
    }

    fn session(&mut self) -> Result<&mut Session> {
        self.session.as_mut().ok_or_else(|| not_begun("CPU"))
    }
}

impl HeadBackend for CpuBackend {
    fn name(&self) -> String {
        "cpu (ndarray)".into()
    }

    fn begin(
        &mut self,
        head: &Head,
        train: Examples,
        val: Examples,
        class_weights: &[f32],
        settings: &StepSettings,
    ) -> Result<()> {
        check_begin(head, &train, &val, class_weights, settings)?;
        let state = head
            .layers
            .iter()
            .map(|l| LayerState {
                weight: [Array2::zeros(l.weight.dim()), Array2::zeros(l.weight.dim())],
                bias: [Array1::zeros(l.bias.dim()), Array1::zeros(l.bias.dim())],
            })
            .collect();
        self.session = Some(Session {
            head: head.clone(),
            best: None,
            state,
            steps: 0,
            train_x: train.x.to_owned(),
            train_y: train.y.to_vec(),
            val_x: val.x.to_owned(),
            val_y: val.y.to_vec(),
            class_weights: class_weights.to_vec(),
            settings: *settings,
        });
        Ok(())
    }

    fn train_epoch(&mut self, epoch: usize, order: &[u32]) -> Result<EpochStats> {
        let s = self.session()?;
        let n = s.train_y.len();
        check_epoch_order(order, n)?;
        let mut weighted_sum = 0.0f64;
        let mut correct = 0usize;
        for (step, batch) in order.chunks(s.settings.batch_size).enumerate() {
            let rows: Vec<usize> = batch.iter().map(|&i| i as usize).collect();
            let x = s.train_x.select(Axis(0), &rows);
            let y: Vec<usize> = rows.iter().map(|&i| s.train_y[i]).collect();
            let dropout = s.settings.dropout_step(epoch as u32, step as u32);
            let pass = forward_backward(
                &s.head,
                x.view(),
                &y,
                &s.class_weights,
                s.settings.label_smoothing,
                dropout.is_active().then_some(&dropout),
            )?;
            weighted_sum += pass.loss.weighted_sum;
            correct += pass.loss.correct;
            s.steps += 1;
            for ((layer, grad), state) in
                s.head.layers.iter_mut().zip(&pass.grads).zip(&mut s.state)
            {
                apply_update(&s.settings, s.steps, layer, grad, state)?;
            }
        }
        Ok(EpochStats::mean(weighted_sum, correct as u64, n))
    }

    fn validate(&mut self) -> Result<EpochStats> {
        let s = self.session()?;
        if s.val_y.is_empty() {
            return Err(Error::Invalid("there is no validation data".into()));
        }
        let logits = s.head.logits(s.val_x.view())?;
        let ce = softmax_cross_entropy(
            logits.view(),
            &s.val_y,
            &s.class_weights,
            s.settings.label_smoothing,
        )?;
        Ok(EpochStats::mean(
            ce.weighted_sum,
            ce.correct as u64,
            s.val_y.len(),
        ))
    }

    fn keep_best(&mut self) -> Result<()> {
        let s = self.session()?;
        s.best = Some(s.head.clone());
        Ok(())
    }

    fn finish(&mut self, restore_best: bool) -> Result<Head> {
        let s = self.session.take().ok_or_else(|| not_begun("CPU"))?;
        Ok(match (restore_best, s.best) {
            (true, Some(best)) => best,
            _ => s.head,
        })
    }
}
