//! A restricted unpickler for PyTorch checkpoints.
//!
//! It interprets the pickle opcodes (protocols 0-5, as far as real checkpoints use them) without ever
//! executing anything: globals are resolved against a fixed allow-list (tensor rebuild functions,
//! `collections.OrderedDict`, the typed storage classes) and every other global is refused by name.
//! Objects live in a flat arena and refer to each other by index, so hostile nesting or cycles
//! cannot overflow the stack or leak memory.

use std::collections::HashMap;
use std::rc::Rc;

use super::DType;
use crate::Error;

/// A pickled value. Containers and tensors live in the [`Unpickler`]'s arena.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for `i64`: little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    /// A float (its value is never needed).
    Float,
    Str(Rc<str>),
    /// A bytes object (its content is never needed).
    Bytes,
    Global(Global),
    /// Index into [`Unpickler::objects`].
    Obj(usize),
}

/// The only globals a checkpoint may name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(DType),
}

/// An object in the arena.
#[derive(Debug)]
pub(crate) enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Entries in insertion order; duplicates are resolved when the dict is read.
    Dict(Vec<(Value, Value)>),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// A storage named by a persistent id; its bytes are read separately.
#[derive(Debug)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: DType,
    pub numel: usize,
}

/// A strided view on a storage, already checked to stay inside it.
#[derive(Debug)]
pub(crate) struct TensorRef {
    /// Index of the [`Object::Storage`].
    pub storage: usize,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Unpickles one or more consecutive pickles, sharing the arena and the storage table.
#[derive(Default)]
pub(crate) struct Unpickler {
    pub objects: Vec<Object>,
    /// Storage key -> arena index.
    pub storages: HashMap<String, usize>,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Format(msg.into())
}

/// Reads the payload of an opcode.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| err(format!("pickle truncated at byte {}", self.pos)))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32_len(&mut self) -> Result<usize, Error> {
        usize::try_from(u32::from_le_bytes(self.array()?)).map_err(|_| err("length overflows"))
    }
    fn u64_len(&mut self) -> Result<usize, Error> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|_| err("length overflows"))
    }
    /// A newline-terminated text argument (protocol 0 opcodes), without the newline.
    fn line(&mut self) -> Result<&'a str, Error> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| err(format!("pickle truncated at byte {}", self.pos)))?;
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n]).map_err(|_| err("pickle text argument is not UTF-8"))
    }
}

fn utf8(bytes: &[u8]) -> Result<Value, Error> {
    let s = std::str::from_utf8(bytes).map_err(|_| err("pickle string is not valid UTF-8"))?;
    Ok(Value::Str(s.into()))
}

/// Little-endian two's complement bytes (LONG1/LONG4) to a value.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.into());
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

/// The allow-list. Anything else is refused with its full name.
fn resolve_global(module: &str, name: &str) -> Result<Global, Error> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", storage) => match DType::from_storage_class(storage) {
            Some(dtype) => Global::Storage(dtype),
            None => return Err(Error::UnsafeGlobal(format!("{module}.{name}"))),
        },
        _ => return Err(Error::UnsafeGlobal(format!("{module}.{name}"))),
    };
    Ok(global)
}

/// Per-pickle state: the stack, the marks and the memo.
struct Machine<'u> {
    u: &'u mut Unpickler,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl Machine<'_> {
    fn pop(&mut self) -> Result<Value, Error> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(err("pickle stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| err("pickle stack underflow"))
    }
    fn top(&self) -> Result<&Value, Error> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(err("pickle stack underflow"));
        }
        self.stack
            .last()
            .ok_or_else(|| err("pickle stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, Error> {
        let mark = self.marks.pop().ok_or_else(|| err("pickle MARK missing"))?;
        Ok(self.stack.split_off(mark))
    }
    fn new_obj(&mut self, obj: Object) -> Value {
        self.u.objects.push(obj);
        Value::Obj(self.u.objects.len() - 1)
    }
    fn memo_get(&self, key: u64) -> Result<Value, Error> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| err(format!("pickle memo entry {key} is missing")))
    }
    fn memo_put(&mut self, key: u64) -> Result<(), Error> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    /// The list or dict (or set, stored as a list) at `target`, for APPEND(S)/SETITEM(S)/ADDITEMS.
    fn container(&mut self, target: &Value) -> Result<&mut Object, Error> {
        match target {
            Value::Obj(i) => match self.u.objects.get_mut(*i) {
                Some(o @ (Object::List(_) | Object::Dict(_))) => Ok(o),
                _ => Err(err(
                    "pickle appends to something that is not a list or dict",
                )),
            },
            _ => Err(err(
                "pickle appends to something that is not a list or dict",
            )),
        }
    }
    fn extend_list(&mut self, target: &Value, items: Vec<Value>) -> Result<(), Error> {
        match self.container(target)? {
            Object::List(l) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(err("pickle appends to something that is not a list")),
        }
    }
    fn extend_dict(&mut self, target: &Value, items: Vec<Value>) -> Result<(), Error> {
        if !items.len().is_multiple_of(2) {
            return Err(err("pickle SETITEMS with an odd number of items"));
        }
        let mut it = items.into_iter();
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.container(target)? {
            Object::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            _ => Err(err("pickle sets items on something that is not a dict")),
        }
    }
    fn tuple_items(&self, v: &Value) -> Result<&[Value], Error> {
        match v {
            Value::Obj(i) => match self.u.objects.get(*i) {
                Some(Object::Tuple(t)) => Ok(t),
                _ => Err(err("expected a tuple")),
            },
            _ => Err(err("expected a tuple")),
        }
    }
    fn usize_of(v: &Value, what: &str) -> Result<usize, Error> {
        match v {
            Value::Int(i) => {
                usize::try_from(*i).map_err(|_| err(format!("{what} {i} is negative")))
            }
            _ => Err(err(format!("{what} is not an integer"))),
        }
    }
    fn usizes(&self, v: &Value, what: &str) -> Result<Vec<usize>, Error> {
        self.tuple_items(v)?
            .iter()
            .map(|x| Self::usize_of(x, what))
            .collect()
    }

    /// Applies an allow-listed callable (REDUCE, NEWOBJ).
    fn call(&mut self, callable: Value, args: Value) -> Result<Value, Error> {
        let Value::Global(global) = callable else {
            return Err(err("pickle calls something that is not an allowed global"));
        };
        let args = self.tuple_items(&args)?.to_vec();
        match global {
            Global::OrderedDict => match args.as_slice() {
                [] => Ok(self.new_obj(Object::Dict(Vec::new()))),
                _ => Err(err(
                    "OrderedDict with constructor arguments is not supported",
                )),
            },
            Global::RebuildTensorV2 if (6..=7).contains(&args.len()) => {
                self.rebuild_tensor(&args[..4])
            }
            Global::RebuildTensor if args.len() == 4 => self.rebuild_tensor(&args),
            Global::RebuildParameter if args.len() == 3 => match &args[0] {
                Value::Obj(i) if matches!(self.u.objects.get(*i), Some(Object::Tensor(_))) => {
                    Ok(args[0].clone())
                }
                _ => Err(err("_rebuild_parameter of something that is not a tensor")),
            },
            Global::Storage(_) => Err(err("a storage class may only appear in a persistent id")),
            other => Err(err(format!(
                "{other:?} called with {} arguments",
                args.len()
            ))),
        }
    }

    /// `(storage, offset, size, stride)`: a view checked to lie inside its storage.
    fn rebuild_tensor(&mut self, args: &[Value]) -> Result<Value, Error> {
        let storage = match &args[0] {
            Value::Obj(i) if matches!(self.u.objects.get(*i), Some(Object::Storage(_))) => *i,
            _ => return Err(err("tensor rebuilt from something that is not a storage")),
        };
        let offset = Self::usize_of(&args[1], "tensor storage offset")?;
        let shape = self.usizes(&args[2], "tensor size")?;
        let stride = self.usizes(&args[3], "tensor stride")?;
        let Some(Object::Storage(s)) = self.u.objects.get(storage) else {
            return Err(err("tensor rebuilt from something that is not a storage"));
        };
        check_view(s, offset, &shape, &stride)?;
        Ok(self.new_obj(Object::Tensor(TensorRef {
            storage,
            offset,
            shape,
            stride,
        })))
    }

    /// `('storage', StorageClass, key, location, numel[, view_metadata])` -> a storage object.
    fn persistent_load(&mut self, pid: Value) -> Result<Value, Error> {
        let items = self.tuple_items(&pid)?;
        let bad = || err("unsupported persistent id (expected a torch storage)");
        let (dtype, key, numel) = match items {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, numel, rest @ ..]
                if &**tag == "storage" && rest.len() <= 1 =>
            {
                if !matches!(rest.first(), None | Some(Value::None)) {
                    return Err(err(
                        "storage views (files from torch < 1.0) are not supported",
                    ));
                }
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(bad()),
                };
                (*dtype, key, Self::usize_of(numel, "storage size")?)
            }
            _ => return Err(bad()),
        };
        if let Some(&i) = self.u.storages.get(&key) {
            return match &self.u.objects[i] {
                Object::Storage(s) if s.dtype == dtype && s.numel == numel => Ok(Value::Obj(i)),
                _ => Err(err(format!("storage {key} is declared twice differently"))),
            };
        }
        let v = self.new_obj(Object::Storage(StorageRef {
            key: key.clone(),
            dtype,
            numel,
        }));
        if let Value::Obj(i) = v {
            self.u.storages.insert(key, i);
        }
        Ok(v)
    }
}

/// Checks that every element of the view lies inside the storage, and that the view is not larger
/// than its storage (which bounds what materialising it can allocate).
pub(crate) fn check_view(
    s: &StorageRef,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<(), Error> {
    if shape.len() != stride.len() {
        return Err(err("tensor size and stride have different lengths"));
    }
    let overflow = || err("tensor size overflows");
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(());
    }
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(offset, |acc, (&d, &st)| {
            (d - 1).checked_mul(st).and_then(|x| acc.checked_add(x))
        })
        .ok_or_else(overflow)?;
    if last >= s.numel {
        return Err(err(format!(
            "tensor (offset {offset}, size {shape:?}, stride {stride:?}) reads past the end of storage {} ({} elements)",
            s.key, s.numel
        )));
    }
    if numel > s.numel {
        return Err(err(format!(
            "tensor of {numel} elements is larger than its storage {} ({} elements)",
            s.key, s.numel
        )));
    }
    Ok(())
}

impl Unpickler {
    /// Unpickles one pickle starting at `data[0]`; returns the value and the bytes consumed.
    pub fn load(&mut self, data: &[u8]) -> Result<(Value, usize), Error> {
        let mut m = Machine {
            u: self,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        };
        let mut c = Cursor { data, pos: 0 };
        loop {
            let at = c.pos;
            let op = c.byte()?;
            let v = match op {
                b'.' => {
                    let v = m.pop()?;
                    return Ok((v, c.pos));
                }
                0x80 => {
                    let proto = c.byte()?;
                    if proto > 5 {
                        return Err(err(format!("unsupported pickle protocol {proto}")));
                    }
                    continue;
                }
                0x95 => {
                    c.take(8)?; // FRAME: a length hint only
                    continue;
                }
                b'(' => {
                    m.marks.push(m.stack.len());
                    continue;
                }
                b'0' => {
                    m.pop()?;
                    continue;
                }
                b'1' => {
                    m.pop_mark()?;
                    continue;
                }
                b'2' => m.top()?.clone(),
                b'N' => Value::None,
                0x88 => Value::Bool(true),
                0x89 => Value::Bool(false),
                b'K' => Value::Int(i64::from(c.byte()?)),
                b'M' => Value::Int(i64::from(u16::from_le_bytes(c.array()?))),
                b'J' => Value::Int(i64::from(i32::from_le_bytes(c.array()?))),
                0x8a => {
                    let n = usize::from(c.byte()?);
                    long(c.take(n)?)
                }
                0x8b => {
                    let n = c.u32_len()?;
                    long(c.take(n)?)
                }
                b'I' => match c.line()? {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.parse().map_err(|_| err(format!("bad INT {s:?}")))?),
                },
                b'L' => {
                    let s = c.line()?;
                    let s = s.strip_suffix('L').unwrap_or(s);
                    Value::Int(s.parse().map_err(|_| err(format!("unsupported LONG {s:?}")))?)
                }
                b'F' => {
                    let s = c.line()?;
                    {
                        s.parse::<f64>().map_err(|_| err(format!("bad FLOAT {s:?}")))?;
                        Value::Float
                    }
                }
                b'G' => {
                    c.take(8)?;
                    Value::Float
                },
                b'X' => {
                    let n = c.u32_len()?;
                    utf8(c.take(n)?)?
                }
                0x8c => {
                    let n = usize::from(c.byte()?);
                    utf8(c.take(n)?)?
                }
                0x8d => {
                    let n = c.u64_len()?;
                    utf8(c.take(n)?)?
                }
                // Python 2 str: text when it decodes, bytes otherwise.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        c.u32_len()?
                    } else {
                        usize::from(c.byte()?)
                    };
                    let b = c.take(n)?;
                    utf8(b).unwrap_or(Value::Bytes)
                }
                b'B' => {
                    let n = c.u32_len()?;
                    {
                        c.take(n)?;
                        Value::Bytes
                    }
                }
                b'C' => {
                    let n = usize::from(c.byte()?);
                    {
                        c.take(n)?;
                        Value::Bytes
                    }
                }
                0x8e | 0x96 => {
                    let n = c.u64_len()?;
                    {
                        c.take(n)?;
                        Value::Bytes
                    }
                }
                b')' => m.new_obj(Object::Tuple(Vec::new())),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let floor = m.marks.last().copied().unwrap_or(0);
                    if m.stack.len() < floor + n {
                        return Err(err("pickle stack underflow"));
                    }
                    let items = m.stack.split_off(m.stack.len() - n);
                    m.new_obj(Object::Tuple(items))
                }
                b't' => {
                    let items = m.pop_mark()?;
                    m.new_obj(Object::Tuple(items))
                }
                b']' | 0x8f => m.new_obj(Object::List(Vec::new())),
                b'l' | 0x91 => {
                    let items = m.pop_mark()?;
                    m.new_obj(Object::List(items))
                }
                b'}' => m.new_obj(Object::Dict(Vec::new())),
                b'd' => {
                    let items = m.pop_mark()?;
                    let d = m.new_obj(Object::Dict(Vec::new()));
                    m.extend_dict(&d, items)?;
                    d
                }
                b'a' => {
                    let item = m.pop()?;
                    let target = m.top()?.clone();
                    m.extend_list(&target, vec![item])?;
                    continue;
                }
                b'e' | 0x90 => {
                    let items = m.pop_mark()?;
                    let target = m.top()?.clone();
                    m.extend_list(&target, items)?;
                    continue;
                }
                b's' => {
                    let v = m.pop()?;
                    let k = m.pop()?;
                    let target = m.top()?.clone();
                    m.extend_dict(&target, vec![k, v])?;
                    continue;
                }
                b'u' => {
                    let items = m.pop_mark()?;
                    let target = m.top()?.clone();
                    m.extend_dict(&target, items)?;
                    continue;
                }
                b'g' => {
                    let s = c.line()?;
                    m.memo_get(s.parse().map_err(|_| err(format!("bad GET {s:?}")))?)?
                }
                b'h' => m.memo_get(u64::from(c.byte()?))?,
                b'j' => m.memo_get(u64::from(u32::from_le_bytes(c.array()?)))?,
                b'p' => {
                    let s = c.line()?;
                    m.memo_put(s.parse().map_err(|_| err(format!("bad PUT {s:?}")))?)?;
                    continue;
                }
                b'q' => {
                    let k = u64::from(c.byte()?);
                    m.memo_put(k)?;
                    continue;
                }
                b'r' => {
                    let k = u64::from(u32::from_le_bytes(c.array()?));
                    m.memo_put(k)?;
                    continue;
                }
                0x94 => {
                    let k = m.memo.len() as u64;
                    m.memo_put(k)?;
                    continue;
                }
                b'c' => {
                    let module = c.line()?;
                    let name = c.line()?;
                    Value::Global(resolve_global(module, name)?)
                }
                0x93 => {
                    let name = m.pop()?;
                    let module = m.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            Value::Global(resolve_global(&module, &name)?)
                        }
                        _ => return Err(err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = m.pop()?;
                    let callable = m.pop()?;
                    m.call(callable, args)?
                }
                0x81 => {
                    let args = m.pop()?;
                    let cls = m.pop()?;
                    m.call(cls, args)?
                }
                0x92 => {
                    let _kwargs = m.pop()?;
                    let args = m.pop()?;
                    let cls = m.pop()?;
                    m.call(cls, args)?
                }
                b'b' => {
                    // BUILD sets attributes; allowed only on dicts (OrderedDict's `_metadata`),
                    // where the state is ignored.
                    let _state = m.pop()?;
                    match m.top()? {
                        Value::Obj(i) if matches!(m.u.objects.get(*i), Some(Object::Dict(_))) => {}
                        _ => return Err(err("pickle BUILD on an object that is not a dict")),
                    }
                    continue;
                }
                b'Q' => {
                    let pid = m.pop()?;
                    m.persistent_load(pid)?
                }
                b'P' => return Err(err("text persistent ids are not supported")),
                b'i' | b'o' => {
                    return Err(err(format!(
                        "pickle opcode {:?} (INST/OBJ) at byte {at} is refused: it instantiates arbitrary classes",
                        op as char
                    )))
                }
                0x82..=0x84 => return Err(err("pickle extension registry opcodes are refused")),
                _ => {
                    return Err(err(format!(
                        "unsupported pickle opcode 0x{op:02x} at byte {at}"
                    )))
                }
            };
            m.stack.push(v);
        }
    }

    /// The object behind a value, if it is one.
    pub fn object(&self, v: &Value) -> Option<&Object> {
        match v {
            Value::Obj(i) => self.objects.get(*i),
            _ => None,
        }
    }
}
