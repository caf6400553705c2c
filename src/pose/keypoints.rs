//! Where a pose model's keypoints are: the output layouts of MoveNet and BlazePose, opening such a
//! model cut at its keypoints, and finding the keypoints of the person in an image.

use image::DynamicImage;
use ndarray::Axis;
use serde::Serialize;

use crate::base::pose_features::KEYPOINT_NAMES;
use crate::base::{BaseModel, BaseOptions};
use crate::input::image::{preprocess, Letterbox};
use crate::input::ImageSpec;
use crate::progress::Progress;
use crate::{zoo, Error, Result};

/// The 33 body landmarks of BlazePose (MediaPipe Pose), in the order the model gives them.
pub const BLAZEPOSE_NAMES: [&str; 33] = [
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
];

/// Numbers per landmark in BlazePose's landmark output: x, y, z, visibility, presence.
const BLAZEPOSE_STRIDE: usize = 5;
/// Landmarks in BlazePose's output: the 33 body landmarks, then 6 auxiliary ones.
const BLAZEPOSE_OUTPUT_LANDMARKS: usize = 39;

/// How a pose model's output holds its keypoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputLayout {
    /// MoveNet: `[1, 17, 3]` = (y, x, score) per COCO keypoint, y and x in 0..1 of the input.
    MoveNet,
    /// BlazePose landmark model: `[195]` = (x, y, z, visibility, presence) per landmark, 33
    /// body landmarks then 6 auxiliary ones, x and y in input pixels, visibility a logit.
    BlazePose,
}

impl OutputLayout {
    /// The layout of `base`'s cut, or an error saying what pose models give.
    fn of(base: &BaseModel) -> Result<OutputLayout> {
        match base.cut_shape() {
            [1, 17, 3] => Ok(OutputLayout::MoveNet),
            [n] if *n == BLAZEPOSE_OUTPUT_LANDMARKS * BLAZEPOSE_STRIDE => {
                Ok(OutputLayout::BlazePose)
            }
            other => Err(Error::Invalid(format!(
                "base {} cut at `{}` gives {other:?}; a pose model's keypoints are [1, 17, 3] \
                 (MoveNet: y, x, score) or [195] (BlazePose landmarks) per example (open it \
                 with pose::keypoint_model)",
                base.name(),
                base.cut(),
            ))),
        }
    }

    /// The keypoints in `output` (one example), positions mapped by `to_image` from fractions
    /// 0..1 of the `input_size`-pixel square input.
    fn decode(
        self,
        output: &[f32],
        input_size: u32,
        to_image: impl Fn(f32, f32) -> (f32, f32),
    ) -> Vec<Keypoint> {
        let keypoint = |name, x, y, score| {
            let (x, y) = to_image(x, y);
            Keypoint { name, x, y, score }
        };
        match self {
            OutputLayout::MoveNet => KEYPOINT_NAMES
                .iter()
                .zip(output.chunks_exact(3))
                .map(|(&name, yxs)| keypoint(name, yxs[1], yxs[0], yxs[2]))
                .collect(),
            OutputLayout::BlazePose => {
                let size = input_size.max(1) as f32;
                BLAZEPOSE_NAMES
                    .iter()
                    .zip(output.chunks_exact(BLAZEPOSE_STRIDE))
                    .map(|(&name, l)| {
                        let visibility = 1.0 / (1.0 + (-l[3]).exp());
                        keypoint(name, l[0] / size, l[1] / size, visibility)
                    })
                    .collect()
            }
        }
    }

    fn count(self) -> usize {
        match self {
            OutputLayout::MoveNet => KEYPOINT_NAMES.len(),
            OutputLayout::BlazePose => BLAZEPOSE_NAMES.len(),
        }
    }
}

/// Keypoints scoring below this are unreliable: kept, but flagged and not drawn.
pub const LOW_SCORE: f32 = 0.3;

/// One body keypoint: where it is in the original image (pixels, x right, y down) and the model's
/// confidence in 0..1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Keypoint {
    pub name: &'static str,
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

impl Keypoint {
    /// Whether the score reaches [`LOW_SCORE`].
    pub fn is_confident(&self) -> bool {
        self.score >= LOW_SCORE
    }
}

/// Opens pose model `name_or_path` (a zoo name or an ONNX file) cut at its keypoints, for
/// [`detect`], on the engine `options` names: a zoo model with pose features is cut before them,
/// at its manifest's tensor; an ONNX file at `options.cut`, else its automatic cut.
pub fn keypoint_model(
    name_or_path: &str,
    options: &BaseOptions,
    progress: &dyn Progress,
) -> Result<BaseModel> {
    let cut = zoo::manifest(name_or_path)
        .ok()
        .filter(|m| m.embedding.features == Some(zoo::Features::Pose))
        .map(|m| m.embedding.tensor);
    let options = BaseOptions {
        cut: cut.or_else(|| options.cut.clone()),
        ..options.clone()
    };
    BaseModel::open_with(name_or_path, &options, progress)
}

/// Finds the keypoints of the person in `image` with a pose model cut at its keypoints (see
/// [`keypoint_model`]): MoveNet's 17 COCO keypoints ([`KEYPOINT_NAMES`]; output `[1, 1, 17, 3]`
/// = (y, x, score), y and x in 0..1 of its square input), or BlazePose's 33 landmarks
/// ([`BLAZEPOSE_NAMES`]; output `[1, 195]`, scores the landmarks' visibility), for which `image`
/// should be a crop around one person. The image is letterboxed whatever the base's spec says;
/// positions are in its pixels. Low-score keypoints are returned too; see
/// [`Keypoint::is_confident`].
pub fn detect(base: &BaseModel, image: &DynamicImage) -> Result<Vec<Keypoint>> {
    let spec = ImageSpec {
        letterbox: true,
        center_crop: None,
        ..base.image_spec()?.clone()
    };
    if spec.width != spec.height {
        return Err(Error::Invalid(format!(
            "base {} takes {}x{} images; pose models take a square input",
            base.name(),
            spec.width,
            spec.height
        )));
    }
    let layout = OutputLayout::of(base)?;
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!("the image is empty ({w}x{h})")));
    }
    let fit = Letterbox::fit(w, h, spec.width, spec.height);
    let input = preprocess(image, &spec)?;
    let output = base.embed(input.insert_axis(Axis(0)).into_dyn().view())?;
    let keypoints = layout.decode(
        output.row(0).as_slice().unwrap_or(&[]),
        spec.width,
        |x, y| fit.to_image(x, y, w, h),
    );
    if keypoints.len() != layout.count() {
        return Err(Error::Inference(format!(
            "base {} gave a non-contiguous output",
            base.name()
        )));
    }
    Ok(keypoints)
}

/// An image file and the keypoints found in it.
#[derive(Clone, Debug)]
pub struct Detected {
    pub image: DynamicImage,
    pub keypoints: Vec<Keypoint>,
}

/// Reads and decodes the image file `path` and finds its keypoints (see [`detect`]).
pub fn detect_file(base: &BaseModel, path: &std::path::Path) -> Result<Detected> {
    let bytes = crate::limits::read(path, crate::limits::FileKind::Image)?;
    let image = crate::input::image::decode_image(&bytes, path)?;
    let keypoints = detect(base, &image)?;
    Ok(Detected { image, keypoints })
}
