//! Keypoints of a stick figure in known poses, to test a pose recognizer on labels that are known
//! to be right (no labelled pose photo set was found in any registry package).
//!
//! The figure faces the camera (its left side on the image's right, as pose models report it):
//! hips, shoulders and head placed around the hip midpoint in torso lengths, then arms and legs as
//! chains of segments at 2D joint angles drawn per pose class. Each example also gets random body
//! proportions, a turn of the body (narrower shoulders and hips), noise on every joint, a small
//! rotation, a random scale and position in a 640x480 image, and random scores. Seeded.
//!
//! Classes ([`CLASSES`], sorted as class folders are): `arms_out` (both arms about horizontal),
//! `arms_up` (both raised), `one_arm_raised` (left or right, one class: safe for mirror
//! augmentation), `squat` (thighs foreshortened towards the camera, knees out) and `standing`
//! (arms down).

use std::path::PathBuf;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{features, normalise, Keypoint, FEATURE_DIM, KEYPOINT_NAMES};
use crate::base::BaseRef;
use crate::embeddings::{Embeddings, Source};
use crate::{Error, Result};

/// The pose classes, in the order of their labels.
pub const CLASSES: [&str; 5] = ["arms_out", "arms_up", "one_arm_raised", "squat", "standing"];

/// Standard deviation of the noise on each joint, in torso lengths.
pub const JOINT_NOISE: f32 = 0.04;

/// A draw in `mean ± spread`.
fn around(rng: &mut ChaCha8Rng, mean: f32, spread: f32) -> f32 {
    mean + rng.random_range(-spread..=spread)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    (-2.0 * u.ln()).sqrt() * v.cos()
}

/// A limb: the angle of its upper segment from straight down (degrees, positive away from the
/// body), the bend of its lower segment relative to the upper one, and how much of each
/// segment's length shows (foreshortening).
#[derive(Clone, Copy)]
struct Limb {
    angle: f32,
    bend: f32,
    shown: f32,
}

impl Limb {
    fn new(rng: &mut ChaCha8Rng, angle: (f32, f32), bend: (f32, f32), shown: (f32, f32)) -> Self {
        Limb {
            angle: around(rng, angle.0, angle.1),
            bend: around(rng, bend.0, bend.1),
            shown: rng.random_range(shown.0..=shown.1),
        }
    }

    /// Middle and end joint from the root joint `(x, y)` on `side` (+1: the figure's left, on the
    /// image's right; -1: its right), segment lengths `upper` and `lower`.
    fn joints(&self, (x, y): (f32, f32), side: f32, upper: f32, lower: f32) -> [(f32, f32); 2] {
        let step = |(x, y): (f32, f32), degrees: f32, length: f32| {
            let a = degrees.to_radians();
            (x + side * a.sin() * length, y + a.cos() * length)
        };
        let middle = step((x, y), self.angle, upper * self.shown);
        [
            middle,
            step(middle, self.angle + self.bend, lower * self.shown),
        ]
    }
}

/// The limbs of one example of class `class` (an index into [`CLASSES`]):
/// `[left arm, right arm, left leg, right leg]`.
fn limbs(class: usize, rng: &mut ChaCha8Rng) -> Result<[Limb; 4]> {
    let down = |rng: &mut ChaCha8Rng| Limb::new(rng, (8.0, 7.0), (5.0, 12.0), (0.9, 1.0));
    let up = |rng: &mut ChaCha8Rng| Limb::new(rng, (165.0, 14.0), (0.0, 20.0), (0.85, 1.0));
    let out = |rng: &mut ChaCha8Rng| Limb::new(rng, (90.0, 14.0), (0.0, 20.0), (0.85, 1.0));
    let leg = |rng: &mut ChaCha8Rng| Limb::new(rng, (4.0, 4.0), (-2.0, 5.0), (0.9, 1.0));
    // Knees out; the shin bent back to about vertical. The thigh's foreshortening (it points at
    // the camera) is applied in `generate`.
    let squat_leg = |rng: &mut ChaCha8Rng| Limb::new(rng, (50.0, 15.0), (-50.0, 12.0), (0.9, 1.0));
    Ok(match CLASSES.get(class) {
        Some(&"arms_out") => [out(rng), out(rng), leg(rng), leg(rng)],
        Some(&"arms_up") => [up(rng), up(rng), leg(rng), leg(rng)],
        Some(&"one_arm_raised") => {
            let (raised, other) = (up(rng), down(rng));
            match rng.random_bool(0.5) {
                true => [raised, other, leg(rng), leg(rng)],
                false => [other, raised, leg(rng), leg(rng)],
            }
        }
        Some(&"squat") => [down(rng), down(rng), squat_leg(rng), squat_leg(rng)],
        Some(&"standing") => [down(rng), down(rng), leg(rng), leg(rng)],
        _ => {
            return Err(Error::Invalid(format!(
                "no stick pose class {class}; classes: {CLASSES:?}"
            )))
        }
    })
}

/// One random example of class `class` (an index into [`CLASSES`]): 17 keypoints in pixels of a
/// 640x480 image (see the module docs).
pub fn generate(class: usize, rng: &mut ChaCha8Rng) -> Result<Vec<Keypoint>> {
    let limbs = limbs(class, rng)?;
    let squat = CLASSES.get(class) == Some(&"squat");
    // Body proportions in torso lengths, and the body's turn (narrower across).
    let across = rng.random_range(0.7..=1.0) * around(rng, 1.0, 0.1);
    let (shoulder, hip) = (0.4 * across, 0.25 * across);
    let (upper_arm, forearm) = (around(rng, 0.62, 0.05), around(rng, 0.55, 0.05));
    let (thigh, shin) = (around(rng, 0.9, 0.07), around(rng, 0.85, 0.07));
    let thigh_shown = if squat {
        rng.random_range(0.3..=0.55)
    } else {
        1.0
    };
    let head = around(rng, 0.45, 0.05);
    let mut at = [(0.0f32, 0.0f32); 17];
    at[0] = (0.0, -1.0 - head);
    for (side, sign) in [(0usize, 1.0f32), (1, -1.0)] {
        at[1 + side] = (sign * 0.07 * across, -1.07 - head);
        at[3 + side] = (sign * 0.15 * across, -1.03 - head);
        let s = (sign * shoulder, -1.0);
        let h = (sign * hip, 0.0);
        at[5 + side] = s;
        at[11 + side] = h;
        let [elbow, wrist] = limbs[side].joints(s, sign, upper_arm, forearm);
        at[7 + side] = elbow;
        at[9 + side] = wrist;
        let [knee, ankle] = limbs[2 + side].joints(h, sign, thigh * thigh_shown, shin);
        at[13 + side] = knee;
        at[15 + side] = ankle;
    }
    let turn = around(rng, 0.0, 10.0).to_radians();
    let scale = rng.random_range(40.0..=160.0);
    let centre = (
        rng.random_range(150.0..=490.0),
        rng.random_range(200.0..=300.0),
    );
    let (sin, cos) = turn.sin_cos();
    Ok(KEYPOINT_NAMES
        .iter()
        .zip(at)
        .map(|(&name, (x, y))| {
            let x = x + JOINT_NOISE * normal(rng);
            let y = y + JOINT_NOISE * normal(rng);
            Keypoint {
                name,
                x: centre.0 + scale * (cos * x - sin * y),
                y: centre.1 + scale * (sin * x + cos * y),
                score: match rng.random_bool(0.1) {
                    true => rng.random_range(0.05..0.3),
                    false => rng.random_range(0.3..=1.0),
                },
            }
        })
        .collect())
}

/// `per_class` generated examples of every class (seeded) as pose features ([`features`] of
/// [`normalise`]), labelled, with sources `stick/<class>/<i>`. `base` is what they stand for
/// (e.g. the reference of `movenet-lightning`, whose features these are), so that a head trained
/// on them classifies that base's embeddings; it must give [`FEATURE_DIM`] numbers.
pub fn embeddings(per_class: usize, seed: u64, base: BaseRef) -> Result<Embeddings> {
    if base.embedding_dim != FEATURE_DIM {
        return Err(Error::Invalid(format!(
            "stick poses are {FEATURE_DIM} pose features, base {} gives {}",
            base.name, base.embedding_dim
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rows, mut labels, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    for (label, class) in CLASSES.iter().enumerate() {
        for i in 0..per_class {
            rows.extend(features(&normalise(&generate(label, &mut rng)?)?));
            labels.push(label);
            sources.push(Source::File(PathBuf::from(format!("stick/{class}/{i}"))));
        }
    }
    let vectors = Array2::from_shape_vec((labels.len(), FEATURE_DIM), rows)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let classes = CLASSES.iter().map(|c| c.to_string()).collect();
    Embeddings::new(base, classes, vectors, labels, sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    fn class(name: &str) -> usize {
        CLASSES.iter().position(|c| *c == name).unwrap()
    }

    /// Mean of a normalised keypoint coordinate over 50 examples of `class`.
    fn mean(class_name: &str, keypoint: usize, y: bool) -> f32 {
        let mut rng = rng();
        let sum: f32 = (0..50)
            .map(|_| {
                let n = normalise(&generate(class(class_name), &mut rng).unwrap()).unwrap();
                if y {
                    n[keypoint].y
                } else {
                    n[keypoint].x
                }
            })
            .sum();
        sum / 50.0
    }

    #[test]
    fn poses_put_the_joints_where_their_names_say() {
        const NOSE: usize = 0;
        const LEFT_WRIST: usize = 9;
        const LEFT_ANKLE: usize = 15;
        // Standing: wrists near the hips, ankles about 1.7 torso lengths below, nose above.
        assert!(mean("standing", LEFT_WRIST, true).abs() < 0.3);
        assert!((mean("standing", LEFT_ANKLE, true) - 1.7).abs() < 0.2);
        assert!(mean("standing", NOSE, true) < -1.3);
        // Arms up: wrists well above the head; arms out: at shoulder height, far to the side.
        assert!(mean("arms_up", LEFT_WRIST, true) < -2.0);
        assert!((mean("arms_out", LEFT_WRIST, true) + 1.0).abs() < 0.25);
        assert!(mean("arms_out", LEFT_WRIST, false) > 1.2);
        // Squat: ankles much higher than standing.
        assert!(mean("squat", LEFT_ANKLE, true) < 1.3);
        assert!(generate(CLASSES.len(), &mut rng()).is_err());
    }

    #[test]
    fn generation_is_seeded() {
        let base = BaseRef {
            name: "stick".into(),
            sha256: String::new(),
            cut: crate::pose::FEATURES_TENSOR.into(),
            embedding_dim: FEATURE_DIM,
            input: crate::input::InputSpec::Audio(crate::input::AudioSpec {
                sample_rate: 1,
                clip_samples: 1,
                scale: 1.0,
            }),
        };
        let a = embeddings(3, 1, base.clone()).unwrap();
        assert_eq!(a.vectors, embeddings(3, 1, base.clone()).unwrap().vectors);
        assert_ne!(a.vectors, embeddings(3, 2, base.clone()).unwrap().vectors);
        assert_eq!(a.counts(), vec![3; CLASSES.len()]);
        assert!(a.vectors.iter().all(|v| v.is_finite()));
        let wrong = BaseRef {
            embedding_dim: 50,
            ..base
        };
        assert!(embeddings(3, 1, wrong).is_err());
    }
}
