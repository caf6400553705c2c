//! Audio examples: WAV decoding (hound), mixing down, anti-aliased resampling and cutting to a clip.
//!
//! A file becomes the base's input in four steps: decode (PCM 8/16/24/32-bit integer or 32-bit
//! float, any channel count and sample rate) to samples in -1..1; average the channels; resample
//! to the spec's rate with a windowed-sinc filter whose cutoff sits below the lower of the two
//! Nyquist frequencies; cut or pad to `clip_samples` ([`fit_clip`]: the loudest window of a longer
//! recording, a shorter one centred in silence) and multiply by the spec's `scale`.

use std::f64::consts::PI;
use std::io::Cursor;
use std::path::Path;

use ndarray::Array1;

use super::AudioSpec;
use crate::{Error, Result};

/// Name of the class folder whose long recordings are background noise: each is cut into
/// clip-length examples of that class (as in TensorFlow.js speech-commands).
pub const BACKGROUND_NOISE: &str = "_background_noise_";

/// Lowest and highest sample rates accepted (of a file, and of a base's input).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;
/// Zero crossings of the sinc kernel on each side (filter quality vs. cost).
const SINC_ZEROS: f64 = 16.0;
/// Passband edge as a fraction of the lower Nyquist frequency; the rest is the transition band.
const PASSBAND: f64 = 0.92;

/// A decoded recording: mono samples in -1..1.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Largest magnitude accepted in a float WAV (full scale is 1; louder than this is not audio).
pub const MAX_FLOAT_SAMPLE: f32 = 16.0;

/// Decodes a WAV file's bytes and mixes its channels down to mono. `path` names the file in
/// errors: not a WAV, an unsupported encoding, a truncated file or one without samples.
pub fn decode_wav(bytes: &[u8], path: &Path) -> Result<Audio> {
    let err = |msg: String| Error::Input {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.is_empty() {
        return Err(err("the file is empty".into()));
    }
    // Streaming recorders (arecord, ffmpeg to a pipe) cannot seek back to write the sizes and
    // leave 0xFFFFFFFF: the data then runs to the end of the file.
    let patched = with_streamed_sizes(bytes);
    let bytes = patched.as_deref().unwrap_or(bytes);
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| {
        err(match e {
            hound::Error::FormatError(m) => {
                format!("not a readable WAV file ({m}); graft reads PCM or float WAV")
            }
            hound::Error::Unsupported => {
                "unsupported WAV encoding: graft reads PCM (8/16/24/32-bit) or 32-bit float".into()
            }
            other => format!("cannot read WAV: {other}"),
        })
    })?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(err("the WAV header declares 0 channels".into()));
    }
    if !SAMPLE_RATES.contains(&spec.sample_rate) {
        return Err(err(format!(
            "sample rate {} Hz is outside {}..={} Hz",
            spec.sample_rate,
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        )));
    }
    let declared = u64::from(reader.len());
    let max_samples = crate::limits::get().audio_samples;
    if declared > max_samples {
        return Err(err(format!(
            "the WAV header declares {declared} samples, more than the limit of {max_samples} \
             samples"
        )));
    }
    let truncated = |e: hound::Error| {
        err(format!(
            "cannot read the samples ({e}); is the file truncated?"
        ))
    };
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            let samples: Vec<f32> = reader
                .into_samples::<f32>()
                .collect::<std::result::Result<_, _>>()
                .map_err(truncated)?;
            if let Some(bad) = samples
                .iter()
                .position(|v| !(v.is_finite() && v.abs() <= MAX_FLOAT_SAMPLE))
            {
                return Err(err(format!(
                    "sample {bad} is {}: float WAV samples must be finite numbers within \
                     ±{MAX_FLOAT_SAMPLE} (full scale is ±1)",
                    samples[bad]
                )));
            }
            samples
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let full_scale = (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 / full_scale))
                .collect::<std::result::Result<_, _>>()
                .map_err(truncated)?
        }
        (format, bits) => {
            return Err(err(format!(
                "unsupported WAV encoding: {bits}-bit {format:?}; graft reads 8/16/24/32-bit \
                 PCM or 32-bit float"
            )))
        }
    };
    let channels = usize::from(spec.channels);
    if interleaved.len() < channels {
        return Err(err("the WAV file has no samples".into()));
    }
    let samples = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// A copy of a WAV file whose `data` chunk declares the size 0xFFFFFFFF ("unknown", as streaming
/// recorders write it), with the size of the samples actually there (whole frames, as the `fmt `
/// chunk's block alignment says) and a RIFF size to match; `None` when the sizes need no fixing
/// or the file is not laid out as RIFF/WAVE chunks.
fn with_streamed_sizes(bytes: &[u8]) -> Option<Vec<u8>> {
    const UNKNOWN: u32 = u32::MAX;
    let le32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut block_align = None;
    while at + 8 <= bytes.len() {
        let id = bytes.get(at..at + 4)?;
        let size = le32(at + 4)?;
        if id == b"fmt " {
            let align = u16::from_le_bytes(bytes.get(at + 20..at + 22)?.try_into().ok()?);
            block_align = Some(usize::from(align.max(1)));
        }
        if id == b"data" {
            if size != UNKNOWN {
                return None;
            }
            let start = at + 8;
            let present = bytes.len() - start;
            let data = present - present % block_align?;
            let mut fixed = bytes[..start + data].to_vec();
            fixed[at + 4..at + 8].copy_from_slice(&u32::try_from(data).ok()?.to_le_bytes());
            let riff = u32::try_from(fixed.len() - 8).ok()?;
            fixed[4..8].copy_from_slice(&riff.to_le_bytes());
            return Some(fixed);
        }
        let padded = usize::try_from(size).ok()?.checked_add(size as usize & 1)?;
        at = at.checked_add(8)?.checked_add(padded)?;
    }
    None
}

/// Resamples `samples` from `from` Hz to `to` Hz with a Blackman-windowed sinc (16 zero crossings)
/// whose cutoff is 0.92 of the lower Nyquist frequency, so that downsampling does not alias. The
/// filter is tabulated per output phase (`to / gcd(from, to)` phases); each phase is normalised
/// to unit DC gain.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let g = gcd(from, to);
    let (step, phases) = (u64::from(from / g), u64::from(to / g));
    let cutoff = PASSBAND * (f64::from(to) / f64::from(from)).min(1.0);
    let half_width = SINC_ZEROS / cutoff; // in input samples
    let reach = half_width.ceil() as i64;
    let taps = (2 * reach + 1) as usize;
    let table: Vec<f32> = (0..phases)
        .flat_map(|p| {
            let frac = p as f64 / phases as f64;
            let weights: Vec<f64> = (-reach..=reach)
                .map(|k| {
                    let d = frac - k as f64;
                    if d.abs() >= half_width {
                        return 0.0;
                    }
                    let x = cutoff * d;
                    let sinc = if x == 0.0 {
                        1.0
                    } else {
                        (PI * x).sin() / (PI * x)
                    };
                    let u = d / half_width;
                    let window = 0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos();
                    sinc * window
                })
                .collect();
            let sum: f64 = weights.iter().sum();
            weights.into_iter().map(move |w| (w / sum) as f32)
        })
        .collect();
    let len = samples.len() as u64;
    let out_len = (len * phases).div_ceil(step);
    (0..out_len)
        .map(|i| {
            let pos = i * step;
            let (centre, phase) = ((pos / phases) as i64, (pos % phases) as usize);
            let kernel = &table[phase * taps..(phase + 1) * taps];
            kernel
                .iter()
                .zip(centre - reach..)
                .filter(|&(_, j)| j >= 0 && (j as u64) < len)
                .map(|(w, j)| w * samples[j as usize])
                .sum()
        })
        .collect()
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Exactly `clip` samples: a longer recording gives its window of `clip` samples with the most
/// energy (where the word is); a shorter one is centred between zeros.
pub fn fit_clip(samples: &[f32], clip: usize) -> Vec<f32> {
    if samples.len() <= clip {
        let before = (clip - samples.len()) / 2;
        let mut out = vec![0.0; clip];
        out[before..before + samples.len()].copy_from_slice(samples);
        return out;
    }
    // Running energy of each window; f64 keeps long sums exact enough.
    let energy = |s: &f32| f64::from(*s) * f64::from(*s);
    let mut current: f64 = samples[..clip].iter().map(energy).sum();
    let (mut best, mut best_start) = (current, 0);
    for start in 1..=samples.len() - clip {
        current += energy(&samples[start + clip - 1]) - energy(&samples[start - 1]);
        if current > best {
            (best, best_start) = (current, start);
        }
    }
    samples[best_start..best_start + clip].to_vec()
}

/// A recording at the spec's rate: decoded, mixed down and resampled.
pub fn load(bytes: &[u8], path: &Path, spec: &AudioSpec) -> Result<Vec<f32>> {
    spec.check().map_err(Error::Invalid)?;
    let audio = decode_wav(bytes, path)?;
    let resampled = (audio.samples.len() as u64)
        .saturating_mul(u64::from(spec.sample_rate))
        .div_ceil(u64::from(audio.sample_rate.max(1)));
    let max_samples = crate::limits::get().audio_samples;
    if resampled > max_samples {
        return Err(Error::Input {
            path: path.to_path_buf(),
            msg: format!(
                "{} samples at {} Hz become {resampled} at {} Hz, more than the limit of \
                 {max_samples} samples",
                audio.samples.len(),
                audio.sample_rate,
                spec.sample_rate
            ),
        });
    }
    Ok(resample(
        &audio.samples,
        audio.sample_rate,
        spec.sample_rate,
    ))
}

/// The base's input for one clip of samples at the spec's rate: fitted to `clip_samples` and
/// multiplied by `scale`.
pub fn to_input(samples: &[f32], spec: &AudioSpec) -> Array1<f32> {
    fit_clip(samples, spec.clip_samples)
        .into_iter()
        .map(|s| s * spec.scale)
        .collect()
}

/// One example's input from a WAV file's bytes; see the module docs.
pub fn preprocess(bytes: &[u8], path: &Path, spec: &AudioSpec) -> Result<Array1<f32>> {
    Ok(to_input(&load(bytes, path, spec)?, spec))
}

/// A background-noise recording cut into consecutive clips of `clip` samples (the last partial
/// one dropped unless the recording is shorter than a clip, when it is the only one, padded).
pub fn noise_clips(samples: &[f32], clip: usize) -> Vec<Vec<f32>> {
    if samples.len() <= clip || clip == 0 {
        return vec![fit_clip(samples, clip)];
    }
    samples.chunks_exact(clip).map(<[f32]>::to_vec).collect()
}

/// `clip` with `noise` (at least as long; the first `clip.len()` samples are used) added at a
/// signal-to-noise ratio of `snr_db` decibels, measured over the whole clip. A silent clip or
/// silent noise leaves the clip as it is.
pub fn mix_at_snr(clip: &[f32], noise: &[f32], snr_db: f32) -> Vec<f32> {
    let power =
        |x: &[f32]| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    let noise = &noise[..clip.len().min(noise.len())];
    let (signal_power, noise_power) = (power(clip), power(noise));
    if signal_power == 0.0 || noise_power == 0.0 {
        return clip.to_vec();
    }
    let gain = (signal_power / (noise_power * 10f64.powf(f64::from(snr_db) / 10.0))).sqrt() as f32;
    let mut out = clip.to_vec();
    for (o, n) in out.iter_mut().zip(noise) {
        *o += gain * n;
    }
    out
}

/// `n` samples of pink (1/f) noise from uniform white noise drawn from `rng`, through Paul
/// Kellet's economy three-pole filter; the level is arbitrary ([`mix_at_snr`] rescales it).
pub fn pink_noise(n: usize, rng: &mut impl rand::Rng) -> Vec<f32> {
    let (mut b0, mut b1, mut b2) = (0.0f32, 0.0f32, 0.0f32);
    (0..n)
        .map(|_| {
            let white: f32 = rng.random_range(-1.0..1.0);
            b0 = 0.99765 * b0 + white * 0.0990460;
            b1 = 0.96300 * b1 + white * 0.2965164;
            b2 = 0.57000 * b2 + white * 1.0526913;
            b0 + b1 + b2 + white * 0.1848
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, seconds: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| (2.0 * PI * freq * i as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn resampling_keeps_the_passband_and_removes_what_would_alias() {
        for rate in [8_000, 22_050, 44_100, 48_000] {
            let tone = resample(&sine(1_000.0, rate, 1.0), rate, 16_000);
            assert_eq!(tone.len(), 16_000, "{rate}");
            // Away from the edges a 1 kHz tone keeps its level (RMS of a unit sine: 0.707).
            let level = rms(&tone[1_000..15_000]);
            assert!(
                (level - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01,
                "{rate}: {level}"
            );
        }
        // 11 kHz is above 16 kHz's Nyquist: it must vanish, not fold down to 5 kHz.
        let high = resample(&sine(11_000.0, 48_000, 1.0), 48_000, 16_000);
        assert!(rms(&high[1_000..15_000]) < 0.01, "{}", rms(&high));
    }

    #[test]
    fn clips_are_the_loudest_window_or_centred() {
        let mut long = vec![0.0f32; 30_000];
        long[20_000..21_000].fill(0.5);
        let clip = fit_clip(&long, 16_000);
        assert_eq!(clip.len(), 16_000);
        assert_eq!(clip.iter().filter(|v| **v == 0.5).count(), 1_000);
        let short = fit_clip(&[1.0; 4], 10);
        assert_eq!(short, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(noise_clips(&long, 16_000).len(), 1);
        assert_eq!(noise_clips(&vec![0.1; 40_000], 16_000).len(), 2);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let path = Path::new("x.wav");
        let empty = decode_wav(b"", path).unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");
        let junk = decode_wav(b"definitely not a wav file", path)
            .unwrap_err()
            .to_string();
        assert!(junk.contains("not a readable WAV"), "{junk}");
        // A streamed WAV (sizes 0xFFFFFFFF) reads to the end of the file, whole frames only.
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut bytes = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
        for v in [1000i16, 3000, -2000, -4000, 500, 700] {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let whole = decode_wav(bytes.get_ref(), path).unwrap();
        let mut streamed = bytes.into_inner();
        streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let data = streamed.windows(4).position(|w| w == b"data").unwrap();
        streamed[data + 4..data + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_wav(&streamed, path).unwrap(), whole);
        streamed.push(0x11); // half a frame more: dropped
        assert_eq!(decode_wav(&streamed, path).unwrap(), whole);
        // Float WAVs of NaN, infinities or absurd magnitudes are not audio.
        for bad in [f32::NAN, f32::INFINITY, -1e30] {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 16_000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut bytes = Cursor::new(Vec::new());
            let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
            for v in [0.0, 0.5, bad, 0.1] {
                w.write_sample(v).unwrap();
            }
            w.finalize().unwrap();
            let err = decode_wav(bytes.get_ref(), path).unwrap_err().to_string();
            assert!(
                err.contains("x.wav") && err.contains("sample 2"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn noise_is_mixed_at_the_requested_snr() {
        let clip = sine(440.0, 16_000, 1.0);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let noise = pink_noise(16_000, &mut rng);
        for snr in [5.0f32, 20.0] {
            let mixed = mix_at_snr(&clip, &noise, snr);
            let added: Vec<f32> = mixed.iter().zip(&clip).map(|(m, c)| m - c).collect();
            let measured = 20.0 * (rms(&clip) / rms(&added)).log10();
            assert!((measured - snr).abs() < 0.01, "{snr}: {measured}");
        }
        assert_eq!(mix_at_snr(&[0.0; 8], &noise, 10.0), [0.0; 8]);
    }
}
