//! Turning an example (image, audio, ...) into the tensor a base model takes, as its manifest says.

use serde::{Deserialize, Serialize};

pub mod audio;
pub mod image;
mod jpeg;
pub mod vector;

/// The example file formats graft reads, told apart by their leading bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Png,
    Jpeg,
    /// A RIFF file of type WAVE.
    Wav,
    /// A NumPy `.npy` array.
    Npy,
}

impl FileFormat {
    /// The format `bytes` start like, if it is one graft reads.
    pub fn sniff(bytes: &[u8]) -> Option<FileFormat> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(FileFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(FileFormat::Jpeg)
        } else if bytes.get(0..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
            Some(FileFormat::Wav)
        } else if bytes.starts_with(vector::NPY_MAGIC) {
            Some(FileFormat::Npy)
        } else {
            None
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Png => "png",
            FileFormat::Jpeg => "jpg",
            FileFormat::Wav => "wav",
            FileFormat::Npy => "npy",
        }
    }

    /// Whether it is what a base with input `spec` takes: an image format for images, WAV for
    /// audio, NPY for numbers (which may also come as text: see [`FileFormat::is_example`]).
    pub fn fits(self, spec: &InputSpec) -> bool {
        match spec {
            InputSpec::Image(_) => matches!(self, FileFormat::Png | FileFormat::Jpeg),
            InputSpec::Audio(_) => self == FileFormat::Wav,
            InputSpec::Vector(_) => self == FileFormat::Npy,
        }
    }

    /// Whether `bytes` look like an example a base with input `spec` takes: a format that
    /// [`fits`](FileFormat::fits), or for numbers also text (CSV).
    pub fn is_example(bytes: &[u8], spec: &InputSpec) -> bool {
        match FileFormat::sniff(bytes) {
            Some(f) => f.fits(spec),
            None => matches!(spec, InputSpec::Vector(_)) && vector::looks_like_text(bytes),
        }
    }
}

/// Memory layout of an image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Layout {
    /// `[batch, channels, height, width]` (PyTorch, most ONNX exports).
    Nchw,
    /// `[batch, height, width, channels]` (TensorFlow, TF.js, TFLite).
    Nhwc,
}

/// Order of the colour channels in the tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
    /// One channel: the luma `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601, as PIL's `convert("L")`)
    /// of the RGB composited on white; a grey image's own values. Normalised by `mean[0]` and
    /// `std[0]`.
    Gray,
}

impl ChannelOrder {
    /// Channels in the tensor: 3, or 1 for grey.
    pub fn count(self) -> usize {
        match self {
            ChannelOrder::Rgb | ChannelOrder::Bgr => 3,
            ChannelOrder::Gray => 1,
        }
    }
}

/// The BT.601 luma weights of R, G and B that [`ChannelOrder::Gray`] sums.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// How an image becomes the base model's input tensor: decode, composite alpha on white, optional
/// centre crop, resize (bilinear) to `width` x `height` (or, letterboxed, to the largest fit that
/// keeps the aspect ratio, centred and padded with black), then `(pixel - mean) / std` per channel
/// with pixels in 0..=255.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub channels: ChannelOrder,
    /// Per-channel mean, in the tensor's channel order, on the 0..=255 scale.
    pub mean: [f32; 3],
    /// Per-channel divisor, on the 0..=255 scale.
    pub std: [f32; 3],
    /// Fraction of the shorter side kept by a centre crop before resizing (e.g. 0.875); none: no crop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_crop: Option<f32>,
    /// Scale the whole image to fit keeping its aspect ratio, centre it and pad with black
    /// (pixel value 0) instead of stretching it; see [`image::Letterbox`]. Excludes `center_crop`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub letterbox: bool,
}

/// How a recording becomes the base model's input tensor `[clip_samples]`: mixed down to mono,
/// resampled to `sample_rate`, cut or zero-padded to `clip_samples`, and samples in -1..1
/// multiplied by `scale` (e.g. 32768 for models that take int16-valued floats).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioSpec {
    pub sample_rate: u32,
    pub clip_samples: usize,
    pub scale: f32,
}

/// An example that is a list of numbers, taken as they are (a raw base's input): a NumPy `.npy`
/// array of any shape (flattened in C order) or text (CSV: numbers separated by commas,
/// semicolons, tabs, spaces or newlines), holding exactly `length` numbers. See [`vector`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorSpec {
    /// How many numbers one example holds.
    pub length: usize,
}

/// What kind of example a base model takes, and how to prepare it. Serialised as the inner spec
/// itself (an image spec has `width`/`height`, an audio spec `sample_rate`, a vector spec
/// `length`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputSpec {
    Image(ImageSpec),
    Audio(AudioSpec),
    Vector(VectorSpec),
}

impl ImageSpec {
    /// `width` x `height` RGB pixels as they are (0..=255: mean 0, std 1), in `layout`, without
    /// a crop or a letterbox.
    pub fn unnormalised(width: u32, height: u32, layout: Layout) -> ImageSpec {
        ImageSpec {
            width,
            height,
            layout,
            channels: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
            center_crop: None,
            letterbox: false,
        }
    }

    /// Why this spec cannot be applied, if it cannot: sizes must be positive, mean finite, std
    /// finite and non-zero, a crop fraction in (0, 1] and not with a letterbox.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.width == 0 || self.height == 0 {
            return Err(format!(
                "image size {}x{} must be positive",
                self.width, self.height
            ));
        }
        if self.std.iter().any(|s| *s == 0.0 || !s.is_finite())
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(format!(
                "image normalisation mean {:?} / std {:?} must be finite with non-zero std",
                self.mean, self.std
            ));
        }
        if let Some(f) = self.center_crop {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("centre crop fraction {f} must be in (0, 1]"));
            }
            if self.letterbox {
                return Err("an image spec cannot both centre crop and letterbox".into());
            }
        }
        Ok(())
    }
}

impl AudioSpec {
    /// Why this spec cannot be applied, if it cannot: a sample rate in
    /// [`audio::SAMPLE_RATES`], at least one sample a clip, a finite non-zero scale.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !audio::SAMPLE_RATES.contains(&self.sample_rate) {
            return Err(format!(
                "sample rate {} Hz is outside {}..={} Hz",
                self.sample_rate,
                audio::SAMPLE_RATES.start(),
                audio::SAMPLE_RATES.end()
            ));
        }
        if self.clip_samples == 0 {
            return Err("a clip of 0 samples cannot be used".into());
        }
        if !(self.scale.is_finite() && self.scale != 0.0) {
            return Err(format!(
                "sample scale {} must be a finite non-zero number",
                self.scale
            ));
        }
        Ok(())
    }
}

impl InputSpec {
    /// Why this spec cannot be used, if it cannot: the image or audio spec's own checks, and one
    /// example's tensor within [`crate::limits::Limits::input_elements`] (so that an edited size
    /// is refused before anything is allocated for it).
    pub fn check(&self) -> std::result::Result<(), String> {
        match self {
            InputSpec::Image(s) => s.check()?,
            InputSpec::Audio(s) => s.check()?,
            InputSpec::Vector(s) => {
                if s.length == 0 {
                    return Err("an example of 0 numbers cannot be used".into());
                }
            }
        }
        crate::limits::check_input_elements(&self.shape())
    }

    /// The dims of one example's tensor, after the batch.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            InputSpec::Image(s) => {
                let (h, w, c) = (s.height as usize, s.width as usize, s.channels.count());
                match s.layout {
                    Layout::Nchw => vec![c, h, w],
                    Layout::Nhwc => vec![h, w, c],
                }
            }
            InputSpec::Audio(s) => vec![s.clip_samples],
            InputSpec::Vector(s) => vec![s.length],
        }
    }

    /// The image spec, if this is one.
    pub fn image(&self) -> Option<&ImageSpec> {
        match self {
            InputSpec::Image(s) => Some(s),
            InputSpec::Audio(_) | InputSpec::Vector(_) => None,
        }
    }

    /// What kind of example it takes: `image`, `audio` or `numbers`.
    pub fn kind(&self) -> &'static str {
        match self {
            InputSpec::Image(_) => "image",
            InputSpec::Audio(_) => "audio",
            InputSpec::Vector(_) => "numbers",
        }
    }
}
