//! The speech base and speech recognizers: golden outputs of the merged graph, WAV decoding,
//! training on spoken words, and `listen` on a long recording.

mod common;
use common::max_abs_diff;

use std::path::{Path, PathBuf};
use std::process::Command;

use graft::base::BaseModel;
use graft::dataset::Dataset;
use graft::embeddings::{embed_files, prepare, Embeddings};
use graft::head::CpuBackend;
use graft::input::audio::{decode_wav, load, resample, BACKGROUND_NOISE};
use graft::input::InputSpec;
use graft::listen::{evaluate, listen_file, ListenOptions, Listener, WordTime};
use graft::recognizer::Recognizer;
use graft::train::TrainOptions;
use graft_converters::speech::{RAW_MEL, WINDOWS, WINDOW_DIM};
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const RATE: u32 = 16_000;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read_f32(rel: &str) -> Vec<f32> {
    std::fs::read(fixture(rel))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn base_cut_at(cut: &str) -> BaseModel {
    BaseModel::open(
        "speech-embedding",
        &graft::base::BaseOptions {
            cut: Some(cut.into()),
            ..graft::base::BaseOptions::default()
        },
    )
    .unwrap()
}

/// Golden outputs of the ORIGINAL two models (onnxruntime; see make_golden.py) against the
/// merged zoo graph run by tract: the raw spectrogram, every window's embedding, the pooling.
#[test]
fn merged_graph_matches_the_original_models() {
    let audio = read_f32("golden/speech_embedding/yes_1s_audio.f32");
    let input = Array2::from_shape_vec((1, RATE as usize), audio.clone())
        .unwrap()
        .into_dyn();

    // The zoo graph pads 0.5 s of silence on each side: its frame f is frame f - 50 of the
    // unpadded clip (same samples, same 80 dB floor as the loudest frame is inside the clip).
    let mel = base_cut_at(RAW_MEL).embed(input.view()).unwrap();
    let golden_mel = read_f32("golden/speech_embedding/yes_1s_mel_raw.f32");
    assert_eq!(mel.len(), 197 * 32);
    let inner = &mel.as_slice().unwrap()[50 * 32..(50 + 97) * 32];
    let diff = max_abs_diff(inner, &golden_mel);
    assert!(diff < 1e-3, "mel differs by {diff} dB");

    // Delay the clip by 6 frames (960 samples): window 7 of the padded graph (frames 56..132)
    // is then frames 0..76 of the golden clip, window 8 its frames 8..84.
    let delayed: Vec<f32> = [vec![0.0; 960], audio[..RATE as usize - 960].to_vec()].concat();
    let delayed = Array2::from_shape_vec((1, RATE as usize), delayed)
        .unwrap()
        .into_dyn();
    let windows = base_cut_at(WINDOWS).embed(delayed.view()).unwrap();
    let windows = windows.as_slice().unwrap();
    let golden = read_f32("golden/speech_embedding/yes_1s_windows.f32");
    let first = read_f32("golden/speech_embedding/yes_embedding_first_window.f32");
    let w = WINDOW_DIM;
    for (got, want) in [
        (&windows[7 * w..8 * w], &first[..]),
        (&windows[7 * w..8 * w], &golden[..w]),
        (&windows[8 * w..9 * w], &golden[w..2 * w]),
    ] {
        let diff = max_abs_diff(got, want);
        assert!(diff < 1e-3, "window embedding differs by {diff}");
    }

    // The pooled embedding is the mean and the max over the 16 windows.
    let windows = base_cut_at(WINDOWS).embed(input.view()).unwrap();
    assert_eq!(windows.len(), 16 * WINDOW_DIM);
    let pooled = base_cut_at("embedding").embed(input.view()).unwrap();
    let rows = windows.into_shape_with_order((16, WINDOW_DIM)).unwrap();
    let mean = rows.mean_axis(Axis(0)).unwrap();
    let max = rows.fold_axis(Axis(0), f32::MIN, |a, b| a.max(*b));
    let want: Vec<f32> = mean.iter().chain(max.iter()).copied().collect();
    assert!(max_abs_diff(pooled.as_slice().unwrap(), &want) < 1e-4);
}

/// The converter without padding against the originals window by window (needs the original
/// files: read from the mirror when present, else the test has nothing to compare).
#[test]
fn unpadded_merge_equals_the_original_windows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/speech-embedding");
    let (Ok(mel), Ok(emb)) = (
        std::fs::read(dir.join("melspectrogram.onnx")),
        std::fs::read(dir.join("embedding_model.onnx")),
    ) else {
        eprintln!("skipped: no originals in {}", dir.display());
        return;
    };
    let bytes = graft_converters::speech::merge(&mel, &emb, RATE as usize, 0).unwrap();
    let options = graft::base::BaseOptions {
        cut: Some(WINDOWS.into()),
        input_shape: Some(vec![RATE as usize]),
        ..graft::base::BaseOptions::default()
    };
    let base = BaseModel::from_bytes(bytes, "unpadded", &options).unwrap();
    let audio = read_f32("golden/speech_embedding/yes_1s_audio.f32");
    let silence = vec![0.0; RATE as usize];
    let batch = Array2::from_shape_vec((2, RATE as usize), [audio, silence].concat()).unwrap();
    let out = base.embed(batch.into_dyn().view()).unwrap();
    let golden = read_f32("golden/speech_embedding/yes_1s_windows.f32");
    let first = read_f32("golden/speech_embedding/yes_embedding_first_window.f32");
    let got = out.row(0).to_vec();
    assert!(
        max_abs_diff(&got, &golden) < 1e-3,
        "{}",
        max_abs_diff(&got, &golden)
    );
    assert!(max_abs_diff(&got[..WINDOW_DIM], &first) < 1e-3);
    // The silent clip in the same batch does not change the first clip (per-clip 80 dB floor).
    let audio = read_f32("golden/speech_embedding/yes_1s_audio.f32");
    let one = Array2::from_shape_vec((1, RATE as usize), audio).unwrap();
    let alone = base.embed(one.into_dyn().view()).unwrap();
    assert_eq!(alone.row(0).to_vec(), got);
}

/// Writes `samples` (mono, -1..1) as a WAV with `channels` copies, in `format`.
fn write_wav(path: &Path, samples: &[f32], rate: u32, channels: u16, bits: u16, float: bool) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        for _ in 0..channels {
            match (float, bits) {
                (true, _) => w.write_sample(s).unwrap(),
                (false, 8) => w.write_sample((s * 127.0).round() as i8).unwrap(),
                (false, 16) => w.write_sample((s * 32767.0).round() as i16).unwrap(),
                (false, b) => w
                    .write_sample((s * ((1i64 << (b - 1)) - 1) as f32).round() as i32)
                    .unwrap(),
            }
        }
    }
    w.finalize().unwrap();
}

fn word_samples(rel: &str) -> Vec<f32> {
    let path = fixture(rel);
    decode_wav(&std::fs::read(&path).unwrap(), &path)
        .unwrap()
        .samples
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// A spoken word stored at 8, 22.05, 44.1 and 48 kHz, in stereo, 8/24/32-bit and float gives
/// (nearly) the embedding of the 16 kHz original.
#[test]
fn wavs_at_other_rates_and_formats_embed_like_the_original() {
    let base = BaseModel::open("speech-embedding", &graft::base::BaseOptions::default()).unwrap();
    let spec = base.input_spec().unwrap().clone();
    let word = word_samples("audio/words/yes/000_flite-rms.wav");
    let original_path = fixture("audio/words/yes/000_flite-rms.wav");
    let embed = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let tensor = prepare(&bytes, path, &spec).unwrap();
        assert_eq!(tensor.shape(), [RATE as usize]);
        base.embed(tensor.insert_axis(Axis(0)).view())
            .unwrap()
            .row(0)
            .to_vec()
    };
    let reference = embed(&original_path);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (8_000, 1, 16, false, 0.97),
        (22_050, 1, 16, false, 0.995),
        (44_100, 2, 24, false, 0.995),
        (48_000, 2, 16, false, 0.995),
        (48_000, 1, 32, false, 0.995),
        (16_000, 3, 32, true, 0.999),
        (16_000, 1, 8, false, 0.98),
    ];
    for (rate, channels, bits, float, min_cos) in cases {
        let path = dir
            .path()
            .join(format!("{rate}-{channels}-{bits}-{float}.wav"));
        write_wav(
            &path,
            &resample(&word, RATE, rate),
            rate,
            channels,
            bits,
            float,
        );
        let decoded = decode_wav(&std::fs::read(&path).unwrap(), &path).unwrap();
        assert_eq!(decoded.sample_rate, rate);
        let sim = cosine(&embed(&path), &reference);
        assert!(
            sim >= min_cos,
            "{rate} Hz {channels} ch {bits}-bit: cosine {sim}"
        );
    }
}

/// Bad files are per-file errors that say what is wrong; nothing panics.
#[test]
fn bad_audio_gives_clear_errors() {
    let base = BaseModel::open("speech-embedding", &graft::base::BaseOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("audio/words/no/001_espeak-en-029_m6.wav")).unwrap();
    // A WAV whose format tag is 2 (MS ADPCM) instead of 1 (PCM).
    let mut adpcm = good.clone();
    adpcm[20] = 2;
    // 12 bits per sample in 16-bit containers (bytes 34-35 of the fmt chunk).
    let mut twelve_bit = good.clone();
    twelve_bit[34] = 12;
    let header_only = good[..44].to_vec();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("empty.wav", vec![], "empty"),
        (
            "text.wav",
            b"hello, I am not audio".to_vec(),
            "not a readable WAV",
        ),
        ("half.wav", good[..good.len() / 2].to_vec(), "truncated"),
        ("adpcm.wav", adpcm, "unsupported"),
        ("twelve.wav", twelve_bit, "bits per sample"),
        ("header.wav", header_only, "truncated"),
    ];
    let mut paths = Vec::new();
    for (name, bytes, _) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    paths.push(dir.path().join("missing.wav"));
    let results = embed_files(&base, &paths, None, &|_| {}).unwrap();
    for ((name, _, want), result) in cases.iter().zip(&results) {
        let err = result.as_ref().unwrap_err().to_string();
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
    assert!(results[6].is_err());
}

fn train_words(data: &Dataset) -> (BaseModel, Embeddings, Embeddings, Recognizer) {
    let base = BaseModel::open("speech-embedding", &graft::base::BaseOptions::default()).unwrap();
    let (all, skipped) = Embeddings::from_dataset(&base, data, None, &|_| {}).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let (train, val) = all.split(0.3, 42).unwrap();
    let recognizer = Recognizer::train(
        &train,
        &val,
        &TrainOptions::default(),
        &mut CpuBackend::new(),
        &mut |_| {},
    )
    .unwrap();
    (base, train, val, recognizer)
}

/// The default recognizer on 3 words x 30 clips (seeded 70/30 split: 27 validation clips).
#[test]
fn default_recognizer_learns_three_words() {
    let data = Dataset::from_folder(fixture("audio/words")).unwrap();
    let (_, train, val, recognizer) = train_words(&data);
    assert_eq!((train.len(), val.len()), (63, 27));
    let metrics = recognizer.evaluate(&val).unwrap();
    // Chance: 9/27.
    assert!(metrics.accuracy >= 0.85, "{metrics:?}");
}

/// Seeded coloured noise: white noise through a one-pole low-pass (`smooth` in 0..1).
fn noise(rng: &mut ChaCha8Rng, len: usize, rms: f32, smooth: f32) -> Vec<f32> {
    let mut y = 0.0f32;
    let raw: Vec<f32> = (0..len)
        .map(|_| {
            y = smooth * y + (1.0 - smooth) * rng.random_range(-1.0f32..1.0);
            y
        })
        .collect();
    let level = (raw.iter().map(|v| v * v).sum::<f32>() / len as f32).sqrt();
    raw.iter().map(|v| v * rms / level).collect()
}

/// Clips per word (of 30) held back from training and spoken in the long recording.
const HELD_BACK: usize = 6;

/// The brief's listen acceptance on the fixture words: a default recognizer trained on 24 clips
/// of each word plus generated background noise hears the 6 held-back clips of each word, placed
/// at known times in a long noisy recording (44.1 kHz stereo) followed by a minute of noise only.
#[test]
fn listen_finds_words_in_a_long_noisy_recording() {
    let rate = RATE as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let words = ["no", "stop", "yes"];
    let mut placed = Vec::new();
    for word in words {
        let src = fixture("audio/words").join(word);
        let dst = dir.path().join("data").join(word);
        std::fs::create_dir_all(&dst).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 30);
        for (i, f) in files.iter().enumerate() {
            if i < files.len() - HELD_BACK {
                std::fs::copy(f, dst.join(f.file_name().unwrap())).unwrap();
            } else {
                placed.push((word, f.clone()));
            }
        }
    }
    // Spoken in a seeded order, not word by word.
    for i in (1..placed.len()).rev() {
        placed.swap(i, rng.random_range(0..=i));
    }
    let noise_dir = dir.path().join("data").join(BACKGROUND_NOISE);
    std::fs::create_dir_all(&noise_dir).unwrap();
    for (i, (rms, smooth)) in [
        (0.003, 0.0),
        (0.01, 0.0),
        (0.03, 0.9),
        (0.01, 0.98),
        (0.05, 0.5),
    ]
    .into_iter()
    .enumerate()
    {
        let samples = noise(&mut rng, 8 * rate, rms, smooth);
        write_wav(
            &noise_dir.join(format!("noise{i}.wav")),
            &samples,
            RATE,
            1,
            16,
            false,
        );
    }
    let data = Dataset::from_folder(dir.path().join("data")).unwrap();
    assert_eq!(data.classes[0], BACKGROUND_NOISE);
    let (base, train, _, recognizer) = train_words(&data);
    // 5 recordings of 8 s -> 40 one-second examples of the noise class, 70 % in training.
    assert_eq!(train.counts()[0], 28);

    // 18 words, 3 s apart from 2 s on, then 60 s of noise only (from 56 s): 116 s in all.
    let words_end_s = 2 + 3 * placed.len();
    let total_s = words_end_s + 60;
    let mut recording = noise(&mut rng, total_s * rate, 0.003, 0.5);
    let mut truth = Vec::new();
    for (k, (word, path)) in placed.iter().enumerate() {
        let clip = word_samples(path.strip_prefix(fixture("")).unwrap().to_str().unwrap());
        let at = (2 + 3 * k) * rate;
        for (dst, src) in recording[at..].iter_mut().zip(&clip) {
            *dst += src;
        }
        let energy: f32 = clip.iter().map(|s| s * s).sum();
        let centroid: f32 = clip
            .iter()
            .enumerate()
            .map(|(i, s)| i as f32 * s * s)
            .sum::<f32>()
            / energy;
        truth.push(WordTime {
            word: word.to_string(),
            time_s: (at as f64 + f64::from(centroid)) / f64::from(RATE),
        });
    }
    let wav = dir.path().join("long.wav");
    write_wav(
        &wav,
        &resample(&recording, RATE, 44_100),
        44_100,
        2,
        16,
        false,
    );

    let options = ListenOptions::default();
    let found = listen_file(&base, &recognizer, &wav, options).unwrap();
    let score = evaluate(&found, &truth, 0.5);
    eprintln!("{found:#?}\n{score:#?}");
    // At least 80 % of the words found within 0.5 s, at most one false alarm per minute of the
    // recording, and none in the minute of noise alone.
    assert!(score.hit_rate >= 0.8, "{score:#?}");
    let minutes = total_s as f64 / 60.0;
    assert!(
        score.false_alarms.len() as f64 <= minutes,
        "{} false alarms in {minutes:.1} min: {score:#?}",
        score.false_alarms.len()
    );
    assert!(
        found.iter().all(|d| d.start_s < words_end_s as f64),
        "reports in the noise-only minute: {found:#?}"
    );
    // Live use: the same audio pushed in uneven chunks gives the same timeline.
    let InputSpec::Audio(spec) = base.input_spec().unwrap() else {
        panic!("not an audio base")
    };
    let samples = load(&std::fs::read(&wav).unwrap(), &wav, spec).unwrap();
    let mut listener = Listener::new(&base, &recognizer, ListenOptions::default()).unwrap();
    let mut live = Vec::new();
    for chunk in samples.chunks(1237) {
        live.extend(listener.push(chunk).unwrap());
    }
    live.extend(listener.finish());
    assert_eq!(live.len(), found.len(), "{live:#?}");
    for (a, b) in live.iter().zip(&found) {
        assert_eq!((&a.word, a.start_s), (&b.word, b.start_s));
        assert!((a.probability - b.probability).abs() < 1e-4);
    }
    // The CLI gives the same timeline as JSON, and scores it against a truth file.
    let rec_path = dir.path().join("words.safetensors");
    recognizer.save(&rec_path).unwrap();
    let truth_path = dir.path().join("truth.csv");
    let csv: String = truth
        .iter()
        .map(|w| format!("{},{}\n", w.time_s, w.word))
        .collect();
    std::fs::write(&truth_path, csv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["--json", "listen"])
        .arg(&rec_path)
        .arg(&wav)
        .arg("--truth")
        .arg(&truth_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["detections"].as_array().unwrap().len(), found.len());
    assert_eq!(json["score"]["hits"], score.hits);
}

#[test]
fn zoo_manifest_describes_the_speech_base() {
    let m = graft::zoo::manifest("speech-embedding").unwrap();
    let InputSpec::Audio(spec) = &m.input else {
        panic!("not an audio spec: {:?}", m.input)
    };
    assert_eq!(
        (spec.sample_rate, spec.clip_samples, spec.scale),
        (16_000, 16_000, 32_768.0)
    );
    assert_eq!(
        graft::zoo::sha256_file(&common::committed_model(&m)).unwrap(),
        m.model.sha256
    );
    let base = BaseModel::open("speech-embedding", &graft::base::BaseOptions::default()).unwrap();
    assert_eq!(base.embedding_dim(), m.embedding.size);
}
