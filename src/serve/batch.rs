//! Dynamic batching: the examples of concurrent requests for one base are collected for at most a
//! few milliseconds and embedded in one call; a bounded queue refuses work instead of growing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ndarray::{Array1, ArrayD, Axis};
use tokio::sync::{mpsc, oneshot};

use crate::base::BaseModel;
use crate::{Error, Result};

/// One example waiting for its embedding.
struct Job {
    input: ArrayD<f32>,
    reply: oneshot::Sender<Result<Array1<f32>>>,
}

/// Batch sizes counted per bucket, for `/metrics` (upper bounds, inclusive).
pub(super) const BATCH_BUCKETS: [u64; 7] = [1, 2, 4, 8, 16, 32, 64];

/// What a batcher did.
#[derive(Default)]
pub(super) struct BatchCounts {
    pub batches: AtomicU64,
    pub examples: AtomicU64,
    /// Batches of at most `BATCH_BUCKETS[i]` examples (cumulative, as Prometheus wants them).
    pub buckets: [AtomicU64; 7],
}

/// The queue and the task that embeds one base's batches.
pub(super) struct Batcher {
    pub label: String,
    queue: mpsc::Sender<Job>,
    capacity: usize,
    pub counts: Arc<BatchCounts>,
}

/// Why an example got no embedding.
pub(super) enum Refused {
    /// The queue is full: try again later (503).
    Busy,
    /// Embedding failed.
    Failed(Error),
}

impl Batcher {
    /// Starts the batching task for `base` on `runtime`: at most `queue` examples wait, batches
    /// of at most `max_batch`, the first example of a batch waits at most `window` for more.
    pub fn start(
        base: Arc<BaseModel>,
        label: String,
        queue: usize,
        max_batch: usize,
        window: Duration,
        runtime: &tokio::runtime::Handle,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(queue);
        let counts = Arc::new(BatchCounts::default());
        runtime.spawn(run(base, rx, max_batch, window, counts.clone()));
        Batcher {
            label,
            queue: tx,
            capacity: queue,
            counts,
        }
    }

    /// Examples waiting now.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.queue.capacity())
    }

    /// The embedding of one prepared example (the base's input without the batch axis).
    pub async fn embed(&self, input: ArrayD<f32>) -> std::result::Result<Array1<f32>, Refused> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { input, reply })
            .map_err(|_| Refused::Busy)?;
        match answer.await {
            Ok(result) => result.map_err(Refused::Failed),
            Err(_) => Err(Refused::Failed(Error::Internal(
                "the batcher stopped before answering".into(),
            ))),
        }
    }
}

async fn run(
    base: Arc<BaseModel>,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    window: Duration,
    counts: Arc<BatchCounts>,
) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let running = Arc::new(tokio::sync::Semaphore::new(cores.clamp(1, 8)));
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + window;
        while jobs.len() < max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                _ => break,
            }
        }
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts
            .examples
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        for (bucket, bound) in counts.buckets.iter().zip(BATCH_BUCKETS) {
            if jobs.len() as u64 <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (inputs, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
        // Up to `running` batches at once (ONNX Runtime keeps a session per core); the next
        // batch is collected while these run.
        let Ok(permit) = running.clone().acquire_owned().await else {
            return;
        };
        let base = base.clone();
        tokio::spawn(async move {
            let embedded = tokio::task::spawn_blocking(move || embed_batch(&base, inputs)).await;
            drop(permit);
            let embedded = embedded.unwrap_or_else(|e| {
                Err(Error::Internal(format!("the embedding task failed: {e}")))
            });
            match embedded {
                Ok(rows) => {
                    for (reply, row) in replies.into_iter().zip(rows) {
                        let _ = reply.send(Ok(row));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(Error::Inference(msg.clone())));
                    }
                }
            }
        });
    }
}

/// Stacks the inputs into one batch and embeds it; one row per input.
fn embed_batch(base: &BaseModel, inputs: Vec<ArrayD<f32>>) -> Result<Vec<Array1<f32>>> {
    let views: Vec<_> = inputs.iter().map(|i| i.view()).collect();
    let batch = ndarray::stack(Axis(0), &views)
        .map_err(|e| Error::Internal(format!("stacking a batch: {e}")))?;
    let embeddings = base.embed(batch.view())?;
    Ok(embeddings.outer_iter().map(|r| r.to_owned()).collect())
}
