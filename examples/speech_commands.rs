//! Spoken-word recognition: the zoo's speech embedding, a head trained on a folder of word
//! folders (one-second WAV clips; an optional `_background_noise_` folder of long recordings),
//! evaluation, ONNX export (audio in, probabilities out), and streaming detection over a
//! recording made of validation clips fed in 100 ms chunks, as a live microphone would.
//!
//! `cargo run --release --example speech_commands -- [DATA_DIR] [OUT_DIR]`
//! (defaults: the test fixture words `tests/fixtures/audio/words`, and `speech-commands-out/`;
//! `../shared/data/audio/synth-commands` is the full set).

use std::path::PathBuf;
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::input::audio::{decode_wav, resample};
use graft::listen::{ListenOptions, Listener};
use graft::task::{self, Classifier, CreateOptions, Silent};
use graft::Error;

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/words")
    });
    let out_dir = PathBuf::from(args.next().unwrap_or_else(|| "speech-commands-out".into()));

    // 1. The frozen base: 1 s of 16 kHz audio -> 192-d embedding (mean and max of 16 windows).
    let base = Arc::new(BaseModel::open(
        "speech-embedding",
        &BaseOptions::default(),
    )?);
    // 2. Embed every clip once (WAVs at any rate/format are resampled to 16 kHz mono).
    let dataset = Dataset::from_folder(&data_dir)?;
    let embedded = task::embed_folder(&base, &dataset, &CacheOptions::default(), &Silent)?;
    for (path, why) in &embedded.report.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    // 3. Seeded 70/30 split, softmax head, evaluation, save, export.
    let options = CreateOptions::default();
    let created =
        task::create_from_embeddings(&base, &embedded.embeddings, &[], &options, &Silent)?;
    let (_, val) = embedded
        .embeddings
        .split(options.val_split, options.train.seed)?;
    println!("validation {}", created.recognizer.evaluate(&val)?);
    created
        .recognizer
        .save(&out_dir.join("words.safetensors"))?;
    let classifier = Classifier::new(created.recognizer, base.clone())?;
    let exported = classifier.export(&out_dir.join("words.onnx"), &Default::default())?;
    println!("wrote {}", exported.onnx.display());

    // 4. Streaming: validation clips one after another with 1 s of silence between them, pushed
    //    in 100 ms chunks; each detection is printed as soon as its utterance ends.
    let mut listener = Listener::new(&base, classifier.recognizer(), ListenOptions::default())?;
    let rate = listener.sample_rate();
    let mut stream = Vec::new();
    println!("spoken:");
    for source in val
        .sources()
        .iter()
        .filter(|s| s.is_file())
        .map(|s| s.file())
        .filter(|s| s.extension().is_some_and(|e| e == "wav"))
    {
        let bytes = std::fs::read(source).map_err(|e| Error::io(source, e))?;
        let audio = decode_wav(&bytes, source)?;
        println!(
            "  {:>6.2}s  {}",
            stream.len() as f64 / f64::from(rate) + 1.0,
            source
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        stream.extend(std::iter::repeat_n(0.0, rate as usize));
        stream.extend(resample(&audio.samples, audio.sample_rate, rate));
    }
    println!("heard:");
    for chunk in stream.chunks(rate as usize / 10) {
        for d in listener.push(chunk)? {
            println!("  {:>6.2}s  {} ({:.3})", d.start_s, d.word, d.probability);
        }
    }
    for d in listener.finish() {
        println!("  {:>6.2}s  {} ({:.3})", d.start_s, d.word, d.probability);
    }
    Ok(())
}
