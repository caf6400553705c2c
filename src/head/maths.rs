//! The training maths every backend meets, at the level of formulas: what one forward and
//! backward pass, the loss and the update compute, and the small pieces of it that the CPU
//! reference ([`crate::head::cpu`]) and the GPU backend ([`crate::head::gpu`]) both evaluate on
//! the host. Neither backend imports the other; both import this module, [`crate::head::optim`]
//! (the update rules) and [`crate::head::random`] (the dropout hash).
//!
//! For a batch of `B` rows `x` `[B, D]` with labels `y`, class weights `w` (length `C`), label
//! smoothing `e` and dropout rate `p`:
//!
//! - Hidden layer `l` (0-based): `z = a · W + b`, then `a' = max(z, 0) * f` with `f` the
//!   [`crate::head::random::dropout_factor`] of (seed, epoch, step, `l`, row, unit) during
//!   training with `p > 0` ([`DropoutStep`]), and `f = 1` otherwise.
//! - Output layer: logits `z = a · W + b`.
//! - Loss: per row `m = max_c z_c`, `lse = m + ln(sum_c exp(z_c - m))`, `logp_c = z_c - lse`,
//!   targets `t_c = on` for `c == y`, `off` otherwise ([`SmoothedTargets`]); `CE = -sum_c t_c *
//!   logp_c`. Batch loss `= sum_i w[y_i] * CE_i / B` (divided by the batch size, not by the sum
//!   of weights: [`inv_batch`]). An epoch's reported loss is `sum_i w[y_i] * CE_i / N` over all
//!   its examples (the batch losses weighted by batch size); validation uses the same formula
//!   (same class weights and smoothing) without dropout. Weight decay is not part of the loss.
//!   The result of one batch is a [`CrossEntropy`].
//! - Backward: `dZ[i, c] = w[y_i] * (exp(logp_ic) - t_ic) / B` for the logits; for each layer,
//!   `dW = aᵀ · dZ`, `db = sum_i dZ[i, :]`, `da = dZ · Wᵀ` ([`DenseGrad`]; `da` is not computed
//!   for the first layer); through ReLU and dropout `dz = da * s` where `a' > 0` and `0`
//!   elsewhere, with `s` = [`dropout_scale`]`(p)`.
//! - Update: [`crate::head::Optimizer::update`] on every weight and bias (weight decay on the
//!   weights only), step counter `t` from 1, with the scalars of
//!   [`crate::head::Optimizer::step_scalars`].

use ndarray::{Array1, Array2};

use crate::{Error, Result};

/// The dropout context of one training batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutStep {
    /// [`crate::head::random::seed32`] of the training seed.
    pub seed: u32,
    /// Epoch index (0-based).
    pub epoch: u32,
    /// Batch index within the epoch (0-based).
    pub step: u32,
    /// Dropout rate `p` in `[0, 1)`.
    pub rate: f32,
}

impl DropoutStep {
    /// Whether this step drops anything (`p > 0`).
    pub fn is_active(&self) -> bool {
        self.rate > 0.0
    }

    /// The backward scale of this step's ReLU and dropout ([`dropout_scale`] of its rate).
    pub fn scale(&self) -> f32 {
        dropout_scale(self.rate)
    }
}

/// The factor kept activations are multiplied by, and the backward pass's scale `s`:
/// `1 / (1 - p)` when `p > 0`, else 1.
pub fn dropout_scale(rate: f32) -> f32 {
    if rate > 0.0 {
        1.0 / (1.0 - rate)
    } else {
        1.0
    }
}

/// The smoothed targets of a `C`-class cross-entropy: `off = e / C`, `on = (1 - e) + off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothedTargets {
    /// Target of every class but the label.
    pub off: f32,
    /// Target of the label.
    pub on: f32,
}

impl SmoothedTargets {
    pub fn new(smoothing: f32, classes: usize) -> SmoothedTargets {
        let off = smoothing / classes as f32;
        SmoothedTargets {
            off,
            on: (1.0 - smoothing) + off,
        }
    }
}

/// `1 / B`, the factor of the batch loss and its gradient (`B` = the batch's rows, at least 1).
pub fn inv_batch(rows: usize) -> f32 {
    1.0 / rows.max(1) as f32
}

/// Result of the cross-entropy of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// `sum_i w[y_i] * CE_i` (not divided by the batch size), accumulated in `f64`.
    pub weighted_sum: f64,
    /// Rows whose argmax (ties to the lowest index) is the label.
    pub correct: usize,
    /// `dZ[i, c] = w[y_i] * (p_ic - t_ic) / B`: the gradient of the batch loss.
    pub dlogits: Array2<f32>,
}

/// Gradients of one dense layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseGrad {
    /// `aᵀ · dZ`, `[inputs, outputs]`.
    pub weight: Array2<f32>,
    /// `sum_i dZ[i, :]`, `[outputs]`.
    pub bias: Array1<f32>,
}

/// The checks of a cross-entropy's inputs: `rows` labels, `classes` class weights, every label
/// below `classes`.
pub fn check_cross_entropy(
    rows: usize,
    classes: usize,
    labels: &[usize],
    class_weights: &[f32],
) -> Result<()> {
    if labels.len() != rows || class_weights.len() != classes {
        return Err(Error::Invalid(format!(
            "cross-entropy of {rows}x{classes} logits with {} labels and {} class weights",
            labels.len(),
            class_weights.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y >= classes) {
        return Err(Error::Invalid(format!(
            "label {bad} is out of range for {classes} classes"
        )));
    }
    Ok(())
}
