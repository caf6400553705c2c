//! The interface a training backend (CPU reference, GPU) implements, which [`crate::train::train`]
//! drives: [`HeadBackend`], the data it takes ([`Examples`]), the per-step settings it trains with
//! ([`StepSettings`], which the training loop builds from its options, so that backends do not
//! depend on them), what it reports ([`EpochStats`]), and the checks every backend makes.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::head::maths::DropoutStep;
use crate::head::optim::{Optimizer, StepScalars};
use crate::head::random;
use crate::head::Head;
use crate::{Error, Result};

/// The settings a backend trains with: everything of a training run that shapes an optimisation
/// step. [`crate::train::train`] builds them from its `TrainOptions` (the fields of the same
/// names); the rest of those options (epochs, early stopping, class balance, standardisation, the
/// head's shape) are the training loop's business.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSettings {
    /// Examples per optimiser step (positive); the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Step size.
    pub learning_rate: f32,
    /// Update rule.
    pub optimizer: Optimizer,
    /// L2 coefficient added to the gradient of the weights (not biases).
    pub weight_decay: f32,
    /// Dropout rate of the hidden activations during training, in `[0, 1)`.
    pub dropout: f32,
    /// Label smoothing `e`, in `[0, 1)`.
    pub label_smoothing: f32,
    /// The training seed (dropout masks use [`random::seed32`] of it).
    pub seed: u64,
}

impl StepSettings {
    /// The optimiser's scalars for step number `t` (1-based, counted across epochs).
    pub fn step_scalars(&self, t: u64) -> StepScalars {
        self.optimizer.step_scalars(self.learning_rate, t)
    }

    /// The dropout context of batch `step` (0-based) of epoch `epoch` (0-based).
    pub fn dropout_step(&self, epoch: u32, step: u32) -> DropoutStep {
        DropoutStep {
            seed: random::seed32(self.seed),
            epoch,
            step,
            rate: self.dropout,
        }
    }
}

/// Labelled embeddings: row `i` of `x` has class `y[i]`.
#[derive(Clone, Copy, Debug)]
pub struct Examples<'a> {
    /// `[N, input_dim]`.
    pub x: ArrayView2<'a, f32>,
    /// `N` class indices.
    pub y: &'a [usize],
}

impl<'a> Examples<'a> {
    pub fn new(x: ArrayView2<'a, f32>, y: &'a [usize]) -> Self {
        Examples { x, y }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Loss and accuracy over a set of examples (see [`crate::head::maths`] for the loss).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// `sum_i w[y_i] * CE_i / N` over the examples.
    pub loss: f32,
    /// Fraction of examples whose logits' argmax (ties to the lowest index) is the label.
    pub accuracy: f32,
}

impl EpochStats {
    /// The mean over `n` examples (1 when `n` is 0) of a weighted loss sum and a correct count,
    /// divided in `f64` and rounded to `f32`.
    pub fn mean(weighted_sum: f64, correct: u64, n: usize) -> EpochStats {
        let n = n.max(1) as f64;
        EpochStats {
            loss: (weighted_sum / n) as f32,
            accuracy: (correct as f64 / n) as f32,
        }
    }
}

/// One way of running the training maths, with the data and weights wherever the backend keeps them.
///
/// [`crate::train::train`] validates everything before calling [`HeadBackend::begin`], then per epoch
/// calls `train_epoch`, `validate` (when there is validation data) and `keep_best` (when early stopping
/// sees a new best), and finally `finish`. Backends meet [`crate::head::maths`] (which the CPU
/// reference, [`crate::head::cpu`], defines per operation).
pub trait HeadBackend {
    /// A name for reports: `"cpu (ndarray)"` or the GPU adapter.
    fn name(&self) -> String;

    /// Takes the initial head, the (already validated) data, the per-class loss weights and the
    /// step settings.
    fn begin(
        &mut self,
        head: &Head,
        train: Examples,
        val: Examples,
        class_weights: &[f32],
        settings: &StepSettings,
    ) -> Result<()>;

    /// One pass over the training data, epoch `epoch` (0-based), visiting examples in `order`
    /// (a permutation of `0..N`, from [`crate::head::random::epoch_order`]) in batches of
    /// `settings.batch_size`; returns the loss and accuracy of the training forward passes (with dropout,
    /// before each batch's update).
    fn train_epoch(&mut self, epoch: usize, order: &[u32]) -> Result<EpochStats>;

    /// Loss and accuracy of the current weights on the validation data (no dropout).
    fn validate(&mut self) -> Result<EpochStats>;

    /// Remembers the current weights as the best so far.
    fn keep_best(&mut self) -> Result<()>;

    /// Ends training and returns the best remembered weights when `restore_best` and there are any,
    /// else the current ones.
    fn finish(&mut self, restore_best: bool) -> Result<Head>;
}

/// The checks every backend's `begin` makes before taking the data: the head's layers chain, both
/// sets match the head's input size and their label counts, there is one weight per class and the
/// batch size is positive.
pub fn check_begin(
    head: &Head,
    train: &Examples,
    val: &Examples,
    class_weights: &[f32],
    settings: &StepSettings,
) -> Result<()> {
    head.check()?;
    check_set("training", train, head)?;
    check_set("validation", val, head)?;
    if class_weights.len() != head.classes() {
        return Err(Error::Invalid(format!(
            "{} class weights for {} classes",
            class_weights.len(),
            head.classes()
        )));
    }
    if settings.batch_size == 0 {
        return Err(Error::Invalid("the batch size must be positive".into()));
    }
    Ok(())
}

fn check_set(what: &str, set: &Examples, head: &Head) -> Result<()> {
    if set.x.nrows() != set.y.len() || set.x.ncols() != head.input_dim() {
        return Err(Error::Invalid(format!(
            "{what} data is {}x{} with {} labels for a head taking {} inputs",
            set.x.nrows(),
            set.x.ncols(),
            set.y.len(),
            head.input_dim()
        )));
    }
    Ok(())
}

/// The error of a backend (`"CPU"`, `"GPU"`) used before [`HeadBackend::begin`] or after
/// [`HeadBackend::finish`].
pub fn not_begun(backend: &str) -> Error {
    Error::Invalid(format!("the {backend} backend was used before begin()"))
}

/// The check every backend's `train_epoch` makes on the epoch order: `n` entries, each below `n`
/// (what indexing the data relies on; [`crate::head::random::epoch_order`] gives a permutation).
pub fn check_epoch_order(order: &[u32], n: usize) -> Result<()> {
    if order.len() != n || order.iter().any(|&i| i as usize >= n) {
        return Err(Error::Invalid(format!(
            "the epoch order must be a permutation of 0..{n}"
        )));
    }
    Ok(())
}
