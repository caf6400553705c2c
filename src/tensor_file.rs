//! The safetensors files graft writes (recognizers, KNN indexes): named f32/u32 tensors plus one JSON
//! document under the `graft` key of `__metadata__`. Reading checks every shape against the data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::atomic::write_atomic;
use crate::{Error, Result};

/// The `__metadata__` key that holds graft's JSON document.
const META_KEY: &str = "graft";

/// A tensor to write: name, shape and little-endian bytes of the given dtype.
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Entry {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: &[f32]) -> Entry {
        Entry {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An f16 tensor.
    pub fn f16(name: impl Into<String>, shape: Vec<usize>, data: &[half::f16]) -> Entry {
        Entry {
            name: name.into(),
            dtype: Dtype::F16,
            shape,
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A u32 tensor.
    pub fn u32(name: impl Into<String>, shape: Vec<usize>, data: &[u32]) -> Entry {
        Entry {
            name: name.into(),
            dtype: Dtype::U32,
            shape,
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Writes `entries` and the JSON `metadata` to `path` atomically.
pub fn save(path: &Path, entries: &[Entry], metadata: &str) -> Result<()> {
    let views = entries
        .iter()
        .map(|e| {
            TensorView::new(e.dtype, e.shape.clone(), &e.bytes)
                .map(|v| (e.name.clone(), v))
                .map_err(|err| Error::Invalid(format!("tensor {}: {err}", e.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let info = HashMap::from([(META_KEY.to_string(), metadata.to_string())]);
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| Error::Recognizer {
        path: path.to_path_buf(),
        msg: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, &bytes)
}

/// A safetensors file read into memory and checked.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads `path`; a file that is not a valid safetensors file with graft metadata is an error.
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes = crate::limits::read(path, crate::limits::FileKind::Recognizer)?;
        let file = TensorFile {
            path: path.to_path_buf(),
            bytes,
        };
        let elements = file
            .tensors()?
            .tensors()
            .iter()
            .map(|(_, view)| view.shape().iter().product::<usize>() as u64)
            .fold(0u64, u64::saturating_add);
        let limit = crate::limits::get().tensor_elements;
        if elements > limit {
            return Err(file.error(format!(
                "its tensors hold {elements} elements, more than the limit of {limit}"
            )));
        }
        file.metadata()?;
        Ok(file)
    }

    /// graft's JSON document.
    pub fn metadata(&self) -> Result<String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes)
            .map_err(|e| self.error(format!("not a valid safetensors file: {e}")))?;
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .cloned()
            .ok_or_else(|| self.error("no graft metadata: not a file written by graft"))
    }

    /// graft's JSON document as `T`, after checking that its `format` field is `format` (so a KNN
    /// index given where a recognizer is expected says so); `what` names the expected kind of file.
    pub fn document<T: serde::de::DeserializeOwned>(&self, format: &str, what: &str) -> Result<T> {
        let value: serde_json::Value = serde_json::from_str(&self.metadata()?)
            .map_err(|e| self.error(format!("metadata is not JSON: {e}")))?;
        let found = value
            .get("format")
            .and_then(|f| f.as_str())
            .unwrap_or("none");
        if found != format {
            return Err(self.error(format!(
                "not a {what} (format '{found}', expected '{format}')"
            )));
        }
        serde_json::from_value(value).map_err(|e| self.error(format!("bad {what} metadata: {e}")))
    }

    /// The f32 tensor `name` with its shape, checked to have `expected_rank` dimensions.
    pub fn f32(&self, name: &str, expected_rank: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        let view = self.view(name, Dtype::F32, expected_rank)?;
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>();
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(self.error(format!("tensor {name} holds a non-finite value at {bad}")));
        }
        Ok((view.shape().to_vec(), data))
    }

    /// The f16 tensor `name` with its shape, checked to have `expected_rank` dimensions.
    pub fn f16(&self, name: &str, expected_rank: usize) -> Result<(Vec<usize>, Vec<half::f16>)> {
        let view = self.view(name, Dtype::F16, expected_rank)?;
        let data = view
            .data()
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>();
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(self.error(format!("tensor {name} holds a non-finite value at {bad}")));
        }
        Ok((view.shape().to_vec(), data))
    }

    /// The element type of tensor `name`, when the file holds it.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.tensors().ok()?.tensor(name).ok().map(|t| t.dtype())
    }

    /// The u32 tensor `name` with its shape, checked to have `expected_rank` dimensions.
    pub fn u32(&self, name: &str, expected_rank: usize) -> Result<(Vec<usize>, Vec<u32>)> {
        let view = self.view(name, Dtype::U32, expected_rank)?;
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((view.shape().to_vec(), data))
    }

    /// Whether the file holds a tensor named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tensors().is_ok_and(|t| t.tensor(name).is_ok())
    }

    /// An error about this file.
    pub fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::Recognizer {
            path: self.path.clone(),
            msg: msg.to_string(),
        }
    }

    fn view(&self, name: &str, dtype: Dtype, rank: usize) -> Result<TensorView<'_>> {
        let tensors = self.tensors()?;
        let view = tensors
            .tensor(name)
            .map_err(|_| self.error(format!("missing tensor {name}")))?;
        if view.dtype() != dtype || view.shape().len() != rank {
            return Err(self.error(format!(
                "tensor {name} is {:?} {:?}, expected {dtype:?} of rank {rank}",
                view.dtype(),
                view.shape()
            )));
        }
        Ok(view)
    }

    fn tensors(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes)
            .map_err(|e| self.error(format!("not a valid safetensors file: {e}")))
    }
}
