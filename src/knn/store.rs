//! How a KNN index holds its unit-length vectors in memory and on disk: `f32` (the default), or
//! `f16` (half the memory; each block is widened to `f32` for the similarity product).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The element type of a KNN index's stored vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// 4 bytes per value: the similarities are those of the embeddings as given.
    #[default]
    F32,
    /// 2 bytes per value (IEEE half precision, relative error under 2^-11 per value): half the
    /// memory and file size, similarities within about 1e-3 of the `f32` ones.
    F16,
}

impl Storage {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Storage {
    type Err = Error;

    fn from_str(s: &str) -> Result<Storage> {
        match s {
            "f32" => Ok(Storage::F32),
            "f16" => Ok(Storage::F16),
            _ => Err(Error::Invalid(format!(
                "unknown KNN storage '{s}': give f32 or f16"
            ))),
        }
    }
}

/// Stored vectors `[n, dim]`, row-major, in the index's [`Storage`].
#[derive(Clone, Debug)]
pub(crate) enum Vectors {
    F32(Array2<f32>),
    F16(Array2<f16>),
}

impl Vectors {
    /// No vectors of size `dim`.
    pub(crate) fn empty(storage: Storage, dim: usize) -> Vectors {
        match storage {
            Storage::F32 => Vectors::F32(Array2::zeros((0, dim))),
            Storage::F16 => Vectors::F16(Array2::from_elem((0, dim), f16::ZERO)),
        }
    }

    /// `rows` `[n, dim]` stored as `storage`.
    pub(crate) fn from_f32(storage: Storage, rows: Array2<f32>) -> Vectors {
        match storage {
            Storage::F32 => Vectors::F32(rows.as_standard_layout().into_owned()),
            Storage::F16 => Vectors::F16(narrow(rows.view())),
        }
    }

    pub(crate) fn storage(&self) -> Storage {
        match self {
            Vectors::F32(_) => Storage::F32,
            Vectors::F16(_) => Storage::F16,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Vectors::F32(v) => v.nrows(),
            Vectors::F16(v) => v.nrows(),
        }
    }

    pub(crate) fn dim(&self) -> usize {
        match self {
            Vectors::F32(v) => v.ncols(),
            Vectors::F16(v) => v.ncols(),
        }
    }

    /// Appends `rows` `[m, dim]` (converted to the storage type).
    pub(crate) fn append(&mut self, rows: ArrayView2<f32>) -> Result<()> {
        let appended = match self {
            Vectors::F32(v) => v.append(Axis(0), rows),
            Vectors::F16(v) => v.append(Axis(0), narrow(rows).view()),
        };
        appended.map_err(|e| Error::Invalid(e.to_string()))
    }

    /// The rows `keep`, in that order.
    pub(crate) fn select(&self, keep: &[usize]) -> Vectors {
        match self {
            Vectors::F32(v) => Vectors::F32(v.select(Axis(0), keep)),
            Vectors::F16(v) => Vectors::F16(v.select(Axis(0), keep)),
        }
    }

    /// The same vectors in `storage` (a copy; `f16` to `f32` is exact).
    pub(crate) fn to_storage(&self, storage: Storage) -> Vectors {
        match (self, storage) {
            (Vectors::F32(_), Storage::F32) | (Vectors::F16(_), Storage::F16) => self.clone(),
            (_, _) => Vectors::from_f32(storage, self.to_f32().into_owned()),
        }
    }

    /// Every vector as `f32` (borrowed when stored so).
    pub(crate) fn to_f32(&self) -> Cow<'_, Array2<f32>> {
        match self {
            Vectors::F32(v) => Cow::Borrowed(v),
            Vectors::F16(v) => Cow::Owned(v.mapv(f16::to_f32)),
        }
    }

    /// Rows `start..end` as row-major `f32`: borrowed when stored so, else widened into
    /// `buffer` (reused between calls).
    pub(crate) fn rows_f32<'a>(
        &'a self,
        start: usize,
        end: usize,
        buffer: &'a mut Vec<f32>,
    ) -> Result<&'a [f32]> {
        let dim = self.dim();
        let range = start * dim..end * dim;
        let missing = || Error::Internal(format!("rows {start}..{end} of {}", self.len()));
        match self {
            Vectors::F32(v) => v.as_slice().and_then(|s| s.get(range)).ok_or_else(missing),
            Vectors::F16(v) => {
                let half = v
                    .as_slice()
                    .and_then(|s| s.get(range))
                    .ok_or_else(missing)?;
                buffer.resize(half.len(), 0.0);
                half.convert_to_f32_slice(buffer);
                Ok(buffer.as_slice())
            }
        }
    }

    /// Bytes the vectors occupy.
    pub(crate) fn bytes(&self) -> usize {
        self.len() * self.dim() * self.storage().bytes()
    }
}

/// `rows` rounded to half precision, row-major.
fn narrow(rows: ArrayView2<f32>) -> Array2<f16> {
    let rows = rows.as_standard_layout();
    let mut out = Array2::from_elem(rows.dim(), f16::ZERO);
    if let (Some(src), Some(dst)) = (rows.as_slice(), out.as_slice_mut()) {
        dst.convert_from_f32_slice(src);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn storages_hold_the_same_rows() {
        let rows = array![[0.5f32, -0.25, 1.0], [0.0, 2.0, -3.5]];
        for storage in [Storage::F32, Storage::F16] {
            let mut v = Vectors::empty(storage, 3);
            v.append(rows.view()).unwrap();
            v.append(rows.slice(ndarray::s![..1, ..])).unwrap();
            assert_eq!((v.len(), v.dim(), v.storage()), (3, 3, storage));
            assert_eq!(v.bytes(), 9 * storage.bytes());
            // These values are exact in half precision.
            let mut buffer = Vec::new();
            assert_eq!(
                v.rows_f32(1, 3, &mut buffer).unwrap(),
                &[0.0, 2.0, -3.5, 0.5, -0.25, 1.0]
            );
            assert!(v.rows_f32(2, 4, &mut buffer).is_err());
            assert_eq!(
                v.select(&[1]).to_f32().into_owned(),
                rows.slice(ndarray::s![1.., ..])
            );
            assert_eq!(
                v.to_storage(Storage::F32).to_f32().into_owned(),
                v.to_f32().into_owned()
            );
        }
        assert_eq!("f16".parse::<Storage>().unwrap(), Storage::F16);
        assert!("f64".parse::<Storage>().is_err());
        // Half precision rounds.
        let v = Vectors::from_f32(Storage::F16, array![[0.1f32]]);
        let back = v.to_f32()[[0, 0]];
        assert!(back != 0.1 && (back - 0.1).abs() < 1e-4);
    }
}
