//! The compute kernels' Rust side: a [`Recorder`] that queues dispatches of the pipelines a
//! [`Gpu`] holds (each with its own small parameter block, the shader's uniform) and copies, and
//! submits them as one command buffer.
//!
//! The kernels' parameters are plain numbers and the kernel-level [`DropoutHash`] and
//! [`OptimizerStep`]: what a training step means (the head's maths) is for its callers to map
//! onto them, so the dependency runs one way, from the callers to here, and from here to
//! [`crate::gpu::context`] and [`crate::gpu::pipelines`].

use wgpu::util::DeviceExt;

use crate::gpu::context::Gpu;
use crate::gpu::pipelines::Pipeline;
use crate::{Error, Result};

/// The dropout inputs of the `relu_dropout` kernel: the counters its hash takes besides the
/// layer, row and unit (see `shaders/activation.wgsl`), the rate `p` and the factor of the kept
/// activations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DropoutHash {
    pub seed: u32,
    pub epoch: u32,
    pub step: u32,
    pub rate: f32,
    pub keep_scale: f32,
}

/// Which of the `optim` kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdateRule {
    /// `sgd`: `h1` is the momentum.
    Sgd,
    /// `adam`: `h1`, `h2` are beta1, beta2; uses both state slots.
    Adam,
    /// `rmsprop`: `h1` is rho.
    RmsProp,
}

/// The parameter block of one `optim` kernel dispatch (see `shaders/optim.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OptimizerStep {
    pub rule: UpdateRule,
    pub lr: f32,
    /// Adam's bias corrections `1 - beta1^t`, `1 - beta2^t` (1 for the others).
    pub bc1: f32,
    pub bc2: f32,
    pub weight_decay: f32,
    pub h1: f32,
    pub h2: f32,
    pub eps: f32,
}

/// Edge of the square block of `C` one matmul workgroup computes (8x8 invocations of 4x4).
const MATMUL_TILE: u64 = 32;

/// A `usize` size as the `u32` kernels index with.
pub(crate) fn to_u32(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Gpu(format!("{what} ({n}) exceeds 2^32 - 1")))
}

/// Shape and strides of `C[m, n] = A[m, k] · B[k, n]`: element `(i, j)` of `A` is at
/// `i * a_row + j * a_col`, of `B` at `i * b_row + j * b_col`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatMul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_row: usize,
    pub a_col: usize,
    pub b_row: usize,
    pub b_col: usize,
}

impl MatMul {
    /// `X[m, k] · W[k, n]`, both row-major.
    pub(crate) fn plain(m: usize, k: usize, n: usize) -> MatMul {
        MatMul {
            m,
            n,
            k,
            a_row: k,
            a_col: 1,
            b_row: n,
            b_col: 1,
        }
    }

    /// Row-major `A` and `B` with `k` and `n` multiples of 4 (the `main_nn4` kernel).
    fn is_vec4_nn(&self) -> bool {
        let plain = MatMul::plain(self.m, self.k, self.n);
        (self.a_row, self.a_col, self.b_row, self.b_col)
            == (plain.a_row, plain.a_col, plain.b_row, plain.b_col)
            && self.k.is_multiple_of(4)
            && self.n.is_multiple_of(4)
    }

    /// `A` stored transposed and row-major `B`, `m` and `n` multiples of 4 (`main_tn4`).
    fn is_vec4_tn(&self) -> bool {
        let t = MatMul::transpose_a(self.k, self.m, self.n);
        (self.a_row, self.a_col, self.b_row, self.b_col) == (t.a_row, t.a_col, t.b_row, t.b_col)
            && self.m.is_multiple_of(4)
            && self.n.is_multiple_of(4)
    }

    /// `Xᵀ · Y` for row-major `X[rows, m]`, `Y[rows, n]` (the weight gradient).
    pub(crate) fn transpose_a(rows: usize, m: usize, n: usize) -> MatMul {
        MatMul {
            m,
            n,
            k: rows,
            a_row: 1,
            a_col: m,
            b_row: n,
            b_col: 1,
        }
    }

    /// `Y · Wᵀ` for row-major `Y[m, k]`, `W[n, k]` (the input gradient, cosine similarity).
    pub(crate) fn transpose_b(m: usize, k: usize, n: usize) -> MatMul {
        MatMul {
            m,
            n,
            k,
            a_row: k,
            a_col: 1,
            b_row: 1,
            b_col: k,
        }
    }
}

enum Op<'a> {
    Dispatch {
        kernel: &'a Pipeline,
        buffers: Vec<&'a wgpu::Buffer>,
        params: u64,
        params_len: u64,
        groups: (u32, u32),
    },
    Copy {
        src: &'a wgpu::Buffer,
        dst: &'a wgpu::Buffer,
        bytes: u64,
    },
}

/// Queues kernel dispatches and copies, then submits them in one command buffer.
pub(crate) struct Recorder<'a> {
    gpu: &'a Gpu,
    params: Vec<u8>,
    ops: Vec<Op<'a>>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(gpu: &'a Gpu) -> Recorder<'a> {
        Recorder {
            gpu,
            params: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// Workgroup counts `(x, y)` covering `n` invocations of a 1-D kernel, folded into a second
    /// dimension beyond `max_compute_workgroups_per_dimension`.
    fn groups_1d(&self, n: u64, workgroup: u64) -> Result<(u32, u32)> {
        let max = u64::from(self.gpu.limits().max_compute_workgroups_per_dimension).max(1);
        let groups = n.div_ceil(workgroup).max(1);
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(Error::Gpu(format!(
                "{n} elements exceed this GPU's dispatch limits"
            )));
        }
        Ok((x as u32, y as u32))
    }

    fn dispatch(
        &mut self,
        kernel: &'a Pipeline,
        words: &[u32],
        buffers: Vec<&'a wgpu::Buffer>,
        groups: (u32, u32),
    ) {
        let align = u64::from(self.gpu.limits().min_uniform_buffer_offset_alignment).max(16);
        let offset = (self.params.len() as u64).next_multiple_of(align);
        self.params.resize(offset as usize, 0);
        self.params.extend_from_slice(bytemuck::cast_slice(words));
        let params_len = (words.len() as u64 * 4).next_multiple_of(16);
        self.params.resize((offset + params_len) as usize, 0);
        self.ops.push(Op::Dispatch {
            kernel,
            buffers,
            params: offset,
            params_len,
            groups,
        });
    }

    /// `c = a · b (+ bias) (+ c when accumulate)`.
    pub(crate) fn matmul(
        &mut self,
        a: &'a wgpu::Buffer,
        b: &'a wgpu::Buffer,
        bias: Option<&'a wgpu::Buffer>,
        c: &'a wgpu::Buffer,
        shape: MatMul,
        accumulate: bool,
    ) -> Result<()> {
        let max = u64::from(self.gpu.limits().max_compute_workgroups_per_dimension);
        let gx = (shape.n as u64).div_ceil(MATMUL_TILE);
        let gy = (shape.m as u64).div_ceil(MATMUL_TILE);
        if shape.k == 0 {
            return Err(Error::Invalid("a matrix product with inner size 0".into()));
        }
        if gx > max || gy > max {
            return Err(Error::Gpu(format!(
                "a {}x{}x{} product exceeds this GPU's dispatch limits",
                shape.m, shape.k, shape.n
            )));
        }
        let flags = u32::from(bias.is_some()) | (u32::from(accumulate) << 1);
        let words = [
            to_u32("rows", shape.m)?,
            to_u32("columns", shape.n)?,
            to_u32("inner size", shape.k)?,
            flags,
            to_u32("stride", shape.a_row)?,
            to_u32("stride", shape.a_col)?,
            to_u32("stride", shape.b_row)?,
            to_u32("stride", shape.b_col)?,
        ];
        let bias = bias.unwrap_or(&self.gpu.dummy);
        let kernels = &self.gpu.pipelines;
        let kernel = if shape.is_vec4_nn() {
            &kernels.matmul_nn4
        } else if shape.is_vec4_tn() {
            &kernels.matmul_tn4
        } else {
            &kernels.matmul
        };
        self.dispatch(kernel, &words, vec![a, b, bias, c], (gx as u32, gy as u32));
        Ok(())
    }

    /// Copies rows `index[0..rows]` held by the chunk `[chunk_start, chunk_start + chunk_rows)`
    /// of `x` `[.., dim]` / `y` into `batch_x` / `batch_y`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gather(
        &mut self,
        index: &'a wgpu::Buffer,
        x: &'a wgpu::Buffer,
        y: &'a wgpu::Buffer,
        batch_x: &'a wgpu::Buffer,
        batch_y: &'a wgpu::Buffer,
        rows: usize,
        dim: usize,
        chunk: (usize, usize),
    ) -> Result<()> {
        let words = [
            to_u32("rows", rows)?,
            to_u32("embedding size", dim)?,
            to_u32("chunk start", chunk.0)?,
            to_u32("chunk rows", chunk.1)?,
        ];
        let groups = self.groups_1d(rows as u64 * dim as u64, 256)?;
        let kernel = &self.gpu.pipelines.gather;
        self.dispatch(kernel, &words, vec![index, x, y, batch_x, batch_y], groups);
        Ok(())
    }

    /// In place ReLU of `z` `[rows, cols]`, with dropout when `dropout` is given (the caller
    /// passes `None` for a rate of 0); `row_offset`
    /// is the batch row of `z`'s first row (for the dropout hash).
    pub(crate) fn relu_dropout(
        &mut self,
        z: &'a wgpu::Buffer,
        rows: usize,
        cols: usize,
        dropout: Option<DropoutHash>,
        layer: u32,
        row_offset: usize,
    ) -> Result<()> {
        let (seed, epoch, step, rate, keep_scale) = dropout.map_or((0, 0, 0, 0.0, 1.0), |d| {
            (d.seed, d.epoch, d.step, d.rate, d.keep_scale)
        });
        let words = [
            to_u32("rows", rows)?,
            to_u32("columns", cols)?,
            u32::from(dropout.is_some()),
            seed,
            epoch,
            step,
            layer,
            to_u32("row offset", row_offset)?,
            rate.to_bits(),
            keep_scale.to_bits(),
        ];
        let groups = self.groups_1d(rows as u64 * cols as u64, 256)?;
        let kernel = &self.gpu.pipelines.relu_dropout;
        self.dispatch(kernel, &words, vec![z], groups);
        Ok(())
    }

    /// In place `da = da * scale` where `act > 0`, else 0, over `len` elements.
    pub(crate) fn relu_backward(
        &mut self,
        da: &'a wgpu::Buffer,
        act: &'a wgpu::Buffer,
        len: usize,
        scale: f32,
    ) -> Result<()> {
        let words = [to_u32("elements", len)?, scale.to_bits()];
        let groups = self.groups_1d(len as u64, 256)?;
        let kernel = &self.gpu.pipelines.relu_backward;
        self.dispatch(kernel, &words, vec![da, act], groups);
        Ok(())
    }

    /// Per-row weighted cross-entropy and correctness of `logits` `[rows, classes]` against the
    /// targets `(off, on)` (every other class, the label), and their gradient (scaled by
    /// `inv_batch`) into `dlogits` when given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn softmax_ce(
        &mut self,
        logits: &'a wgpu::Buffer,
        labels: &'a wgpu::Buffer,
        class_weights: &'a wgpu::Buffer,
        dlogits: Option<&'a wgpu::Buffer>,
        row_loss: &'a wgpu::Buffer,
        row_correct: &'a wgpu::Buffer,
        rows: usize,
        classes: usize,
        (off, on): (f32, f32),
        inv_batch: f32,
    ) -> Result<()> {
        let words = [
            to_u32("rows", rows)?,
            to_u32("classes", classes)?,
            u32::from(dlogits.is_some()),
            0,
            off.to_bits(),
            on.to_bits(),
            inv_batch.to_bits(),
        ];
        let groups = self.groups_1d(rows as u64, 64)?;
        let dlogits = dlogits.unwrap_or(&self.gpu.dummy);
        let kernel = &self.gpu.pipelines.softmax_ce;
        self.dispatch(
            kernel,
            &words,
            vec![
                logits,
                labels,
                class_weights,
                dlogits,
                row_loss,
                row_correct,
            ],
            groups,
        );
        Ok(())
    }

    /// `sums[j] (+)= sum_i matrix[i, j]` for `matrix` `[rows, cols]`.
    pub(crate) fn column_sums(
        &mut self,
        matrix: &'a wgpu::Buffer,
        sums: &'a wgpu::Buffer,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) -> Result<()> {
        let words = [
            to_u32("rows", rows)?,
            to_u32("columns", cols)?,
            u32::from(accumulate),
        ];
        let groups = self.groups_1d(cols as u64, 64)?;
        let kernel = &self.gpu.pipelines.column_sums;
        self.dispatch(kernel, &words, vec![matrix, sums], groups);
        Ok(())
    }

    /// Adds the sums of `row_loss[0..rows]` and `row_correct[0..rows]` to `stats`.
    pub(crate) fn batch_stats(
        &mut self,
        row_loss: &'a wgpu::Buffer,
        row_correct: &'a wgpu::Buffer,
        stats: &'a wgpu::Buffer,
        rows: usize,
    ) -> Result<()> {
        let words = [to_u32("rows", rows)?];
        let kernel = &self.gpu.pipelines.batch_stats;
        self.dispatch(kernel, &words, vec![row_loss, row_correct, stats], (1, 1));
        Ok(())
    }

    /// One optimiser step (`step`) on `len` elements of `w` with gradient `grad` and state `s1`,
    /// `s2`.
    pub(crate) fn optimizer_step(
        &mut self,
        step: &OptimizerStep,
        w: &'a wgpu::Buffer,
        grad: &'a wgpu::Buffer,
        s1: &'a wgpu::Buffer,
        s2: &'a wgpu::Buffer,
        len: usize,
    ) -> Result<()> {
        let kernels = &self.gpu.pipelines;
        let kernel = match step.rule {
            UpdateRule::Sgd => &kernels.sgd,
            UpdateRule::Adam => &kernels.adam,
            UpdateRule::RmsProp => &kernels.rmsprop,
        };
        let words = [
            to_u32("elements", len)?,
            step.lr.to_bits(),
            step.bc1.to_bits(),
            step.bc2.to_bits(),
            step.weight_decay.to_bits(),
            step.h1.to_bits(),
            step.h2.to_bits(),
            step.eps.to_bits(),
        ];
        let groups = self.groups_1d(len as u64, 256)?;
        // Only Adam uses the second slot (an unused binding is not part of the layout).
        let buffers = match step.rule {
            UpdateRule::Adam => vec![w, grad, s1, s2],
            _ => vec![w, grad, s1],
        };
        self.dispatch(kernel, &words, buffers, groups);
        Ok(())
    }

    /// Copies the first `bytes` of `src` to `dst`.
    pub(crate) fn copy(&mut self, src: &'a wgpu::Buffer, dst: &'a wgpu::Buffer, bytes: u64) {
        self.ops.push(Op::Copy { src, dst, bytes });
    }

    /// Encodes everything queued, in order, and submits it.
    pub(crate) fn submit(self) {
        let device = &self.gpu.device;
        let params = (!self.params.is_empty()).then(|| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("kernel parameters"),
                contents: &self.params,
                usage: wgpu::BufferUsages::UNIFORM,
            })
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        let mut ops = self.ops.iter().peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::Copy { src, dst, bytes } => {
                    encoder.copy_buffer_to_buffer(src, 0, dst, 0, *bytes);
                }
                Op::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    let mut next = Some(op);
                    while let Some(Op::Dispatch {
                        kernel,
                        buffers,
                        params: offset,
                        params_len,
                        groups,
                    }) = next
                    {
                        let Some(params) = &params else { break };
                        let mut entries = vec![wgpu::BindGroupEntry {
                            binding: kernel.bindings[0],
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: params,
                                offset: *offset,
                                size: wgpu::BufferSize::new(*params_len),
                            }),
                        }];
                        entries.extend(buffers.iter().zip(&kernel.bindings[1..]).map(
                            |(buffer, &binding)| wgpu::BindGroupEntry {
                                binding,
                                resource: buffer.as_entire_binding(),
                            },
                        ));
                        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: None,
                            layout: &kernel.layout,
                            entries: &entries,
                        });
                        pass.set_pipeline(&kernel.pipeline);
                        pass.set_bind_group(0, &group, &[]);
                        pass.dispatch_workgroups(groups.0, groups.1, 1);
                        next = ops.next_if(|op| matches!(op, Op::Dispatch { .. }));
                    }
                }
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
    }
}
