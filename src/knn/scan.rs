//! The flat scan: every query against every stored vector, on all cores, without the full
//! similarity matrix.
//!
//! The index is split into one contiguous range per thread. Each thread multiplies a block of
//! queries by a block of its range (faer's matmul, into one buffer it reuses) and keeps, per
//! query, the candidates whose product is within [`margin`] of the `k`-th largest so far; the
//! threads' candidates are merged, scored again by [`dot`] (one fixed order of additions, whatever
//! the blocks, threads or matmul kernel) and the `k` best kept, most similar first, ties to the
//! lower row. The margin bounds the rounding of any order of additions, so the answer is exactly
//! that of [`dot`] on every pair ([`nearest_plain`]), which the tests check.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::store::Vectors;
use crate::{Error, Result};

/// How the CPU scans a KNN index. The default blocks measured best (or within noise of it) on a
/// 2-core Sapphire Rapids, 1,000 queries x 10,000 x 1280 on both cores (`examples/knn_scan.rs`):
/// 512 x 512 0.115 s, 1000 x 512 0.110 s, 1000 x 1024 0.115 s, 256 x 1024 0.142 s, 512 x 2048
/// 0.137 s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ScanOptions {
    /// Queries multiplied at once against a block of the index (default 512).
    #[cfg_attr(feature = "cli", arg(long = "scan-query-block", default_value_t = ScanOptions::default().query_block))]
    pub query_block: usize,
    /// Stored vectors in one block of the index (default 512): a query block's similarities
    /// against it (`query_block x index_block` floats, 1 MB) stay in the cache for the top-k
    /// pass.
    #[cfg_attr(feature = "cli", arg(long = "scan-index-block", default_value_t = ScanOptions::default().index_block))]
    pub index_block: usize,
    /// Threads of the scan, each over its own part of the index; 0 (default): one per core.
    #[cfg_attr(feature = "cli", arg(long = "scan-threads", default_value_t = ScanOptions::default().threads))]
    pub threads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            query_block: 512,
            index_block: 512,
            threads: 0,
        }
    }
}

impl ScanOptions {
    /// Errors on a block size of 0.
    pub fn validate(&self) -> Result<()> {
        if self.query_block == 0 || self.index_block == 0 {
            return Err(Error::Invalid(
                "KNN scan blocks must hold at least one row".into(),
            ));
        }
        Ok(())
    }

    /// The threads to use for `macs` multiply-adds: as asked (0: one per core), fewer when there
    /// is too little work for each, never more than `rows`.
    fn threads_for(&self, macs: usize, rows: usize) -> usize {
        let asked = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        asked.min(macs.div_ceil(MACS_PER_THREAD)).min(rows).max(1)
    }
}

/// Least multiply-adds worth a thread of their own (about 0.1 ms).
const MACS_PER_THREAD: usize = 1 << 22;

/// One of a query's nearest stored vectors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    /// Row of the stored vector.
    pub index: usize,
    /// Its [`dot`] with the query (the cosine similarity: both are unit-length).
    pub similarity: f32,
}

/// `a · b` with one fixed order of additions (16 running sums, then the rest, then a fixed
/// tree), so that a pair's similarity never depends on what it was computed with.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            sums[lane] += sums[lane + width];
        }
    }
    sums[0] + tail
}

/// A bound on how far any order of additions of a `dim`-long dot product of vectors of length
/// at most 1.01 lies from the exact value, doubled: two computations of the same similarity
/// differ by less.
fn margin(dim: usize) -> f32 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let n = dim as f64 + 4.0;
    let gamma = n * u / (1.0 - n * u);
    (2.0 * 1.03 * gamma + 8.0 * u) as f32
}

/// Whether stored row `index` is left out for query `query` (leave-one-out calibration).
pub(crate) type Skip<'a> = &'a (dyn Fn(usize, usize) -> bool + Sync);

/// The `k` nearest stored vectors of each row of `queries` `[m, dim]` (unit-length rows), most
/// similar first, ties to the lower row; rows `skip` names are left out.
pub(crate) fn nearest(
    index: &Vectors,
    queries: ArrayView2<f32>,
    k: usize,
    options: &ScanOptions,
    skip: Option<Skip>,
) -> Result<Vec<Vec<Neighbour>>> {
    options.validate()?;
    let (m, dim) = queries.dim();
    if dim != index.dim() {
        return Err(Error::Internal(format!(
            "queries of size {dim} for vectors of size {}",
            index.dim()
        )));
    }
    let n = index.len();
    if m == 0 || n == 0 || k == 0 || dim == 0 {
        return Ok(vec![Vec::new(); m]);
    }
    let queries = queries.as_standard_layout();
    let flat = queries
        .as_slice()
        .ok_or_else(|| Error::Internal("queries not contiguous".into()))?;
    let threads = options.threads_for(m.saturating_mul(n).saturating_mul(dim.max(1)), n);
    let per_thread = n.div_ceil(threads);
    let scan = |start: usize| {
        let range = start..(start + per_thread).min(n);
        scan_range(index, flat, dim, range, k, options, skip)
    };
    let scan = &scan;
    let parts: Vec<Vec<Candidates>> = if threads == 1 {
        vec![scan(0)?]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(per_thread)
                .map(|start| scope.spawn(move || scan(start)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect::<Result<Vec<_>>>()
        })?
    };
    let mut row = Vec::new();
    let mut answers = Vec::with_capacity(m);
    for (q, query) in flat.chunks_exact(dim).enumerate() {
        let merged = Candidates::merge(parts.iter().filter_map(|p| p.get(q)), k, margin(dim));
        let mut scored = Vec::with_capacity(merged.len());
        for j in merged {
            let stored = index.rows_f32(j, j + 1, &mut row)?;
            scored.push(Neighbour {
                index: j,
                similarity: dot(query, stored),
            });
        }
        scored.sort_by(closer);
        scored.truncate(k);
        answers.push(scored);
    }
    Ok(answers)
}

/// The reference [`nearest`] meets: [`dot`] of every pair, sorted.
#[cfg(test)]
pub(crate) fn nearest_plain(
    index: &Vectors,
    queries: ArrayView2<f32>,
    k: usize,
    skip: Option<Skip>,
) -> Result<Vec<Vec<Neighbour>>> {
    let stored = index.to_f32();
    let mut answers = Vec::with_capacity(queries.nrows());
    for (q, query) in queries.outer_iter().enumerate() {
        let query = query.to_vec();
        let mut all: Vec<Neighbour> = stored
            .outer_iter()
            .enumerate()
            .filter(|(j, _)| !skip.is_some_and(|skip| skip(q, *j)))
            .map(|(j, row)| Neighbour {
                index: j,
                similarity: dot(&query, &row.to_vec()),
            })
            .collect();
        all.sort_by(closer);
        all.truncate(k);
        answers.push(all);
    }
    Ok(answers)
}

/// The order of neighbours: more similar first, then the lower row.
fn closer(a: &Neighbour, b: &Neighbour) -> Ordering {
    b.similarity
        .total_cmp(&a.similarity)
        .then(a.index.cmp(&b.index))
}

/// Every query's candidates in stored rows `range`.
fn scan_range(
    index: &Vectors,
    queries: &[f32],
    dim: usize,
    range: std::ops::Range<usize>,
    k: usize,
    options: &ScanOptions,
    skip: Option<Skip>,
) -> Result<Vec<Candidates>> {
    let m = queries.len() / dim.max(1);
    let margin = margin(dim);
    let mut best: Vec<Candidates> = (0..m).map(|_| Candidates::new(k)).collect();
    let query_block = options.query_block.min(m);
    let index_block = options.index_block.min(range.len());
    let mut products = vec![0f32; query_block * index_block];
    let mut widened = Vec::new();
    let mut j0 = range.start;
    while j0 < range.end {
        let j1 = (j0 + index_block).min(range.end);
        let width = j1 - j0;
        let block = index.rows_f32(j0, j1, &mut widened)?;
        let rhs = MatRef::from_column_major_slice(block, dim, width);
        let mut q0 = 0;
        while q0 < m {
            let q1 = (q0 + query_block).min(m);
            let rows = q1 - q0;
            let lhs = queries
                .get(q0 * dim..q1 * dim)
                .ok_or_else(|| Error::Internal("query block out of range".into()))?;
            let lhs = MatRef::from_row_major_slice(lhs, rows, dim);
            let out = products
                .get_mut(..rows * width)
                .ok_or_else(|| Error::Internal("product buffer too small".into()))?;
            matmul(
                MatMut::from_row_major_slice_mut(out, rows, width),
                Accum::Replace,
                lhs,
                rhs,
                1.0f32,
                Par::Seq,
            );
            for (q, (row, candidates)) in out.chunks_exact(width).zip(&mut best[q0..q1]).enumerate()
            {
                match skip {
                    None => candidates.offer(row, j0, margin, |_| false),
                    Some(skip) => candidates.offer(row, j0, margin, |j| skip(q0 + q, j)),
                }
            }
            q0 = q1;
        }
        j0 = j1;
    }
    Ok(best)
}

/// A float ordered by `total_cmp`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Total(f32);

impl Eq for Total {}

impl PartialOrd for Total {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Total {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One query's candidates in one thread's rows: the `k` largest products seen (their least is
/// the threshold), and every row whose product is within the margin of the threshold.
#[derive(Debug)]
struct Candidates {
    k: usize,
    largest: BinaryHeap<Reverse<Total>>,
    kept: Vec<(f32, usize)>,
    prune_at: usize,
}

impl Candidates {
    fn new(k: usize) -> Candidates {
        Candidates {
            k,
            largest: BinaryHeap::with_capacity(k + 1),
            kept: Vec::new(),
            prune_at: 2 * k + 64,
        }
    }

    /// Products below this cannot be among the `k` nearest.
    fn floor(&self, margin: f32) -> f32 {
        match self.largest.peek() {
            Some(Reverse(Total(least))) if self.largest.len() == self.k => least - margin,
            _ => f32::NEG_INFINITY,
        }
    }

    /// Takes the products `row` of the query with stored rows `first..`.
    fn offer(&mut self, row: &[f32], first: usize, margin: f32, skip: impl Fn(usize) -> bool) {
        let mut floor = self.floor(margin);
        for (j, &product) in row.iter().enumerate() {
            if product < floor || skip(first + j) {
                continue;
            }
            self.kept.push((product, first + j));
            if self.largest.len() < self.k {
                self.largest.push(Reverse(Total(product)));
            } else if let Some(mut least) = self.largest.peek_mut() {
                if product > least.0 .0 {
                    *least = Reverse(Total(product));
                }
            }
            floor = self.floor(margin);
            if self.kept.len() >= self.prune_at {
                self.kept.retain(|&(p, _)| p >= floor);
                self.prune_at = (2 * self.kept.len()).max(2 * self.k + 64);
            }
        }
    }

    /// The rows of `parts` (one query's candidates from each thread) that may be among its `k`
    /// nearest.
    fn merge<'a>(
        parts: impl Iterator<Item = &'a Candidates> + Clone,
        k: usize,
        margin: f32,
    ) -> Vec<usize> {
        let mut largest: Vec<f32> = parts
            .clone()
            .flat_map(|p| p.largest.iter().map(|r| r.0 .0))
            .collect();
        largest.sort_by(|a, b| b.total_cmp(a));
        let floor = match largest.get(k.saturating_sub(1)) {
            Some(&least) if largest.len() >= k => least - margin,
            _ => f32::NEG_INFINITY,
        };
        parts
            .flat_map(|p| p.kept.iter())
            .filter(|&&(p, _)| p >= floor)
            .map(|&(_, j)| j)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::store::Storage;
    use ndarray::Array2;

    /// Seeded values in [-1, 1).
    fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Array2::from_shape_fn((rows, cols), |_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
    }

    fn unit(a: Array2<f32>) -> Array2<f32> {
        crate::reject::unit_rows(a.view())
    }

    #[test]
    fn blocked_threaded_scan_equals_the_plain_one() {
        let index = unit(noise(203, 37, 1));
        let queries = unit(noise(29, 37, 2));
        for storage in [Storage::F32, Storage::F16] {
            let stored = Vectors::from_f32(storage, index.clone());
            for k in [1, 3, 10, 203, 500] {
                let plain = nearest_plain(&stored, queries.view(), k, None).unwrap();
                assert_eq!(plain[0].len(), k.min(203));
                for (query_block, index_block, threads) in [
                    (512, 1024, 0),
                    (4, 7, 3),
                    (1, 1, 2),
                    (29, 203, 1),
                    (5, 50, 8),
                ] {
                    let options = ScanOptions {
                        query_block,
                        index_block,
                        threads,
                    };
                    let got = nearest(&stored, queries.view(), k, &options, None).unwrap();
                    assert_eq!(got, plain, "{storage} k={k} {options:?}");
                }
            }
        }
    }

    #[test]
    fn skipped_rows_never_answer() {
        let stored = Vectors::from_f32(Storage::F32, unit(noise(60, 9, 3)));
        let queries = unit(noise(7, 9, 4));
        let skip = |q: usize, j: usize| j % 7 == q || j < 5;
        let options = ScanOptions {
            query_block: 3,
            index_block: 11,
            threads: 2,
        };
        let got = nearest(&stored, queries.view(), 8, &options, Some(&skip)).unwrap();
        assert_eq!(
            got,
            nearest_plain(&stored, queries.view(), 8, Some(&skip)).unwrap()
        );
        for (q, answer) in got.iter().enumerate() {
            assert!(answer.iter().all(|n| !skip(q, n.index)));
        }
    }

    #[test]
    fn dot_is_the_dot_product_and_bad_options_are_errors() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - (i % 3) as f32).collect();
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), exact);
        assert!(margin(1280) < 2e-4);
        let stored = Vectors::from_f32(Storage::F32, unit(noise(4, 3, 5)));
        let options = ScanOptions {
            index_block: 0,
            ..ScanOptions::default()
        };
        assert!(nearest(&stored, unit(noise(1, 3, 6)).view(), 1, &options, None).is_err());
    }
}
