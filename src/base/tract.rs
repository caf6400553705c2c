//! tract as the engine of a base: the typed model cut at the embedding, and optimised plans per
//! batch size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, ArrayViewD};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::guard;
use crate::{Error, Result};

/// The typed tract model of `proto` with batch `batch` (`None`: a symbol `N`) before `input_shape`, giving
/// `outputs` (tensor or node names), not yet optimised; unknown input dims become symbols.
pub(super) fn typed_model(
    proto: &pb::ModelProto,
    batch: Option<usize>,
    input_shape: &[Option<usize>],
    outputs: &[String],
) -> TractResult<TypedModel> {
    let mut model = tract_onnx::onnx().model_for_proto_model(proto)?;
    let mut dims: TVec<TDim> = tvec![match batch {
        Some(n) => n.to_dim(),
        None => model.symbols.sym("N").into(),
    }];
    for (i, d) in input_shape.iter().enumerate() {
        dims.push(match d {
            Some(d) => d.to_dim(),
            None => model.symbols.sym(&format!("d{}", i + 1)).into(),
        });
    }
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), dims))?;
    model.with_outputs_by_name(outputs)?.into_typed()
}

/// `model` with its batch symbol fixed to `n`.
fn fix_batch(model: &TypedModel, batch: &Symbol, n: i64) -> TractResult<TypedModel> {
    model.set_symbols(&HashMap::from([(batch.clone(), TDim::Val(n))]))
}

/// tract plans for the model cut at `cuts`: the decluttered model with a symbolic batch and its
/// plan for batch 1, or when the graph cannot keep a symbolic batch, a plan for batch 1 made from
/// the ONNX file; with the cut tensor's type.
pub(super) fn prepare_tract(
    proto: &pb::ModelProto,
    known: &[Option<usize>],
    cuts: &[String],
) -> std::result::Result<(PlanSource, Arc<TypedSimplePlan>, TypedFact), String> {
    let symbolic = guard("cannot prepare the model", || {
        let typed = typed_model(proto, None, known, cuts)?;
        let fact = typed.output_fact(0)?.clone();
        let batch = typed.symbols.sym("N");
        let model = typed.into_decluttered()?;
        let plan = fix_batch(&model, &batch, 1)?
            .into_optimized()?
            .into_runnable()?;
        Ok::<_, TractError>((PlanSource::Symbolic { model, batch }, plan, fact))
    });
    symbolic.or_else(|_| {
        guard("cannot prepare the model", || {
            let typed = typed_model(proto, Some(1), known, cuts)?;
            let fact = typed.output_fact(0)?.clone();
            Ok::<_, TractError>((
                PlanSource::Onnx,
                typed.into_optimized()?.into_runnable()?,
                fact,
            ))
        })
    })
}

/// The type of the cut tensor as tract infers it, with a symbolic batch (`true`) or, when the
/// graph cannot keep one, with batch 1 (`false`): what another engine is checked with.
pub(super) fn cut_fact(
    proto: &pb::ModelProto,
    known: &[Option<usize>],
    cuts: &[String],
) -> std::result::Result<(TypedFact, bool), String> {
    let fact = |batch| {
        guard("cannot prepare the model", || {
            let typed = typed_model(proto, batch, known, cuts)?;
            Ok::<_, TractError>(typed.output_fact(0)?.clone())
        })
    };
    fact(None)
        .map(|f| (f, true))
        .or_else(|_| fact(Some(1)).map(|f| (f, false)))
}

/// At most this many batch sizes keep an optimised plan (the cache is emptied when full).
const MAX_CACHED_PLANS: usize = 8;

/// Where plans for a new batch size come from. tract plans optimised for a fixed batch size run
/// about 3x faster than one plan with a symbolic batch (EfficientNet-Lite0), so the symbolic
/// model is kept, decluttered, and fixed to each batch size met.
pub(super) enum PlanSource {
    /// The decluttered model with batch symbol `batch`.
    Symbolic { model: TypedModel, batch: Symbol },
    /// The graph cannot keep a symbolic batch (Paddle's Shape -> Cast -> Reshape flatten): each
    /// batch size is prepared from the ONNX file again.
    Onnx,
}

/// A base's tract plans: where new ones come from, and the optimised ones by batch size.
pub(super) struct TractPlans {
    source: PlanSource,
    plans: Mutex<HashMap<usize, Arc<TypedSimplePlan>>>,
}

impl TractPlans {
    /// Plans from `source`, starting with `first` for batch 1.
    pub(super) fn new(source: PlanSource, first: Arc<TypedSimplePlan>) -> TractPlans {
        TractPlans {
            source,
            plans: Mutex::new(HashMap::from([(1, first)])),
        }
    }

    /// The cut tensor for a batch of `n` (`input`, in standard layout). `proto`, `known` and
    /// `cut` describe the model, for a graph that is prepared per batch size.
    pub(super) fn run(
        &self,
        input: ArrayViewD<f32>,
        n: usize,
        proto: &dyn Fn() -> Result<pb::ModelProto>,
        known: &[Option<usize>],
        cut: &str,
    ) -> Result<ArrayD<f32>> {
        let tensor = Tensor::from(input.to_owned());
        let plan = self.plan_for(n, proto, known, cut)?;
        let outputs = guard("running the base model", || {
            plan.run(tvec![tensor.into_tvalue()])
        })
        .map_err(Error::Inference)?;
        let view = outputs
            .first()
            .ok_or_else(|| Error::Inference("the model gave no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(format!("embedding is not float32: {e}")))?;
        Ok(view.to_owned())
    }

    /// The plan that runs a batch of `n`, optimised on first use.
    fn plan_for(
        &self,
        n: usize,
        proto: &dyn Fn() -> Result<pb::ModelProto>,
        known: &[Option<usize>],
        cut: &str,
    ) -> Result<Arc<TypedSimplePlan>> {
        let mut cache = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(plan) = cache.get(&n) {
            return Ok(plan.clone());
        }
        let batch = i64::try_from(n).map_err(|_| Error::Invalid(format!("batch of {n}")))?;
        let plan = match &self.source {
            PlanSource::Symbolic { model, batch: sym } => guard("preparing the base model", || {
                fix_batch(model, sym, batch)?
                    .into_optimized()?
                    .into_runnable()
            }),
            PlanSource::Onnx => {
                let proto = proto()?;
                guard("preparing the base model", || {
                    let cut = [cut.to_string()];
                    typed_model(&proto, Some(n), known, &cut)?
                        .into_optimized()?
                        .into_runnable()
                })
            }
        }
        .map_err(Error::Inference)?;
        if cache.len() >= MAX_CACHED_PLANS {
            cache.clear();
        }
        cache.insert(n, plan.clone());
        Ok(plan)
    }
}

/// The smallest and largest value each of `tensors` takes over `inputs` (one example each,
/// without the batch dim), `proto` run by tract with those tensors as its outputs.
pub(super) fn tensor_statistics(
    proto: &pb::ModelProto,
    known: &[Option<usize>],
    tensors: &[String],
    inputs: &[ArrayD<f32>],
) -> Result<Vec<super::TensorStatistics>> {
    let mut stats = vec![super::TensorStatistics::new(); tensors.len()];
    if tensors.is_empty() {
        return Ok(stats);
    }
    let plan = guard("preparing the base model for calibration", || {
        typed_model(proto, Some(1), known, tensors)?
            .into_optimized()?
            .into_runnable()
    })
    .map_err(Error::Inference)?;
    for input in inputs {
        let tensor = Tensor::from(input.view().insert_axis(ndarray::Axis(0)).to_owned());
        let outputs = guard("running the base model for calibration", || {
            plan.run(tvec![tensor.into_tvalue()])
        })
        .map_err(Error::Inference)?;
        for (stat, output) in stats.iter_mut().zip(&outputs) {
            let view = output.to_plain_array_view::<f32>().map_err(|e| {
                Error::Inference(format!("a calibrated tensor is not float32: {e}"))
            })?;
            stat.add(view.into_dyn(), Some(1));
        }
    }
    Ok(stats)
}
