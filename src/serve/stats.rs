//! The numbers behind `/metrics`, in Prometheus' text format: requests and their latencies per
//! model and status, batch sizes and queue depth per base.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use super::batch::{Batcher, BATCH_BUCKETS};

/// Latency bucket bounds in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Latency {
    count: u64,
    sum: f64,
    buckets: [u64; 12],
}

/// Request counts and latencies by (model, status).
#[derive(Default)]
pub(super) struct Stats {
    requests: Mutex<BTreeMap<(String, u16), Latency>>,
}

impl Stats {
    /// Counts one answered request.
    pub fn record(&self, model: &str, status: u16, took: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = requests.entry((model.to_string(), status)).or_default();
        let seconds = took.as_secs_f64();
        entry.count += 1;
        entry.sum += seconds;
        for (bucket, bound) in entry.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Everything, as Prometheus text.
    pub fn render(&self, batchers: &[(String, std::sync::Arc<Batcher>)]) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP graft_requests_total Prediction requests answered."
        );
        let _ = writeln!(out, "# TYPE graft_requests_total counter");
        for ((model, status), l) in requests.iter() {
            let _ = writeln!(
                out,
                "graft_requests_total{{model=\"{}\",status=\"{status}\"}} {}",
                escape(model),
                l.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP graft_request_seconds Time from a request's arrival to its answer."
        );
        let _ = writeln!(out, "# TYPE graft_request_seconds histogram");
        for ((model, status), l) in requests.iter() {
            let labels = format!("model=\"{}\",status=\"{status}\"", escape(model));
            for (bound, n) in LATENCY_BUCKETS.iter().zip(l.buckets) {
                let _ = writeln!(
                    out,
                    "graft_request_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "graft_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                l.count
            );
            let _ = writeln!(out, "graft_request_seconds_sum{{{labels}}} {}", l.sum);
            let _ = writeln!(out, "graft_request_seconds_count{{{labels}}} {}", l.count);
        }
        let _ = writeln!(
            out,
            "# HELP graft_batch_size Examples embedded per call of a base."
        );
        let _ = writeln!(out, "# TYPE graft_batch_size histogram");
        for (_, b) in batchers {
            let labels = format!("base=\"{}\"", escape(&b.label));
            let c = &b.counts;
            for (bound, n) in BATCH_BUCKETS.iter().zip(&c.buckets) {
                let _ = writeln!(
                    out,
                    "graft_batch_size_bucket{{{labels},le=\"{bound}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
            let batches = c.batches.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "graft_batch_size_bucket{{{labels},le=\"+Inf\"}} {batches}"
            );
            let _ = writeln!(
                out,
                "graft_batch_size_sum{{{labels}}} {}",
                c.examples.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "graft_batch_size_count{{{labels}}} {batches}");
        }
        let _ = writeln!(
            out,
            "# HELP graft_queue_depth Examples waiting for a base's next batch."
        );
        let _ = writeln!(out, "# TYPE graft_queue_depth gauge");
        for (_, b) in batchers {
            let _ = writeln!(
                out,
                "graft_queue_depth{{base=\"{}\"}} {}",
                escape(&b.label),
                b.depth()
            );
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
