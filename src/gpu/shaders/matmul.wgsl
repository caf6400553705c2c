// C[m, n] = A[m, k] · B[k, n] (+ bias[n]) (+ C when accumulating), with A and B read through
// row/column strides so that one kernel also gives Aᵀ·B and A·Bᵀ. Each invocation computes a 4x4
// block of C in registers (no shared memory); a workgroup of 8x8 invocations covers a 32x32 tile.
// Loads are clamped to the last valid row/column so the inner loop has no branches; only the
// stores are masked, so any m, n, k works.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    b_row_stride: u32,
    b_col_stride: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn store(row: u32, col: u32, value: f32) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    var v = value;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v = v + bias[col];
    }
    let at = row * p.n + col;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        v = c[at] + v;
    }
    c[at] = v;
}

fn store_row(row: u32, col: u32, v: vec4<f32>) {
    store(row, col, v.x);
    store(row, col + 1u, v.y);
    store(row, col + 2u, v.z);
    store(row, col + 3u, v.w);
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y * 4u;
    let col = gid.x * 4u;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let a0 = min(row, p.m - 1u) * p.a_row_stride;
    let a1 = min(row + 1u, p.m - 1u) * p.a_row_stride;
    let a2 = min(row + 2u, p.m - 1u) * p.a_row_stride;
    let a3 = min(row + 3u, p.m - 1u) * p.a_row_stride;
    let b0 = min(col, p.n - 1u) * p.b_col_stride;
    let b1 = min(col + 1u, p.n - 1u) * p.b_col_stride;
    let b2 = min(col + 2u, p.n - 1u) * p.b_col_stride;
    let b3 = min(col + 3u, p.n - 1u) * p.b_col_stride;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var i = 0u; i < p.k; i = i + 1u) {
        let ak = i * p.a_col_stride;
        let bk = i * p.b_row_stride;
        let bv = vec4<f32>(b[bk + b0], b[bk + b1], b[bk + b2], b[bk + b3]);
        c0 = c0 + a[a0 + ak] * bv;
        c1 = c1 + a[a1 + ak] * bv;
        c2 = c2 + a[a2 + ak] * bv;
        c3 = c3 + a[a3 + ak] * bv;
    }
    store_row(row, col, c0);
    store_row(row + 1u, col, c1);
    store_row(row + 2u, col, c2);
    store_row(row + 3u, col, c3);
}

// Vectorised variants for row-major B with n % 4 == 0, read as vec4 rows (four columns at once):
// `main_nn4` for row-major A with k % 4 == 0 (A read four k at once), `main_tn4` for A stored
// transposed ([k, m], m % 4 == 0: four rows of A at once, an outer product per k).

@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

@compute @workgroup_size(8, 8)
fn main_nn4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y * 4u;
    let col = gid.x * 4u;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    let a0 = min(row, p.m - 1u) * k4;
    let a1 = min(row + 1u, p.m - 1u) * k4;
    let a2 = min(row + 2u, p.m - 1u) * k4;
    let a3 = min(row + 3u, p.m - 1u) * k4;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var i = 0u; i < k4; i = i + 1u) {
        let bi = 4u * i * n4 + gid.x;
        let b0 = b4[bi];
        let b1 = b4[bi + n4];
        let b2 = b4[bi + 2u * n4];
        let b3 = b4[bi + 3u * n4];
        let r0 = a4[a0 + i];
        let r1 = a4[a1 + i];
        let r2 = a4[a2 + i];
        let r3 = a4[a3 + i];
        c0 = c0 + r0.x * b0 + r0.y * b1 + r0.z * b2 + r0.w * b3;
        c1 = c1 + r1.x * b0 + r1.y * b1 + r1.z * b2 + r1.w * b3;
        c2 = c2 + r2.x * b0 + r2.y * b1 + r2.z * b2 + r2.w * b3;
        c3 = c3 + r3.x * b0 + r3.y * b1 + r3.z * b2 + r3.w * b3;
    }
    store_row(row, col, c0);
    store_row(row + 1u, col, c1);
    store_row(row + 2u, col, c2);
    store_row(row + 3u, col, c3);
}

@compute @workgroup_size(8, 8)
fn main_tn4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y * 4u;
    let col = gid.x * 4u;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var i = 0u; i < p.k; i = i + 1u) {
        let a = a4[i * m4 + gid.y];
        let b = b4[i * n4 + gid.x];
        c0 = c0 + a.x * b;
        c1 = c1 + a.y * b;
        c2 = c2 + a.z * b;
        c3 = c3 + a.w * b;
    }
    store_row(row, col, c0);
    store_row(row + 1u, col, c1);
    store_row(row + 2u, col, c2);
    store_row(row + 3u, col, c3);
}
