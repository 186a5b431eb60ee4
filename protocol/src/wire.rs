//! JSON text exactly as the original Python server wrote it.
//!
//! Python's `json.dumps` (default arguments) separates members with `", "`, keys from values
//! with `": "`, and escapes every non-ASCII character as `\uXXXX` (`ensure_ascii=True`).
//! serde_json's compact output differs in all three; this formatter restores them.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        // ensure_ascii: non-ASCII characters become \uXXXX, astral ones a surrogate pair.
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, w: &mut W, escape: CharEscape) -> io::Result<()> {
        // Python writes control characters other than \b\f\n\r\t as \u00XX (lower-case hex),
        // which is what serde_json does too; only the short forms need listing.
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{byte:04x}"),
            // Newer serde_json versions may add variants; fall back to its own escaping.
            #[allow(unreachable_patterns)]
            _ => return serde_json::ser::CompactFormatter.write_char_escape(w, escape),
        };
        w.write_all(s)
    }
}

/// Serialises `value` the way Python's `json.dumps(value)` would.
pub fn to_wire_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(96);
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser).expect("serialising protocol messages to memory cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII only")
}
