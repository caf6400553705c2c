//! The parts of TensorFlow's protobuf schema the importers read (`graph.proto`, `node_def.proto`,
//! `attr_value.proto`, `tensor.proto`, `tensor_shape.proto`, `saved_model.proto`,
//! `meta_graph.proto`), written as prost messages with TensorFlow's field numbers. Fields graft
//! does not read are skipped by the decoder.

use std::collections::HashMap;

/// `tensorflow.GraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    /// Functions the graph calls (TF2 graphs keep their computation here).
    #[prost(message, optional, tag = "2")]
    pub library: Option<FunctionDefLibrary>,
}

/// `tensorflow.NodeDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub op: String,
    /// `name`, `name:k` or `^name` (a control input).
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    #[prost(map = "string, message", tag = "5")]
    pub attr: HashMap<String, AttrValue>,
}

/// `tensorflow.FunctionDefLibrary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDefLibrary {
    #[prost(message, repeated, tag = "1")]
    pub function: Vec<FunctionDef>,
}

/// `tensorflow.FunctionDef`: only its name, to report a graph whose computation lives in functions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDef {
    #[prost(message, optional, tag = "1")]
    pub signature: Option<OpDef>,
}

/// `tensorflow.OpDef`: only its name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpDef {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `tensorflow.AttrValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<attr_value::Value>,
}

pub mod attr_value {
    /// The value of an attribute.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        List(super::ListValue),
        #[prost(bytes, tag = "2")]
        S(Vec<u8>),
        #[prost(int64, tag = "3")]
        I(i64),
        #[prost(float, tag = "4")]
        F(f32),
        #[prost(bool, tag = "5")]
        B(bool),
        #[prost(int32, tag = "6")]
        Type(i32),
        #[prost(message, tag = "7")]
        Shape(super::TensorShapeProto),
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
        #[prost(string, tag = "9")]
        Placeholder(String),
        #[prost(message, tag = "10")]
        Func(super::NameAttrList),
    }
}

/// `tensorflow.NameAttrList` (a function reference): only its name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameAttrList {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `tensorflow.AttrValue.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub s: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "3")]
    pub i: Vec<i64>,
    #[prost(float, repeated, tag = "4")]
    pub f: Vec<f32>,
    #[prost(bool, repeated, tag = "5")]
    pub b: Vec<bool>,
    #[prost(int32, repeated, tag = "6")]
    pub r#type: Vec<i32>,
    #[prost(message, repeated, tag = "7")]
    pub shape: Vec<TensorShapeProto>,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// `tensorflow.TensorShapeProto.Dim`: `-1` is an unknown size.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `tensorflow.TensorProto`: the values are either `tensor_content` (the raw little-endian
/// elements) or one of the typed lists; a list of one value fills the whole shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    /// float16 values, each in the low 16 bits.
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
}

/// `tensorflow.SavedModel`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedModel {
    #[prost(message, repeated, tag = "2")]
    pub meta_graphs: Vec<MetaGraphDef>,
}

/// `tensorflow.MetaGraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaGraphDef {
    #[prost(message, optional, tag = "1")]
    pub meta_info_def: Option<MetaInfoDef>,
    #[prost(message, optional, tag = "2")]
    pub graph_def: Option<GraphDef>,
    #[prost(map = "string, message", tag = "5")]
    pub signature_def: HashMap<String, SignatureDef>,
}

/// `tensorflow.MetaGraphDef.MetaInfoDef`: the tags.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaInfoDef {
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
}

/// `tensorflow.SignatureDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignatureDef {
    #[prost(map = "string, message", tag = "1")]
    pub inputs: HashMap<String, TensorInfo>,
    #[prost(map = "string, message", tag = "2")]
    pub outputs: HashMap<String, TensorInfo>,
}

/// `tensorflow.TensorInfo` (dense tensors only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub dtype: i32,
    #[prost(message, optional, tag = "3")]
    pub tensor_shape: Option<TensorShapeProto>,
}

/// TensorFlow's `DataType` numbers graft reads, with their names.
pub const DTYPES: &[(i32, &str)] = &[
    (1, "DT_FLOAT"),
    (2, "DT_DOUBLE"),
    (3, "DT_INT32"),
    (4, "DT_UINT8"),
    (6, "DT_INT8"),
    (7, "DT_STRING"),
    (9, "DT_INT64"),
    (10, "DT_BOOL"),
    (19, "DT_HALF"),
    (20, "DT_RESOURCE"),
];

/// The name of dtype number `t` (`DT_INVALID` for one graft does not know).
pub fn dtype_name(t: i32) -> &'static str {
    crate::lookup(DTYPES, t).unwrap_or("DT_INVALID")
}
