//! The trainable head grafted on the frozen base: dense layers with ReLU between them.

use ndarray::{Array1, Array2};

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
