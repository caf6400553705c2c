//! The trainable head grafted on the frozen base: dense layers with ReLU between them ([`Head`],
//! here), and the ways of training it.
//!
//! - [`backend`]: the [`HeadBackend`] interface [`crate::train::train`] drives, and the
//!   [`StepSettings`] it trains with.
//! - [`maths`]: the training maths every backend meets; [`optim`]: the optimisers' update rules;
//!   [`random`]: initialisation, shuffling and dropout masks, bit for bit.
//! - [`cpu`]: the reference backend ([`CpuBackend`], ndarray); [`gpu`]: the GPU backend
//!   ([`GpuBackend`], on [`crate::gpu`]'s kernels). Neither imports the other.
//! - [`backend_for`]: the backend a [`DeviceChoice`] selects.
//!
//! Dependencies within: `cpu` and `gpu` use `backend`, `maths`, `optim` and `random`; `backend`
//! uses `maths`, `optim` and `random`; those three use nothing of the head. Outside it, `head`
//! uses only [`crate::gpu`] (and [`crate::Error`]).

use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::gpu::DeviceChoice;
use crate::{Error, Result};

pub mod backend;
pub mod cpu;
pub mod gpu;
pub mod maths;
pub mod optim;
pub mod random;

pub use backend::{EpochStats, Examples, HeadBackend, StepSettings};
pub use cpu::CpuBackend;
pub use gpu::GpuBackend;
pub use optim::Optimizer;

/// The training backend `choice` selects: a [`GpuBackend`] on the device
/// [`DeviceChoice::open_gpu`] opens, else a [`CpuBackend`].
pub fn backend_for(choice: DeviceChoice) -> Result<Box<dyn HeadBackend>> {
    Ok(match choice.open_gpu()? {
        Some(gpu) => Box::new(GpuBackend::new(Arc::new(gpu))),
        None => Box::new(CpuBackend::new()),
    })
}

/// The shape of a head: embedding size, hidden layer widths, number of classes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Size of the embedding the head takes.
    pub input_dim: usize,
    /// Widths of the hidden layers (ReLU); empty gives softmax regression.
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

impl HeadSpec {
    /// `(inputs, outputs)` of each layer, first to last.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        let mut sizes = Vec::with_capacity(self.hidden.len() + 2);
        sizes.push(self.input_dim);
        sizes.extend_from_slice(&self.hidden);
        sizes.push(self.classes);
        sizes.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Checks that every size is positive, there are at least two classes and the parameter count
    /// fits in memory arithmetic.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 {
            return Err(Error::Invalid("the embedding size must be positive".into()));
        }
        if self.hidden.contains(&0) {
            return Err(Error::Invalid("hidden layer sizes must be positive".into()));
        }
        if self.classes < 2 {
            return Err(Error::Dataset(format!(
                "a classifier needs at least two classes, got {}",
                self.classes
            )));
        }
        let too_big = || Error::Invalid(format!("the head {self:?} has too many parameters"));
        let mut total: usize = 0;
        for (fan_in, fan_out) in self.layer_shapes() {
            let n = fan_in
                .checked_mul(fan_out)
                .and_then(|n| n.checked_add(fan_out))
                .ok_or_else(too_big)?;
            total = total.checked_add(n).ok_or_else(too_big)?;
        }
        if total > MAX_PARAMETERS {
            return Err(too_big());
        }
        Ok(())
    }
}

/// The largest head [`Head::new`] builds (2^31 parameters, 8 GiB of `f32`).
pub const MAX_PARAMETERS: usize = 1 << 31;

/// One fully connected layer: `y = x · weight + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// `[inputs, outputs]`.
    pub weight: Array2<f32>,
    /// `[outputs]`.
    pub bias: Array1<f32>,
}

/// The transfer recognizer's head: `layers[0]` takes the embedding, ReLU follows every layer but the
/// last, and the last layer gives one logit per class (softmax regression when there is one layer).
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// A plain value, like an array: every use ([`Head::logits`], export, save, training)
    /// checks it with [`Head::check`] first.
    pub layers: Vec<Dense>,
}

impl Head {
    /// A freshly initialised head: Glorot-uniform weights, zero biases.
    ///
    /// One generator, [`random::init_rng`]`(seed)`, fills the layers in order, each weight matrix
    /// `[inputs, outputs]` in row-major order, one `next_u32()` per weight:
    /// `w = (2 * unit_f32(r) - 1) * limit` with `limit = sqrt(6 / (inputs + outputs))` in `f32`
    /// and [`random::unit_f32`].
    pub fn new(spec: &HeadSpec, seed: u64) -> Result<Head> {
        spec.validate()?;
        let mut rng = random::init_rng(seed);
        let layers = spec
            .layer_shapes()
            .into_iter()
            .map(|(fan_in, fan_out)| {
                let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
                Dense {
                    weight: Array2::from_shape_fn((fan_in, fan_out), |_| {
                        (2.0 * random::unit_f32(rng.next_u32()) - 1.0) * limit
                    }),
                    bias: Array1::zeros(fan_out),
                }
            })
            .collect();
        Ok(Head { layers })
    }

    /// Checks that the layers chain: at least one layer, each bias as long as its layer's outputs,
    /// each layer taking as many inputs as the previous one gives, every number finite.
    pub fn check(&self) -> Result<()> {
        if self.layers.is_empty() {
            return Err(Error::Invalid("the head has no layers".into()));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let (inputs, outputs) = layer.weight.dim();
            let previous = i.checked_sub(1).map(|p| self.layers[p].weight.ncols());
            if layer.bias.len() != outputs || previous.is_some_and(|p| p != inputs) {
                return Err(Error::Invalid(format!(
                    "head layer {i} is {inputs}x{outputs} with {} biases after a layer giving {}",
                    layer.bias.len(),
                    previous.map_or("the embedding".to_string(), |p| p.to_string())
                )));
            }
            if !(layer.weight.iter().chain(layer.bias.iter())).all(|v| v.is_finite()) {
                return Err(Error::Invalid(format!(
                    "head layer {i} holds a weight or bias that is not a finite number"
                )));
            }
        }
        Ok(())
    }

    /// The head's shape.
    pub fn spec(&self) -> HeadSpec {
        HeadSpec {
            input_dim: self.input_dim(),
            hidden: self
                .layers
                .iter()
                .skip(1)
                .map(|l| l.weight.nrows())
                .collect(),
            classes: self.classes(),
        }
    }

    /// Size of the embedding the head takes.
    pub fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.weight.nrows())
    }

    /// Number of classes (logits) the head gives.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weight.ncols())
    }

    /// Logits `[N, classes]` for embeddings `[N, input_dim]` (inference: no dropout).
    pub fn logits(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check()?;
        if x.ncols() != self.input_dim() {
            return Err(Error::Invalid(format!(
                "the head takes embeddings of size {}, got {}",
                self.input_dim(),
                x.ncols()
            )));
        }
        let mut h = x.to_owned();
        for (i, layer) in self.layers.iter().enumerate() {
            h = h.dot(&layer.weight) + &layer.bias;
            if i + 1 < self.layers.len() {
                h.mapv_inplace(|v| v.max(0.0));
            }
        }
        Ok(h)
    }

    /// The predicted class of each embedding (argmax of the logits, ties to the lowest index).
    pub fn predict(&self, x: ArrayView2<f32>) -> Result<Vec<usize>> {
        Ok(argmax_rows(self.logits(x)?.view()))
    }

    /// Class probabilities `[N, classes]` (softmax of the logits, computed stably).
    pub fn probabilities(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let mut p = self.logits(x)?;
        softmax_rows(&mut p);
        Ok(p)
    }
}

/// Index of the largest value in each row; ties go to the lowest index.
pub fn argmax_rows(z: ArrayView2<f32>) -> Vec<usize> {
    z.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Replaces each row of `z` by its softmax, subtracting the row maximum first.
pub fn softmax_rows(z: &mut Array2<f32>) {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
}
