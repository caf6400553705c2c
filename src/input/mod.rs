//! Turning an example (image, audio, ...) into the tensor a base model takes, as its manifest says.

use serde::{Deserialize, Serialize};

pub mod audio;
pub mod image;
mod jpeg;

/// The example file formats graft reads, told apart by their leading bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Png,
    Jpeg,
    /// A RIFF file of type WAVE.
    Wav,
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
        }
    }

    /// Whether it is what a base with input `spec` takes: an image format for images, WAV for
    /// audio.
    pub fn fits(self, spec: &InputSpec) -> bool {
        match spec {
            InputSpec::Image(_) => matches!(self, FileFormat::Png | FileFormat::Jpeg),
            InputSpec::Audio(_) => self == FileFormat::Wav,
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
}

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

/// What kind of example a base model takes, and how to prepare it. Serialised as the inner spec
/// itself (an image spec has `width`/`height`, an audio spec `sample_rate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputSpec {
    Image(ImageSpec),
    Audio(AudioSpec),
}

impl ImageSpec {
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
        }
        crate::limits::check_input_elements(&self.shape())
    }

    /// The dims of one example's tensor, after the batch.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            InputSpec::Image(s) => {
                let (h, w) = (s.height as usize, s.width as usize);
                match s.layout {
                    Layout::Nchw => vec![3, h, w],
                    Layout::Nhwc => vec![h, w, 3],
                }
            }
            InputSpec::Audio(s) => vec![s.clip_samples],
        }
    }

    /// The image spec, if this is one.
    pub fn image(&self) -> Option<&ImageSpec> {
        match self {
            InputSpec::Image(s) => Some(s),
            InputSpec::Audio(_) => None,
        }
    }
}
