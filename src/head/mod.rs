//! The trainable head grafted on the frozen base: dense layers with ReLU between them.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::{Error, Result};

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
    pub layers: Vec<Dense>,
}

impl Head {
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

    /// Class probabilities `[N, classes]` (softmax of the logits, computed stably).
    pub fn probabilities(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let mut p = self.logits(x)?;
        softmax_rows(&mut p);
        Ok(p)
    }
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
