//! The parts of the TFLite schema (`tensorflow/lite/schema/schema.fbs`) that the converter reads,
//! as plain structs built from a [`Table`] walk. Field indices follow the schema's field order.

use super::flatbuffer::Table;
use crate::Error;

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("TFLite model: {}", msg.into()))
}

/// Element type of a tensor (`TensorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    Float32,
    Float16,
    Int32,
    Uint8,
    Int64,
    Int8,
    /// Any other type, by its schema code.
    Other(u8),
}

impl TensorType {
    fn from_code(code: u8) -> Self {
        match code {
            0 => TensorType::Float32,
            1 => TensorType::Float16,
            2 => TensorType::Int32,
            3 => TensorType::Uint8,
            4 => TensorType::Int64,
            9 => TensorType::Int8,
            c => TensorType::Other(c),
        }
    }

    /// Bytes per element, for the types the converter reads.
    pub fn size(self) -> Option<usize> {
        match self {
            TensorType::Float32 | TensorType::Int32 => Some(4),
            TensorType::Float16 => Some(2),
            TensorType::Uint8 | TensorType::Int8 => Some(1),
            TensorType::Int64 => Some(8),
            TensorType::Other(_) => None,
        }
    }
}

/// Per-tensor or per-axis affine quantization: `real = scale * (q - zero_point)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quantization {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    /// Axis of per-axis quantization (when `scale` has more than one entry).
    pub axis: usize,
}

/// A tensor of the main subgraph.
#[derive(Clone, Debug)]
pub struct Tensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: TensorType,
    /// Constant data, when its buffer holds any.
    pub data: Option<&'a [u8]>,
    pub quantization: Option<Quantization>,
}

impl Tensor<'_> {
    /// Number of elements (checked).
    pub fn numel(&self) -> Result<usize, Error> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("tensor {:?} has a huge shape", self.name)))
    }
}

/// An operator: its builtin code (or custom name), tensor indices and options table.
#[derive(Clone, Debug)]
pub struct Operator<'a> {
    pub code: i32,
    /// Name of a custom operator (code 32, CUSTOM).
    pub custom: Option<String>,
    /// Input tensor indices; `None` for an omitted optional input (index -1).
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    /// `builtin_options` union: its type code and table.
    pub options: Option<(u8, Table<'a>)>,
}

/// The main subgraph of a model with its buffers resolved.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    pub tensors: Vec<Tensor<'a>>,
    pub operators: Vec<Operator<'a>>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// Builtin operator codes the converter handles (`BuiltinOperator`).
pub mod op {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RELU6: i32 = 21;
    pub const RESHAPE: i32 = 22;
    pub const RESIZE_BILINEAR: i32 = 23;
    pub const TANH: i32 = 28;
    pub const CUSTOM: i32 = 32;
    pub const PAD: i32 = 34;
    pub const SUB: i32 = 41;
}

/// `BuiltinOptions` union type codes of the option tables the converter reads.
pub mod options {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const ADD: u8 = 11;
    pub const RESIZE_BILINEAR: u8 = 15;
    pub const MUL: u8 = 21;
    pub const SUB: u8 = 28;
}

/// Names of builtin operators 0..=126, indexed by code, for messages.
const OP_NAMES: [&str; 127] = [
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE",
    "DEQUANTIZE",
    "EMBEDDING_LOOKUP",
    "FLOOR",
    "FULLY_CONNECTED",
    "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION",
    "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION",
    "LOGISTIC",
    "LSH_PROJECTION",
    "LSTM",
    "MAX_POOL_2D",
    "MUL",
    "RELU",
    "RELU_N1_TO_1",
    "RELU6",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RNN",
    "SOFTMAX",
    "SPACE_TO_DEPTH",
    "SVDF",
    "TANH",
    "CONCAT_EMBEDDINGS",
    "SKIP_GRAM",
    "CALL",
    "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE",
    "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "GATHER",
    "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND",
    "TRANSPOSE",
    "MEAN",
    "SUB",
    "DIV",
    "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN",
    "EXP",
    "TOPK_V2",
    "SPLIT",
    "LOG_SOFTMAX",
    "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "CAST",
    "PRELU",
    "MAXIMUM",
    "ARG_MAX",
    "MINIMUM",
    "LESS",
    "NEG",
    "PADV2",
    "GREATER",
    "GREATER_EQUAL",
    "LESS_EQUAL",
    "SELECT",
    "SLICE",
    "SIN",
    "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE",
    "TILE",
    "EXPAND_DIMS",
    "EQUAL",
    "NOT_EQUAL",
    "LOG",
    "SUM",
    "SQRT",
    "RSQRT",
    "SHAPE",
    "POW",
    "ARG_MIN",
    "FAKE_QUANT",
    "REDUCE_PROD",
    "REDUCE_MAX",
    "PACK",
    "LOGICAL_OR",
    "ONE_HOT",
    "LOGICAL_AND",
    "LOGICAL_NOT",
    "UNPACK",
    "REDUCE_MIN",
    "FLOOR_DIV",
    "REDUCE_ANY",
    "SQUARE",
    "ZEROS_LIKE",
    "FILL",
    "FLOOR_MOD",
    "RANGE",
    "RESIZE_NEAREST_NEIGHBOR",
    "LEAKY_RELU",
    "SQUARED_DIFFERENCE",
    "MIRROR_PAD",
    "ABS",
    "SPLIT_V",
    "UNIQUE",
    "CEIL",
    "REVERSE_V2",
    "ADD_N",
    "GATHER_ND",
    "COS",
    "WHERE",
    "RANK",
    "ELU",
    "REVERSE_SEQUENCE",
    "MATRIX_DIAG",
    "QUANTIZE",
    "MATRIX_SET_DIAG",
    "ROUND",
    "HARD_SWISH",
    "IF",
    "WHILE",
    "NON_MAX_SUPPRESSION_V4",
    "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND",
    "SELECT_V2",
    "DENSIFY",
    "SEGMENT_SUM",
    "BATCH_MATMUL",
];

/// The schema's name of builtin operator `code` (`CONV_2D`), if it is one of 0..=126.
pub fn builtin_name(code: i32) -> Option<&'static str> {
    usize::try_from(code)
        .ok()
        .and_then(|c| OP_NAMES.get(c))
        .copied()
}

impl Operator<'_> {
    /// The operator's name for messages, e.g. `CONV_2D` or `CUSTOM(Convolution2DTransposeBias)`.
    pub fn name(&self) -> String {
        match (self.code, &self.custom) {
            (op::CUSTOM, Some(custom)) => format!("CUSTOM({custom})"),
            (code, _) => builtin_name(code).map_or_else(|| format!("BUILTIN_{code}"), String::from),
        }
    }

    /// The options table, checked to be of union type `kind`; `None` when the file has none
    /// (every field then takes its schema default).
    pub fn options(&self, kind: u8) -> Result<Option<Table<'_>>, Error> {
        match self.options {
            None => Ok(None),
            Some((k, t)) if k == kind => Ok(Some(t)),
            Some((k, _)) => Err(bad(format!(
                "{} has options of type {k}, expected {kind}",
                self.name()
            ))),
        }
    }
}

/// Checks the `TFL3` file identifier and reads the main (first) subgraph.
pub fn read(file: &[u8]) -> Result<Model<'_>, Error> {
    if file.get(4..8) != Some(b"TFL3") {
        return Err(bad("no TFL3 identifier at byte 4: not a TFLite flatbuffer"));
    }
    let root = Table::root(file)?;
    let codes = root
        .vector(1, 4)?
        .ok_or_else(|| bad("no operator codes"))?
        .tables()?
        .iter()
        .map(|c| {
            // The real code is the larger of the deprecated byte field and the int field.
            let code = i32::from(c.u8(0, 0)? as i8).max(c.i32(3, 0)?);
            Ok((code, c.string(1)?))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let buffers = root
        .vector(4, 4)?
        .map(|v| v.tables())
        .transpose()?
        .unwrap_or_default();
    let subgraphs = root.vector(2, 4)?.ok_or_else(|| bad("no subgraphs"))?;
    if subgraphs.len == 0 {
        return Err(bad("no subgraphs"));
    }
    let sg = subgraphs.table(0)?;
    let tensors = sg
        .vector(0, 4)?
        .map(|v| v.tables())
        .transpose()?
        .unwrap_or_default()
        .iter()
        .map(|t| read_tensor(file, t, &buffers))
        .collect::<Result<Vec<_>, Error>>()?;
    let index = |i: i32, what: &str| -> Result<usize, Error> {
        usize::try_from(i)
            .ok()
            .filter(|&i| i < tensors.len())
            .ok_or_else(|| bad(format!("{what} refers to tensor {i} of {}", tensors.len())))
    };
    let indices = |t: &Table, field: usize, what: &str| -> Result<Vec<usize>, Error> {
        t.vector(field, 4)?
            .map(|v| v.i32s())
            .unwrap_or_default()
            .into_iter()
            .map(|i| index(i, what))
            .collect()
    };
    let inputs = indices(&sg, 1, "subgraph input")?;
    let outputs = indices(&sg, 2, "subgraph output")?;
    let operators = sg
        .vector(3, 4)?
        .map(|v| v.tables())
        .transpose()?
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let opcode = o.u32(0, 0)? as usize;
            let (code, custom) = codes
                .get(opcode)
                .cloned()
                .ok_or_else(|| bad(format!("operator {k} has opcode index {opcode}")))?;
            let inputs = o
                .vector(1, 4)?
                .map(|v| v.i32s())
                .unwrap_or_default()
                .into_iter()
                .map(|i| match i {
                    -1 => Ok(None),
                    i => index(i, &format!("operator {k} input")).map(Some),
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let outputs = indices(o, 2, &format!("operator {k} output"))?;
            let kind = o.u8(3, 0)?;
            let options = match kind {
                0 => None,
                k => o.table(4)?.map(|t| (k, t)),
            };
            Ok(Operator {
                code,
                custom,
                inputs,
                outputs,
                options,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Model {
        tensors,
        operators,
        inputs,
        outputs,
    })
}

fn read_tensor<'a>(
    file: &'a [u8],
    t: &Table<'a>,
    buffers: &[Table<'a>],
) -> Result<Tensor<'a>, Error> {
    let name = t.string(3)?.unwrap_or_default();
    let shape = t
        .vector(0, 4)?
        .map(|v| v.i32s())
        .unwrap_or_default()
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| bad(format!("tensor {name:?} has dimension {d}"))))
        .collect::<Result<Vec<_>, Error>>()?;
    let dtype = TensorType::from_code(t.u8(1, 0)?);
    let buffer = t.u32(2, 0)? as usize;
    let data = match buffer {
        0 => None,
        b => {
            let buf = buffers.get(b).ok_or_else(|| {
                bad(format!(
                    "tensor {name:?} refers to buffer {b} of {}",
                    buffers.len()
                ))
            })?;
            buffer_data(file, buf, &name)?
        }
    };
    let quantization = match t.table(4)? {
        None => None,
        Some(q) => {
            let scale = q.vector(2, 4)?.map(|v| v.f32s()).unwrap_or_default();
            let zero_point = q.vector(3, 8)?.map(|v| v.i64s()).unwrap_or_default();
            let axis = usize::try_from(q.i32(6, 0)?).map_err(|_| {
                bad(format!(
                    "tensor {name:?} has a negative quantized dimension"
                ))
            })?;
            (!scale.is_empty()).then_some(Quantization {
                scale,
                zero_point,
                axis,
            })
        }
    };
    Ok(Tensor {
        name,
        shape,
        dtype,
        data,
        quantization,
    })
}

/// A buffer's bytes: inline (`data`), or for large models at `offset`/`size` in the file.
fn buffer_data<'a>(file: &'a [u8], buf: &Table<'a>, name: &str) -> Result<Option<&'a [u8]>, Error> {
    if let Some(v) = buf.vector(0, 1)? {
        return Ok((v.len > 0).then_some(v.data));
    }
    let (offset, size) = (buf.u64(1, 0)?, buf.u64(2, 0)?);
    if offset <= 1 {
        return Ok(None);
    }
    let range = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(o, s)| Some(o..o.checked_add(s)?));
    range.and_then(|r| file.get(r)).map(Some).ok_or_else(|| {
        bad(format!(
            "tensor {name:?}: buffer at offset {offset}, size {size} is outside the file"
        ))
    })
}

pub use crate::tf::{Activation, Padding};

fn padding(t: Option<&Table>, field: usize) -> Result<Padding, Error> {
    match t.map_or(Ok(0), |t| t.u8(field, 0))? {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        p => Err(bad(format!("unknown padding {p}"))),
    }
}

/// `ActivationFunctionType` fused into an operator; `None` for NONE.
fn activation(t: Option<&Table>, field: usize) -> Result<Option<Activation>, Error> {
    match t.map_or(Ok(0), |t| t.u8(field, 0))? {
        0 => Ok(None),
        1 => Ok(Some(Activation::Relu)),
        2 => Ok(Some(Activation::Clip(-1.0, 1.0))), // RELU_N1_TO_1
        3 => Ok(Some(Activation::RELU6)),
        4 => Ok(Some(Activation::Tanh)),
        5 => Err(bad("fused activation SIGN_BIT is not supported")),
        a => Err(bad(format!("unknown fused activation {a}"))),
    }
}

fn positive(t: Option<&Table>, field: usize, what: &str) -> Result<usize, Error> {
    let v = t.map_or(Ok(0), |t| t.i32(field, 0))?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| bad(format!("{what} is {v}")))
}

/// Window parameters shared by convolutions and pools.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub padding: Padding,
    /// (height, width)
    pub stride: (usize, usize),
    /// (height, width); 1 for pools.
    pub dilation: (usize, usize),
    /// The fused activation, if any.
    pub activation: Option<Activation>,
}

/// `Conv2DOptions` (and the shared fields of `DepthwiseConv2DOptions`).
pub fn conv_options(o: &Operator) -> Result<Window, Error> {
    let depthwise = o.code == op::DEPTHWISE_CONV_2D;
    let t = if depthwise {
        o.options(options::DEPTHWISE_CONV_2D)?
    } else {
        o.options(options::CONV_2D)?
    };
    let t = t.as_ref();
    // Depthwise options have depth_multiplier at 3, shifting the later fields by one.
    let shift = usize::from(depthwise);
    let dilation_default = |field: usize| -> Result<usize, Error> {
        match t.map_or(Ok(1), |t| t.i32(field, 1))? {
            d if d > 0 => Ok(d as usize),
            d => Err(bad(format!("dilation {d}"))),
        }
    };
    Ok(Window {
        padding: padding(t, 0)?,
        stride: (positive(t, 2, "stride_h")?, positive(t, 1, "stride_w")?),
        activation: activation(t, 3 + shift)?,
        dilation: (dilation_default(5 + shift)?, dilation_default(4 + shift)?),
    })
}

/// `Pool2DOptions`: the window and the filter size (height, width).
pub fn pool_options(o: &Operator) -> Result<(Window, (usize, usize)), Error> {
    let t = o.options(options::POOL_2D)?;
    let t = t.as_ref();
    let window = Window {
        padding: padding(t, 0)?,
        stride: (positive(t, 2, "stride_h")?, positive(t, 1, "stride_w")?),
        dilation: (1, 1),
        activation: activation(t, 5)?,
    };
    let filter = (
        positive(t, 4, "filter_height")?,
        positive(t, 3, "filter_width")?,
    );
    Ok((window, filter))
}

/// The fused activation of `AddOptions`, `SubOptions` or `MulOptions` (field 0 in each).
pub fn elementwise_activation(o: &Operator) -> Result<Option<Activation>, Error> {
    let kind = match o.code {
        op::ADD => options::ADD,
        op::SUB => options::SUB,
        _ => options::MUL,
    };
    activation(o.options(kind)?.as_ref(), 0)
}

/// `ResizeBilinearOptions`: (align_corners, half_pixel_centers).
pub fn resize_options(o: &Operator) -> Result<(bool, bool), Error> {
    let t = o.options(options::RESIZE_BILINEAR)?;
    let t = t.as_ref();
    Ok((
        t.map_or(Ok(false), |t| t.bool(2, false))?,
        t.map_or(Ok(false), |t| t.bool(3, false))?,
    ))
}
