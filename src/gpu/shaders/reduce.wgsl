// Reductions: column sums (the bias gradient) and the per-batch loss / correct-count totals that
// are added to the epoch's running statistics.

struct ColumnParams {
    rows: u32,
    cols: u32,
    // 1 to add to the output instead of overwriting it.
    accumulate: u32,
}

struct StatsParams {
    rows: u32,
}

@group(0) @binding(0) var<uniform> cp: ColumnParams;
@group(0) @binding(1) var<storage, read> matrix: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

// The two entry points use disjoint binding numbers (each pipeline's layout holds its own).
@group(0) @binding(3) var<uniform> sp: StatsParams;
@group(0) @binding(4) var<storage, read> row_loss: array<f32>;
@group(0) @binding(5) var<storage, read> row_correct: array<u32>;
// [loss sum (f32 bits), its Kahan compensation (f32 bits), correct count].
@group(0) @binding(6) var<storage, read_write> stats: array<u32>;

@compute @workgroup_size(64)
fn column_sums(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let col = (wg.y * groups.x + wg.x) * 64u + local;
    if (col >= cp.cols) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < cp.rows; r = r + 1u) {
        s = s + matrix[r * cp.cols + col];
    }
    if (cp.accumulate != 0u) {
        s = sums[col] + s;
    }
    sums[col] = s;
}

const STATS_THREADS: u32 = 64u;
var<workgroup> partial_loss: array<f32, 64>;
var<workgroup> partial_correct: array<u32, 64>;

// One workgroup: strided partial sums, then a tree reduction in shared memory.
@compute @workgroup_size(64)
fn batch_stats(@builtin(local_invocation_index) local: u32) {
    var loss = 0.0;
    var correct = 0u;
    for (var r = local; r < sp.rows; r = r + STATS_THREADS) {
        loss = loss + row_loss[r];
        correct = correct + row_correct[r];
    }
    partial_loss[local] = loss;
    partial_correct[local] = correct;
    workgroupBarrier();
    for (var half = STATS_THREADS / 2u; half > 0u; half = half / 2u) {
        if (local < half) {
            partial_loss[local] = partial_loss[local] + partial_loss[local + half];
            partial_correct[local] = partial_correct[local] + partial_correct[local + half];
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        // Compensated (Kahan) addition: an epoch adds up many batch totals in f32.
        let sum = bitcast<f32>(stats[0]);
        let y = partial_loss[0] - bitcast<f32>(stats[1]);
        let t = sum + y;
        stats[1] = bitcast<u32>((t - sum) - y);
        stats[0] = bitcast<u32>(t);
        stats[2] = stats[2] + partial_correct[0];
    }
}
