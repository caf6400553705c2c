//! Bounds-checked reading of FlatBuffers data (the binary format of `.tflite` files), written for
//! untrusted input: every offset and length is checked against the buffer, so a truncated or
//! corrupt file gives an error, never a panic or an out-of-bounds read.
//!
//! Only what the TFLite reader needs: tables with scalar, table, vector and string fields, and
//! vectors of scalars or tables. Readers follow a fixed schema, so there is no recursion on data.

use crate::Error;

fn corrupt(what: &str) -> Error {
    Error::Format(format!("corrupt flatbuffer: {what}"))
}

/// `len` bytes at `pos` in `buf`.
fn bytes_at<'a>(buf: &'a [u8], pos: usize, len: usize, what: &str) -> Result<&'a [u8], Error> {
    pos.checked_add(len)
        .and_then(|end| buf.get(pos..end))
        .ok_or_else(|| corrupt(&format!("{what} at byte {pos} runs past the end")))
}

fn u16_at(buf: &[u8], pos: usize) -> Result<u16, Error> {
    let b = bytes_at(buf, pos, 2, "u16")?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], pos: usize) -> Result<u32, Error> {
    let b = bytes_at(buf, pos, 4, "u32")?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Follows the unsigned offset stored at `pos` (relative to `pos`).
fn follow(buf: &[u8], pos: usize) -> Result<usize, Error> {
    let off = u32_at(buf, pos)? as usize;
    pos.checked_add(off)
        .filter(|&p| p < buf.len())
        .ok_or_else(|| corrupt(&format!("offset at byte {pos} points outside the buffer")))
}

/// A table: an object whose fields are located through its vtable.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    /// The root table of a buffer (its first four bytes are the root's offset).
    pub fn root(buf: &'a [u8]) -> Result<Self, Error> {
        Self::at(buf, follow(buf, 0)?)
    }

    /// The table starting at `pos`.
    fn at(buf: &'a [u8], pos: usize) -> Result<Self, Error> {
        let soffset = i64::from(u32_at(buf, pos)? as i32);
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(soffset))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                corrupt(&format!(
                    "table at byte {pos} has its vtable outside the buffer"
                ))
            })?;
        let vtable_len = usize::from(u16_at(buf, vtable)?);
        if vtable_len < 4 || vtable_len % 2 != 0 {
            return Err(corrupt(&format!(
                "vtable at byte {vtable} has length {vtable_len}"
            )));
        }
        bytes_at(buf, vtable, vtable_len, "vtable")?;
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Position of field `index` holding `size` bytes, or `None` when the field is absent.
    fn field(&self, index: usize, size: usize) -> Result<Option<usize>, Error> {
        let slot = 4 + 2 * index;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = usize::from(u16_at(self.buf, self.vtable + slot)?);
        if off == 0 {
            return Ok(None);
        }
        let pos = self.pos + off;
        bytes_at(self.buf, pos, size, "table field")?;
        Ok(Some(pos))
    }

    /// An unsigned byte (also enums and bools stored as one byte).
    pub fn u8(&self, index: usize, default: u8) -> Result<u8, Error> {
        Ok(match self.field(index, 1)? {
            Some(p) => self.buf[p],
            None => default,
        })
    }

    /// A bool.
    pub fn bool(&self, index: usize, default: bool) -> Result<bool, Error> {
        Ok(self.u8(index, u8::from(default))? != 0)
    }

    /// A 32-bit unsigned integer.
    pub fn u32(&self, index: usize, default: u32) -> Result<u32, Error> {
        match self.field(index, 4)? {
            Some(p) => u32_at(self.buf, p),
            None => Ok(default),
        }
    }

    /// A 32-bit signed integer.
    pub fn i32(&self, index: usize, default: i32) -> Result<i32, Error> {
        Ok(self.u32(index, default as u32)? as i32)
    }

    /// A 64-bit unsigned integer.
    pub fn u64(&self, index: usize, default: u64) -> Result<u64, Error> {
        match self.field(index, 8)? {
            Some(p) => {
                let b = bytes_at(self.buf, p, 8, "u64")?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(u64::from_le_bytes(a))
            }
            None => Ok(default),
        }
    }

    /// A sub-table.
    pub fn table(&self, index: usize) -> Result<Option<Table<'a>>, Error> {
        match self.field(index, 4)? {
            Some(p) => Ok(Some(Table::at(self.buf, follow(self.buf, p)?)?)),
            None => Ok(None),
        }
    }

    /// A vector whose elements are `elem_size` bytes each (4 for offsets to tables).
    pub fn vector(&self, index: usize, elem_size: usize) -> Result<Option<Vector<'a>>, Error> {
        let Some(p) = self.field(index, 4)? else {
            return Ok(None);
        };
        let start = follow(self.buf, p)?;
        let len = u32_at(self.buf, start)? as usize;
        let body = len
            .checked_mul(elem_size)
            .ok_or_else(|| corrupt("vector length overflows"))?;
        let data = bytes_at(self.buf, start + 4, body, "vector")?;
        Ok(Some(Vector {
            buf: self.buf,
            start: start + 4,
            data,
            len,
        }))
    }

    /// A string (UTF-8; invalid sequences are replaced).
    pub fn string(&self, index: usize) -> Result<Option<String>, Error> {
        Ok(self
            .vector(index, 1)?
            .map(|v| String::from_utf8_lossy(v.data).into_owned()))
    }
}

/// A vector field: `len` elements stored at `start`.
#[derive(Clone, Copy, Debug)]
pub struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    /// The elements' bytes.
    pub data: &'a [u8],
    /// Number of elements.
    pub len: usize,
}

impl<'a> Vector<'a> {
    /// Element `i` of a vector of tables.
    pub fn table(&self, i: usize) -> Result<Table<'a>, Error> {
        if i >= self.len {
            return Err(corrupt(&format!("index {i} in a vector of {}", self.len)));
        }
        Table::at(self.buf, follow(self.buf, self.start + 4 * i)?)
    }

    /// All tables of a vector of tables.
    pub fn tables(&self) -> Result<Vec<Table<'a>>, Error> {
        (0..self.len).map(|i| self.table(i)).collect()
    }

    /// The elements of a vector of 32-bit signed integers.
    pub fn i32s(&self) -> Vec<i32> {
        self.data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// The elements of a vector of 32-bit floats.
    pub fn f32s(&self) -> Vec<f32> {
        self.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// The elements of a vector of 64-bit signed integers.
    pub fn i64s(&self) -> Vec<i64> {
        self.data
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                i64::from_le_bytes(a)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled buffer: root table with a u32 field (7), a string field ("hi") and a
    /// vector of i32 ([1, -2]).
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(16u32.to_le_bytes()); // 0: root table at 16
        for v in [10u16, 16, 4, 8, 12, 0] {
            b.extend(v.to_le_bytes()); // 4: vtable (len 10, object 16, fields at 4, 8, 12), pad
        }
        b.extend(12i32.to_le_bytes()); // 16: table; vtable at 16 - 12 = 4
        b.extend(7u32.to_le_bytes()); // 20: field 0
        b.extend(8u32.to_le_bytes()); // 24: field 1 -> 32
        b.extend(12u32.to_le_bytes()); // 28: field 2 -> 40
        b.extend(2u32.to_le_bytes()); // 32: string length
        b.extend(*b"hi\0\0"); // 36
        b.extend(2u32.to_le_bytes()); // 40: vector length
        b.extend(1i32.to_le_bytes());
        b.extend((-2i32).to_le_bytes());
        b
    }

    #[test]
    fn reads_fields_and_defaults() {
        let buf = sample();
        let t = Table::root(&buf).unwrap();
        assert_eq!(t.u32(0, 0).unwrap(), 7);
        assert_eq!(t.string(1).unwrap().as_deref(), Some("hi"));
        assert_eq!(t.vector(2, 4).unwrap().unwrap().i32s(), [1, -2]);
        assert_eq!(t.i32(5, -9).unwrap(), -9, "absent field gives its default");
        assert!(t.table(7).unwrap().is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let buf = sample();
        for len in 0..buf.len() {
            let cut = &buf[..len];
            let read = Table::root(cut).and_then(|t| {
                t.u32(0, 0)?;
                t.string(1)?;
                t.vector(2, 4)?;
                Ok(())
            });
            assert!(read.is_err(), "truncated to {len} bytes");
        }
    }

    #[test]
    fn huge_lengths_and_offsets_are_errors() {
        let mut buf = sample();
        buf[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let t = Table::root(&buf).unwrap();
        assert!(t.vector(2, 4).is_err());
        buf[16..20].copy_from_slice(&i32::MIN.to_le_bytes());
        assert!(Table::root(&buf).is_err());
    }
}
