//! Any bytes given as an ONNX base go through the checks `--base` applies (protobuf, graph,
//! input sizes and their budget, cut, tract's typing) and give a base or an error, never a panic.
#![no_main]

use graft::base::{BaseModel, BaseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = BaseModel::from_bytes(data.to_vec(), "fuzz.onnx", &BaseOptions::default());
});
