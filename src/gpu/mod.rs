//! GPU plumbing through wgpu (the backends graft's build enables: Vulkan and OpenGL): opening a
//! device, graft's compute kernels, and which device to use. What runs on it lives with what it
//! computes: head training in [`crate::head::gpu`], KNN similarities in [`crate::knn::gpu`].
//!
//! - [`Gpu`] (`context`): an open device with graft's compiled pipelines (`pipelines`, from
//!   `shaders/*.wgsl`), chosen by [`AdapterPolicy`]; buffer upload and read-back.
//! - `kernels`: records dispatches of those pipelines with their parameters (crate-internal).
//! - [`DeviceChoice`]: what `--device auto|cpu|gpu` (or the environment variable `GRAFT_DEVICE`,
//!   read when the option is absent) selects; [`crate::head::backend_for`] turns it into a
//!   training backend.
//!
//! The modules here use nothing of the crate but [`crate::Error`]: within `gpu`, `kernels` uses
//! `context` and `pipelines`, `context` uses `pipelines`.
//!
//! Kernels, one WGSL file per family: `matmul` (`C = A·B (+ bias) (+ C)` with strided operands
//! for `X·W`, `Xᵀ·dY`, `dY·Wᵀ` and `Q·Iᵀ`; 8x8 invocations of 4x4 register blocks = 32x32 tiles,
//! plus vec4 variants when sizes are multiples of 4), `gather` (batch rows from the stored data
//! by index), `activation` (ReLU with the seeded dropout hash, and its gradient), `softmax_ce`
//! (stable smoothed, weighted cross-entropy, correctness and gradient per row), `reduce` (column
//! sums, per-batch loss/correct totals) and `optim` (SGD with momentum, Adam, RMSprop, weight
//! decay). Everything larger than the device's binding or dispatch limits is processed in chunks.
//!
//! `auto` uses a hardware GPU when there is one and the CPU otherwise; a software adapter (such
//! as Mesa's lavapipe, "llvmpipe") is slower than the CPU backend and is only used when `gpu` is
//! asked for explicitly.

use std::str::FromStr;

use crate::{Error, Result};

pub(crate) mod context;
pub(crate) mod kernels;
mod pipelines;

pub use context::{AdapterPolicy, Gpu};
/// The environment variable the CLI reads when `--device` is absent: `auto`, `cpu` or `gpu`.
pub const DEVICE_ENV: &str = "GRAFT_DEVICE";

/// Where head training runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A hardware GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// A GPU, including a software one; an error when there is none.
    Gpu,
}

impl FromStr for DeviceChoice {
    type Err = Error;

    /// Parses `auto`, `cpu` or `gpu` (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<DeviceChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu),
            other => Err(Error::Invalid(format!(
                "unknown device '{other}': expected auto, cpu or gpu"
            ))),
        }
    }
}

impl DeviceChoice {
    /// `explicit` (the `--device` option) when given, else [`DEVICE_ENV`] when set and not
    /// empty, else [`DeviceChoice::Auto`]. A bad value in either is an error.
    pub fn resolve(explicit: Option<DeviceChoice>) -> Result<DeviceChoice> {
        DeviceChoice::resolve_from(explicit, std::env::var(DEVICE_ENV).ok().as_deref())
    }

    /// [`DeviceChoice::resolve`] with the environment variable's value given.
    pub fn resolve_from(explicit: Option<DeviceChoice>, env: Option<&str>) -> Result<DeviceChoice> {
        match (explicit, env) {
            (Some(choice), _) => Ok(choice),
            (None, Some(value)) if !value.trim().is_empty() => value
                .parse()
                .map_err(|e| Error::Invalid(format!("{DEVICE_ENV}: {e}"))),
            _ => Ok(DeviceChoice::Auto),
        }
    }

    /// Opens the GPU this choice asks for: `None` for `Cpu`, and for `Auto` without a hardware
    /// GPU; `Gpu` without any adapter is an [`Error::Gpu`].
    pub fn open_gpu(self) -> Result<Option<Gpu>> {
        match self {
            DeviceChoice::Cpu => Ok(None),
            DeviceChoice::Auto => Gpu::open(AdapterPolicy::HardwareOnly),
            DeviceChoice::Gpu => match Gpu::open(AdapterPolicy::AllowSoftware)? {
                Some(gpu) => Ok(Some(gpu)),
                None => Err(Error::Gpu(
                    "no GPU adapter found (install a Vulkan or OpenGL driver, e.g. \
                     mesa-vulkan-drivers for the software lavapipe, or use --device cpu)"
                        .into(),
                )),
            },
        }
    }
}
