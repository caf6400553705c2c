//! Standard base64 (RFC 4648; `=` padding optional when decoding), as TF.js uses for string
//! attributes and npm packages for embedded weight shards.

use crate::Error;

fn sextet(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes base64 text; any character outside the alphabet (other than trailing `=`) is an error.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, Error> {
    let body = match text.iter().rposition(|&c| c != b'=') {
        Some(end) if text.len() - end - 1 <= 2 => &text[..=end],
        Some(_) => return Err(Error::Format("base64: too much padding".into())),
        None => &text[..0],
    };
    if body.len() % 4 == 1 {
        return Err(Error::Format("base64: truncated".into()));
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            let v = sextet(c).ok_or_else(|| {
                Error::Format(format!("base64: unexpected character {:?}", c as char))
            })?;
            acc = acc << 6 | v;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes bytes as padded base64 (the form TF.js writes string attributes in).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(acc >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn encodes_what_it_decodes() {
        for text in [
            &b""[..],
            b"S",
            b"SA",
            b"SAME",
            b"Relu6",
            &[0xff, 0xef, 0x00, 0x10],
        ] {
            assert_eq!(decode(encode(text).as_bytes()).unwrap(), text);
        }
        assert_eq!(encode(b"SAME"), "U0FNRQ==");
        assert_eq!(encode(b"BiasAdd"), "Qmlhc0FkZA==");
    }

    #[test]
    fn decodes_with_and_without_padding() {
        assert_eq!(decode(b"U0FNRQ==").unwrap(), b"SAME");
        assert_eq!(decode(b"U0FNRQ").unwrap(), b"SAME");
        assert_eq!(decode(b"UmVsdTY=").unwrap(), b"Relu6");
        assert_eq!(decode(b"Qmlhc0FkZA==").unwrap(), b"BiasAdd");
        assert_eq!(decode(b"").unwrap(), b"");
        assert_eq!(decode(b"/+8=").unwrap(), [0xff, 0xef]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"U0F*RQ==").is_err());
        assert!(decode(b"U").is_err());
        assert!(decode(b"U0FNRQ====").is_err());
    }
}
