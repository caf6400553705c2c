// Copies the rows listed in `index` (global example numbers) from one chunk of the stored
// embeddings and labels into the batch buffers. The data set may be split into several chunks
// (buffers), each holding rows [chunk_start, chunk_start + chunk_rows); rows of other chunks are
// left for the dispatch that binds their chunk.

struct Params {
    rows: u32,
    dim: u32,
    chunk_start: u32,
    chunk_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<u32>;
@group(0) @binding(4) var<storage, read_write> batch_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> batch_y: array<u32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = (wg.y * groups.x + wg.x) * 256u + local;
    if (id >= p.rows * p.dim) {
        return;
    }
    let row = id / p.dim;
    let col = id % p.dim;
    let example = index[row];
    if (example < p.chunk_start || example - p.chunk_start >= p.chunk_rows) {
        return;
    }
    let local_row = example - p.chunk_start;
    batch_x[id] = x[local_row * p.dim + col];
    if (col == 0u) {
        batch_y[row] = y[local_row];
    }
}
