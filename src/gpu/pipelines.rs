//! The compiled compute pipelines: one per entry point of `shaders/*.wgsl`, built once when a
//! [`crate::gpu::Gpu`] opens its device (which owns them). Knows the shaders and their binding
//! numbers, nothing of what the kernels compute or who calls them ([`crate::gpu::kernels`]
//! records their dispatches).

/// One compute entry point.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// Binding numbers of the parameter block and then of each buffer, in the order given.
    pub(crate) bindings: &'static [u32],
}

/// Every pipeline graft uses, compiled once per device.
pub(crate) struct Pipelines {
    pub(crate) matmul: Pipeline,
    pub(crate) matmul_nn4: Pipeline,
    pub(crate) matmul_tn4: Pipeline,
    pub(crate) gather: Pipeline,
    pub(crate) relu_dropout: Pipeline,
    pub(crate) relu_backward: Pipeline,
    pub(crate) softmax_ce: Pipeline,
    pub(crate) column_sums: Pipeline,
    pub(crate) batch_stats: Pipeline,
    pub(crate) sgd: Pipeline,
    pub(crate) adam: Pipeline,
    pub(crate) rmsprop: Pipeline,
}

fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    bindings: &'static [u32],
) -> Pipeline {
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    let layout = pipeline.get_bind_group_layout(0);
    Pipeline {
        pipeline,
        layout,
        bindings,
    }
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let module = |label: &str, source: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let matmul = module("matmul", include_str!("shaders/matmul.wgsl"));
        let gather = module("gather", include_str!("shaders/gather.wgsl"));
        let activation = module("activation", include_str!("shaders/activation.wgsl"));
        let softmax = module("softmax_ce", include_str!("shaders/softmax_ce.wgsl"));
        let reduce = module("reduce", include_str!("shaders/reduce.wgsl"));
        let optim = module("optim", include_str!("shaders/optim.wgsl"));
        // Binding numbers as declared in the shaders (entry points of one file that bind
        // different variables use different numbers).
        Pipelines {
            matmul: pipeline(device, &matmul, "main", &[0, 1, 2, 3, 4]),
            matmul_nn4: pipeline(device, &matmul, "main_nn4", &[0, 5, 6, 3, 4]),
            matmul_tn4: pipeline(device, &matmul, "main_tn4", &[0, 5, 6, 3, 4]),
            gather: pipeline(device, &gather, "main", &[0, 1, 2, 3, 4, 5]),
            relu_dropout: pipeline(device, &activation, "relu_dropout", &[0, 1]),
            relu_backward: pipeline(device, &activation, "relu_backward", &[2, 3, 4]),
            softmax_ce: pipeline(device, &softmax, "main", &[0, 1, 2, 3, 4, 5, 6]),
            column_sums: pipeline(device, &reduce, "column_sums", &[0, 1, 2]),
            batch_stats: pipeline(device, &reduce, "batch_stats", &[3, 4, 5, 6]),
            sgd: pipeline(device, &optim, "sgd", &[0, 1, 2, 3]),
            adam: pipeline(device, &optim, "adam", &[0, 1, 2, 3, 4]),
            rmsprop: pipeline(device, &optim, "rmsprop", &[0, 1, 2, 3]),
        }
    }
}
