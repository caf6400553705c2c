//! Head training on a GPU: [`GpuBackend`], with the data, weights, gradients and optimiser state
//! on the device, and [`ops`], one-shot GPU versions of [`crate::head::cpu`]'s per-operation
//! functions. Like the CPU reference it meets [`crate::head::maths`] (neither backend imports the
//! other), and it maps that maths onto the kernels of [`crate::gpu`] (`dropout_hash`,
//! `optimizer_step`, the smoothed targets): the dependency runs one way, the GPU plumbing knows
//! nothing of heads.
//!
//! Embeddings and labels are uploaded once, split into row chunks that each fit the device's
//! binding limit. Each mini-batch is one submission: its example numbers (from the host's
//! [`crate::head::random::epoch_order`]) are written to an index buffer, a gather kernel copies the
//! rows into the batch buffers, then forward, loss, backward and the optimiser step run on the
//! device. A batch too large for the binding limit is processed in sub-batches whose gradients add
//! up (one submission each). Only the epoch's loss sum and correct count are read back; the best
//! weights are kept by buffer copies and read back in `finish`.

use std::sync::Arc;

use crate::gpu::context::{ErrorScope, Gpu};
use crate::gpu::kernels::{to_u32, DropoutHash, MatMul, OptimizerStep, Recorder, UpdateRule};
use crate::head::backend::{
    check_begin, check_epoch_order, not_begun, EpochStats, Examples, HeadBackend, StepSettings,
};
use crate::head::maths::{self, DropoutStep, SmoothedTargets};
use crate::head::optim::{Optimizer, StepScalars};
use crate::head::{Dense, Head};
use crate::{Error, Result};

pub mod ops;

/// Validation rows processed per submission at most (when the limits allow).
const VALIDATION_ROWS: usize = 4096;

/// One layer's parameters and everything training keeps per parameter.
struct LayerBuffers {
    inputs: usize,
    outputs: usize,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    grad_weight: wgpu::Buffer,
    grad_bias: wgpu::Buffer,
    /// Optimiser slots `s1`, `s2` of the weights and of the biases.
    state_weight: [wgpu::Buffer; 2],
    state_bias: [wgpu::Buffer; 2],
    best_weight: wgpu::Buffer,
    best_bias: wgpu::Buffer,
}

/// Rows `[start, start + rows)` of a data set.
struct DataChunk {
    start: usize,
    rows: usize,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
}

/// The batch-sized working buffers, `capacity` rows each.
struct Work {
    capacity: usize,
    index: wgpu::Buffer,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    /// Output of each layer (after ReLU and dropout for hidden layers; logits for the last).
    outputs: Vec<wgpu::Buffer>,
    /// Gradient of the loss with respect to each layer's pre-activation output.
    grads: Vec<wgpu::Buffer>,
    row_loss: wgpu::Buffer,
    row_correct: wgpu::Buffer,
    /// `[loss sum (f32 bits), its compensation (f32 bits), correct count]` of the running epoch
    /// or validation.
    stats: wgpu::Buffer,
}

/// Where a training sub-batch sits in its mini-batch.
#[derive(Clone, Copy)]
struct BatchPart<'d> {
    dropout: &'d DropoutStep,
    /// Batch row of the part's first row (for the dropout hash).
    row_offset: usize,
    /// `1 / rows of the whole mini-batch` (the loss is the batch mean).
    inv_batch: f32,
}

struct Session {
    layers: Vec<LayerBuffers>,
    dim: usize,
    classes: usize,
    train: Vec<DataChunk>,
    train_len: usize,
    val: Vec<DataChunk>,
    val_len: usize,
    class_weights: wgpu::Buffer,
    work: Work,
    steps: u64,
    has_best: bool,
    settings: StepSettings,
}

/// Trains a head on a GPU; same maths as [`crate::head::CpuBackend`].
pub struct GpuBackend {
    gpu: Arc<Gpu>,
    session: Option<Session>,
}

impl GpuBackend {
    /// A backend on an open device (which may be shared with other work).
    pub fn new(gpu: Arc<Gpu>) -> GpuBackend {
        GpuBackend { gpu, session: None }
    }

    fn session(&mut self) -> Result<&mut Session> {
        self.session.as_mut().ok_or_else(|| not_begun("GPU"))
    }
}

/// Labels as `u32`, each checked against the class count; `what` starts the message.
fn labels_u32(what: &str, y: &[usize], classes: usize) -> Result<Vec<u32>> {
    y.iter()
        .map(|&label| {
            u32::try_from(label)
                .ok()
                .filter(|_| label < classes)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{what}label {label} is out of range for {classes} classes"
                    ))
                })
        })
        .collect()
}

/// The `relu_dropout` kernel's dropout inputs for `dropout` (`None` when it drops nothing).
fn dropout_hash(dropout: Option<&DropoutStep>) -> Option<DropoutHash> {
    dropout.filter(|d| d.is_active()).map(|d| DropoutHash {
        seed: d.seed,
        epoch: d.epoch,
        step: d.step,
        rate: d.rate,
        keep_scale: d.scale(),
    })
}

/// The `optim` kernel's parameters for one step of `optimizer` with scalars `k`.
fn optimizer_step(optimizer: &Optimizer, k: &StepScalars, weight_decay: f32) -> OptimizerStep {
    let (rule, h1, h2, eps) = match *optimizer {
        Optimizer::Sgd { momentum } => (UpdateRule::Sgd, momentum, 0.0, 0.0),
        Optimizer::Adam { beta1, beta2, eps } => (UpdateRule::Adam, beta1, beta2, eps),
        Optimizer::RmsProp { rho, eps } => (UpdateRule::RmsProp, rho, 0.0, eps),
    };
    OptimizerStep {
        rule,
        lr: k.lr,
        bc1: k.bc1,
        bc2: k.bc2,
        weight_decay,
        h1,
        h2,
        eps,
    }
}

/// Uploads a data set in chunks of at most `chunk_rows` rows.
fn upload_chunks(
    gpu: &Gpu,
    what: &str,
    set: &Examples,
    classes: usize,
    chunk_rows: usize,
) -> Result<Vec<DataChunk>> {
    let labels = labels_u32(&format!("{what} "), set.y, classes)?;
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < set.len() {
        let rows = chunk_rows.min(set.len() - start);
        let x: Vec<f32> = set
            .x
            .slice(ndarray::s![start..start + rows, ..])
            .iter()
            .copied()
            .collect();
        chunks.push(DataChunk {
            start,
            rows,
            x: gpu.upload(&format!("{what} embeddings"), &x)?,
            y: gpu.upload(&format!("{what} labels"), &labels[start..start + rows])?,
        });
        start += rows;
    }
    Ok(chunks)
}

fn layer_buffers(gpu: &Gpu, layer: &Dense) -> Result<LayerBuffers> {
    let (inputs, outputs) = layer.weight.dim();
    let weights: Vec<f32> = layer.weight.iter().copied().collect();
    let w_bytes = (inputs as u64)
        .checked_mul(outputs as u64)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| Error::Gpu("a layer is too large".into()))?;
    let b_bytes = outputs as u64 * 4;
    Ok(LayerBuffers {
        inputs,
        outputs,
        weight: gpu.upload("weight", &weights)?,
        bias: gpu.upload("bias", &layer.bias.to_vec())?,
        grad_weight: gpu.storage("weight gradient", w_bytes)?,
        grad_bias: gpu.storage("bias gradient", b_bytes)?,
        state_weight: [
            gpu.storage("weight state", w_bytes)?,
            gpu.storage("weight state", w_bytes)?,
        ],
        state_bias: [
            gpu.storage("bias state", b_bytes)?,
            gpu.storage("bias state", b_bytes)?,
        ],
        best_weight: gpu.storage("best weight", w_bytes)?,
        best_bias: gpu.storage("best bias", b_bytes)?,
    })
}

impl Work {
    fn new(gpu: &Gpu, capacity: usize, dim: usize, layers: &[LayerBuffers]) -> Result<Work> {
        let rows = capacity as u64;
        let per_layer = |what: &str| -> Result<Vec<wgpu::Buffer>> {
            layers
                .iter()
                .map(|l| gpu.storage(what, rows * l.outputs as u64 * 4))
                .collect()
        };
        Ok(Work {
            capacity,
            index: gpu.storage("batch index", rows * 4)?,
            x: gpu.storage("batch embeddings", rows * dim as u64 * 4)?,
            y: gpu.storage("batch labels", rows * 4)?,
            outputs: per_layer("layer output")?,
            grads: per_layer("layer gradient")?,
            row_loss: gpu.storage("row losses", rows * 4)?,
            row_correct: gpu.storage("row correct", rows * 4)?,
            stats: gpu.storage("statistics", 12)?,
        })
    }
}

impl Session {
    /// Gathers `rows` examples listed in the index buffer from `chunks` and runs the forward pass
    /// and the loss: in training (`training` given) with dropout and the loss gradient.
    fn forward<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        chunks: &'a [DataChunk],
        rows: usize,
        training: Option<BatchPart>,
    ) -> Result<()> {
        let w = &self.work;
        for chunk in chunks {
            let range = (chunk.start, chunk.rows);
            rec.gather(
                &w.index, &chunk.x, &chunk.y, &w.x, &w.y, rows, self.dim, range,
            )?;
        }
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let input = if l == 0 { &w.x } else { &w.outputs[l - 1] };
            let shape = MatMul::plain(rows, layer.inputs, layer.outputs);
            rec.matmul(
                input,
                &layer.weight,
                Some(&layer.bias),
                &w.outputs[l],
                shape,
                false,
            )?;
            if l < last {
                rec.relu_dropout(
                    &w.outputs[l],
                    rows,
                    layer.outputs,
                    dropout_hash(training.map(|t| t.dropout)),
                    l as u32,
                    training.map_or(0, |t| t.row_offset),
                )?;
            }
        }
        let inv_batch = training.map_or(1.0, |t| t.inv_batch);
        let targets = SmoothedTargets::new(self.settings.label_smoothing, self.classes);
        rec.softmax_ce(
            &w.outputs[last],
            &w.y,
            &self.class_weights,
            training.map(|_| &w.grads[last]),
            &w.row_loss,
            &w.row_correct,
            rows,
            self.classes,
            (targets.off, targets.on),
            inv_batch,
        )?;
        rec.batch_stats(&w.row_loss, &w.row_correct, &w.stats, rows)
    }

    /// Backward pass of `rows` rows, adding to the gradients when `accumulate`.
    fn backward<'a>(&'a self, rec: &mut Recorder<'a>, rows: usize, accumulate: bool) -> Result<()> {
        let w = &self.work;
        let scale = maths::dropout_scale(self.settings.dropout);
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let input = if l == 0 { &w.x } else { &w.outputs[l - 1] };
            let dz = &w.grads[l];
            let shape = MatMul::transpose_a(rows, layer.inputs, layer.outputs);
            rec.matmul(input, dz, None, &layer.grad_weight, shape, accumulate)?;
            rec.column_sums(dz, &layer.grad_bias, rows, layer.outputs, accumulate)?;
            if l > 0 {
                let da = &w.grads[l - 1];
                let shape = MatMul::transpose_b(rows, layer.outputs, layer.inputs);
                rec.matmul(dz, &layer.weight, None, da, shape, false)?;
                rec.relu_backward(da, &w.outputs[l - 1], rows * layer.inputs, scale)?;
            }
        }
        Ok(())
    }

    /// One optimiser step (number `self.steps`) on every parameter.
    fn update<'a>(&'a self, rec: &mut Recorder<'a>) -> Result<()> {
        let opt = &self.settings.optimizer;
        let k = self.settings.step_scalars(self.steps);
        let weights = optimizer_step(opt, &k, self.settings.weight_decay);
        let biases = optimizer_step(opt, &k, 0.0);
        for l in &self.layers {
            let [s1, s2] = &l.state_weight;
            let n = l.inputs * l.outputs;
            rec.optimizer_step(&weights, &l.weight, &l.grad_weight, s1, s2, n)?;
            let [s1, s2] = &l.state_bias;
            rec.optimizer_step(&biases, &l.bias, &l.grad_bias, s1, s2, l.outputs)?;
        }
        Ok(())
    }

    fn write_index(&self, gpu: &Gpu, rows: &[u32]) {
        gpu.queue
            .write_buffer(&self.work.index, 0, bytemuck::cast_slice(rows));
    }

    fn reset_stats(&self, gpu: &Gpu) {
        gpu.queue
            .write_buffer(&self.work.stats, 0, bytemuck::cast_slice(&[0u32; 3]));
    }

    /// Reads the running statistics as the mean over `n` examples.
    fn read_stats(&self, gpu: &Gpu, n: usize) -> Result<EpochStats> {
        let stats: Vec<u32> = gpu.read(&self.work.stats, 3)?;
        let (sum, compensation) = (f32::from_bits(stats[0]), f32::from_bits(stats[1]));
        let weighted_sum = f64::from(sum) - f64::from(compensation);
        Ok(EpochStats::mean(weighted_sum, u64::from(stats[2]), n))
    }

    fn read_head(&self, gpu: &Gpu, best: bool) -> Result<Head> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let (w, b) = if best {
                    (&l.best_weight, &l.best_bias)
                } else {
                    (&l.weight, &l.bias)
                };
                let weight = ndarray::Array2::from_shape_vec(
                    (l.inputs, l.outputs),
                    gpu.read(w, l.inputs * l.outputs)?,
                )
                .map_err(|e| Error::Gpu(e.to_string()))?;
                Ok(Dense {
                    weight,
                    bias: ndarray::Array1::from(gpu.read(b, l.outputs)?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Head { layers })
    }
}

impl HeadBackend for GpuBackend {
    fn name(&self) -> String {
        self.gpu.name()
    }

    fn begin(
        &mut self,
        head: &Head,
        train: Examples,
        val: Examples,
        class_weights: &[f32],
        settings: &StepSettings,
    ) -> Result<()> {
        check_begin(head, &train, &val, class_weights, settings)?;
        let (dim, classes) = (head.input_dim(), head.classes());
        to_u32("training examples", train.len())?;
        to_u32("validation examples", val.len())?;
        let gpu = &*self.gpu;
        let max_binding = gpu.max_binding();
        let row_bytes = dim as u64 * 4;
        let chunk_rows = usize::try_from(max_binding / row_bytes).unwrap_or(usize::MAX);
        if chunk_rows == 0 {
            return Err(Error::Gpu(format!(
                "one embedding of size {dim} is larger than this GPU binds at once"
            )));
        }
        let widest = head
            .layers
            .iter()
            .map(|l| l.weight.ncols())
            .chain([dim])
            .max()
            .unwrap_or(dim) as u64;
        let wanted = settings.batch_size.max(val.len().min(VALIDATION_ROWS));
        // Batch rows are the rows of a matmul dispatch (32 per workgroup), and a batch's elements
        // those of an element-wise dispatch (256 per workgroup, two dimensions).
        let max_groups = u64::from(gpu.limits().max_compute_workgroups_per_dimension);
        let by_dispatch = (max_groups * 32).min(max_groups * max_groups * 256 / widest);
        let by_binding = max_binding / (widest * 4);
        let capacity =
            wanted.min(usize::try_from(by_binding.min(by_dispatch)).unwrap_or(usize::MAX));
        if capacity == 0 {
            return Err(Error::Gpu(format!(
                "a layer of width {widest} is larger than this GPU binds at once"
            )));
        }
        let scope = ErrorScope::push(&gpu.device);
        let session = (|| {
            let layers = head
                .layers
                .iter()
                .map(|l| layer_buffers(gpu, l))
                .collect::<Result<Vec<_>>>()?;
            let work = Work::new(gpu, capacity, dim, &layers)?;
            Ok::<_, Error>(Session {
                dim,
                classes,
                train: upload_chunks(gpu, "training", &train, classes, chunk_rows)?,
                train_len: train.len(),
                val: upload_chunks(gpu, "validation", &val, classes, chunk_rows)?,
                val_len: val.len(),
                class_weights: gpu.upload("class weights", class_weights)?,
                layers,
                work,
                steps: 0,
                has_best: false,
                settings: *settings,
            })
        })();
        scope.pop("allocating the training buffers")?;
        self.session = Some(session?);
        Ok(())
    }

    fn train_epoch(&mut self, epoch: usize, order: &[u32]) -> Result<EpochStats> {
        let gpu = Arc::clone(&self.gpu);
        let s = self.session()?;
        let n = s.train_len;
        check_epoch_order(order, n)?;
        s.reset_stats(&gpu);
        for (step, batch) in order.chunks(s.settings.batch_size).enumerate() {
            s.steps += 1;
            let dropout = s
                .settings
                .dropout_step(to_u32("epoch", epoch)?, to_u32("step", step)?);
            let inv_batch = maths::inv_batch(batch.len());
            let parts = batch.len().div_ceil(s.work.capacity);
            for (part, rows) in batch.chunks(s.work.capacity).enumerate() {
                s.write_index(&gpu, rows);
                let mut rec = Recorder::new(&gpu);
                let training = BatchPart {
                    dropout: &dropout,
                    row_offset: part * s.work.capacity,
                    inv_batch,
                };
                s.forward(&mut rec, &s.train, rows.len(), Some(training))?;
                s.backward(&mut rec, rows.len(), part > 0)?;
                if part + 1 == parts {
                    s.update(&mut rec)?;
                }
                rec.submit();
            }
        }
        s.read_stats(&gpu, n)
    }

    fn validate(&mut self) -> Result<EpochStats> {
        let gpu = Arc::clone(&self.gpu);
        let s = self.session()?;
        if s.val_len == 0 {
            return Err(Error::Invalid("there is no validation data".into()));
        }
        s.reset_stats(&gpu);
        let all = 0..to_u32("validation examples", s.val_len)?;
        let order: Vec<u32> = all.collect();
        for rows in order.chunks(s.work.capacity) {
            s.write_index(&gpu, rows);
            let mut rec = Recorder::new(&gpu);
            s.forward(&mut rec, &s.val, rows.len(), None)?;
            rec.submit();
        }
        s.read_stats(&gpu, s.val_len)
    }

    fn keep_best(&mut self) -> Result<()> {
        let gpu = Arc::clone(&self.gpu);
        let s = self.session()?;
        let mut rec = Recorder::new(&gpu);
        for l in &s.layers {
            rec.copy(&l.weight, &l.best_weight, (l.inputs * l.outputs * 4) as u64);
            rec.copy(&l.bias, &l.best_bias, (l.outputs * 4) as u64);
        }
        rec.submit();
        s.has_best = true;
        Ok(())
    }

    fn finish(&mut self, restore_best: bool) -> Result<Head> {
        let s = self.session.take().ok_or_else(|| not_begun("GPU"))?;
        s.read_head(&self.gpu, restore_best && s.has_best)
    }
}
