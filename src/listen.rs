//! Streaming word detection: slide clip-length windows over audio with a speech recognizer, and
//! report each spoken word once.
//!
//! Windows of the base's clip length (1 s) start every `(1 - overlap)` clips. A window *fires* when
//! its most probable class is a word (not [`BACKGROUND_NOISE`] or `_unknown_`) with probability at
//! least the threshold, and the recognizer's "unknown" rule does not reject it. Consecutive firing windows are one utterance, reported when it ends as the
//! word with the highest summed probability over its windows (windows that cut a word in half
//! often say another word), at that word's most confident window; after a report, windows
//! starting within the suppression time are ignored. [`Listener`] takes audio in chunks (live use);
//! [`listen_file`] runs it over a WAV file; [`evaluate`] scores detections against known word times.

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::base::BaseModel;
use crate::input::audio::{self, BACKGROUND_NOISE};
use crate::input::{AudioSpec, InputSpec};
use crate::recognizer::Recognizer;
use crate::{Error, Result};

/// Largest [`ListenOptions::overlap`]: a new window every 1/100 of a window (10 ms for 1 s
/// windows); more overlap only multiplies the work.
pub const MAX_OVERLAP: f32 = 0.99;

/// Class names that are never reported as words.
pub const NOT_WORDS: &[&str] = &[BACKGROUND_NOISE, "_unknown_", "_silence_"];

/// How [`Listener`] decides what to report; the CLI's defaults come from here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ListenOptions {
    /// Lowest probability of a word that counts. Default 0.7 (synth-commands listen evaluation,
    /// default recognizer: 83 % of 60 words found with 2 false alarms in 4 minutes; 0.8 found
    /// 70 % with none, 0.5 found 90 % with 4).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ListenOptions::default().threshold))]
    pub threshold: f32,
    /// After a report, windows starting within this many milliseconds of the reported window's
    /// start are ignored. Default 1000: the windows that still overlap the reported word.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ListenOptions::default().suppression_ms))]
    pub suppression_ms: u32,
    /// Fraction by which consecutive windows overlap, in `[0, 0.99]`. Default 0.75 (a window
    /// every 250 ms).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ListenOptions::default().overlap))]
    pub overlap: f32,
    /// How far (as a fraction of the window) the centre of a window's sound energy may lie from
    /// the window's middle for the window to count; 0.5 lets every window count. Default 0.3: a
    /// window that holds only the start or end of a word (often heard, confidently, as another
    /// word) is skipped; with windows every 250 ms a word still has one centred window.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ListenOptions::default().centring))]
    pub centring: f32,
    /// Windows whose RMS level is below this (dB relative to full scale) are silence and never
    /// count. Default -50.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = ListenOptions::default().silence_db, allow_hyphen_values = true)
    )]
    pub silence_db: f32,
    /// Windows embedded per call to the base. Default 16.
    #[cfg_attr(feature = "cli", arg(long = "listen-batch", default_value_t = ListenOptions::default().batch))]
    pub batch: usize,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            threshold: 0.7,
            suppression_ms: 1000,
            overlap: 0.75,
            centring: 0.3,
            silence_db: -50.0,
            batch: 16,
        }
    }
}

impl ListenOptions {
    /// Checks each option's range.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::Invalid(format!(
                "threshold {} is not in [0, 1]",
                self.threshold
            )));
        }
        if !(0.0..=MAX_OVERLAP).contains(&self.overlap) {
            return Err(Error::Invalid(format!(
                "overlap {} is not in [0, {MAX_OVERLAP}] (at most {} windows per window length)",
                self.overlap,
                (1.0 / (1.0 - MAX_OVERLAP)).round()
            )));
        }
        if !self.silence_db.is_finite() {
            return Err(Error::Invalid(format!(
                "silence level {} dB is not a number",
                self.silence_db
            )));
        }
        if !(0.0..=0.5).contains(&self.centring) {
            return Err(Error::Invalid(format!(
                "centring {} is not in [0, 0.5]",
                self.centring
            )));
        }
        if self.batch == 0 {
            return Err(Error::Invalid("batch must be at least 1".into()));
        }
        Ok(())
    }
}

/// One reported word: its most confident window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Start of the window, in seconds from the start of the audio.
    pub start_s: f64,
    /// End of the window (start + clip length).
    pub end_s: f64,
    pub word: String,
    pub probability: f32,
}

impl Detection {
    /// Middle of the window, where the word most likely is.
    pub fn centre_s(&self) -> f64 {
        (self.start_s + self.end_s) / 2.0
    }
}

/// Detects words in audio given in chunks at the base's sample rate.
pub struct Listener<'a> {
    base: &'a BaseModel,
    recognizer: &'a Recognizer,
    spec: AudioSpec,
    options: ListenOptions,
    /// Whether each class of the recognizer is a word to report.
    is_word: Vec<bool>,
    hop: usize,
    /// Samples not yet behind every window still to come; `buffer[0]` is sample `buffer_start`.
    buffer: Vec<f32>,
    buffer_start: usize,
    /// First sample of the next window.
    next_window: usize,
    /// The utterance being followed.
    current: Option<Utterance>,
    /// Windows starting before this sample are ignored (suppression).
    quiet_until: usize,
}

impl<'a> Listener<'a> {
    /// A listener for `recognizer`, whose base `base` must take audio (see [`BaseModel::from_ref`]).
    pub fn new(
        base: &'a BaseModel,
        recognizer: &'a Recognizer,
        options: ListenOptions,
    ) -> Result<Listener<'a>> {
        options.validate()?;
        recognizer.check_base(&base.reference()?)?;
        let InputSpec::Audio(spec) = base.input_spec()? else {
            return Err(Error::Invalid(format!(
                "base {} does not take audio: listen needs a speech recognizer",
                recognizer.base().name
            )));
        };
        let is_word: Vec<bool> = recognizer
            .labels()
            .iter()
            .map(|l| !NOT_WORDS.contains(&l.as_str()))
            .collect();
        let hop = ((spec.clip_samples as f64 * (1.0 - f64::from(options.overlap))).round()
            as usize)
            .max(1);
        Ok(Listener {
            base,
            recognizer,
            spec: spec.clone(),
            options,
            is_word,
            hop,
            buffer: Vec::new(),
            buffer_start: 0,
            next_window: 0,
            current: None,
            quiet_until: 0,
        })
    }

    /// The sample rate that [`Listener::push`] expects.
    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }

    /// Feeds the next chunk (mono, in -1..1, at [`Listener::sample_rate`]); returns the words whose
    /// utterances ended within the windows it completed.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Detection>> {
        self.buffer.extend_from_slice(samples);
        let clip = self.spec.clip_samples;
        let end = self.buffer_start + self.buffer.len();
        let mut starts = Vec::new();
        while self.next_window + clip <= end {
            starts.push(self.next_window);
            self.next_window += self.hop;
        }
        let mut found = Vec::new();
        for batch in starts.chunks(self.options.batch) {
            found.extend(self.classify(batch)?);
        }
        let keep_from = self.next_window.min(end);
        let drop = keep_from - self.buffer_start;
        self.buffer.drain(..drop);
        self.buffer_start = keep_from;
        Ok(found)
    }

    /// Ends the audio: the pending utterance, if any, is reported. A tail shorter than a window
    /// is not classified.
    pub fn finish(&mut self) -> Vec<Detection> {
        self.close_utterance().into_iter().collect()
    }

    /// Classifies the windows starting at `starts` (all inside the buffer), in order.
    fn classify(&mut self, starts: &[usize]) -> Result<Vec<Detection>> {
        let clip = self.spec.clip_samples;
        let mut input = Array2::<f32>::zeros((starts.len(), clip));
        for (row, &start) in input.rows_mut().into_iter().zip(starts) {
            let from = start - self.buffer_start;
            let window = &self.buffer[from..from + clip];
            for (dst, src) in row.into_iter().zip(window) {
                *dst = src * self.spec.scale;
            }
        }
        let embeddings = self.base.embed(input.into_dyn().view())?;
        let probabilities = self.recognizer.probabilities(embeddings.view())?;
        let unknown = self
            .recognizer
            .unknown(embeddings.view(), probabilities.view())?;
        let mut found = Vec::new();
        for ((&start, row), unknown) in starts.iter().zip(probabilities.rows()).zip(unknown) {
            let (class, p) = row
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, p)| if p > best.1 { (i, p) } else { best },
                );
            let from = start - self.buffer_start;
            let window = &self.buffer[from..from + clip];
            let audible = level_db(window) >= self.options.silence_db;
            let centred = off_centre(window) <= self.options.centring;
            let fires = self.is_word[class]
                && p >= self.options.threshold
                && !unknown
                && audible
                && centred;
            if !fires {
                found.extend(self.close_utterance());
                continue;
            }
            if start < self.quiet_until {
                continue;
            }
            let utterance = self.current.get_or_insert_with(|| Utterance {
                sums: vec![0.0; row.len()],
                windows: Vec::new(),
            });
            for (sum, p) in utterance.sums.iter_mut().zip(row) {
                *sum += p;
            }
            utterance.windows.push((start, row.to_vec()));
        }
        Ok(found)
    }

    /// Reports the utterance being followed and starts the suppression time.
    fn close_utterance(&mut self) -> Option<Detection> {
        let utterance = self.current.take()?;
        // The word most probable over the utterance's windows, at its most confident window.
        let class = (0..utterance.sums.len())
            .filter(|&c| self.is_word[c])
            .max_by(|&a, &b| utterance.sums[a].total_cmp(&utterance.sums[b]))?;
        let (start, probability) = utterance
            .windows
            .iter()
            .map(|(start, row)| (*start, row[class]))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let rate = f64::from(self.spec.sample_rate);
        let suppression = (f64::from(self.options.suppression_ms) / 1000.0 * rate).round() as usize;
        self.quiet_until = start + suppression;
        Some(Detection {
            start_s: start as f64 / rate,
            end_s: (start + self.spec.clip_samples) as f64 / rate,
            word: self.recognizer.labels()[class].clone(),
            probability,
        })
    }
}

/// RMS level of `window` in dB relative to full scale (-inf for silence).
fn level_db(window: &[f32]) -> f32 {
    let energy: f64 = window.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    (10.0 * (energy / window.len().max(1) as f64).log10()) as f32
}

/// How far the centre of `window`'s energy lies from its middle, as a fraction of its length
/// (0 for silence).
fn off_centre(window: &[f32]) -> f32 {
    let (mut energy, mut moment) = (0.0f64, 0.0f64);
    for (i, s) in window.iter().enumerate() {
        let e = f64::from(*s) * f64::from(*s);
        energy += e;
        moment += e * i as f64;
    }
    if energy == 0.0 || window.is_empty() {
        return 0.0;
    }
    ((moment / energy) / window.len() as f64 - 0.5).abs() as f32
}

/// Consecutive firing windows: per-class sums of their probabilities, and each window's start
/// and probabilities.
struct Utterance {
    sums: Vec<f32>,
    windows: Vec<(usize, Vec<f32>)>,
}

/// Runs a [`Listener`] over a whole WAV file (decoded, mixed down, resampled to the base's rate).
pub fn listen_file(
    base: &BaseModel,
    recognizer: &Recognizer,
    path: &Path,
    options: ListenOptions,
) -> Result<Vec<Detection>> {
    let mut listener = Listener::new(base, recognizer, options)?;
    let bytes = crate::limits::read(path, crate::limits::FileKind::Audio)?;
    let samples = audio::load(&bytes, path, &listener.spec)?;
    let mut found = listener.push(&samples)?;
    found.extend(listener.finish());
    Ok(found)
}

/// Reads the words known to be spoken in a recording, for [`evaluate`]: a CSV of `time_s,word`
/// lines, the time at the word's middle (blank lines and `#` comments skipped).
pub fn read_truth(path: &Path) -> Result<Vec<WordTime>> {
    let text = crate::limits::read_text(path, crate::limits::FileKind::Text)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(',')
            .and_then(|(t, w)| Some((t.trim().parse::<f64>().ok()?, w.trim())));
        match parsed {
            Some((time_s, word)) if time_s.is_finite() && !word.is_empty() => out.push(WordTime {
                word: word.to_string(),
                time_s,
            }),
            _ => {
                return Err(Error::Input {
                    path: path.to_path_buf(),
                    msg: format!("line {}: expected `time_s,word`, got {line:?}", n + 1),
                })
            }
        }
    }
    Ok(out)
}

/// A word known to be spoken at a time (its middle), for [`evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WordTime {
    pub word: String,
    pub time_s: f64,
}

/// How detections compare with the words known to be spoken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListenScore {
    /// Known words matched by a detection of the same word within the tolerance.
    pub hits: usize,
    /// Known words no detection matched.
    pub misses: Vec<WordTime>,
    /// Detections that matched no known word.
    pub false_alarms: Vec<Detection>,
    /// `hits / known words` (1 when there are none).
    pub hit_rate: f64,
}

/// Matches each known word with at most one detection of the same word whose window centre is
/// within `tolerance_s` of it (closest first); the rest are misses and false alarms.
pub fn evaluate(detections: &[Detection], truth: &[WordTime], tolerance_s: f64) -> ListenScore {
    let mut used = vec![false; detections.len()];
    let mut misses = Vec::new();
    for w in truth {
        let best = detections
            .iter()
            .enumerate()
            .filter(|(i, d)| !used[*i] && d.word == w.word)
            .map(|(i, d)| (i, (d.centre_s() - w.time_s).abs()))
            .filter(|&(_, gap)| gap <= tolerance_s)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _)) => used[i] = true,
            None => misses.push(w.clone()),
        }
    }
    let hits = truth.len() - misses.len();
    ListenScore {
        hits,
        misses,
        false_alarms: detections
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(d, _)| d.clone())
            .collect(),
        hit_rate: match truth.len() {
            0 => 1.0,
            n => hits as f64 / n as f64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(word: &str, start_s: f64) -> Detection {
        Detection {
            start_s,
            end_s: start_s + 1.0,
            word: word.into(),
            probability: 0.9,
        }
    }

    #[test]
    fn evaluation_matches_each_word_once_within_the_tolerance() {
        let truth = [
            WordTime {
                word: "yes".into(),
                time_s: 2.0,
            },
            WordTime {
                word: "no".into(),
                time_s: 5.0,
            },
            WordTime {
                word: "yes".into(),
                time_s: 9.0,
            },
        ];
        let found = [
            detection("yes", 1.6), // centre 2.1: hit
            detection("yes", 1.8), // second one for the same word: false alarm
            detection("yes", 4.5), // right time, wrong word: false alarm
            detection("yes", 7.0), // centre 7.5, too far from 9.0: false alarm
        ];
        let score = evaluate(&found, &truth, 0.5);
        assert_eq!(score.hits, 1);
        assert_eq!(score.misses.len(), 2);
        assert_eq!(score.false_alarms.len(), 3);
        assert!((score.hit_rate - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn energy_centre_is_measured_from_the_middle() {
        let mut window = vec![0.0f32; 100];
        assert_eq!(off_centre(&window), 0.0);
        window[49] = 1.0;
        window[50] = 1.0;
        assert!(off_centre(&window) < 0.01);
        window.fill(0.0);
        window[90..].fill(0.5);
        assert!((off_centre(&window) - 0.445).abs() < 0.01);
        assert_eq!(level_db(&[0.0; 4]), f32::NEG_INFINITY);
        assert!((level_db(&[0.1; 4]) + 20.0).abs() < 1e-4);
    }

    #[test]
    fn options_are_checked() {
        assert!(ListenOptions::default().validate().is_ok());
        for bad in [
            ListenOptions {
                overlap: 1.0,
                ..Default::default()
            },
            ListenOptions {
                threshold: 1.5,
                ..Default::default()
            },
            ListenOptions {
                batch: 0,
                ..Default::default()
            },
            ListenOptions {
                centring: 0.6,
                ..Default::default()
            },
            // A hop of one sample would make a 5 s file 64,000 windows.
            ListenOptions {
                overlap: 0.99999,
                ..Default::default()
            },
            ListenOptions {
                overlap: f32::NAN,
                ..Default::default()
            },
            ListenOptions {
                silence_db: f32::NAN,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let fastest = ListenOptions {
            overlap: MAX_OVERLAP,
            ..Default::default()
        };
        assert!(fastest.validate().is_ok());
    }
}
