//! Helpers for the TFLite converter tests: a minimal FlatBuffers writer for `.tflite` files
//! assembled operator by operator, a tract runner and test data.
#![allow(dead_code)]

use graft_converters::tflite::convert_bytes;
use tract_onnx::prelude::*;

// ---------- a minimal FlatBuffers writer (forward layout: children after their parents) ----------

pub enum Field {
    U8(u8),
    I32(i32),
    U32(u32),
    Table(Obj),
    Tables(Vec<Obj>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
    I64s(Vec<i64>),
    Bytes(Vec<u8>),
    Str(String),
}

/// A table: (field index, value) pairs.
#[derive(Default)]
pub struct Obj(pub Vec<(usize, Field)>);

impl Obj {
    pub fn with(mut self, index: usize, f: Field) -> Self {
        self.0.push((index, f));
        self
    }
}

pub fn put_u32(b: &mut [u8], pos: usize, v: u32) {
    b[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn align4(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// Writes a table (vtable first, then the table, then its children); returns the table's position.
pub fn write_obj(b: &mut Vec<u8>, obj: &Obj) -> usize {
    align4(b);
    let slots = obj.0.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
    let vt = b.len();
    b.extend(((4 + 2 * slots) as u16).to_le_bytes());
    b.extend(((4 + 4 * obj.0.len()) as u16).to_le_bytes());
    for slot in 0..slots {
        let off = obj
            .0
            .iter()
            .position(|(i, _)| *i == slot)
            .map_or(0, |k| 4 + 4 * k);
        b.extend((off as u16).to_le_bytes());
    }
    align4(b);
    let table = b.len();
    b.extend(((table - vt) as i32).to_le_bytes());
    for (_, f) in &obj.0 {
        match f {
            Field::U8(v) => b.extend([*v, 0, 0, 0]),
            Field::I32(v) => b.extend(v.to_le_bytes()),
            Field::U32(v) => b.extend(v.to_le_bytes()),
            _ => b.extend([0; 4]),
        }
    }
    for (k, (_, f)) in obj.0.iter().enumerate() {
        let slot = table + 4 + 4 * k;
        let child = match f {
            Field::U8(_) | Field::I32(_) | Field::U32(_) => continue,
            Field::Table(o) => write_obj(b, o),
            Field::Tables(objs) => {
                align4(b);
                let start = b.len();
                b.extend((objs.len() as u32).to_le_bytes());
                b.extend(vec![0; 4 * objs.len()]);
                for (j, o) in objs.iter().enumerate() {
                    let at = write_obj(b, o);
                    let elem = start + 4 + 4 * j;
                    put_u32(b, elem, (at - elem) as u32);
                }
                start
            }
            Field::I32s(v) => write_vec(b, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Field::F32s(v) => write_vec(b, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Field::I64s(v) => write_vec(b, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Field::Bytes(v) => write_vec(b, v.len(), v.iter().copied()),
            Field::Str(s) => {
                let at = write_vec(b, s.len(), s.bytes());
                b.push(0);
                at
            }
        };
        put_u32(b, slot, (child - slot) as u32);
    }
    table
}

pub fn write_vec(b: &mut Vec<u8>, len: usize, bytes: impl Iterator<Item = u8>) -> usize {
    align4(b);
    let start = b.len();
    b.extend((len as u32).to_le_bytes());
    b.extend(bytes);
    start
}

// ---------- TFLite models ----------

pub const F32: u8 = 0;
pub const F16: u8 = 1;
pub const I32: u8 = 2;
pub const I8: u8 = 9;

pub struct TensorDef {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: u8,
    pub data: Option<Vec<u8>>,
    pub quant: Option<Obj>,
}

pub struct OpDef {
    pub code: i32,
    pub custom: Option<String>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    /// The options table and its union type.
    pub options: Option<(u8, Obj)>,
}

#[derive(Default)]
pub struct Tfl {
    pub tensors: Vec<TensorDef>,
    pub ops: Vec<OpDef>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

impl Tfl {
    pub fn tensor(&mut self, name: &str, shape: &[usize], dtype: u8, data: Option<Vec<u8>>) -> i32 {
        self.tensors.push(TensorDef {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
            data,
            quant: None,
        });
        self.tensors.len() as i32 - 1
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> i32 {
        let t = self.tensor(name, shape, F32, None);
        self.inputs.push(t);
        t
    }

    pub fn act(&mut self, name: &str, shape: &[usize]) -> i32 {
        self.tensor(name, shape, F32, None)
    }

    pub fn f32s(&mut self, name: &str, shape: &[usize], v: &[f32]) -> i32 {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, shape, F32, Some(data))
    }

    pub fn i32s(&mut self, name: &str, shape: &[usize], v: &[i32]) -> i32 {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, shape, I32, Some(data))
    }

    /// Weights stored as fp16 and dequantized by a DEQUANTIZE operator, as TFLite's fp16
    /// post-training quantization does; `v` must be exactly representable in fp16.
    pub fn f16s(&mut self, name: &str, shape: &[usize], v: &[f32]) -> i32 {
        let data = v
            .iter()
            .flat_map(|x| f32_to_f16(*x).to_le_bytes())
            .collect();
        let h = self.tensor(&format!("{name}_fp16"), shape, F16, Some(data));
        let f = self.act(name, shape);
        self.op(6, &[h], &[f], None);
        f
    }

    pub fn op(&mut self, code: i32, inputs: &[i32], outputs: &[i32], options: Option<(u8, Obj)>) {
        self.ops.push(OpDef {
            code,
            custom: None,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            options,
        });
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut codes: Vec<(i32, Option<String>)> = Vec::new();
        let mut ops = Vec::new();
        for OpDef {
            code,
            custom,
            inputs,
            outputs,
            options,
        } in &self.ops
        {
            let key = (*code, custom.clone());
            let index = codes.iter().position(|c| *c == key).unwrap_or_else(|| {
                codes.push(key);
                codes.len() - 1
            });
            let mut o = Obj::default()
                .with(0, Field::U32(index as u32))
                .with(1, Field::I32s(inputs.clone()))
                .with(2, Field::I32s(outputs.clone()));
            if let Some((kind, table)) = options {
                o = o.with(3, Field::U8(*kind)).with(
                    4,
                    Field::Table(Obj(table
                        .0
                        .iter()
                        .map(|(i, f)| (*i, copy_field(f)))
                        .collect())),
                );
            }
            ops.push(o);
        }
        let mut buffers = vec![Obj::default()];
        let mut tensors = Vec::new();
        for t in &self.tensors {
            let buffer = match &t.data {
                Some(d) => {
                    buffers.push(Obj::default().with(0, Field::Bytes(d.clone())));
                    buffers.len() - 1
                }
                None => 0,
            };
            let mut o = Obj::default()
                .with(0, Field::I32s(t.shape.iter().map(|&d| d as i32).collect()))
                .with(1, Field::U8(t.dtype))
                .with(2, Field::U32(buffer as u32))
                .with(3, Field::Str(t.name.clone()));
            if let Some(q) = &t.quant {
                o = o.with(
                    4,
                    Field::Table(Obj(q.0.iter().map(|(i, f)| (*i, copy_field(f))).collect())),
                );
            }
            tensors.push(o);
        }
        let codes = codes
            .into_iter()
            .map(|(c, custom)| {
                let o = Obj::default()
                    .with(0, Field::U8(c.min(127) as u8))
                    .with(3, Field::I32(c));
                match custom {
                    Some(s) => o.with(1, Field::Str(s)),
                    None => o,
                }
            })
            .collect();
        let subgraph = Obj::default()
            .with(0, Field::Tables(tensors))
            .with(1, Field::I32s(self.inputs.clone()))
            .with(2, Field::I32s(self.outputs.clone()))
            .with(3, Field::Tables(ops));
        let model = Obj::default()
            .with(0, Field::U32(3))
            .with(1, Field::Tables(codes))
            .with(2, Field::Tables(vec![subgraph]))
            .with(4, Field::Tables(buffers));
        let mut b = vec![0, 0, 0, 0, b'T', b'F', b'L', b'3'];
        let root = write_obj(&mut b, &model);
        put_u32(&mut b, 0, root as u32);
        b
    }
}

pub fn copy_field(f: &Field) -> Field {
    match f {
        Field::U8(v) => Field::U8(*v),
        Field::I32(v) => Field::I32(*v),
        Field::U32(v) => Field::U32(*v),
        Field::I32s(v) => Field::I32s(v.clone()),
        Field::F32s(v) => Field::F32s(v.clone()),
        Field::I64s(v) => Field::I64s(v.clone()),
        Field::Bytes(v) => Field::Bytes(v.clone()),
        Field::Str(v) => Field::Str(v.clone()),
        Field::Table(o) => {
            Field::Table(Obj(o.0.iter().map(|(i, f)| (*i, copy_field(f))).collect()))
        }
        Field::Tables(v) => Field::Tables(
            v.iter()
                .map(|o| Obj(o.0.iter().map(|(i, f)| (*i, copy_field(f))).collect()))
                .collect(),
        ),
    }
}

/// fp32 to fp16 for values that fp16 represents exactly (normal numbers and zero).
pub fn f32_to_f16(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    let bits = v.to_bits();
    let sign = ((bits >> 31) as u16) << 15;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    assert!(
        (1..31).contains(&exp) && bits & 0x1fff == 0,
        "{v} is not exact in fp16"
    );
    sign | ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}

/// Converts and runs the model on `input`; returns each output's shape and values.
pub fn run(model: &Tfl, input: &[f32], shape: &[usize]) -> Vec<(Vec<usize>, Vec<f32>)> {
    let onnx = convert_bytes(&model.bytes()).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), input.to_vec()).unwrap();
    plan.run(tvec!(x.into_tensor().into()))
        .unwrap()
        .iter()
        .map(|t| {
            let v = t.to_plain_array_view::<f32>().unwrap();
            (v.shape().to_vec(), v.iter().copied().collect())
        })
        .collect()
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{k}]: got {g}, want {w}"
        );
    }
}

/// Deterministic test data in [-1, 1), multiples of 1/64 (exact in fp16).
pub fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 128) as f32 / 64.0 - 1.0
        })
        .collect()
}

/// NHWC tensor index.
pub fn at(shape: [usize; 4], b: usize, y: usize, x: usize, c: usize) -> usize {
    ((b * shape[1] + y) * shape[2] + x) * shape[3] + c
}
