//! Every random choice made in training, defined exactly so that all backends (CPU reference, GPU)
//! reproduce it bit for bit: weight initialisation, the per-epoch shuffle and the dropout masks.
//!
//! - Initialisation and shuffling run on the host with [`ChaCha8Rng`] (portable, stable across
//!   platforms and `rand` releases), seeded with [`SeedableRng::seed_from_u64`]`(seed)`.
//! - Dropout masks come from [`dropout_hash`], a counter-based hash over `u32` wrapping arithmetic that
//!   a WGSL kernel can evaluate per element with the same result.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `2^-24`: turns the top 24 bits of a `u32` into an `f32` in `[0, 1)` exactly.
const UNIT_24: f32 = 1.0 / 16_777_216.0;

/// Uniform `f32` in `[0, 1)` from one `next_u32()`: `(r >> 8) as f32 * 2^-24` (exact, no rounding).
pub fn unit_f32(r: u32) -> f32 {
    (r >> 8) as f32 * UNIT_24
}

/// The generator for weight initialisation: `ChaCha8Rng::seed_from_u64(seed)`, stream 0.
pub fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The order in which epoch `epoch` (0-based) visits the `n` training examples.
///
/// Generator: `ChaCha8Rng::seed_from_u64(seed)` with `set_stream(epoch + 1)`. Starting from the
/// identity `0..n`, Fisher-Yates from the back: for `i = n-1 down to 1`,
/// `j = (next_u64() as u128 * (i + 1) as u128) >> 64` and swap positions `i` and `j`.
/// Batches are then consecutive slices of this order, `batch_size` long, the last one shorter.
pub fn epoch_order(seed: u64, epoch: usize, n: u32) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((epoch as u64).wrapping_add(1));
    let mut order: Vec<u32> = (0..n).collect();
    for i in (1..order.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// The 32-bit seed the dropout hash uses: `(seed as u32) ^ ((seed >> 32) as u32)`.
pub fn seed32(seed: u64) -> u32 {
    (seed as u32) ^ ((seed >> 32) as u32)
}

/// The PCG hash (Jarzynski & Olano 2020, "Hash Functions for GPU Rendering"), wrapping `u32` ops:
/// `s = v * 747796405 + 2891336453; w = ((s >> ((s >> 28) + 4)) ^ s) * 277803737; (w >> 22) ^ w`.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Where one dropout decision is made. All counters are 0-based and truncated to `u32` (`as u32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutSite {
    /// [`seed32`] of the training seed.
    pub seed: u32,
    /// Epoch index (0-based).
    pub epoch: u32,
    /// Batch index within the epoch (0-based).
    pub step: u32,
    /// Hidden layer index (0 = output of the first layer).
    pub layer: u32,
    /// Row within the batch.
    pub row: u32,
    /// Unit (column) within the layer's output.
    pub unit: u32,
}

/// The dropout hash: `h = pcg(seed); h = pcg(h ^ epoch); h = pcg(h ^ step); h = pcg(h ^ layer);
/// h = pcg(h ^ row); h = pcg(h ^ unit)` with [`pcg_hash`].
pub fn dropout_hash(site: &DropoutSite) -> u32 {
    let mut h = pcg_hash(site.seed);
    for v in [site.epoch, site.step, site.layer, site.row, site.unit] {
        h = pcg_hash(h ^ v);
    }
    h
}

/// The factor multiplying one hidden activation in training with dropout rate `p` in `[0, 1)`:
/// the unit is kept when `unit_f32(dropout_hash(site)) >= p`, and then scaled by
/// `1.0f32 / (1.0f32 - p)` (inverted dropout); a dropped unit gets `0.0`.
pub fn dropout_factor(site: &DropoutSite, p: f32) -> f32 {
    if unit_f32(dropout_hash(site)) >= p {
        1.0 / (1.0 - p)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(7, 3, 100);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(7, 3, 100));
        assert_ne!(a, epoch_order(7, 4, 100));
        assert_ne!(a, epoch_order(8, 3, 100));
        assert!(epoch_order(1, 0, 0).is_empty());
        assert_eq!(epoch_order(1, 0, 1), vec![0]);
    }

    #[test]
    fn hashes_match_an_independent_implementation() {
        // Values from a separate Python implementation of the same formulas (for WGSL ports too).
        assert_eq!(pcg_hash(0), 129_708_002);
        assert_eq!(pcg_hash(1), 2_831_084_092);
        assert_eq!(pcg_hash(42), 1_223_963_391);
        assert_eq!(pcg_hash(u32::MAX), 3_861_530_882);
        let site = |epoch, step, row, unit| DropoutSite {
            seed: 42,
            epoch,
            step,
            layer: 0,
            row,
            unit,
        };
        assert_eq!(dropout_hash(&site(0, 0, 0, 0)), 2_230_777_607);
        assert_eq!(dropout_hash(&site(1, 2, 3, 4)), 556_695_144);
        assert_eq!(seed32(0x0000_0001_0000_0003), 2);
    }

    #[test]
    fn dropout_keeps_about_one_minus_p() {
        let p = 0.3;
        let mut kept = 0;
        let total = 20_000;
        for unit in 0..total {
            let site = DropoutSite {
                seed: seed32(42),
                epoch: 1,
                step: 2,
                layer: 0,
                row: 5,
                unit,
            };
            let f = dropout_factor(&site, p);
            assert!(f == 0.0 || (f - 1.0 / 0.7).abs() < 1e-6);
            kept += usize::from(f > 0.0);
        }
        let rate = kept as f64 / total as f64;
        assert!((rate - 0.7).abs() < 0.02, "kept {rate}");
        let site = DropoutSite {
            seed: 1,
            epoch: 0,
            step: 0,
            layer: 0,
            row: 0,
            unit: 0,
        };
        assert_eq!(dropout_factor(&site, 0.0), 1.0);
    }
}
