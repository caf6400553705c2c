//! Smaller exports: trains a recognizer on a labelled image folder, exports it as float32, int8
//! (calibrated on the training split), int8-weights and fp16, and prints what graft measured for each smaller
//! form against float on the validation split: file size, accuracy, top-1 agreement, ms per
//! image in tract and ONNX Runtime (the graph after graft's preprocessing, one image at a time).
//!
//! `cargo run --release --example quantize_export -- [DATA_DIR] [BASE] [OUT_DIR]`
//! (defaults, also for an empty argument: the shipped tuxpaint images, `efficientnet-lite0`, `quantize-out/`). The same as
//! `graft export my.safetensors -o int8.onnx --quantize int8 --data DATA_DIR`.

use std::path::PathBuf;
use std::sync::Arc;

use graft::base::{BaseModel, BaseOptions};
use graft::cache::CacheOptions;
use graft::dataset::Dataset;
use graft::export::{ExportOptions, Precision, Quantize};
use graft::task::{self, Classifier, CreateOptions, Silent};

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let data = match args.next().filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => task::demo::demo_data()?,
    };
    let base_name = args
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "efficientnet-lite0".into());
    let out = PathBuf::from(
        args.next()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| "quantize-out".into()),
    );

    let base = Arc::new(BaseModel::open(&base_name, &BaseOptions::default())?);
    let set = Dataset::from_folder(&data)?;
    let options = CreateOptions {
        cache: CacheOptions::default(),
        ..CreateOptions::default()
    };
    let created = task::create(&base, &set, &options, &Silent)?;
    let classifier = Classifier::new(created.recognizer, base)?;
    println!(
        "{base_name} on {} ({} images), engine for the base: {}",
        data.display(),
        set.examples.len(),
        classifier.base().backend()
    );
    for (name, quantize, precision) in [
        ("int8", Some(Quantize::Int8), Precision::Fp32),
        ("int8-weights", Some(Quantize::Int8Weights), Precision::Fp32),
        ("fp16", None, Precision::Fp16),
    ] {
        let options = ExportOptions {
            quantize,
            precision,
            data: Some(data.clone()),
            ..ExportOptions::default()
        };
        let r = classifier.export(&out.join(name).join("model.onnx"), &options)?;
        println!("\nwrote {}", r.onnx.display());
        if let Some(c) = &r.comparison {
            println!("{c}");
        }
    }
    Ok(())
}
