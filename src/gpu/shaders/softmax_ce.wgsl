// Smoothed, class-weighted softmax cross-entropy, one invocation per row (graft::head::cpu::
// softmax_cross_entropy): row loss w[y] * CE, whether the argmax (ties to the lowest index) is the
// label, and optionally the gradient dZ = w[y] * (softmax - target) * inv_batch.

struct Params {
    rows: u32,
    classes: u32,
    // 1 to write the gradient.
    gradient: u32,
    _pad: u32,
    // Target of the other classes, e / C.
    off: f32,
    // Target of the label, (1 - e) + e / C.
    on: f32,
    // 1 / (rows of the whole batch).
    inv_batch: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> class_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_correct: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = (wg.y * groups.x + wg.x) * 64u + local;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.classes;
    let y = labels[row];
    let w = class_weights[y];
    var best = 0u;
    var max_z = logits[base];
    for (var c = 1u; c < p.classes; c = c + 1u) {
        let z = logits[base + c];
        if (z > max_z) {
            max_z = z;
            best = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < p.classes; c = c + 1u) {
        sum = sum + exp(logits[base + c] - max_z);
    }
    let lse = max_z + log(sum);
    var ce = 0.0;
    for (var c = 0u; c < p.classes; c = c + 1u) {
        let logp = logits[base + c] - lse;
        let t = select(p.off, p.on, c == y);
        ce = ce - t * logp;
        if (p.gradient != 0u) {
            dlogits[base + c] = w * (exp(logp) - t) * p.inv_batch;
        }
    }
    row_loss[row] = w * ce;
    row_correct[row] = select(0u, 1u, best == y);
}
