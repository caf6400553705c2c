// ReLU with seeded inverted dropout (forward, in place) and its gradient. The dropout decision
// reproduces graft::head::random::dropout_hash bit for bit (PCG hash, wrapping u32 arithmetic).

struct ReluParams {
    rows: u32,
    cols: u32,
    // 1 when dropout is active, else 0.
    dropout: u32,
    seed: u32,
    epoch: u32,
    step: u32,
    layer: u32,
    // Row of the batch that row 0 of this dispatch is.
    row_offset: u32,
    // Dropout rate p.
    rate: f32,
    // 1 / (1 - p), computed on the host.
    keep_scale: f32,
}

struct BackwardParams {
    len: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> rp: ReluParams;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;

// The two entry points use disjoint binding numbers (each pipeline's layout holds its own).
@group(0) @binding(2) var<uniform> bp: BackwardParams;
@group(0) @binding(3) var<storage, read_write> da: array<f32>;
@group(0) @binding(4) var<storage, read> act: array<f32>;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn dropout_hash(row: u32, unit: u32) -> u32 {
    var h = pcg(rp.seed);
    h = pcg(h ^ rp.epoch);
    h = pcg(h ^ rp.step);
    h = pcg(h ^ rp.layer);
    h = pcg(h ^ row);
    return pcg(h ^ unit);
}

fn linear_id(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * 256u + local;
}

@compute @workgroup_size(256)
fn relu_dropout(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_id(wg, groups, local);
    if (id >= rp.rows * rp.cols) {
        return;
    }
    var v = max(z[id], 0.0);
    if (rp.dropout != 0u) {
        let row = rp.row_offset + id / rp.cols;
        let unit = id % rp.cols;
        let r = f32(dropout_hash(row, unit) >> 8u) * (1.0 / 16777216.0);
        v = v * select(0.0, rp.keep_scale, r >= rp.rate);
    }
    z[id] = v;
}

@compute @workgroup_size(256)
fn relu_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_id(wg, groups, local);
    if (id >= bp.len) {
        return;
    }
    da[id] = select(0.0, da[id] * bp.scale, act[id] > 0.0);
}
