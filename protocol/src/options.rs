//! Per-job options: what a client may choose for its jobs, opt-in.
//!
//! Two places carry them, with the same field names:
//! - the connection URL's query, for every job on the connection:
//!   `/generate3d?seed=7&faces=20000&texture=2048&formats=zip,glb&steps=30&guidance=5&remove_background=auto`;
//! - a text message sent just before an image, for that one job (its fields override the
//!   query's): `{"type": "options", "seed": 7, "formats": ["zip", "glb"]}`.
//!
//! Every field is optional; a field left out means the model bundle's default, so a client that
//! sends none gets exactly the original protocol's output. A bad value is refused naming the
//! option and its range ([`OptionError`]), before anything is queued.
//!
//! Between gateway and worker the options travel as JSON ([`JobOptions`] is `serde`), holding
//! only the fields that were set.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PartName;

/// The `type` of the options message.
pub const OPTIONS_TYPE: &str = "options";

/// Largest `seed` (seeds are 32-bit, as in upstream's UI and exactly representable in the
/// JavaScript clients' numbers).
pub const SEED_MAX: u64 = u32::MAX as u64;
/// Range of `steps` (DDIM steps; 50 is upstream's). The bound caps a job's GPU time at twice
/// the default's.
pub const STEPS_RANGE: std::ops::RangeInclusive<u32> = 1..=100;
/// Range of `guidance` (classifier-free guidance scale; 5.5 is upstream's).
pub const GUIDANCE_RANGE: std::ops::RangeInclusive<f64> = 1.0..=20.0;
/// Texture sizes a client may ask for (1024 is upstream's).
pub const TEXTURE_SIZES: [u32; 3] = [512, 1024, 2048];
/// Range of `faces`, the target face count of the mesh (decimated when it has more).
pub const FACES_RANGE: std::ops::RangeInclusive<u32> = 500..=1_000_000;

/// Background removal of the input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveBackground {
    /// Upstream's rule: an image with transparency keeps its alpha; any other is cut out by
    /// U-2-Net.
    Auto,
    /// Always cut out by U-2-Net, even when the image has transparency.
    On,
    /// Never: the image is used as it is (its alpha, if any, still composites it on grey).
    Off,
}

impl RemoveBackground {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveBackground::Auto => "auto",
            RemoveBackground::On => "on",
            RemoveBackground::Off => "off",
        }
    }
}

/// A mesh file format a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `output3d.zip` (OBJ + MTL + PNG): always sent, as in the original protocol.
    Zip,
    /// `output3d.glb` (binary glTF 2.0 with the texture embedded), sent after the zip.
    Glb,
}

/// Options of one job. `None` everywhere ([`JobOptions::default`]) is the original protocol.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Sampling seed, `0..=`[`SEED_MAX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Classifier-free guidance scale, in [`GUIDANCE_RANGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// DDIM steps, in [`STEPS_RANGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Texture width and height, one of [`TEXTURE_SIZES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture: Option<u32>,
    /// Target face count, in [`FACES_RANGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces: Option<u32>,
    /// Mesh formats; the zip is sent whatever this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<Format>>,
    /// Background removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_background: Option<RemoveBackground>,
}

/// An option a client set to a value outside its range: the message names both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option `{option}` {expected} (got {got})")]
pub struct OptionError {
    /// The option's name as sent.
    pub option: String,
    /// What it accepts, e.g. `must be an integer in 1..=100`.
    pub expected: String,
    /// What was sent, shortened.
    pub got: String,
}

/// The option names, in the order the README lists them.
pub const OPTION_NAMES: [&str; 7] =
    ["seed", "guidance", "steps", "texture", "faces", "formats", "remove_background"];

impl JobOptions {
    /// Parses a connection's raw query string. Keys that are not options (`events`, and any a
    /// newer client adds) are ignored; a repeated option's last value wins.
    pub fn from_query(query: Option<&str>) -> Result<Self, OptionError> {
        let mut options = JobOptions::default();
        for (key, value) in query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
            if OPTION_NAMES.contains(&key) {
                options.set(key, Raw::Query(&percent_decode(value)))?;
            }
        }
        Ok(options)
    }

    /// Parses a text message. `None` when it is not an options message at all (not a JSON
    /// object whose `type` is `options`); otherwise the options or the first bad one. Unknown
    /// fields are refused: a misspelt option must not silently fall back to the default.
    pub fn from_message(text: &str) -> Option<Result<Self, OptionError>> {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else { return None };
        if fields.get("type").and_then(Value::as_str) != Some(OPTIONS_TYPE) {
            return None;
        }
        let mut options = JobOptions::default();
        for (key, value) in fields.iter().filter(|(k, _)| k.as_str() != "type") {
            if let Err(e) = options.set(key, Raw::Json(value)) {
                return Some(Err(e));
            }
        }
        Some(Ok(options))
    }

    /// The options message holding these options: `type` first, then the set fields in
    /// declaration order, formatted as the protocol's other messages.
    pub fn to_message(&self) -> String {
        let fields = crate::to_wire_json(self);
        match fields.strip_prefix('{').and_then(|f| f.strip_suffix('}')) {
            Some("") | None => format!(r#"{{"type": "{OPTIONS_TYPE}"}}"#),
            Some(fields) => format!(r#"{{"type": "{OPTIONS_TYPE}", {fields}}}"#),
        }
    }

    /// The query-string form (`seed=7&formats=zip,glb`, fields in [`OPTION_NAMES`] order; empty
    /// for no options), which [`JobOptions::from_query`] reads back.
    pub fn to_query(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(v) = self.seed {
            pairs.push(format!("seed={v}"));
        }
        if let Some(v) = self.guidance {
            pairs.push(format!("guidance={v}"));
        }
        if let Some(v) = self.steps {
            pairs.push(format!("steps={v}"));
        }
        if let Some(v) = self.texture {
            pairs.push(format!("texture={v}"));
        }
        if let Some(v) = self.faces {
            pairs.push(format!("faces={v}"));
        }
        if let Some(formats) = &self.formats {
            let names: Vec<&str> = formats
                .iter()
                .map(|f| match f {
                    Format::Zip => "zip",
                    Format::Glb => "glb",
                })
                .collect();
            pairs.push(format!("formats={}", names.join(",")));
        }
        if let Some(v) = self.remove_background {
            pairs.push(format!("remove_background={}", v.as_str()));
        }
        pairs.join("&")
    }

    /// These options with every field `over` sets replacing ours (a message over the query).
    pub fn overridden_by(&self, over: &JobOptions) -> JobOptions {
        JobOptions {
            seed: over.seed.or(self.seed),
            guidance: over.guidance.or(self.guidance),
            steps: over.steps.or(self.steps),
            texture: over.texture.or(self.texture),
            faces: over.faces.or(self.faces),
            formats: over.formats.clone().or_else(|| self.formats.clone()),
            remove_background: over.remove_background.or(self.remove_background),
        }
    }

    /// Checks every set field is in its range (for options that arrive deserialised, e.g. from
    /// the queue; the parsers check as they go).
    pub fn validate(&self) -> Result<(), OptionError> {
        let mut copy = JobOptions::default();
        if let Some(v) = self.seed {
            copy.set("seed", Raw::Json(&Value::from(v)))?;
        }
        if let Some(v) = self.guidance {
            copy.set("guidance", Raw::Json(&Value::from(v)))?;
        }
        if let Some(v) = self.steps {
            copy.set("steps", Raw::Json(&Value::from(v)))?;
        }
        if let Some(v) = self.texture {
            copy.set("texture", Raw::Json(&Value::from(v)))?;
        }
        if let Some(v) = self.faces {
            copy.set("faces", Raw::Json(&Value::from(v)))?;
        }
        Ok(())
    }

    /// Whether the job sends `output3d.glb`.
    pub fn wants_glb(&self) -> bool {
        self.formats.as_ref().is_some_and(|f| f.contains(&Format::Glb))
    }

    /// The parts the job sends, in protocol order: the original three, then `output3d.glb`
    /// when asked for.
    pub fn parts(&self) -> Vec<PartName> {
        let mut parts = crate::PARTS.to_vec();
        if self.wants_glb() {
            parts.push(PartName::OutputGlb);
        }
        parts
    }

    /// Whether no option is set (the original protocol's job).
    pub fn is_default(&self) -> bool {
        *self == JobOptions::default()
    }

    fn set(&mut self, key: &str, raw: Raw<'_>) -> Result<(), OptionError> {
        let bad = |expected: &str| OptionError {
            option: key.to_owned(),
            expected: expected.into(),
            got: raw.shown(),
        };
        match key {
            "seed" => {
                const WANT: &str = "must be an integer in 0..=4294967295";
                self.seed = Some(raw.integer().filter(|v| *v <= SEED_MAX).ok_or_else(|| bad(WANT))?);
            }
            "steps" => {
                const WANT: &str = "must be an integer in 1..=100";
                let v = raw.integer().and_then(|v| u32::try_from(v).ok()).filter(|v| STEPS_RANGE.contains(v));
                self.steps = Some(v.ok_or_else(|| bad(WANT))?);
            }
            "guidance" => {
                const WANT: &str = "must be a number in 1.0..=20.0";
                let v = raw.number().filter(|v| GUIDANCE_RANGE.contains(v));
                self.guidance = Some(v.ok_or_else(|| bad(WANT))?);
            }
            "texture" => {
                const WANT: &str = "must be 512, 1024 or 2048";
                let v =
                    raw.integer().and_then(|v| u32::try_from(v).ok()).filter(|v| TEXTURE_SIZES.contains(v));
                self.texture = Some(v.ok_or_else(|| bad(WANT))?);
            }
            "faces" => {
                const WANT: &str = "must be an integer in 500..=1000000";
                let v = raw.integer().and_then(|v| u32::try_from(v).ok()).filter(|v| FACES_RANGE.contains(v));
                self.faces = Some(v.ok_or_else(|| bad(WANT))?);
            }
            "formats" => {
                const WANT: &str = "must list formats among zip and glb";
                let names = raw.list().ok_or_else(|| bad(WANT))?;
                let formats = names
                    .iter()
                    .map(|name| match name.as_str() {
                        "zip" => Some(Format::Zip),
                        "glb" => Some(Format::Glb),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>();
                self.formats = Some(formats.ok_or_else(|| bad(WANT))?);
            }
            "remove_background" => {
                const WANT: &str = "must be auto, on or off";
                let v = match raw.text() {
                    Some("auto") => RemoveBackground::Auto,
                    Some("on") => RemoveBackground::On,
                    Some("off") => RemoveBackground::Off,
                    _ => return Err(bad(WANT)),
                };
                self.remove_background = Some(v);
            }
            _ => {
                return Err(OptionError {
                    option: key.to_owned(),
                    expected: format!("is not an option (options: {})", OPTION_NAMES.join(", ")),
                    got: raw.shown(),
                })
            }
        }
        Ok(())
    }
}

/// A value as a client sent it: query text, or a JSON value of a message.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Query(&'a str),
    Json(&'a Value),
}

impl Raw<'_> {
    fn integer(&self) -> Option<u64> {
        match self {
            Raw::Query(s) => s.parse().ok(),
            Raw::Json(v) => v.as_u64(),
        }
    }

    fn number(&self) -> Option<f64> {
        let v = match self {
            Raw::Query(s) => s.parse::<f64>().ok(),
            Raw::Json(v) => v.as_f64(),
        };
        v.filter(|v| v.is_finite())
    }

    fn text(&self) -> Option<&str> {
        match self {
            Raw::Query(s) => Some(s),
            Raw::Json(v) => v.as_str(),
        }
    }

    /// A comma-separated query value, or a JSON array of strings.
    fn list(&self) -> Option<Vec<String>> {
        match self {
            Raw::Query(s) => Some(s.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()),
            Raw::Json(Value::Array(items)) => {
                items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()
            }
            Raw::Json(_) => None,
        }
    }

    /// The value for an error message, cut to a readable length.
    fn shown(&self) -> String {
        let s = match self {
            Raw::Query(s) => format!("`{s}`"),
            Raw::Json(v) => v.to_string(),
        };
        if s.chars().count() > 40 {
            format!("{}...", s.chars().take(40).collect::<String>())
        } else {
            s
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space) of a query value; bad escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi * 16 + lo),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's query example parses into every option.
    #[test]
    fn query_parses_every_option() {
        let q = "events=progress&seed=7&faces=20000&texture=2048&formats=zip,glb&steps=30&guidance=5&remove_background=off";
        let o = JobOptions::from_query(Some(q)).unwrap();
        assert_eq!(o.seed, Some(7));
        assert_eq!(o.faces, Some(20000));
        assert_eq!(o.texture, Some(2048));
        assert_eq!(o.formats, Some(vec![Format::Zip, Format::Glb]));
        assert_eq!(o.steps, Some(30));
        assert_eq!(o.guidance, Some(5.0));
        assert_eq!(o.remove_background, Some(RemoveBackground::Off));
        assert!(o.wants_glb());
        assert_eq!(o.parts().last(), Some(&PartName::OutputGlb));
    }

    /// No query and a query without options are the default options: the original protocol.
    #[test]
    fn no_options_is_default() {
        assert!(JobOptions::from_query(None).unwrap().is_default());
        assert!(JobOptions::from_query(Some("events=progress&key=x")).unwrap().is_default());
        assert_eq!(JobOptions::default().parts(), crate::PARTS.to_vec());
    }

    /// The message's fields override the query's, field by field.
    #[test]
    fn message_overrides_query() {
        let query = JobOptions::from_query(Some("seed=7&steps=20")).unwrap();
        let msg = JobOptions::from_message(r#"{"type": "options", "seed": 9, "formats": ["glb"]}"#)
            .unwrap()
            .unwrap();
        let o = query.overridden_by(&msg);
        assert_eq!((o.seed, o.steps, o.wants_glb()), (Some(9), Some(20), true));
    }

    /// Text that is not an options message is not taken for one.
    #[test]
    fn other_text_is_not_options() {
        assert!(JobOptions::from_message("hello").is_none());
        assert!(JobOptions::from_message(r#"{"type": "status"}"#).is_none());
        assert!(JobOptions::from_message("[1, 2]").is_none());
    }

    /// Each invalid value, by query and by message, names its option and its range.
    #[test]
    fn each_invalid_value_names_option_and_range() {
        let cases = [
            ("seed", "-1", "-1", "0..=4294967295"),
            ("seed", "4294967296", "4294967296", "0..=4294967295"),
            ("seed", "x", "\"x\"", "0..=4294967295"),
            ("steps", "0", "0", "1..=100"),
            ("steps", "101", "101", "1..=100"),
            ("steps", "2.5", "2.5", "1..=100"),
            ("guidance", "0.5", "0.5", "1.0..=20.0"),
            ("guidance", "21", "21", "1.0..=20.0"),
            ("guidance", "nan", "\"nan\"", "1.0..=20.0"),
            ("texture", "1000", "1000", "512, 1024 or 2048"),
            ("texture", "4096", "4096", "512, 1024 or 2048"),
            ("faces", "499", "499", "500..=1000000"),
            ("faces", "1000001", "1000001", "500..=1000000"),
            ("formats", "zip,fbx", "[\"zip\", \"fbx\"]", "zip and glb"),
            ("formats", "obj", "\"obj\"", "zip and glb"),
            ("remove_background", "yes", "\"yes\"", "auto, on or off"),
            ("remove_background", "ON", "true", "auto, on or off"),
        ];
        for (option, query_value, json_value, range) in cases {
            let by_query = JobOptions::from_query(Some(&format!("{option}={query_value}"))).unwrap_err();
            let msg = format!(r#"{{"type": "options", "{option}": {json_value}}}"#);
            let by_message = JobOptions::from_message(&msg).unwrap().unwrap_err();
            for e in [by_query, by_message] {
                assert_eq!(e.option, option);
                let text = e.to_string();
                assert!(text.contains(&format!("`{option}`")) && text.contains(range), "{text}");
            }
        }
    }

    /// An unknown field in a message is refused by name; in a query it is ignored.
    #[test]
    fn unknown_message_field_is_refused() {
        let e = JobOptions::from_message(r#"{"type": "options", "sead": 7}"#).unwrap().unwrap_err();
        assert_eq!(e.option, "sead");
        assert!(e.to_string().contains("not an option"));
    }

    /// Options survive the queue's JSON round trip, and the message writer's output parses.
    #[test]
    fn round_trips() {
        let o = JobOptions::from_query(Some("seed=7&formats=glb&guidance=4.5&remove_background=on")).unwrap();
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<JobOptions>(&json).unwrap(), o);
        assert_eq!(serde_json::to_string(&JobOptions::default()).unwrap(), "{}");
        assert_eq!(JobOptions::from_message(&o.to_message()).unwrap().unwrap(), o);
        assert!(o.to_message().starts_with(r#"{"type": "options", "#));
        assert_eq!(JobOptions::from_query(Some(&o.to_query())).unwrap(), o);
        assert_eq!(JobOptions::default().to_query(), "");
        o.validate().unwrap();
        let bad = JobOptions { steps: Some(1000), ..o };
        assert_eq!(bad.validate().unwrap_err().option, "steps");
    }

    /// Query values are percent-decoded (`%2C` is the comma a browser may escape).
    #[test]
    fn query_values_are_percent_decoded() {
        let o = JobOptions::from_query(Some("formats=zip%2Cglb")).unwrap();
        assert!(o.wants_glb());
    }
}
