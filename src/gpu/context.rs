//! Opening a GPU: adapter choice, the device and its queue and limits, its compiled pipelines,
//! buffer upload and read-back, and error scopes. Uses [`crate::gpu::pipelines`] (to compile them)
//! and nothing else of the crate but the error type; [`crate::gpu::kernels`] builds on it.

use std::sync::mpsc;

use wgpu::util::DeviceExt;

use crate::gpu::pipelines::Pipelines;
use crate::{Error, Result};

/// Which adapters [`Gpu::open`] may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Only hardware adapters (discrete, integrated or virtual GPUs).
    HardwareOnly,
    /// Hardware preferred, else a software rasteriser such as lavapipe ("llvmpipe"), else an
    /// adapter of unknown type.
    AllowSoftware,
}

/// An open GPU device with graft's compiled kernels.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pub(crate) pipelines: Pipelines,
    /// A 4-byte buffer bound where a kernel has an unused input (e.g. no bias).
    pub(crate) dummy: wgpu::Buffer,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.name())
            .finish()
    }
}

/// Rank of an adapter for [`Gpu::open`]: lower is better; `None` when the policy excludes it.
fn adapter_rank(info: &wgpu::AdapterInfo, policy: AdapterPolicy) -> Option<(u8, u8)> {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu if policy == AdapterPolicy::AllowSoftware => 3,
        wgpu::DeviceType::Other if policy == AdapterPolicy::AllowSoftware => 4,
        _ => return None,
    };
    // Same device through several APIs: prefer the native compute APIs to OpenGL.
    let api = u8::from(info.backend == wgpu::Backend::Gl);
    Some((kind, api))
}

impl Gpu {
    /// Opens the best adapter `policy` allows, with the adapter's own limits; `Ok(None)` when
    /// there is no such adapter. Backends can be narrowed with `WGPU_BACKEND` (e.g. `vulkan`).
    pub fn open(policy: AdapterPolicy) -> Result<Option<Gpu>> {
        Gpu::open_with(policy, |_| {})
    }

    /// Like [`Gpu::open`], letting `adjust` lower the limits requested from the adapter (e.g.
    /// `max_storage_buffer_binding_size`, to exercise chunking). Raising a limit above the
    /// adapter's is an error.
    pub fn open_with(
        policy: AdapterPolicy,
        adjust: impl FnOnce(&mut wgpu::Limits),
    ) -> Result<Option<Gpu>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let Some(adapter) = adapters
            .into_iter()
            .filter_map(|a| adapter_rank(&a.get_info(), policy).map(|rank| (rank, a)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, a)| a)
        else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        adjust(&mut limits);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("graft"),
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", info.name)))?;
        let limits = device.limits();
        let scope = ErrorScope::push(&device);
        let pipelines = Pipelines::new(&device);
        let dummy = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("unused input"),
            contents: &[0; 4],
            usage: wgpu::BufferUsages::STORAGE,
        });
        scope.pop("compiling the kernels")?;
        Ok(Some(Gpu {
            device,
            queue,
            info,
            limits,
            pipelines,
            dummy,
        }))
    }

    /// The adapter for reports, e.g. `"gpu: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"`.
    pub fn name(&self) -> String {
        format!("gpu: {} ({:?})", self.info.name, self.info.backend)
    }

    /// True for a software adapter (a rasteriser running on the CPU, such as lavapipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The device's limits (what chunking works within).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The largest buffer graft binds to a kernel, in bytes: the smaller of the storage binding
    /// and buffer size limits, rounded down to a multiple of 4.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            & !3
    }

    /// Fails clearly when `bytes` exceed [`Gpu::max_binding`].
    pub(crate) fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_binding() {
            return Err(Error::Gpu(format!(
                "{what} needs {bytes} bytes, more than the {} bytes this GPU binds at once",
                self.max_binding()
            )));
        }
        Ok(())
    }

    /// A zeroed storage buffer of `bytes` (at least 4) that kernels and copies may use.
    pub(crate) fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_binding(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data` (an empty slice gives one zero word).
    pub(crate) fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding(label, bytes.len() as u64)?;
        let zero = [0u8; 4];
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: if bytes.is_empty() { &zero } else { bytes },
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// Copies `len` elements of `T` from the start of `buffer` to the host (waits for the GPU).
    pub(crate) fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (sender, receiver) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        receiver
            .recv()
            .map_err(|e| Error::Gpu(format!("reading back from the GPU: {e}")))?
            .map_err(|e| Error::Gpu(format!("reading back from the GPU: {e}")))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back from the GPU: {e}")))?;
        let out = bytemuck::pod_collect_to_vec(&view);
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

/// Captures validation and out-of-memory errors (which wgpu would otherwise report by panicking)
/// and turns them into [`Error::Gpu`].
/// Fields drop in order, so an unpopped scope still pops innermost first.
pub(crate) struct ErrorScope {
    memory: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl ErrorScope {
    pub(crate) fn push(device: &wgpu::Device) -> ErrorScope {
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        ErrorScope { memory, validation }
    }

    /// Ends the scope; `what` names the work for the message.
    pub(crate) fn pop(self, what: &str) -> Result<()> {
        let memory = pollster::block_on(self.memory.pop());
        let validation = pollster::block_on(self.validation.pop());
        match memory.or(validation) {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(()),
        }
    }
}
