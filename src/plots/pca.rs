//! The first two principal components of a set of embeddings, by power iteration on the centred
//! rows (never forming the `dim x dim` covariance), in `f64`, with a fixed start: the same
//! embeddings always give the same map.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::{Error, Result};

/// Iterations of the power method per component (it stops earlier once the direction settles).
const MAX_ITERATIONS: usize = 200;
/// Change of the direction (1 - |cos|) below which it has settled.
const SETTLED: f64 = 1e-10;
/// Most rows the components are found from (evenly spaced rows of a larger set; every row is
/// then projected), which bounds the time a large evaluation spends on its map.
pub const MAX_FIT_ROWS: usize = 2000;

/// `vectors` `[n, dim]` projected on their first two principal components (`[n, 2]`, centred),
/// and the fraction of the total variance each component keeps (both found from at most
/// [`MAX_FIT_ROWS`] evenly spaced rows). A component along which nothing
/// varies (one example, identical ones, or `dim` 1 for the second) is all zeros. Each component's
/// sign is fixed so that its largest coordinate is positive.
pub fn principal_components(vectors: ArrayView2<f32>) -> Result<(Array2<f32>, [f32; 2])> {
    let (n, dim) = vectors.dim();
    if n == 0 || dim == 0 {
        return Err(Error::Invalid(
            "principal components of no embeddings".into(),
        ));
    }
    if vectors.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "principal components of embeddings that are not all finite".into(),
        ));
    }
    let all = vectors.mapv(f64::from);
    let fit_rows: Vec<usize> = match n > MAX_FIT_ROWS {
        true => (0..MAX_FIT_ROWS).map(|i| i * n / MAX_FIT_ROWS).collect(),
        false => (0..n).collect(),
    };
    let fit = all.select(Axis(0), &fit_rows);
    let mean = fit.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(dim));
    let x = &fit - &mean;
    let all = &all - &mean;
    let total: f64 = x.iter().map(|v| v * v).sum();
    let mut found: Vec<Array1<f64>> = Vec::with_capacity(2);
    let mut coords = Array2::<f32>::zeros((n, 2));
    let mut explained = [0f32; 2];
    for k in 0..2 {
        let Some(direction) = leading_direction(&x, &found) else {
            break;
        };
        let variance: f64 = x.dot(&direction).iter().map(|v| v * v).sum();
        if total > 0.0 {
            explained[k] = (variance / total) as f32;
        }
        for (i, v) in all.dot(&direction).iter().enumerate() {
            coords[[i, k]] = *v as f32;
        }
        found.push(direction);
    }
    Ok((coords, explained))
}

/// The unit direction of largest variance of the rows of `x` orthogonal to `found`, with its
/// largest coordinate positive; `None` when nothing varies there.
fn leading_direction(x: &Array2<f64>, found: &[Array1<f64>]) -> Option<Array1<f64>> {
    let dim = x.ncols();
    // A fixed start that no simple structure is orthogonal to.
    let mut v: Array1<f64> = (0..dim)
        .map(|j| 1.0 + ((j * 7919) % 97) as f64 / 97.0)
        .collect();
    orthogonalise(&mut v, found);
    normalise(&mut v)?;
    let scale = 1.0 + x.iter().map(|a| a * a).sum::<f64>();
    for _ in 0..MAX_ITERATIONS {
        let mut next = x.t().dot(&x.dot(&v));
        orthogonalise(&mut next, found);
        let norm = normalise(&mut next)?;
        // Nothing left to find: the residual variance is round-off of the components found.
        if norm <= 1e-12 * scale {
            return None;
        }
        let settled = 1.0 - next.dot(&v).abs() < SETTLED;
        v = next;
        if settled {
            break;
        }
    }
    let largest = v
        .iter()
        .copied()
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or(1.0);
    if largest < 0.0 {
        v.mapv_inplace(|a| -a);
    }
    Some(v)
}

/// Removes from `v` its parts along the unit vectors `found`.
fn orthogonalise(v: &mut Array1<f64>, found: &[Array1<f64>]) {
    for f in found {
        let along = v.dot(f);
        v.scaled_add(-along, f);
    }
}

/// Scales `v` to unit length, returning its length before; `None` when it is zero.
fn normalise(v: &mut Array1<f64>) -> Option<f64> {
    let norm = v.dot(v).sqrt();
    if norm <= f64::MIN_POSITIVE || !norm.is_finite() {
        return None;
    }
    v.mapv_inplace(|a| a / norm);
    Some(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn finds_the_axes_of_a_stretched_cloud() {
        // Points spread along (1, 1, 0)/√2 and, uncorrelated and less, along (0, 0, 1); nothing
        // along (1, -1, 0).
        let mut rows = Vec::new();
        for (a, b) in [
            (-10.0, 1.0),
            (10.0, 1.0),
            (-5.0, -1.0),
            (5.0, -1.0),
            (0.0, 0.0),
        ] {
            let s = std::f32::consts::FRAC_1_SQRT_2;
            rows.extend([a * s + 3.0, a * s - 2.0, b + 1.0]);
        }
        let x = Array2::from_shape_vec((5, 3), rows).unwrap();
        let (coords, explained) = principal_components(x.view()).unwrap();
        let first: Vec<f32> = coords.column(0).to_vec();
        let expected = [-10.0, 10.0, -5.0, 5.0, 0.0];
        // Up to the sign fixed by the rule (largest coordinate of the direction positive).
        let sign = first[1].signum();
        for (got, want) in first.iter().zip(expected) {
            assert!((got - sign * want).abs() < 1e-4, "{first:?}");
        }
        let total = 250.0 + 4.0;
        assert!((explained[0] - 250.0 / total).abs() < 1e-5, "{explained:?}");
        assert!((explained[1] - 4.0 / total).abs() < 1e-5, "{explained:?}");
    }

    #[test]
    fn large_sets_are_fitted_on_a_sample_and_all_projected() {
        let n = MAX_FIT_ROWS + 777;
        let x = Array2::from_shape_fn((n, 2), |(i, j)| (i * (j + 1)) as f32);
        let (coords, explained) = principal_components(x.view()).unwrap();
        assert_eq!(coords.nrows(), n);
        assert!(explained[0] > 0.999_999, "{explained:?}");
        // Every row lies on the line, at (i - mean) * √5 along it.
        let step = coords[[1, 0]] - coords[[0, 0]];
        assert!((step - 5f32.sqrt()).abs() < 1e-3, "{step}");
        for i in 1..n {
            let d = coords[[i, 0]] - coords[[i - 1, 0]];
            assert!((d - step).abs() < 1e-2, "row {i}: {d}");
            assert!(coords[[i, 1]].abs() < 1e-2);
        }
    }

    #[test]
    fn identical_rows_give_a_point() {
        let x = array![[1.0f32, 2.0], [1.0, 2.0]];
        let (coords, explained) = principal_components(x.view()).unwrap();
        assert!(coords.iter().all(|&v| v == 0.0));
        assert_eq!(explained, [0.0, 0.0]);
        assert!(principal_components(Array2::<f32>::zeros((0, 3)).view()).is_err());
        assert!(principal_components(array![[f32::NAN]].view()).is_err());
    }
}
