//! Safe reading of PyTorch checkpoints (`torch.save` of a state dict).
//!
//! Both layouts are read: the zip archive of torch >= 1.6 (`<archive>/data.pkl` plus one
//! `<archive>/data/<key>` entry per storage) and the older "legacy" stream (magic-number pickle,
//! protocol pickle, system-info pickle, the object pickle, a pickle list of storage keys, then each
//! storage as a little-endian `u64` element count and its raw bytes). Pickles go through graft's own
//! restricted unpickler ([`pickle`]): nothing in the file is ever executed, and every size, offset and
//! stride is checked against the bytes actually present.

mod pickle;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use pickle::{Object, StorageRef, TensorRef, Unpickler, Value};

use crate::half::f16_to_f32;
use crate::limits::MAX_INFLATION;
use crate::Error;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The dtype of a `torch.<name>` typed storage class.
    fn from_storage_class(name: &str) -> Option<DType> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    fn to_safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::F64 => S::F64,
            DType::F32 => S::F32,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::I64 => S::I64,
            DType::I32 => S::I32,
            DType::I16 => S::I16,
            DType::I8 => S::I8,
            DType::U8 => S::U8,
            DType::Bool => S::BOOL,
        }
    }
}

/// A dense tensor: `data` holds `shape.iter().product()` elements, C-contiguous, little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// Raw element bytes, row-major, little-endian.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// The values as `f32` (from f32, f64, f16 or bf16); an error for integer and bool tensors.
    pub fn to_f32(&self) -> Result<Vec<f32>, Error> {
        let d = &self.data;
        Ok(match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F64 => d
                .chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => {
                return Err(Error::Format(format!(
                    "a {other:?} tensor is not a float tensor"
                )))
            }
        })
    }
}

/// A state dict: tensors by name, in the order the checkpoint lists them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    /// Inserts or replaces (keeping the first position, like a Python dict).
    pub fn insert(&mut self, name: String, tensor: Tensor) {
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = tensor,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, tensor));
            }
        }
    }
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }
    /// The tensor called `name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&Tensor, Error> {
        self.get(name)
            .ok_or_else(|| Error::Format(format!("state dict has no tensor {name:?}")))
    }
    /// Names and tensors in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }
    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads a checkpoint file (zip or legacy layout).
pub fn load_state_dict(path: &Path) -> Result<StateDict, Error> {
    let bytes = crate::limits::read_model(path)?;
    from_bytes(&bytes).map_err(|e| match e {
        Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Reads a checkpoint held in memory (zip or legacy layout).
pub fn from_bytes(bytes: &[u8]) -> Result<StateDict, Error> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes)
    } else {
        Err(Error::Format(
            "not a PyTorch checkpoint (neither a zip archive nor a pickle stream)".into(),
        ))
    }
}

/// Serialises a state dict as a safetensors file, keeping every tensor's dtype and shape.
pub fn to_safetensors(sd: &StateDict) -> Result<Vec<u8>, Error> {
    let views = sd
        .iter()
        .map(|(name, t)| {
            safetensors::tensor::TensorView::new(t.dtype.to_safetensors(), t.shape.clone(), &t.data)
                .map(|v| (name.to_string(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Format(format!("safetensors: {e}")))?;
    // "format": "pt" is what PyTorch tools (and the Hugging Face hub) write for torch tensors.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Format(format!("safetensors: {e}")))
}

const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i64 = 1001;

fn read_legacy(bytes: &[u8]) -> Result<StateDict, Error> {
    let fmt = |m: &str| Error::Format(m.to_string());
    let mut u = Unpickler::default();
    let mut pos = 0;
    let next = |u: &mut Unpickler, pos: &mut usize| -> Result<Value, Error> {
        let (v, n) = u.load(&bytes[*pos..])?;
        *pos += n;
        Ok(v)
    };
    let magic = next(&mut u, &mut pos)?;
    let is_magic = match &magic {
        Value::BigInt(b) if b.len() <= 16 => {
            let mut a = [0u8; 16];
            a[..b.len()].copy_from_slice(b);
            u128::from_le_bytes(a) == LEGACY_MAGIC
        }
        _ => false,
    };
    if !is_magic {
        return Err(fmt(
            "not a PyTorch checkpoint (legacy magic number missing)",
        ));
    }
    match next(&mut u, &mut pos)? {
        Value::Int(LEGACY_PROTOCOL) => {}
        _ => return Err(fmt("unsupported legacy checkpoint protocol version")),
    }
    let sys_info = next(&mut u, &mut pos)?;
    let little = lookup(&u, &sys_info, "little_endian");
    if !matches!(little, Some(Value::Bool(true))) {
        return Err(fmt(
            "big-endian or unlabelled legacy checkpoints are not supported",
        ));
    }
    let root = next(&mut u, &mut pos)?;
    let keys = next(&mut u, &mut pos)?;
    let keys: Vec<String> = match u.object(&keys) {
        Some(Object::List(items)) => items
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.to_string()),
                _ => Err(fmt("storage key list holds a non-string")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(fmt("storage key list missing")),
    };
    let mut data: HashMap<usize, &[u8]> = HashMap::new();
    for key in keys {
        let &idx = u
            .storages
            .get(&key)
            .ok_or_else(|| Error::Format(format!("storage {key} is listed but never used")))?;
        let Object::Storage(s) = &u.objects[idx] else {
            return Err(fmt("storage table corrupt"));
        };
        let header = bytes
            .get(pos..pos.saturating_add(8))
            .filter(|h| h.len() == 8)
            .ok_or_else(|| Error::Format(format!("storage {key}: file truncated")))?;
        let mut h = [0u8; 8];
        h.copy_from_slice(header);
        let count = u64::from_le_bytes(h);
        if usize::try_from(count).ok() != Some(s.numel) {
            return Err(Error::Format(format!(
                "storage {key}: file says {count} elements, pickle says {}",
                s.numel
            )));
        }
        let start = pos + 8;
        let end = s
            .numel
            .checked_mul(s.dtype.size())
            .and_then(|n| n.checked_add(start))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                Error::Format(format!(
                    "storage {key}: {} elements do not fit in the file (truncated?)",
                    s.numel
                ))
            })?;
        data.insert(idx, &bytes[start..end]);
        pos = end;
    }
    collect(&u, &root, &data, bytes.len())
}

fn read_zip(bytes: &[u8]) -> Result<StateDict, Error> {
    let zerr = |e: zip::result::ZipError| Error::Format(format!("zip archive: {e}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
    let pkl_name = zip
        .file_names()
        .filter(|n| (*n == "data.pkl" || n.ends_with("/data.pkl")) && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Format("zip archive has no data.pkl: not a torch checkpoint".into())
        })?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.by_ref()
            .take(16)
            .read_to_string(&mut order)
            .map_err(|e| Error::Format(format!("zip archive: {e}")))?;
        if order.trim() != "little" {
            return Err(Error::Format(format!(
                "checkpoint byte order {order:?} is not supported"
            )));
        }
    }
    // torch stores entries uncompressed; allow some inflation for re-zipped files, no more.
    let budget =
        usize::try_from((bytes.len() as u64).saturating_mul(MAX_INFLATION)).unwrap_or(usize::MAX);
    let pkl = read_entry(&mut zip, &pkl_name, budget)?;
    let mut u = Unpickler::default();
    let (root, _) = u.load(&pkl)?;
    // Every entry is inflated through a reader capped at what its storage needs, and all of
    // them together at what a checkpoint of this size can hold (a zip bomb claims far more).
    let mut needs = Vec::new();
    let mut total: usize = 0;
    for &idx in u.storages.values() {
        let Object::Storage(s) = &u.objects[idx] else {
            continue;
        };
        let need = s
            .numel
            .checked_mul(s.dtype.size())
            .ok_or_else(|| Error::Format(format!("storage {} size overflows", s.key)))?;
        total = total.saturating_add(need);
        if total > budget {
            return Err(Error::Format(format!(
                "storage {}: the checkpoint's storages claim {total} bytes, more than \
                 {MAX_INFLATION} times its {} bytes on disk (the limit for inflated data): a zip \
                 bomb or a corrupt file",
                s.key,
                bytes.len()
            )));
        }
        needs.push((idx, &s.key, need));
    }
    let mut owned: HashMap<usize, Vec<u8>> = HashMap::new();
    for (idx, key, need) in needs {
        let name = format!("{prefix}data/{key}");
        let raw = read_entry(&mut zip, &name, need)?;
        if raw.len() < need {
            return Err(Error::Format(format!(
                "storage {}: entry holds {} bytes, {} needed",
                key,
                raw.len(),
                need
            )));
        }
        owned.insert(idx, raw);
    }
    let data: HashMap<usize, &[u8]> = owned.iter().map(|(&k, v)| (k, v.as_slice())).collect();
    collect(&u, &root, &data, bytes.len())
}

/// Reads at most `limit` bytes of a zip entry (a hostile entry cannot inflate without bound).
fn read_entry(
    zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let f = zip
        .by_name(name)
        .map_err(|e| Error::Format(format!("zip entry {name}: {e}")))?;
    let mut out = Vec::new();
    let declared = usize::try_from(f.size()).unwrap_or(usize::MAX).min(limit);
    out.try_reserve_exact(declared).map_err(|e| {
        Error::Format(format!(
            "zip entry {name}: cannot allocate {declared} bytes: {e}"
        ))
    })?;
    f.take(limit as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::Format(format!("zip entry {name}: {e}")))?;
    Ok(out)
}

/// The value stored under string key `key` in dict `d`.
fn lookup<'a>(u: &'a Unpickler, d: &Value, key: &str) -> Option<&'a Value> {
    match u.object(d)? {
        Object::Dict(entries) => entries
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Nested dicts deeper than this are not searched for tensors.
const MAX_DICT_DEPTH: usize = 8;

/// Walks the root dict (and nested dicts, naming their tensors `outer.inner`) into a state dict,
/// materialising each tensor. Other values (numbers, strings, lists) are skipped.
fn collect(
    u: &Unpickler,
    root: &Value,
    data: &HashMap<usize, &[u8]>,
    file_len: usize,
) -> Result<StateDict, Error> {
    if !matches!(u.object(root), Some(Object::Dict(_))) {
        return Err(Error::Format("checkpoint is not a dict of tensors".into()));
    }
    // Materialised bytes may not exceed a few times the file: views sharing storage cannot be
    // used to make a small file allocate without bound.
    let mut budget = file_len.saturating_mul(4).saturating_add(1 << 20);
    let mut sd = StateDict::default();
    let mut seen = HashSet::new();
    let mut work = vec![(String::new(), root.clone(), 0usize)];
    while let Some((prefix, v, depth)) = work.pop() {
        let Value::Obj(i) = v else { continue };
        if !seen.insert(i) {
            continue;
        }
        let Some(Object::Dict(entries)) = u.objects.get(i) else {
            continue;
        };
        let mut nested = Vec::new();
        for (k, v) in entries {
            let key = match k {
                Value::Str(s) => s.to_string(),
                Value::Int(n) => n.to_string(),
                _ => continue,
            };
            let name = format!("{prefix}{key}");
            match u.object(v) {
                Some(Object::Tensor(t)) => {
                    let tensor = materialize(u, t, data)?;
                    budget = budget.checked_sub(tensor.data.len()).ok_or_else(|| {
                        Error::Format("tensors are much larger than the file's storages".into())
                    })?;
                    sd.insert(name, tensor);
                }
                Some(Object::Dict(_)) if depth < MAX_DICT_DEPTH => {
                    nested.push((format!("{name}."), v.clone(), depth + 1));
                }
                _ => {}
            }
        }
        // Visit nested dicts in order after this one's tensors.
        work.extend(nested.into_iter().rev());
    }
    if sd.is_empty() {
        return Err(Error::Format("checkpoint holds no tensors".into()));
    }
    Ok(sd)
}

/// Copies a checked strided view into a contiguous tensor.
fn materialize(
    u: &Unpickler,
    t: &TensorRef,
    data: &HashMap<usize, &[u8]>,
) -> Result<Tensor, Error> {
    let Some(Object::Storage(s)) = u.objects.get(t.storage) else {
        return Err(Error::Format("tensor storage missing".into()));
    };
    let bytes = data
        .get(&t.storage)
        .ok_or_else(|| Error::Format(format!("storage {} has no data", s.key)))?;
    check_bytes(s, bytes)?;
    pickle::check_view(s, t.offset, &t.shape, &t.stride)?;
    let es = s.dtype.size();
    let numel: usize = t.shape.iter().product(); // checked in check_view
    let mut data = Vec::with_capacity(numel * es);
    // Dimensions of size 1 never move the read position: leaving them out keeps the work per element
    // bounded (at most 64 dimensions of size >= 2 fit in a usize element count).
    let dims: Vec<(usize, usize)> = t
        .shape
        .iter()
        .zip(&t.stride)
        .filter(|(&d, _)| d != 1)
        .map(|(&d, &st)| (d, st))
        .collect();
    if numel > 0 {
        // Odometer over the dimensions, last fastest; `el` is the storage element being read.
        let mut idx = vec![0usize; dims.len()];
        let mut el = t.offset;
        'elements: loop {
            data.extend_from_slice(&bytes[el * es..(el + 1) * es]);
            let mut d = dims.len();
            loop {
                if d == 0 {
                    break 'elements;
                }
                d -= 1;
                let (size, stride) = dims[d];
                idx[d] += 1;
                el += stride;
                if idx[d] < size {
                    break;
                }
                el -= stride * size;
                idx[d] = 0;
            }
        }
    }
    Ok(Tensor {
        dtype: s.dtype,
        shape: t.shape.clone(),
        data,
    })
}

fn check_bytes(s: &StorageRef, bytes: &[u8]) -> Result<(), Error> {
    match s.numel.checked_mul(s.dtype.size()) {
        Some(n) if n <= bytes.len() => Ok(()),
        _ => Err(Error::Format(format!(
            "storage {} holds fewer bytes than its {} elements",
            s.key, s.numel
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        let cases = [
            (0x0000u16, 0.0f32),
            (0x8000, -0.0),
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8), // smallest subnormal, 2^-24
            (0x03ff, 6.097_555e-5),   // largest subnormal
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ];
        for (h, f) in cases {
            assert_eq!(f16_to_f32(h).to_bits(), f.to_bits(), "{h:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn bfloat16_and_f64_convert() {
        let t = Tensor {
            dtype: DType::BF16,
            shape: vec![2],
            data: [0x3f80u16, 0xc040]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        assert_eq!(t.to_f32().unwrap(), [1.0, -3.0]);
        let t = Tensor {
            dtype: DType::F64,
            shape: vec![1],
            data: 0.25f64.to_le_bytes().to_vec(),
        };
        assert_eq!(t.to_f32().unwrap(), [0.25]);
    }
}
