//! Optimisers, PyTorch-style, as per-element update rules shared by every backend.
//!
//! Each parameter element `w` with gradient `g` (the loss gradient, see [`crate::head::maths`]) has two
//! state slots `s1`, `s2`, both starting at 0. One step, all in `f32`, in this order:
//!
//! 1. weight decay (weights only, never biases): `g = g + weight_decay * w`;
//! 2. the rule of the optimiser:
//!    - SGD: `s1 = momentum * s1 + g; w = w - lr * s1` (no dampening, no Nesterov);
//!    - Adam: `s1 = beta1 * s1 + (1 - beta1) * g; s2 = beta2 * s2 + (1 - beta2) * g * g;
//!      w = w - lr * (s1 / bc1) / (sqrt(s2 / bc2) + eps)` with `bc1 = 1 - beta1^t`,
//!      `bc2 = 1 - beta2^t`, computed on the host in `f64` and rounded to `f32`, `t` = number of
//!      optimiser steps taken so far including this one (1 on the first batch, counted across epochs);
//!    - RMSprop: `s1 = rho * s1 + (1 - rho) * g * g; w = w - lr * g / (sqrt(s1) + eps)`.
//!
//! `(1 - beta1)` etc. are computed in `f32` as `1.0f32 - beta1`.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the head's weights are updated from their gradients.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    /// Stochastic gradient descent with momentum (`momentum = 0` gives plain SGD).
    Sgd { momentum: f32 },
    /// Adam with bias correction.
    Adam { beta1: f32, beta2: f32, eps: f32 },
    /// RMSprop without momentum or centering.
    RmsProp { rho: f32, eps: f32 },
}

impl Default for Optimizer {
    /// [`Optimizer::adam`].
    fn default() -> Self {
        Optimizer::adam()
    }
}

impl Optimizer {
    /// SGD with momentum 0.9.
    pub fn sgd() -> Self {
        Optimizer::Sgd { momentum: 0.9 }
    }

    /// Adam with `beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8` (PyTorch's defaults).
    pub fn adam() -> Self {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// RMSprop with `rho = 0.99`, `eps = 1e-8` (PyTorch's defaults).
    pub fn rmsprop() -> Self {
        Optimizer::RmsProp {
            rho: 0.99,
            eps: 1e-8,
        }
    }

    /// Checks the hyper-parameters: decay rates in `[0, 1)`, `eps > 0`, all finite.
    pub fn validate(&self) -> Result<()> {
        let rate = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Invalid(format!("{name} must be in [0, 1), got {v}")))
            }
        };
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Invalid(format!("{name} must be positive, got {v}")))
            }
        };
        match *self {
            Optimizer::Sgd { momentum } => rate("SGD momentum", momentum),
            Optimizer::Adam { beta1, beta2, eps } => {
                rate("Adam beta1", beta1)?;
                rate("Adam beta2", beta2)?;
                positive("Adam eps", eps)
            }
            Optimizer::RmsProp { rho, eps } => {
                rate("RMSprop rho", rho)?;
                positive("RMSprop eps", eps)
            }
        }
    }

    /// The scalars of optimiser step number `t` (1-based) that are the same for every element.
    pub fn step_scalars(&self, learning_rate: f32, t: u64) -> StepScalars {
        let (bc1, bc2) = match *self {
            Optimizer::Adam { beta1, beta2, .. } => {
                let t = t as f64;
                (
                    (1.0 - f64::from(beta1).powf(t)) as f32,
                    (1.0 - f64::from(beta2).powf(t)) as f32,
                )
            }
            _ => (1.0, 1.0),
        };
        StepScalars {
            lr: learning_rate,
            bc1,
            bc2,
        }
    }

    /// Updates one element `w` with loss gradient `g` and state `s1`, `s2` (see the module docs);
    /// `weight_decay` is 0 for biases.
    #[inline]
    pub fn update(
        &self,
        k: &StepScalars,
        weight_decay: f32,
        w: &mut f32,
        g: f32,
        s1: &mut f32,
        s2: &mut f32,
    ) {
        let g = g + weight_decay * *w;
        match *self {
            Optimizer::Sgd { momentum } => {
                *s1 = momentum * *s1 + g;
                *w -= k.lr * *s1;
            }
            Optimizer::Adam { beta1, beta2, eps } => {
                *s1 = beta1 * *s1 + (1.0 - beta1) * g;
                *s2 = beta2 * *s2 + (1.0 - beta2) * g * g;
                *w -= k.lr * (*s1 / k.bc1) / ((*s2 / k.bc2).sqrt() + eps);
            }
            Optimizer::RmsProp { rho, eps } => {
                *s1 = rho * *s1 + (1.0 - rho) * g * g;
                *w -= k.lr * g / (s1.sqrt() + eps);
            }
        }
    }
}

impl Optimizer {
    /// [`Optimizer::update`] on every element of equally long slices. The variant is matched once,
    /// outside the loop, so the compiler can vectorise it (per element, the match kept Adam's
    /// square roots and divisions scalar: 40 % of a small head's training time).
    pub fn update_all(
        &self,
        k: &StepScalars,
        weight_decay: f32,
        w: &mut [f32],
        g: &[f32],
        s1: &mut [f32],
        s2: &mut [f32],
    ) {
        #[inline(always)]
        fn each(
            opt: Optimizer,
            k: &StepScalars,
            weight_decay: f32,
            w: &mut [f32],
            g: &[f32],
            s1: &mut [f32],
            s2: &mut [f32],
        ) {
            let n = w.len().min(g.len()).min(s1.len()).min(s2.len());
            let (w, g, s1, s2) = (&mut w[..n], &g[..n], &mut s1[..n], &mut s2[..n]);
            for i in 0..n {
                opt.update(k, weight_decay, &mut w[i], g[i], &mut s1[i], &mut s2[i]);
            }
        }
        // In each arm the variant is known, so the inlined `update` loses its match.
        match *self {
            opt @ Optimizer::Sgd { .. } => each(opt, k, weight_decay, w, g, s1, s2),
            opt @ Optimizer::Adam { .. } => each(opt, k, weight_decay, w, g, s1, s2),
            opt @ Optimizer::RmsProp { .. } => each(opt, k, weight_decay, w, g, s1, s2),
        }
    }
}

/// Per-step scalars: learning rate and Adam's bias corrections (1 for the other optimisers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    pub lr: f32,
    /// `1 - beta1^t`.
    pub bc1: f32,
    /// `1 - beta2^t`.
    pub bc2: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_all_equals_the_element_update_bit_for_bit() {
        let n = 37;
        let value = |i: usize, f: f32| (i as f32 * f).sin() * 2.0;
        for opt in [
            Optimizer::Sgd { momentum: 0.9 },
            Optimizer::adam(),
            Optimizer::rmsprop(),
        ] {
            let k = opt.step_scalars(0.01, 3);
            let g: Vec<f32> = (0..n).map(|i| value(i, 0.7)).collect();
            let mut w: Vec<f32> = (0..n).map(|i| value(i, 1.3)).collect();
            let mut s1: Vec<f32> = (0..n).map(|i| value(i, 0.3) * 0.1).collect();
            let mut s2: Vec<f32> = (0..n).map(|i| value(i, 0.9).abs()).collect();
            let (mut ew, mut e1, mut e2) = (w.clone(), s1.clone(), s2.clone());
            for i in 0..n {
                opt.update(&k, 0.01, &mut ew[i], g[i], &mut e1[i], &mut e2[i]);
            }
            opt.update_all(&k, 0.01, &mut w, &g, &mut s1, &mut s2);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&w), bits(&ew), "{opt:?}");
            assert_eq!(bits(&s1), bits(&e1), "{opt:?}");
            assert_eq!(bits(&s2), bits(&e2), "{opt:?}");
        }
    }

    #[test]
    fn adam_first_step_moves_by_learning_rate() {
        let opt = Optimizer::adam();
        let k = opt.step_scalars(0.01, 1);
        let (mut w, mut s1, mut s2) = (1.0f32, 0.0, 0.0);
        opt.update(&k, 0.0, &mut w, 3.0, &mut s1, &mut s2);
        // m̂ = g, v̂ = g², so the step is lr * g / (|g| + eps).
        assert!((w - 0.99).abs() < 1e-6, "{w}");
    }

    #[test]
    fn sgd_momentum_and_weight_decay() {
        let opt = Optimizer::Sgd { momentum: 0.5 };
        let k = opt.step_scalars(0.1, 1);
        let (mut w, mut s1, mut s2) = (2.0f32, 0.0, 0.0);
        opt.update(&k, 0.5, &mut w, 1.0, &mut s1, &mut s2); // g = 1 + 0.5*2 = 2
        assert!((w - 1.8).abs() < 1e-6);
        opt.update(&k, 0.0, &mut w, 1.0, &mut s1, &mut s2); // v = 0.5*2 + 1 = 2
        assert!((w - 1.6).abs() < 1e-6);
    }

    #[test]
    fn rmsprop_step() {
        let opt = Optimizer::RmsProp {
            rho: 0.75,
            eps: 0.0 + 1e-8,
        };
        let k = opt.step_scalars(0.1, 1);
        let (mut w, mut s1, mut s2) = (0.0f32, 0.0, 0.0);
        opt.update(&k, 0.0, &mut w, 2.0, &mut s1, &mut s2); // s = 0.25*4 = 1
        assert!((s1 - 1.0).abs() < 1e-6 && (w + 0.2).abs() < 1e-6);
    }

    #[test]
    fn bad_hyper_parameters_are_refused() {
        assert!(Optimizer::Sgd { momentum: 1.0 }.validate().is_err());
        assert!(Optimizer::Adam {
            beta1: 0.9,
            beta2: f32::NAN,
            eps: 1e-8
        }
        .validate()
        .is_err());
        assert!(Optimizer::RmsProp { rho: 0.9, eps: 0.0 }
            .validate()
            .is_err());
        assert!(Optimizer::default().validate().is_ok());
    }
}
