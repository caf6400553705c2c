//! The load generator of `bench/serve.sh`: `--clients` threads post real JPEGs to one prediction
//! URL, each as fast as its answers come back, for `--seconds` (and at most `--max-requests` in
//! all), over loopback only. Prints throughput, latency percentiles and the answers by status as
//! one JSON object; a request that fails other than with an explicit 503 is counted as failed.
//!
//! The same generator drives graft's server and the Python reference server
//! (`bench/serve_reference.py`), which answer the same route with the same body.
//!
//! `cargo run --release --example load -- --url http://127.0.0.1:8080/v1/models/NAME/predict
//! --images DIR [--clients 64] [--seconds 60]`

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use graft::{Error, Result};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The prediction route (loopback addresses only).
    #[arg(long)]
    url: String,
    /// A folder of images: JPEGs are posted as they are, PNGs re-encoded as JPEG (quality 90).
    #[arg(long)]
    images: PathBuf,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to load the server.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Requests in all, at most (the run ends at whichever bound comes first).
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: usize,
    /// Seconds of requests before the measured period (answers not counted).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
}

/// What one client saw in the measured period.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    statuses: BTreeMap<String, usize>,
}

fn jpegs(dir: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        match ext.as_str() {
            "jpg" | "jpeg" => out.push(bytes),
            "png" => {
                let image = image::load_from_memory(&bytes)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?
                    .to_rgb8();
                let mut jpeg = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), 90)
                    .encode_image(&image)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
                out.push(jpeg);
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "no JPEG or PNG in {}",
            dir.display()
        )));
    }
    Ok(out)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// The host of `url` must be a loopback address: the generator never loads another machine.
fn check_loopback(url: &str) -> Result<()> {
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match loopback {
        true => Ok(()),
        false => Err(Error::Invalid(format!(
            "{url}: the load generator posts to http://127.0.0.1 (or localhost) only"
        ))),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    check_loopback(&args.url)?;
    let images = Arc::new(jpegs(&args.images)?);
    let start = Instant::now();
    let measured_from = start + Duration::from_secs_f64(args.warmup);
    let end = measured_from + Duration::from_secs_f64(args.seconds);
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..args.clients)
        .map(|client| {
            let (images, url, sent) = (images.clone(), args.url.clone(), sent.clone());
            let max = args.max_requests;
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut tally = Tally::default();
                let mut i = client;
                while Instant::now() < end
                    && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < max
                {
                    let body = &images[i % images.len()];
                    i += 1;
                    let began = Instant::now();
                    let status = match agent
                        .post(&url)
                        .header("Content-Type", "image/jpeg")
                        .send(&body[..])
                    {
                        Ok(mut response) => {
                            // Read the whole answer: the latency is the client's.
                            let _ = response.body_mut().read_to_vec();
                            response.status().as_u16().to_string()
                        }
                        Err(e) => format!("error: {e}"),
                    };
                    if began >= measured_from && Instant::now() <= end {
                        tally.latencies_ms.push(began.elapsed().as_secs_f64() * 1e3);
                        *tally.statuses.entry(status).or_default() += 1;
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker
            .join()
            .map_err(|_| Error::Internal("a client thread panicked".into()))?;
        all.latencies_ms.extend(tally.latencies_ms);
        for (status, n) in tally.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
    }
    let seconds = (Instant::now().min(end) - measured_from).as_secs_f64();
    let ok = all.statuses.get("200").copied().unwrap_or(0);
    let busy = all.statuses.get("503").copied().unwrap_or(0);
    let total: usize = all.statuses.values().sum();
    // Percentiles of the answered (200) requests' latencies would hide slow refusals: these are
    // of every measured request.
    all.latencies_ms.sort_by(f64::total_cmp);
    let report = json!({
        "url": args.url,
        "clients": args.clients,
        "seconds": seconds,
        "images": images.len(),
        "requests": total,
        "ok": ok,
        "busy_503": busy,
        "failed": total - ok - busy,
        "statuses": all.statuses,
        "throughput_rps": ok as f64 / seconds.max(1e-9),
        "latency_ms": {
            "p50": percentile(&all.latencies_ms, 0.50),
            "p90": percentile(&all.latencies_ms, 0.90),
            "p99": percentile(&all.latencies_ms, 0.99),
            "max": all.latencies_ms.last().copied().unwrap_or(f64::NAN),
        },
    });
    println!("{report}");
    Ok(())
}
