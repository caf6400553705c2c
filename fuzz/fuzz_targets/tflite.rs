//! Any bytes given to the TFLite converter give a model or an error, never a panic, a hang or an
//! out-of-bounds read. On a stable toolchain (from this folder):
//!
//! ```sh
//! mkdir -p corpus/tflite && cp /path/to/pose_landmark_lite.tflite corpus/tflite/
//! RUSTC_BOOTSTRAP=1 cargo fuzz run tflite corpus/tflite -- -max_len=3000000 -max_total_time=120
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = graft_converters::tflite::to_onnx(data);
});
