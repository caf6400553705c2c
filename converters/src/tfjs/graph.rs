//! TF.js graph models.
use tract_onnx::pb;
use super::{weights::Weights, ModelJson};
use crate::Error;
pub fn convert(_m: &ModelJson, _w: &Weights) -> Result<pb::ModelProto, Error> { Err(Error::Unsupported("todo".into())) }
