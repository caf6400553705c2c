//! The interface a training backend (CPU reference, GPU) implements; [`crate::train::train`] drives it.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::head::Head;
use crate::train::TrainOptions;
use crate::{Error, Result};

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

/// Loss and accuracy over a set of examples (see [`crate::head::cpu`] for the loss).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// `sum_i w[y_i] * CE_i / N` over the examples.
    pub loss: f32,
    /// Fraction of examples whose logits' argmax (ties to the lowest index) is the label.
    pub accuracy: f32,
}

/// One way of running the training maths, with the data and weights wherever the backend keeps them.
///
/// [`crate::train::train`] validates everything before calling [`HeadBackend::begin`], then per epoch
/// calls `train_epoch`, `validate` (when there is validation data) and `keep_best` (when early stopping
/// sees a new best), and finally `finish`. Backends reproduce [`crate::head::cpu`]'s maths.
pub trait HeadBackend {
    /// A name for reports: `"cpu (ndarray)"` or the GPU adapter.
    fn name(&self) -> String;

    /// Takes the initial head, the (already validated) data, the per-class loss weights and options.
    fn begin(
        &mut self,
        head: &Head,
        train: Examples,
        val: Examples,
        class_weights: &[f32],
        opts: &TrainOptions,
    ) -> Result<()>;

    /// One pass over the training data, epoch `epoch` (0-based), visiting examples in `order`
    /// (a permutation of `0..N`, from [`crate::head::random::epoch_order`]) in batches of
    /// `opts.batch_size`; returns the loss and accuracy of the training forward passes (with dropout,
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
/// sets match the head's input size and their label counts, and there is one weight per class.
pub fn check_begin(
    head: &Head,
    train: &Examples,
    val: &Examples,
    class_weights: &[f32],
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
