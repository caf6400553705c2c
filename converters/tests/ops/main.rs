//! One small model per op that [`graft_converters::supported_ops`] lists, for every format: each
//! is converted, run with tract and compared with TensorFlow's semantics written out here in
//! plain Rust ([`reference`]). [`every_supported_op_has_a_test`] fails when an op is listed without
//! a test here (or a test names an op that is not listed).

#[path = "../tf_reference/mod.rs"]
mod reference;
#[path = "../tfjs_util/mod.rs"]
mod tfjs_util;
#[path = "../tflite_util/mod.rs"]
mod tflite_util;

/// Defines one `#[test]` per op and `TESTED`, the op names those tests cover, in one go, so that
/// the list cannot drift from the tests.
macro_rules! op_tests {
    ($($op:literal => $test:ident $body:block)*) => {
        /// The ops this module's tests cover.
        pub const TESTED: &[&str] = &[$($op),*];
        $(
            #[test]
            fn $test() $body
        )*
    };
}

mod graph;
mod layers;
mod tflite;

#[test]
fn every_supported_op_has_a_test() {
    let formats = graft_converters::supported_ops();
    let names: Vec<&str> = formats.iter().map(|(f, _)| *f).collect();
    assert_eq!(names, ["tfjs-graph", "tfjs-layers", "tflite"]);
    for (format, ops) in formats {
        let tested = match format {
            "tfjs-graph" => graph::TESTED,
            "tfjs-layers" => layers::TESTED,
            _ => tflite::TESTED,
        };
        let mut sorted = ops.clone();
        sorted.sort_unstable();
        assert_eq!(ops, sorted, "{format}: supported_ops is sorted");
        let untested: Vec<&str> = ops
            .iter()
            .filter(|o| !tested.contains(o))
            .copied()
            .collect();
        let unknown: Vec<&str> = tested
            .iter()
            .filter(|o| !ops.contains(o))
            .copied()
            .collect();
        assert!(
            untested.is_empty(),
            "{format}: ops without a test: {untested:?}"
        );
        assert!(
            unknown.is_empty(),
            "{format}: tests of unlisted ops: {unknown:?}"
        );
        let mut once = tested.to_vec();
        once.sort_unstable();
        once.dedup();
        assert_eq!(once.len(), tested.len(), "{format}: an op is tested twice");
    }
}
