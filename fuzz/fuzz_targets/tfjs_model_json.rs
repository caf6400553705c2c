//! Arbitrary bytes as a TF.js model.json (layers or graph topology, weights manifest) and as
//! browserify-wrapped npm files: every input must give a model or an error, never a panic.
#![no_main]

use graft_converters::tfjs::npm::{unwrap_browserify, Wrapped};
use graft_converters::tfjs::weights::Weights;
use graft_converters::tfjs::{graph, layers, Kind, ModelJson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = unwrap_browserify(data, Wrapped::Json, &[("a".into(), "a.bin".into())]);
    let _ = unwrap_browserify(data, Wrapped::Base64, &[]);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(model) = ModelJson::parse(text) else {
        return;
    };
    let weights = Weights::default();
    let _ = match model.kind() {
        Ok(Kind::Layers) => layers::convert(&model.topology, &weights).map(|_| ()),
        Ok(Kind::Graph) => graph::convert(&model, &weights).map(|_| ()),
        Err(e) => Err(e),
    };
});
