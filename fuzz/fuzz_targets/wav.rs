//! Any bytes given to graft's WAV decoder, then mixed down, resampled to 16 kHz and cut to a
//! one-second clip, give samples or an error naming the file, never a panic.
#![no_main]

use std::path::Path;

use graft::input::audio;
use graft::input::AudioSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec = AudioSpec {
        sample_rate: 16_000,
        clip_samples: 16_000,
        scale: 1.0,
    };
    if let Ok(clip) = audio::preprocess(data, Path::new("fuzz.wav"), &spec) {
        assert_eq!(clip.len(), 16_000);
    }
});
