//! Any bytes given to the PyTorch checkpoint reader (zip or legacy layout, restricted unpickler)
//! give a state dict or an error, never a panic, a hang or an allocation beyond the file's means.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = graft_converters::torch::from_bytes(data);
});
