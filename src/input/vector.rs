//! Examples that are lists of numbers (a raw base's input, [`VectorSpec`]): a NumPy `.npy` array
//! or numbers as text (CSV), taken as they are.
//!
//! - **NPY** (format versions 1, 2 and 3): any shape, flattened in C order; element types float16,
//!   float32, float64, signed and unsigned integers of 1 to 8 bytes and bool, either byte order.
//!   Fortran-ordered arrays of more than one dimension are refused (save them with
//!   `np.ascontiguousarray`). The header's shape is checked against the spec before any element
//!   is converted, and the data must be exactly the shape's size.
//! - **Text**: UTF-8, numbers separated by commas, semicolons or tabs, and within a field by
//!   spaces; lines are read one after the other (one row, one column or a small table, read row
//!   by row). Blank lines are skipped; an empty field between separators (`1,,2`: a missing
//!   value) and anything that is not a number (a header line) are errors naming the line.
//!
//! Either way the example must hold exactly [`VectorSpec::length`] finite numbers; parsing stops
//! at the first number past it, and never allocates more than the spec's length.

use std::path::Path;

use ndarray::Array1;

use super::VectorSpec;
use crate::{Error, Result};

/// The first bytes of every `.npy` file.
pub const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Reads one example file (within [`crate::limits::Limits::vector_bytes`]) into its
/// `spec.length` numbers.
pub fn load_vector(path: &Path, spec: &VectorSpec) -> Result<Array1<f32>> {
    let bytes = crate::limits::read(path, crate::limits::FileKind::Vector)?;
    vector_tensor(&bytes, path, spec)
}

/// One example's numbers from its file's bytes: NPY when they start with [`NPY_MAGIC`], else
/// text. `path` names the example in errors.
pub fn vector_tensor(bytes: &[u8], path: &Path, spec: &VectorSpec) -> Result<Array1<f32>> {
    let input_err = |msg: String| Error::Input {
        path: path.to_path_buf(),
        msg,
    };
    let values = if bytes.starts_with(NPY_MAGIC) {
        from_npy(bytes, spec.length)
    } else if looks_like_text(bytes) {
        match std::str::from_utf8(bytes) {
            Ok(text) => from_text(text, spec.length),
            Err(e) => Err(format!("not UTF-8 text: {e}")),
        }
    } else if bytes.is_empty() {
        Err("the file is empty: expected numbers (CSV text or an .npy array)".into())
    } else {
        Err(format!(
            "neither an .npy array nor numbers as text (CSV): it starts with {:02x?}",
            &bytes[..bytes.len().min(8)]
        ))
    }
    .map_err(input_err)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(input_err(format!(
            "number {} is {}: examples must hold finite numbers",
            i + 1,
            values[i]
        )));
    }
    Ok(Array1::from(values))
}

/// Whether `bytes` could be numbers as text: not empty, and their start is printable ASCII or
/// whitespace.
pub fn looks_like_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .take(256)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
}

/// `values` as a 1-D float32 little-endian `.npy` file (format version 1.0), as
/// `np.save(path, np.asarray(values, dtype="<f4"))` writes it.
pub fn npy_bytes(values: &[f32]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    // Magic, version, length, header and its newline are padded to a multiple of 64 bytes.
    let unpadded = NPY_MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(NPY_MAGIC.len() + 4 + header.len() + values.len() * 4);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The header is a few dozen bytes, so it fits a u16.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// An NPY element type: kind (`f`, `i`, `u`, `b`), size in bytes, big-endian.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Descr {
    kind: u8,
    size: usize,
    big_endian: bool,
}

impl Descr {
    fn parse(text: &str) -> std::result::Result<Descr, String> {
        let unsupported = || {
            format!("element type '{text}' is not one graft reads (float16/32/64, integers, bool)")
        };
        let bytes = text.as_bytes();
        let (&order, rest) = bytes.split_first().ok_or_else(unsupported)?;
        let (&kind, size) = rest.split_first().ok_or_else(unsupported)?;
        let size: usize = std::str::from_utf8(size)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(unsupported)?;
        let fits = match kind {
            b'f' => matches!(size, 2 | 4 | 8),
            b'i' | b'u' => matches!(size, 1 | 2 | 4 | 8),
            b'b' => size == 1,
            _ => false,
        };
        if !fits || !matches!(order, b'<' | b'>' | b'|' | b'=') {
            return Err(unsupported());
        }
        Ok(Descr {
            kind,
            size,
            big_endian: order == b'>',
        })
    }

    /// One element as f32.
    fn value(self, raw: &[u8]) -> f32 {
        let mut b = [0u8; 8];
        b[..raw.len()].copy_from_slice(raw);
        if self.big_endian {
            b[..raw.len()].reverse();
        }
        let u = u64::from_le_bytes(b);
        // Integers beyond f32's 24-bit mantissa round, as NumPy's astype(float32) does.
        match (self.kind, self.size) {
            (b'f', 2) => half::f16::from_bits(u as u16).to_f32(),
            (b'f', 4) => f32::from_bits(u as u32),
            (b'f', _) => f64::from_bits(u) as f32,
            (b'i', 1) => f32::from(u as u8 as i8),
            (b'i', 2) => f32::from(u as u16 as i16),
            (b'i', 4) => u as u32 as i32 as f32,
            (b'i', _) => u as i64 as f32,
            (b'b', _) => f32::from(u8::from(u != 0)),
            _ => u as f32,
        }
    }
}

/// The text after `'key':` in an NPY header dict, up to its end.
fn after_key<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// The numbers of an `.npy` file, which must hold `length` of them.
fn from_npy(bytes: &[u8], length: usize) -> std::result::Result<Vec<f32>, String> {
    let short = || "a truncated .npy file (its header is cut off)".to_string();
    let major = *bytes.get(6).ok_or_else(short)?;
    let (header_len, start): (usize, usize) = match major {
        1 => {
            let b = bytes.get(8..10).ok_or_else(short)?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10)
        }
        2 | 3 => {
            let b = bytes.get(8..12).ok_or_else(short)?;
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (usize::try_from(n).map_err(|_| short())?, 12)
        }
        v => {
            return Err(format!(
                ".npy format version {v} is not one graft reads (1, 2, 3)"
            ))
        }
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(short)?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let bad = |what: &str| format!("the .npy header has no readable {what}: {}", header.trim());
    let descr = after_key(header, "descr")
        .and_then(|r| {
            let quote = r.chars().next().filter(|c| *c == '\'' || *c == '"')?;
            r[1..].split(quote).next()
        })
        .ok_or_else(|| bad("'descr'"))?;
    let descr = Descr::parse(descr)?;
    let fortran = after_key(header, "fortran_order")
        .map(|r| r.starts_with("True"))
        .ok_or_else(|| bad("'fortran_order'"))?;
    let dims: Vec<u64> = after_key(header, "shape")
        .and_then(|r| r.strip_prefix('(')?.split(')').next())
        .and_then(|inner| {
            inner
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| d.trim_end_matches('L').parse().ok())
                .collect()
        })
        .ok_or_else(|| bad("'shape'"))?;
    if fortran && dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(format!(
            "a Fortran-ordered array of shape {dims:?}: save it in C order \
             (np.ascontiguousarray) so its numbers have one order"
        ));
    }
    let count = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    if count != Some(length as u64) {
        return Err(format!(
            "the array has shape {dims:?}, {} numbers; the base takes {length}",
            count.map_or_else(|| "too many".to_string(), |c| c.to_string())
        ));
    }
    let data = &bytes[start + header_len..];
    let want = length.checked_mul(descr.size).ok_or_else(short)?;
    if data.len() != want {
        return Err(format!(
            "the array's data is {} bytes, its header says {length} x {} = {want}",
            data.len(),
            descr.size
        ));
    }
    Ok(data
        .chunks_exact(descr.size)
        .map(|c| descr.value(c))
        .collect())
}

/// The numbers of a text example, which must hold `length` of them.
fn from_text(text: &str, length: usize) -> std::result::Result<Vec<f32>, String> {
    // Every number takes at least one byte and a separator: no more room than that is made.
    let mut values = Vec::with_capacity(length.min(text.len() / 2 + 1));
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        for field in line.split([',', ';', '\t']) {
            let field = field.trim();
            if field.is_empty() {
                return Err(format!(
                    "line {line_no}: an empty field (a missing value?) in '{}'",
                    shorten(line)
                ));
            }
            for token in field.split_whitespace() {
                let v: f32 = token.parse().map_err(|_| {
                    format!(
                        "line {line_no}: '{}' is not a number (examples hold numbers only, no \
                         header line)",
                        shorten(token)
                    )
                })?;
                if values.len() == length {
                    return Err(format!(
                        "more than the {length} numbers the base takes (line {line_no})"
                    ));
                }
                values.push(v);
            }
        }
    }
    if values.len() != length {
        return Err(format!("{} numbers; the base takes {length}", values.len()));
    }
    Ok(values)
}

/// At most 40 characters of `s`, for messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(length: usize) -> VectorSpec {
        VectorSpec { length }
    }

    fn parse(bytes: &[u8], length: usize) -> std::result::Result<Vec<f32>, String> {
        vector_tensor(bytes, Path::new("x"), &spec(length))
            .map(|a| a.to_vec())
            .map_err(|e| e.to_string())
    }

    /// An .npy file with `descr`, `shape` (as NumPy writes it) and raw data.
    fn npy(descr: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let fo = if fortran { "True" } else { "False" };
        let header = format!("{{'descr': '{descr}', 'fortran_order': {fo}, 'shape': {shape}, }}\n");
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn npy_written_here_reads_back_and_is_aligned() {
        let values = [0.5f32, -1.25, 3.0, 1e-7];
        let bytes = npy_bytes(&values);
        assert_eq!((bytes.len() - values.len() * 4) % 64, 0);
        assert_eq!(parse(&bytes, 4).unwrap(), values);
    }

    #[test]
    fn npy_element_types_and_byte_orders_convert_as_numpy_does() {
        let be: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(
            parse(&npy(">f8", "(2,)", false, &be), 2).unwrap(),
            [1.5, -2.0]
        );
        let i2: Vec<u8> = [-3i16, 300].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse(&npy("<i2", "(1, 2)", false, &i2), 2).unwrap(),
            [-3.0, 300.0]
        );
        assert_eq!(
            parse(&npy("|u1", "(3,)", false, &[0, 128, 255]), 3).unwrap(),
            [0.0, 128.0, 255.0]
        );
        assert_eq!(
            parse(&npy("|b1", "(2,)", false, &[1, 0]), 2).unwrap(),
            [1.0, 0.0]
        );
        let h: Vec<u8> = half::f16::from_f32(0.75).to_le_bytes().to_vec();
        assert_eq!(parse(&npy("<f2", "()", false, &h), 1).unwrap(), [0.75]);
        // A 2-D array is flattened in C order; one that is Fortran-ordered is refused.
        let grid: Vec<u8> = [1f32, 2., 3., 4.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            parse(&npy("<f4", "(2, 2)", false, &grid), 4).unwrap(),
            [1., 2., 3., 4.]
        );
        let err = parse(&npy("<f4", "(2, 2)", true, &grid), 4).unwrap_err();
        assert!(err.contains("Fortran-ordered"), "{err}");
    }

    #[test]
    fn bad_npy_files_say_what_is_wrong() {
        let f4 = |n: usize| vec![0u8; n * 4];
        let cases: [(Vec<u8>, usize, &str); 7] = [
            (
                npy("<f4", "(3,)", false, &f4(3)),
                4,
                "shape [3], 3 numbers; the base takes 4",
            ),
            (npy("<f4", "(3,)", false, &f4(2)), 3, "data is 8 bytes"),
            (npy("<c8", "(1,)", false, &f4(2)), 1, "element type '<c8'"),
            (npy("|O", "(1,)", false, &f4(2)), 1, "element type '|O'"),
            (
                npy("<f4", "(9999999999, 9999999999, 9999999999)", false, &[]),
                3,
                "too many",
            ),
            (NPY_MAGIC[..6].to_vec(), 3, "truncated"),
            ([NPY_MAGIC, &[9u8, 0, 0, 0][..]].concat(), 3, "version 9"),
        ];
        for (bytes, length, want) in cases {
            let err = parse(&bytes, length).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let nan: Vec<u8> = [1f32, f32::NAN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let err = parse(&npy("<f4", "(2,)", false, &nan), 2).unwrap_err();
        assert!(err.contains("number 2 is NaN"), "{err}");
    }

    #[test]
    fn text_takes_rows_columns_and_tables() {
        assert_eq!(parse(b"1,2.5,-3e2\n", 3).unwrap(), [1.0, 2.5, -300.0]);
        assert_eq!(parse(b"1\n2\r\n\n3\n", 3).unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(
            parse(b"1 2\t3; 4\n5 6", 6).unwrap(),
            [1., 2., 3., 4., 5., 6.]
        );
    }

    #[test]
    fn bad_text_says_which_line_and_what() {
        let cases: [(&[u8], usize, &str); 7] = [
            (b"a,b\n1,2\n", 2, "line 1: 'a' is not a number"),
            (b"1,,2\n", 3, "line 1: an empty field"),
            (b"1,2,3\n", 2, "more than the 2 numbers"),
            (b"1,2\n", 3, "2 numbers; the base takes 3"),
            (b"1,inf\n", 2, "number 2 is inf"),
            (b"", 2, "the file is empty"),
            (
                b"\x89PNG\r\n\x1a\n",
                2,
                "neither an .npy array nor numbers as text",
            ),
        ];
        for (bytes, length, want) in cases {
            let err = parse(bytes, length).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
