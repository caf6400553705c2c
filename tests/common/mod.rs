//! Helpers shared by the integration tests: the GPU (or a visible skip), seeded data, zoo checks,
//! a recognizer trained on the shipped images.
#![allow(dead_code)] // each test binary uses only some of them

use std::io::Write;
use std::sync::{Arc, OnceLock};

use graft::gpu::{AdapterPolicy, Gpu};
use graft::zoo;
use ndarray::Array2;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The environment a spawned `graft` with its own `GRAFT_CACHE` gets for its engine, so that it
/// does not fetch ONNX Runtime into that fresh cache: the library this test process finds (or
/// fetches once into the user's cache), else downloads forbidden (then it runs on tract).
pub fn engine_env() -> (&'static str, std::ffi::OsString) {
    static LIBRARY: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let library = LIBRARY.get_or_init(|| match graft::base::find_library(None) {
        Ok(Some(found)) if found.path.is_file() => Some(found.path),
        _ => graft::base::install(&graft::progress::Silent).ok(),
    });
    match library {
        Some(path) => (graft::base::ORT_DYLIB_ENV, path.clone().into_os_string()),
        None => ("GRAFT_OFFLINE", "1".into()),
    }
}

/// Runs the `graft` binary with `args`, its cache at `cache` and the engine of [`engine_env`]:
/// its exit code (-1 when killed by a signal), stdout and stderr.
pub fn run_graft(cache: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let (engine_var, engine_value) = engine_env();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_CACHE", cache)
        .env(engine_var, engine_value)
        .output()
        .expect("graft runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shared device, or `None` (after saying so) when there is none and none is required;
/// with `GRAFT_REQUIRE_GPU=1` a missing adapter fails the test.
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    let found = GPU.get_or_init(|| {
        Gpu::open(AdapterPolicy::AllowSoftware)
            .expect("opening the GPU")
            .map(Arc::new)
    });
    if found.is_none() {
        assert!(
            std::env::var("GRAFT_REQUIRE_GPU").as_deref() != Ok("1"),
            "GRAFT_REQUIRE_GPU=1 but no GPU adapter was found"
        );
        // Written past the test harness's capture, so that the skip shows in a normal run.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: no GPU adapter (set GRAFT_REQUIRE_GPU=1 to make this a failure)"
        );
    }
    found.clone()
}

/// Standard normal sample (Box-Muller) from the test generator.
pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = ((rng.next_u32() >> 8) as f64 + 1.0) / 16_777_217.0;
    let u2 = (rng.next_u32() >> 8) as f64 / 16_777_216.0;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Gaussian blobs: class centres drawn from N(0, 1) per dimension (from `centre_seed`), examples at
/// centre + N(0, spread²) (from `seed`); `counts[c]` examples of class `c`.
pub fn blobs(
    centre_seed: u64,
    seed: u64,
    counts: &[usize],
    dim: usize,
    spread: f32,
) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(centre_seed);
    let centres = Array2::from_shape_fn((counts.len(), dim), |_| normal(&mut rng));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
        .collect();
    let x = Array2::from_shape_fn((labels.len(), dim), |(i, j)| {
        centres[[labels[i], j]] + spread * normal(&mut rng)
    });
    (x, labels)
}

/// The converted model the repository commits for zoo model `m` (`zoo/<file>`).
pub fn committed_model(m: &zoo::Manifest) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("zoo")
        .join(&m.model.file)
}

/// Fetches zoo model `name`'s original (mirror, cache or registry), converts it, asserts that the
/// result is byte for byte the committed model, and returns it.
pub fn fresh_conversion_equals_committed(name: &str) -> Vec<u8> {
    let m = zoo::manifest(name).unwrap();
    let original = zoo::fetch_original(&m, None, &graft::progress::Silent).unwrap();
    let model = zoo::convert(&m, &original).unwrap();
    let committed = std::fs::read(committed_model(&m)).unwrap();
    assert!(
        committed == model,
        "zoo model {name} differs from a fresh conversion"
    );
    model
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies the folder `from` (recursively) into `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A recognizer trained (graft's defaults, no cache) on the shipped images, with its base
/// EfficientNet-Lite0 on tract (tests that open ONNX Runtime themselves keep the process's one
/// ONNX Runtime environment), the folder and its files.
pub struct ShippedRecognizer {
    pub classifier: graft::task::Classifier,
    pub data: std::path::PathBuf,
    pub files: Vec<std::path::PathBuf>,
}

/// The [`ShippedRecognizer`], trained once per test binary.
pub fn shipped_recognizer() -> &'static ShippedRecognizer {
    use graft::base::{Backend, BaseModel, BaseOptions};
    use graft::task::{create, Classifier, CreateOptions, Silent};
    static TRAINED: OnceLock<ShippedRecognizer> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let tract = BaseOptions::on(Backend::Tract);
        let base = Arc::new(BaseModel::open("efficientnet-lite0", &tract).unwrap());
        let data = graft::task::demo::demo_data().unwrap();
        let set = graft::dataset::Dataset::from_folder(&data).unwrap();
        let options = CreateOptions {
            cache: graft::cache::CacheOptions { no_cache: true },
            ..CreateOptions::default()
        };
        let created = create(&base, &set, &options, &Silent).unwrap();
        ShippedRecognizer {
            classifier: Classifier::new(created.recognizer, base).unwrap(),
            data,
            files: set.examples.iter().map(|e| e.path.clone()).collect(),
        }
    })
}
