// Optimiser steps, one invocation per element (graft::head::optim::Optimizer::update): weight
// decay first (0 for biases), then the SGD-momentum, Adam or RMSprop rule. `s1`, `s2` are the two
// state slots; the step scalars (learning rate, Adam's bias corrections) come from the host.

struct Params {
    len: u32,
    lr: f32,
    bc1: f32,
    bc2: f32,
    weight_decay: f32,
    // momentum (SGD), beta1 (Adam) or rho (RMSprop).
    h1: f32,
    // beta2 (Adam).
    h2: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;

fn element(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * 256u + local;
}

@compute @workgroup_size(256)
fn sgd(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = element(wg, groups, local);
    if (i >= p.len) {
        return;
    }
    let g = grad[i] + p.weight_decay * w[i];
    let v = p.h1 * s1[i] + g;
    s1[i] = v;
    w[i] = w[i] - p.lr * v;
}

@compute @workgroup_size(256)
fn adam(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = element(wg, groups, local);
    if (i >= p.len) {
        return;
    }
    let g = grad[i] + p.weight_decay * w[i];
    let m = p.h1 * s1[i] + (1.0 - p.h1) * g;
    let v = p.h2 * s2[i] + (1.0 - p.h2) * g * g;
    s1[i] = m;
    s2[i] = v;
    w[i] = w[i] - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}

@compute @workgroup_size(256)
fn rmsprop(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = element(wg, groups, local);
    if (i >= p.len) {
        return;
    }
    let g = grad[i] + p.weight_decay * w[i];
    let v = p.h1 * s1[i] + (1.0 - p.h1) * g * g;
    s1[i] = v;
    w[i] = w[i] - p.lr * g / (sqrt(v) + p.eps);
}
