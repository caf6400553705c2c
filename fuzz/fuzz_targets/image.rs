//! Any bytes given to graft's image decoder, then resized (stretched, centre-cropped or
//! letterboxed, as the first byte picks) to a 17x13 tensor, give the tensor or an error, never a
//! panic or an allocation beyond the pixel budget.
#![no_main]

use std::path::Path;

use graft::input::image::{decode_image, preprocess};
use graft::input::{ChannelOrder, ImageSpec, Layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let spec = ImageSpec {
        width: 17,
        height: 13,
        layout: if mode & 1 == 0 { Layout::Nchw } else { Layout::Nhwc },
        channels: ChannelOrder::Rgb,
        mean: [127.0; 3],
        std: [128.0; 3],
        center_crop: (mode & 2 != 0).then_some(0.875),
        letterbox: mode & 6 == 4,
    };
    if let Ok(image) = decode_image(bytes, Path::new("fuzz.img")) {
        if let Ok(t) = preprocess(&image, &spec) {
            assert_eq!(t.len(), 17 * 13 * 3);
            assert!(t.iter().all(|v| v.is_finite()));
        }
    }
});
