//! `graft pose`: the body keypoints of the person in each image, optionally drawn.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use graft::pose::{detect_file, keypoint_model, save_drawing, Detected, LOW_SCORE};
use serde_json::json;

use graft::base::{BaseOptions, EngineOptions};

use super::Ui;

#[derive(Args)]
pub struct PoseArgs {
    /// PNG or JPEG images, one person each.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Write the image with the skeleton drawn to this PNG file (one input image only).
    #[arg(long)]
    pub draw: Option<PathBuf>,
    /// A pose model: movenet-lightning (17 COCO keypoints), blazepose-lite (33 landmarks; give
    /// crops of one person), or an ONNX file with the same output as one of them.
    #[arg(long, default_value = "movenet-lightning")]
    pub base: String,
    #[command(flatten)]
    pub engine: EngineOptions,
}

pub fn run(args: PoseArgs, ui: Ui) -> Result<()> {
    if args.draw.is_some() && args.images.len() != 1 {
        bail!(
            "--draw writes one file: give one image (got {})",
            args.images.len()
        );
    }
    let base = keypoint_model(&args.base, &BaseOptions::from(args.engine), &ui.progress())?;
    let mut results = Vec::with_capacity(args.images.len());
    for path in &args.images {
        let Detected { image, keypoints } = detect_file(&base, path)?;
        ui.say(format!(
            "{} ({}x{})",
            path.display(),
            image.width(),
            image.height()
        ));
        for k in &keypoints {
            let mark = if k.is_confident() { "" } else { "  low" };
            ui.say(format!(
                "  {:<15} x {:>7.1}  y {:>7.1}  score {:.3}{mark}",
                k.name, k.x, k.y, k.score
            ));
        }
        if let Some(out) = &args.draw {
            save_drawing(&image, &keypoints, out)?;
            ui.say(format!("skeleton drawn to {}", out.display()));
        }
        let keypoints: Vec<_> = keypoints
            .iter()
            .map(|k| json!({ "name": k.name, "x": k.x, "y": k.y, "score": k.score, "low": !k.is_confident() }))
            .collect();
        results.push(json!({
            "path": path,
            "width": image.width(),
            "height": image.height(),
            "keypoints": keypoints,
        }));
    }
    ui.finish(json!({ "images": results, "low_score": LOW_SCORE, "drawn": args.draw }));
    Ok(())
}
