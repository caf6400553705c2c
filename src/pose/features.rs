//! Pose features: keypoints normalised to the hips and the torso, as numbers to train on, and
//! their left/right mirror (see the module docs of [`crate::pose`]).

use ndarray::Array2;

use super::Keypoint;
use crate::base::pose_features::{
    FEATURES_TENSOR, FEATURE_DIM, KEYPOINT_NAMES, LEFT_HIP, LEFT_SHOULDER, MIN_TORSO,
};
use crate::embeddings::{Embeddings, Source};
use crate::{Error, Result};

/// For each keypoint, the index of its left/right twin in [`KEYPOINT_NAMES`] (itself for the
/// nose): what a horizontal flip swaps.
pub const TWINS: [usize; 17] = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15];

/// Checks that `keypoints` are the 17 COCO keypoints in order.
fn check_order(keypoints: &[Keypoint]) -> Result<()> {
    let names: Vec<&str> = keypoints.iter().map(|k| k.name).collect();
    if names != KEYPOINT_NAMES {
        return Err(Error::Invalid(format!(
            "expected the 17 COCO keypoints in order, got {names:?}"
        )));
    }
    Ok(())
}

/// The midpoint of the two keypoints named `left` and `right` (present in COCO order).
fn midpoint(keypoints: &[Keypoint], left: usize, right: usize) -> (f32, f32) {
    let (a, b) = (&keypoints[left], &keypoints[right]);
    ((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)
}

/// Position- and scale-free keypoints (see the module docs): centred on the hip midpoint, in
/// units of the torso length (at least [`MIN_TORSO`]), scores unchanged. An error if the
/// keypoints are not the 17 COCO keypoints in order or a coordinate is not finite.
pub fn normalise(keypoints: &[Keypoint]) -> Result<Vec<Keypoint>> {
    check_order(keypoints)?;
    if let Some(k) = keypoints
        .iter()
        .find(|k| !(k.x.is_finite() && k.y.is_finite()))
    {
        return Err(Error::Invalid(format!(
            "cannot normalise a pose with a keypoint at ({}, {}) ({})",
            k.x, k.y, k.name
        )));
    }
    let (sx, sy) = midpoint(keypoints, LEFT_SHOULDER, LEFT_SHOULDER + 1);
    let (hx, hy) = midpoint(keypoints, LEFT_HIP, LEFT_HIP + 1);
    let (dx, dy) = (sx - hx, sy - hy);
    // As the ONNX graph computes it: Sqrt(dx dx + dy dy), then Max with MIN_TORSO.
    let torso = (dx * dx + dy * dy).sqrt().max(MIN_TORSO);
    Ok(keypoints
        .iter()
        .map(|k| Keypoint {
            x: (k.x - hx) / torso,
            y: (k.y - hy) / torso,
            ..k.clone()
        })
        .collect())
}

/// The normalised pose of the horizontally flipped image: x negated, each `left_*` keypoint
/// swapped with its `right_*` twin ([`TWINS`]; names stay in COCO order). Its own inverse.
pub fn mirror(normalised: &[Keypoint]) -> Result<Vec<Keypoint>> {
    check_order(normalised)?;
    Ok(KEYPOINT_NAMES
        .iter()
        .zip(TWINS)
        .map(|(&name, twin)| {
            let twin = &normalised[twin];
            Keypoint {
                name,
                x: -twin.x,
                y: twin.y,
                score: twin.score,
            }
        })
        .collect())
}

/// [`mirror`] on [`features`]: the 51 numbers of the flipped pose.
pub fn mirror_features(features: &[f32]) -> Result<Vec<f32>> {
    if features.len() != FEATURE_DIM {
        return Err(Error::Invalid(format!(
            "pose features have {FEATURE_DIM} numbers, got {}",
            features.len()
        )));
    }
    Ok(TWINS
        .iter()
        .flat_map(|&twin| {
            let k = &features[3 * twin..3 * twin + 3];
            [-k[0], k[1], k[2]]
        })
        .collect())
}

/// `train` followed by a mirrored copy of each of its examples ([`mirror_features`]; sources
/// [`Source::Mirrored`]): left/right augmentation for the training part of a split of pose
/// features. Only for classes that do not tell left from right.
pub fn with_mirrored(train: &Embeddings) -> Result<Embeddings> {
    let vectors = train.vectors();
    if train.base().cut != FEATURES_TENSOR || vectors.ncols() != FEATURE_DIM {
        return Err(Error::Invalid(format!(
            "mirroring needs pose features (a pose base such as movenet-lightning, cut at \
             `{FEATURES_TENSOR}`); these embeddings are `{}` [{}]",
            train.base().cut,
            vectors.ncols()
        )));
    }
    let mut rows: Vec<f32> = Vec::with_capacity(vectors.len());
    for row in vectors.rows() {
        rows.extend(mirror_features(&row.to_vec())?);
    }
    let mirrored = Array2::from_shape_vec((train.len(), FEATURE_DIM), rows)
        .map_err(|e| Error::Internal(format!("mirrored features: {e}")))?;
    let sources = train
        .sources()
        .iter()
        .map(|s| Source::Mirrored(Box::new(s.clone())))
        .collect();
    train.extended(mirrored.view(), train.labels().to_vec(), sources)
}

/// A pose as [`FEATURE_DIM`] numbers (x, y, score per keypoint, COCO order; see the module docs),
/// e.g. to train a head on [`normalise`]d poses.
pub fn features(keypoints: &[Keypoint]) -> Vec<f32> {
    keypoints.iter().flat_map(|k| [k.x, k.y, k.score]).collect()
}
