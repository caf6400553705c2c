//! Cosine similarity on the GPU for [`crate::knn::Knn`] with large indexes: both sides are
//! unit-length rows, so the similarity matrix is `queries · indexᵀ`, computed in chunks that fit
//! the device's binding and dispatch limits. Uses [`crate::gpu`]'s device and matmul kernel.

use std::sync::Arc;

use ndarray::{s, Array2, ArrayView2};

use crate::gpu::context::Gpu;
use crate::gpu::kernels::{MatMul, Recorder};
use crate::{Error, Result};

/// Rows of one chunk of the index, stored transposed as `[dim, width]`: neighbouring
/// invocations read neighbouring vectors. `width` is `rows` rounded up to a multiple of 4 (zero
/// columns) so that the vectorised matmul applies.
struct IndexChunk {
    start: usize,
    rows: usize,
    width: usize,
    vectors: wgpu::Buffer,
}

/// Stored vectors `[n, dim]` uploaded once, ready for many similarity queries.
pub struct GpuSimilarity {
    gpu: Arc<Gpu>,
    dim: usize,
    len: usize,
    chunks: Vec<IndexChunk>,
}

/// The most rows of `dim` floats that one binding holds and one dispatch dimension covers, a
/// multiple of 4.
fn rows_per_binding(gpu: &Gpu, dim: usize) -> usize {
    let by_binding = gpu.max_binding() / (dim as u64 * 4);
    let by_dispatch = u64::from(gpu.limits().max_compute_workgroups_per_dimension) * 32;
    usize::try_from(by_binding.min(by_dispatch) & !3).unwrap_or(usize::MAX)
}

impl GpuSimilarity {
    /// Uploads `index` `[n, dim]` (rows already scaled to unit length), in chunks that fit the
    /// device's limits.
    pub fn new(gpu: Arc<Gpu>, index: ArrayView2<f32>) -> Result<GpuSimilarity> {
        let (len, dim) = index.dim();
        if dim == 0 {
            return Err(Error::Invalid("vectors of size 0".into()));
        }
        let per_chunk = rows_per_binding(&gpu, dim);
        if per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "four vectors of size {dim} are larger than this GPU binds at once"
            )));
        }
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < len {
            let rows = per_chunk.min(len - start);
            let width = rows.next_multiple_of(4);
            let mut transposed = Array2::zeros((dim, width));
            transposed
                .slice_mut(s![.., ..rows])
                .assign(&index.slice(s![start..start + rows, ..]).t());
            let data: Vec<f32> = transposed.iter().copied().collect();
            chunks.push(IndexChunk {
                start,
                rows,
                width,
                vectors: gpu.upload("index vectors", &data)?,
            });
            start += rows;
        }
        Ok(GpuSimilarity {
            gpu,
            dim,
            len,
            chunks,
        })
    }

    /// Number of stored vectors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `queries · indexᵀ`: `[m, n]` dot products of each query with each stored vector (cosine
    /// similarities when both are unit-length).
    pub fn similarities(&self, queries: ArrayView2<f32>) -> Result<Array2<f32>> {
        if queries.ncols() != self.dim {
            return Err(Error::Invalid(format!(
                "queries of size {} for an index of size {}",
                queries.ncols(),
                self.dim
            )));
        }
        let gpu = &*self.gpu;
        let m = queries.nrows();
        let mut out = Array2::zeros((m, self.len));
        let widest = self.chunks.iter().map(|c| c.width).max().unwrap_or(0);
        if m == 0 || widest == 0 {
            return Ok(out);
        }
        let by_output = usize::try_from(gpu.max_binding() / (widest as u64 * 4)).unwrap_or(m);
        let per_query_chunk = rows_per_binding(gpu, self.dim).min(by_output).max(1);
        let mut q0 = 0;
        while q0 < m {
            let rows = per_query_chunk.min(m - q0);
            let data: Vec<f32> = queries
                .slice(s![q0..q0 + rows, ..])
                .iter()
                .copied()
                .collect();
            let q = gpu.upload("queries", &data)?;
            let block = gpu.storage("similarities", (rows * widest * 4) as u64)?;
            for chunk in &self.chunks {
                let mut rec = Recorder::new(gpu);
                let shape = MatMul::plain(rows, self.dim, chunk.width);
                rec.matmul(&q, &chunk.vectors, None, &block, shape, false)?;
                rec.submit();
                let values: Vec<f32> = gpu.read(&block, rows * chunk.width)?;
                let values = Array2::from_shape_vec((rows, chunk.width), values)
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                out.slice_mut(s![q0..q0 + rows, chunk.start..chunk.start + chunk.rows])
                    .assign(&values.slice(s![.., ..chunk.rows]));
            }
            q0 += rows;
        }
        Ok(out)
    }
}

/// `queries · indexᵀ` in one call (uploads `index` each time; keep a [`GpuSimilarity`] to query
/// the same index repeatedly).
pub fn cosine_similarity(
    gpu: Arc<Gpu>,
    queries: ArrayView2<f32>,
    index: ArrayView2<f32>,
) -> Result<Array2<f32>> {
    GpuSimilarity::new(gpu, index)?.similarities(queries)
}
