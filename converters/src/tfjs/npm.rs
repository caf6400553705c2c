//! TF.js model files as some npm packages ship them: each file wrapped in a one-module browserify
//! bundle (`….min.js`) whose module sets `exports` to the file's content, either a JavaScript
//! object literal (model.json) or a base64 string (a weight shard). [`unwrap_browserify`] gives the
//! standard file back: model.json as `JSON.stringify` would write it, the shard as its bytes.
//! Such packages name shards without an extension (their loader maps the names); the unwrapped
//! model.json can name them as they are stored (`group1-shard1of1` -> `group1-shard1of1.bin`).

use crate::Error;

/// What a wrapper holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapped {
    /// A JavaScript object literal, returned as compact JSON.
    Json,
    /// A base64 string, returned decoded.
    Base64,
}

const MODULE_START: &str = "{1:[function(";
const MODULE_END: &str = "},{}]},{},[1])(1)});";

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("browserify wrapper: {}", msg.into()))
}

/// The content a browserify wrapper exports. For [`Wrapped::Json`], strings in `paths` lists
/// (weight shard names) equal to a `renames` key are replaced by its value.
pub fn unwrap_browserify(
    wrapper: &[u8],
    kind: Wrapped,
    renames: &[(String, String)],
) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(wrapper).map_err(|_| bad("not UTF-8 text"))?;
    let start = text
        .find(MODULE_START)
        .ok_or_else(|| bad("no module 1 (not a browserify bundle)"))?;
    let body = &text[start..];
    let value_at = body
        .find(".exports=")
        .ok_or_else(|| bad("module 1 sets no exports"))?
        + ".exports=".len();
    let value = body[value_at..]
        .trim_end()
        .strip_suffix(MODULE_END)
        .ok_or_else(|| bad("unexpected end of the bundle"))?;
    match kind {
        Wrapped::Base64 => {
            let inner = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| bad("the export is not a string"))?;
            super::base64::decode(inner.as_bytes())
        }
        Wrapped::Json => {
            let mut p = Literal {
                s: value.as_bytes(),
                pos: 0,
                out: String::with_capacity(value.len() + value.len() / 8),
                renames,
            };
            p.value(0, "")?;
            if p.pos != p.s.len() {
                return Err(bad(format!("unexpected text at offset {}", p.pos)));
            }
            Ok(p.out.into_bytes())
        }
    }
}

/// Deepest nesting accepted (as serde_json's default recursion limit).
const MAX_DEPTH: usize = 128;

/// Transcodes a JavaScript literal (objects, arrays, strings, numbers, `true`/`false`/`!0`/`!1`,
/// `null`) into JSON text.
struct Literal<'a> {
    s: &'a [u8],
    pos: usize,
    out: String,
    renames: &'a [(String, String)],
}

impl Literal<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn err(&self, what: &str) -> Error {
        bad(format!("{what} at offset {}", self.pos))
    }

    /// One value; `key` is the object key it sits under (array elements inherit it).
    fn value(&mut self, depth: usize, key: &str) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.out.push('{');
                let mut first = true;
                while !self.eat(b'}') {
                    if !first && !self.eat(b',') {
                        return Err(self.err("expected , or }"));
                    }
                    if !first {
                        self.out.push(',');
                    }
                    first = false;
                    let key = self.key()?;
                    if !self.eat(b':') {
                        return Err(self.err("expected :"));
                    }
                    self.out.push(':');
                    self.value(depth + 1, &key)?;
                }
                self.out.push('}');
            }
            Some(b'[') => {
                self.pos += 1;
                self.out.push('[');
                let mut first = true;
                while !self.eat(b']') {
                    if !first && !self.eat(b',') {
                        return Err(self.err("expected , or ]"));
                    }
                    if !first {
                        self.out.push(',');
                    }
                    first = false;
                    self.value(depth + 1, key)?;
                }
                self.out.push(']');
            }
            Some(b'"' | b'\'') => {
                let mut s = self.string()?;
                if key == "paths" {
                    if let Some((_, to)) = self.renames.iter().find(|(from, _)| *from == s) {
                        s = to.clone();
                    }
                }
                push_json_string(&mut self.out, &s);
            }
            Some(b'!') => {
                self.pos += 1;
                let v = match self.peek() {
                    Some(b'0') => "true",
                    Some(b'1') => "false",
                    _ => return Err(self.err("expected !0 or !1")),
                };
                self.pos += 1;
                self.out.push_str(v);
            }
            Some(c) if c == b'-' || c == b'.' || c.is_ascii_digit() => {
                let n = self.number()?;
                self.out.push_str(&js_number(n));
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let word = self.identifier();
                match word.as_str() {
                    "true" | "false" | "null" => self.out.push_str(&word),
                    _ => return Err(self.err(&format!("unexpected word {word:?}"))),
                }
            }
            _ => return Err(self.err("expected a value")),
        }
        Ok(())
    }

    fn key(&mut self) -> Result<String, Error> {
        let key = match self.peek() {
            Some(b'"' | b'\'') => self.string()?,
            Some(c) if c.is_ascii_digit() => js_number(self.number()?),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => self.identifier(),
            _ => return Err(self.err("expected a key")),
        };
        push_json_string(&mut self.out, &key);
        Ok(key)
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn number(&mut self) -> Result<f64, Error> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("number"))?;
        let text = match text.strip_prefix('-') {
            Some(rest) if rest.starts_with('.') => format!("-0{rest}"),
            _ if text.starts_with('.') => format!("0{text}"),
            _ => text.to_string(),
        };
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.err(&format!("bad number {text:?}")))
    }

    fn string(&mut self) -> Result<String, Error> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.pos += 1;
            match c {
                _ if c == quote => break,
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    let ch = match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'v' => '\u{b}',
                        b'0' => '\0',
                        b'x' | b'u' => {
                            let n = if e == b'x' { 2 } else { 4 };
                            let hex = self
                                .s
                                .get(self.pos..self.pos + n)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err("bad escape"))?;
                            self.pos += n;
                            hex
                        }
                        other => other as char,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

/// A string as `JSON.stringify` writes it.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite number as JavaScript's `Number.prototype.toString` writes it (shortest round-trip
/// digits; plain notation for 1e-7 <= |x| < 1e21).
pub fn js_number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        let rest = if k > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        format!("{}{rest}e{sign}{}", &digits[..1], e.abs())
    };
    if x < 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(value: &str) -> Vec<u8> {
        format!("!function(e){{}}(function(){{return function e(a){{}}({MODULE_START}e,a,n){{a.exports={value}{MODULE_END}\n")
            .into_bytes()
    }

    #[test]
    fn numbers_print_as_javascript_does() {
        for (x, s) in [
            (0.5, "0.5"),
            (-0.25, "-0.25"),
            (224.0, "224"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (123456.789, "123456.789"),
            (0.39643433690071106, "0.39643433690071106"),
            (1e3, "1000"),
        ] {
            assert_eq!(js_number(x), s);
        }
    }

    #[test]
    fn object_literal_becomes_json() {
        let renames = [("s1".to_string(), "s1.bin".to_string())];
        let json = unwrap_browserify(
            &wrap(r#"{a:1,"b c":[.5,-.5,!0,!1,null],d:{e:'x"y',f:1e3,g:"\x41\n"},paths:["s1","s2"],n:"s1"}"#),
            Wrapped::Json,
            &renames,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"a":1,"b c":[0.5,-0.5,true,false,null],"d":{"e":"x\"y","f":1000,"g":"A\n"},"paths":["s1.bin","s2"],"n":"s1"}"#
        );
    }

    #[test]
    fn base64_export_is_decoded() {
        assert_eq!(
            unwrap_browserify(&wrap("\"U0FNRQ==\""), Wrapped::Base64, &[]).unwrap(),
            b"SAME"
        );
    }

    #[test]
    fn malformed_wrappers_are_errors() {
        assert!(unwrap_browserify(b"module.exports = 1", Wrapped::Json, &[]).is_err());
        assert!(unwrap_browserify(&wrap("{a:}"), Wrapped::Json, &[]).is_err());
        assert!(unwrap_browserify(&wrap("{a:1"), Wrapped::Json, &[]).is_err());
        assert!(unwrap_browserify(&wrap("{a:foo}"), Wrapped::Json, &[]).is_err());
        assert!(unwrap_browserify(&wrap("{a:1}"), Wrapped::Base64, &[]).is_err());
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(unwrap_browserify(&wrap(&deep), Wrapped::Json, &[]).is_err());
        assert!(unwrap_browserify(&[0xff, 0xfe], Wrapped::Json, &[]).is_err());
    }
}
