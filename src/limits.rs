//! Budgets for every file graft reads: the most bytes a file of each kind may hold (checked from
//! its metadata before reading and by a bounded reader while reading, so `/dev/zero` or a file
//! that keeps growing stops at the limit), whether non-regular files (FIFOs, devices) may be read,
//! and the most a file's header may make graft allocate once decoded (image pixels, audio
//! samples, a base's input elements, tensor elements of a recognizer or index).
//!
//! The limits are one [`Limits`] value for the process: [`Limits::default()`] until a program
//! calls [`set`]. Models to convert are read by `graft_converters` under its own limits
//! (`graft_converters::limits`).

use std::path::Path;
use std::sync::RwLock;

use graft_converters::limits::{read_file, ReadLimit};

use crate::{Error, Result};

/// What graft reads and decodes at most. Every field has a default that suits real files of its
/// kind; a file over a limit is refused with an error naming the file and the limit.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(
    feature = "cli",
    command(next_help_heading = "Limits on what graft reads")
)]
pub struct Limits {
    /// Largest recognizer or KNN index (safetensors). Default 1 GiB.
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-recognizer-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.recognizer_bytes)
    )]
    pub recognizer_bytes: u64,
    /// Largest base model (ONNX) file. Default 2 GiB (the most a protobuf file can hold).
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-model-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.model_bytes)
    )]
    pub model_bytes: u64,
    /// Largest WAV file. Default 1 GiB (about 90 minutes of 48 kHz 16-bit stereo).
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-audio-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.audio_bytes)
    )]
    pub audio_bytes: u64,
    /// Largest image file. Default 256 MiB.
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-image-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.image_bytes)
    )]
    pub image_bytes: u64,
    /// Largest example file of numbers for a raw base (`.npy` or CSV text). Default 256 MiB (64
    /// million float32 numbers, the input-elements limit).
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-vector-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.vector_bytes)
    )]
    pub vector_bytes: u64,
    /// Largest zoo manifest or other small text file graft reads (a listen truth CSV). Default
    /// 16 MiB.
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-text-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.text_bytes)
    )]
    pub text_bytes: u64,
    /// Most pixels an image may have, from its header, before it is decoded. Default 120
    /// million (a 100-megapixel photo fits; a 16000x16000 decompression bomb does not).
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-image-pixels", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.image_pixels)
    )]
    pub image_pixels: u64,
    /// Most bytes an image's decoded pixels may take (pixels x channels x bytes per channel),
    /// from its header. Default 512 MiB.
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-image-decoded-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.image_decoded_bytes)
    )]
    pub image_decoded_bytes: u64,
    /// Most bytes of decoded pixels that images decoded at once (embedding runs in parallel)
    /// may hold together; a larger image waits for the others, then runs alone. Default 256 MiB.
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-images-in-flight-bytes", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.images_in_flight_bytes)
    )]
    pub images_in_flight_bytes: u64,
    /// Most samples (all channels) a WAV file may declare. Default 256 million (1 GiB as
    /// floats).
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-audio-samples", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.audio_samples)
    )]
    pub audio_samples: u64,
    /// Most elements of one example's input tensor, as a base declares it (or a recognizer
    /// records it). Default 64 million (e.g. 3x4096x4096 image input; a spoken clip of 20
    /// minutes at 48 kHz).
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-input-elements", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.input_elements)
    )]
    pub input_elements: u64,
    /// Most elements of all tensors of one recognizer or KNN index together. Default 256 million.
    #[cfg_attr(
        feature = "cli",
        arg(long = "max-tensor-elements", global = true, hide_short_help = true,
            default_value_t = Limits::DEFAULT.tensor_elements)
    )]
    pub tensor_elements: u64,
    /// Read files that are not regular files (FIFOs, character or block devices). Default false:
    /// they have no size to check and may never end.
    #[cfg_attr(feature = "cli", arg(long, global = true, hide_short_help = true))]
    pub allow_special_files: bool,
}

impl Limits {
    /// The defaults (see each field).
    pub const DEFAULT: Limits = Limits {
        recognizer_bytes: 1 << 30,
        model_bytes: 2 << 30,
        audio_bytes: 1 << 30,
        image_bytes: 256 << 20,
        vector_bytes: 256 << 20,
        text_bytes: 16 << 20,
        image_pixels: 120_000_000,
        image_decoded_bytes: 512 << 20,
        images_in_flight_bytes: 256 << 20,
        audio_samples: 256_000_000,
        input_elements: 64 << 20,
        tensor_elements: 256 << 20,
        allow_special_files: false,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

static CURRENT: RwLock<Limits> = RwLock::new(Limits::DEFAULT);

/// Makes `limits` the process's limits for every later read.
pub fn set(limits: Limits) {
    let mut current = CURRENT.write().unwrap_or_else(|p| p.into_inner());
    *current = limits;
}

/// The process's limits ([`Limits::default()`] unless [`set`]).
pub fn get() -> Limits {
    CURRENT.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The kinds of file graft reads, each with its own size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A recognizer or KNN index ([`Limits::recognizer_bytes`]).
    Recognizer,
    /// A base model ([`Limits::model_bytes`]).
    Model,
    /// A WAV file ([`Limits::audio_bytes`]).
    Audio,
    /// An image file ([`Limits::image_bytes`]).
    Image,
    /// An example of numbers, `.npy` or CSV ([`Limits::vector_bytes`]).
    Vector,
    /// A zoo manifest or another small text file ([`Limits::text_bytes`]).
    Text,
}

impl FileKind {
    fn limit(self, limits: &Limits) -> u64 {
        match self {
            FileKind::Recognizer => limits.recognizer_bytes,
            FileKind::Model => limits.model_bytes,
            FileKind::Audio => limits.audio_bytes,
            FileKind::Image => limits.image_bytes,
            FileKind::Vector => limits.vector_bytes,
            FileKind::Text => limits.text_bytes,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::Recognizer => "a recognizer or index",
            FileKind::Model => "a model",
            FileKind::Audio => "an audio",
            FileKind::Image => "an image",
            FileKind::Vector => "a numbers",
            FileKind::Text => "a text",
        }
    }
}

/// Reads the whole file at `path` within the limits for its `kind`: a file over its size limit
/// (from its metadata, or while reading), or a non-regular file unless
/// [`Limits::allow_special_files`], is an [`Error::Io`] naming the file and the limit.
pub fn read(path: &Path, kind: FileKind) -> Result<Vec<u8>> {
    let limits = get();
    let limit = ReadLimit {
        max_bytes: kind.limit(&limits),
        allow_special_files: limits.allow_special_files,
    };
    read_file(path, limit, kind.name()).map_err(|e| Error::io(path, e))
}

/// [`read`] of a UTF-8 text file.
pub fn read_text(path: &Path, kind: FileKind) -> Result<String> {
    String::from_utf8(read(path, kind)?).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        msg: format!("not UTF-8 text: {e}"),
    })
}

/// Why one example's input of dims `shape` (after the batch) is too large, if it is: more
/// elements than [`Limits::input_elements`].
pub fn check_input_elements(shape: &[usize]) -> std::result::Result<(), String> {
    let elements = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let limit = get().input_elements;
    if elements > limit {
        return Err(format!(
            "one example's input {shape:?} has {elements} elements, more than the limit of {limit}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_the_file_and_the_kind_s_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(Limits::DEFAULT.image_bytes + 1)
            .unwrap();
        let err = read(&path, FileKind::Image).unwrap_err().to_string();
        assert!(err.contains("big.png"), "{err}");
        assert!(
            err.contains(&format!("limit of {} bytes for an image", 256 << 20)),
            "{err}"
        );
    }
}
