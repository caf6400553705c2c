//! A TF.js `weightsManifest`: groups of weights stored back to back in binary shard files next to
//! `model.json`, decoded (and dequantised) into float32 or int32 tensors.
//!
//! Everything here is untrusted: shard paths must stay inside the model's folder, every shape is
//! multiplied out with checked arithmetic, and each group's shards must hold exactly the bytes its
//! weights declare.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

pub use crate::half::f16_to_f32;
use crate::Error;

/// Most elements one weight may have (2^31): bigger shapes are refused before any reading.
const MAX_ELEMENTS: usize = 1 << 31;

/// One group of the manifest: shard files, concatenated, hold its weights in order.
#[derive(Clone, Debug, Deserialize)]
pub struct Group {
    /// Shard paths relative to the folder of `model.json`.
    pub paths: Vec<String>,
    pub weights: Vec<Entry>,
}

/// One weight as the manifest declares it.
#[derive(Clone, Debug, Deserialize)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<u64>,
    /// Logical dtype: "float32" or "int32".
    pub dtype: String,
    /// Storage format when it differs from `dtype`.
    #[serde(default)]
    pub quantization: Option<Quantization>,
}

/// How a quantised weight is stored: `uint8`/`uint16` codes `q` meaning `q * scale + min`, or
/// `float16` halves.
#[derive(Clone, Debug, Deserialize)]
pub struct Quantization {
    pub dtype: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub scale: Option<f64>,
}

/// Decoded values of a weight.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// A decoded weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    /// The values as float32 (int32 values converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as int64 (float values must be whole numbers).
    pub fn to_i64(&self, what: &str) -> Result<Vec<i64>, Error> {
        match &self.data {
            Data::I32(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
            Data::F32(v) => v
                .iter()
                .map(|&x| {
                    if x.fract() == 0.0 && x.abs() < 9e15 {
                        Ok(x as i64)
                    } else {
                        Err(Error::Format(format!("{what}: {x} is not an integer")))
                    }
                })
                .collect(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I32(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All weights of a model by name.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
}

/// How a weight's elements are stored in the shard.
#[derive(Clone, Copy, Debug)]
enum Storage {
    F32,
    I32,
    /// `q * scale + min`, rounded to int32 when `int` (an int32 weight stored quantised).
    U8 {
        min: f64,
        scale: f64,
        int: bool,
    },
    U16 {
        min: f64,
        scale: f64,
        int: bool,
    },
    F16,
}

impl Storage {
    fn of(e: &Entry) -> Result<Storage, Error> {
        let int = match e.dtype.as_str() {
            "float32" => false,
            "int32" => true,
            other => {
                return Err(Error::Format(format!(
                    "weight {}: unsupported dtype {other:?} (float32 and int32 are)",
                    e.name
                )))
            }
        };
        let Some(q) = &e.quantization else {
            return Ok(if int { Storage::I32 } else { Storage::F32 });
        };
        let affine = || -> Result<(f64, f64), Error> {
            match (q.min, q.scale) {
                (Some(min), Some(scale)) if min.is_finite() && scale.is_finite() => {
                    Ok((min, scale))
                }
                _ => Err(Error::Format(format!(
                    "weight {}: {} quantization needs finite min and scale",
                    e.name, q.dtype
                ))),
            }
        };
        match q.dtype.as_str() {
            "uint8" => affine().map(|(min, scale)| Storage::U8 { min, scale, int }),
            "uint16" => affine().map(|(min, scale)| Storage::U16 { min, scale, int }),
            "float16" if !int => Ok(Storage::F16),
            other => Err(Error::Format(format!(
                "weight {}: unsupported quantization dtype {other:?} for {}",
                e.name, e.dtype
            ))),
        }
    }

    fn bytes_per_element(self) -> usize {
        match self {
            Storage::F32 | Storage::I32 => 4,
            Storage::U16 { .. } | Storage::F16 => 2,
            Storage::U8 { .. } => 1,
        }
    }

    fn decode(self, bytes: &[u8]) -> Data {
        // `q * scale + min` in float32 arithmetic, as TensorFlow-side tools dequantise (the
        // reference outputs agree to 4e-6 this way); TF.js computes it in doubles, which differs
        // by at most one float32 ulp per weight.
        let affine = |codes: Vec<f32>, min: f64, scale: f64, int: bool| {
            let (min, scale) = (min as f32, scale as f32);
            let values = codes.into_iter().map(|q| q * scale + min);
            if int {
                Data::I32(values.map(|v| v.round() as i32).collect())
            } else {
                Data::F32(values.collect())
            }
        };
        let words = |b: &[u8]| {
            b.chunks_exact(4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect::<Vec<_>>()
        };
        let halves = |b: &[u8]| {
            b.chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect::<Vec<_>>()
        };
        match self {
            Storage::F32 => Data::F32(words(bytes).into_iter().map(f32::from_le_bytes).collect()),
            Storage::I32 => Data::I32(words(bytes).into_iter().map(i32::from_le_bytes).collect()),
            Storage::U8 { min, scale, int } => affine(
                bytes.iter().map(|&q| f32::from(q)).collect(),
                min,
                scale,
                int,
            ),
            Storage::U16 { min, scale, int } => affine(
                halves(bytes).into_iter().map(f32::from).collect(),
                min,
                scale,
                int,
            ),
            Storage::F16 => Data::F32(halves(bytes).into_iter().map(f16_to_f32).collect()),
        }
    }
}

/// Number of elements of `shape`, refusing overflow and shapes over [`MAX_ELEMENTS`].
pub fn element_count(shape: &[u64], what: &str) -> Result<usize, Error> {
    let mut n: usize = 1;
    for &d in shape {
        n = usize::try_from(d)
            .ok()
            .and_then(|d| n.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| Error::Format(format!("{what}: shape {shape:?} is too large")))?;
    }
    Ok(n)
}

/// The path of shard `rel` inside `dir`: relative, no `..`, and (after following symlinks) still
/// inside `dir`.
pub fn shard_path(dir: &Path, rel: &str) -> Result<PathBuf, Error> {
    let unsafe_path = |why: &str| Error::Format(format!("weight shard path {rel:?} {why}"));
    let p = Path::new(rel);
    if rel.is_empty() || rel.contains('\\') || rel.contains(':') {
        return Err(unsafe_path("is empty or not a plain relative path"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path("leaves the model's folder (..)")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_path("is absolute")),
        }
    }
    let io = |p: &Path, e: std::io::Error| Error::Format(format!("{}: {e}", p.display()));
    let root = dir.canonicalize().map_err(|e| io(dir, e))?;
    let joined = dir.join(p);
    let real = joined.canonicalize().map_err(|e| io(&joined, e))?;
    if !real.starts_with(&root) {
        return Err(unsafe_path("leaves the model's folder (through a symlink)"));
    }
    if !real.is_file() {
        return Err(unsafe_path("is not a file"));
    }
    Ok(real)
}

/// Reads and decodes every weight of `groups`, shards resolved against `dir`.
pub fn load(dir: &Path, groups: &[Group]) -> Result<Weights, Error> {
    let mut out = Weights::default();
    for (gi, group) in groups.iter().enumerate() {
        let mut layout = Vec::with_capacity(group.weights.len());
        let mut expected: usize = 0;
        for e in &group.weights {
            let storage = Storage::of(e)?;
            let count = element_count(&e.shape, &format!("weight {}", e.name))?;
            let bytes = count
                .checked_mul(storage.bytes_per_element())
                .ok_or_else(|| Error::Format(format!("weight {}: too large", e.name)))?;
            expected = expected
                .checked_add(bytes)
                .ok_or_else(|| Error::Format(format!("weight group {gi}: too large")))?;
            layout.push((storage, bytes));
        }
        let paths = group
            .paths
            .iter()
            .map(|p| shard_path(dir, p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut actual: u64 = 0;
        for p in &paths {
            let len = std::fs::metadata(p)
                .map_err(|e| Error::Format(format!("{}: {e}", p.display())))?
                .len();
            actual = actual.saturating_add(len);
        }
        if actual != expected as u64 {
            return Err(Error::Format(format!(
                "weight group {gi} ({}): the shards hold {actual} bytes, the manifest declares {expected}",
                group.paths.join(", ")
            )));
        }
        let mut data = Vec::with_capacity(expected);
        for p in &paths {
            data.extend(crate::limits::read_model(p)?);
        }
        if data.len() != expected {
            return Err(Error::Format(format!(
                "weight group {gi}: shards changed while reading"
            )));
        }
        let mut offset = 0;
        for (e, (storage, bytes)) in group.weights.iter().zip(layout) {
            let slice = &data[offset..offset + bytes];
            offset += bytes;
            let tensor = Tensor {
                shape: e.shape.iter().map(|&d| d as usize).collect(),
                data: storage.decode(slice),
            };
            if out.tensors.insert(e.name.clone(), tensor).is_some() {
                return Err(Error::Format(format!(
                    "weight {} is declared twice",
                    e.name
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_that_overflow_are_refused() {
        assert_eq!(element_count(&[2, 3, 4], "w").unwrap(), 24);
        assert_eq!(element_count(&[], "w").unwrap(), 1);
        assert!(element_count(&[u64::MAX, 2], "w").is_err());
        assert!(element_count(&[1 << 20, 1 << 20], "w").is_err());
    }

    #[test]
    fn quantised_codes_are_dequantised() {
        let s = Storage::U8 {
            min: -1.0,
            scale: 0.5,
            int: false,
        };
        assert_eq!(s.decode(&[0, 2, 5]), Data::F32(vec![-1.0, 0.0, 1.5]));
        let s = Storage::U16 {
            min: 10.0,
            scale: 0.4,
            int: true,
        };
        assert_eq!(s.decode(&[1, 0, 3, 0]), Data::I32(vec![10, 11]));
    }
}
