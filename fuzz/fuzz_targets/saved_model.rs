//! Any bytes given as a saved recognizer or KNN index (safetensors with graft's metadata) load
//! or give an error, never a panic or an allocation the file's fields ask for unchecked.
#![no_main]

use graft::knn::Knn;
use graft::recognizer::Recognizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loaders read files: one per process, rewritten for each input.
    let path = std::env::temp_dir().join(format!("graft-fuzz-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = Recognizer::load(&path);
    let _ = Knn::load(&path);
});
