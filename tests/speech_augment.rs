//! Noise augmentation of speech training clips: seeded noisy copies of the training part only.

use std::path::{Path, PathBuf};

use graft::base::BaseModel;
use graft::dataset::Dataset;
use graft::embeddings::{Embeddings, NoiseAugmentation, NoiseRecording, DEFAULT_NOISE_SNR_DB};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The first 10 fixture clips (by name) of each word, copied into a temporary folder.
fn words() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/words");
    let dir = tempfile::tempdir().unwrap();
    for word in ["no", "stop", "yes"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(src.join(word))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::create_dir(dir.path().join(word)).unwrap();
        for f in &files[..10] {
            std::fs::copy(f, dir.path().join(word).join(f.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn aug(ratio: usize, seed: u64) -> NoiseAugmentation {
    NoiseAugmentation {
        ratio,
        snr_db: DEFAULT_NOISE_SNR_DB,
        seed,
    }
}

fn max_abs_diff(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Embeds the three-word fixture and splits it as `graft train` does (seeded 70/30); the folder
/// lives as long as the returned guard (the embeddings' sources point into it).
fn split() -> (tempfile::TempDir, BaseModel, Embeddings, Embeddings) {
    let base = BaseModel::open("speech-embedding", &graft::base::BaseOptions::default()).unwrap();
    let words = words();
    let data = Dataset::from_folder(words.path()).unwrap();
    let (all, skipped) = Embeddings::from_dataset(&base, &data, None, &|_| {}).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let (train, val) = all.split(0.3, 42).unwrap();
    (words, base, train, val)
}

#[test]
fn noisy_copies_are_seeded_labelled_and_differ_from_the_clips() {
    let (_words, base, train, val) = split();
    let n = train.len();
    let val_before = val.vectors().to_owned();
    let twice = train
        .augmented_with_noise(&base, &[], &aug(2, 7), None)
        .unwrap();
    assert_eq!(twice.len(), 3 * n);
    assert_eq!(
        twice.counts(),
        train.counts().iter().map(|c| 3 * c).collect::<Vec<_>>()
    );
    // The originals come first, untouched; each copy has its clip's label and is not the clip.
    assert_eq!(twice.vectors().slice(ndarray::s![..n, ..]), train.vectors());
    assert_eq!(&twice.labels()[..n], train.labels());
    for k in 0..2 * n {
        let clip = k / 2;
        assert_eq!(twice.labels()[n + k], train.labels()[clip]);
        let d = max_abs_diff(twice.vectors().row(n + k), train.vectors().row(clip));
        assert!(d > 1e-3, "copy {k} equals its clip (diff {d})");
    }
    // Same seed, same copies; another seed, other copies.
    let again = train
        .augmented_with_noise(&base, &[], &aug(2, 7), None)
        .unwrap();
    assert_eq!(again.vectors(), twice.vectors());
    let other = train
        .augmented_with_noise(&base, &[], &aug(1, 8), None)
        .unwrap();
    assert!(max_abs_diff(other.vectors().row(n), twice.vectors().row(n)) > 1e-3);
    // Validation is a separate set the augmentation never sees.
    assert_eq!(val.vectors(), val_before);
}

#[test]
fn recordings_are_mixed_and_cached_by_their_content() {
    let (_words, base, train, _) = split();
    let train = train.subset(&[0, 1, 2]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // A hum with hiss, longer than a clip, so that offsets vary.
    let samples: Vec<f32> = (0..40_000)
        .map(|i| 0.3 * (i as f32 * 0.05).sin() + rng.random_range(-0.1f32..0.1))
        .collect();
    let noise = [NoiseRecording {
        sha256: "hum".into(),
        samples,
    }];
    let cache = tempfile::tempdir().unwrap();
    let mixed = train
        .augmented_with_noise(&base, &noise, &aug(1, 7), Some(cache.path()))
        .unwrap();
    let pink = train
        .augmented_with_noise(&base, &[], &aug(1, 7), None)
        .unwrap();
    assert_eq!(mixed.len(), 6);
    for k in 3..6 {
        assert!(max_abs_diff(mixed.vectors().row(k), pink.vectors().row(k)) > 1e-3);
    }
    // The second run reads the copies back from the cache: same rows.
    let cached = train
        .augmented_with_noise(&base, &noise, &aug(1, 7), Some(cache.path()))
        .unwrap();
    assert_eq!(cached.vectors(), mixed.vectors());
    let files = std::fs::read_dir(cache.path().join("embeddings"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(files, 3);
}

#[test]
fn bad_ratio_or_snr_is_a_clear_error() {
    let (_words, base, train, _) = split();
    let bad = [
        (aug(0, 1), "ratio must be 1 to 100"),
        (aug(101, 1), "ratio must be 1 to 100"),
        (
            NoiseAugmentation {
                snr_db: (20.0, 5.0),
                ..aug(1, 1)
            },
            "low <= high",
        ),
        (
            NoiseAugmentation {
                snr_db: (f32::NAN, 5.0),
                ..aug(1, 1)
            },
            "finite",
        ),
    ];
    for (a, want) in bad {
        let err = train
            .augmented_with_noise(&base, &[], &a, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

/// `graft train --augment-noise`: copies only in the training part, the SNR range as LOW,HIGH.
#[test]
fn cli_adds_noisy_copies_to_the_training_part() {
    let dir = tempfile::tempdir().unwrap();
    let words = words();
    let train = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
            .args([
                "train",
                "--base",
                "speech-embedding",
                "--no-cache",
                "--data",
            ])
            .arg(words.path())
            .arg("-o")
            .arg(dir.path().join("r.safetensors"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = train(&["--augment-noise", "2", "--augment-snr", "10,30"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // 21 training clips (7 per word) get 2 copies each; the 9 validation clips stay as they are.
    assert!(
        text.contains("42 noisy training copies (generated pink noise)"),
        "{text}"
    );
    let validation = text
        .lines()
        .find(|l| l.starts_with("validation:"))
        .unwrap_or("");
    assert!(validation.ends_with("/9)"), "{text}");
    let bad = train(&["--augment-noise", "2", "--augment-snr", "30"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("LOW,HIGH"), "{err}");
}
