//! Image validation before anything is queued: size, format, pixel count (from the header,
//! before decoding), and a full decode that catches truncated or corrupt files.

use std::io::Cursor;

use bytes::Bytes;
use image::{ImageDecoder, ImageFormat, ImageReader};

use crate::ClientError;

/// The limits an image must meet.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Largest decoded size, in pixels.
    pub max_pixels: u64,
}

/// An image that passed validation: the only thing the gateway submits to the queue.
#[derive(Debug, Clone)]
pub struct ValidImage {
    bytes: Bytes,
    format: ImageFormat,
    width: u32,
    height: u32,
}

impl ValidImage {
    /// The file bytes exactly as the client sent them.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Consumes the image into its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Its format.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// Width and height in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Png => "PNG".into(),
        ImageFormat::Jpeg => "JPEG".into(),
        ImageFormat::WebP => "WebP".into(),
        ImageFormat::Gif => "GIF".into(),
        ImageFormat::Bmp => "BMP".into(),
        ImageFormat::Tiff => "TIFF".into(),
        other => format!("{other:?}"),
    }
}

/// What an image's header says, read without decoding it.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Format from the file signature.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size of the decoded bitmap, bytes (what a full decode allocates).
    pub decoded_bytes: u64,
}

/// Reads the header of `bytes` and checks it against `limits`: cheap (no pixel is decoded),
/// so the gateway can refuse a decompression bomb, and budget the decode, before it allocates.
pub fn inspect(bytes: &[u8], limits: ImageLimits) -> Result<Header, ClientError> {
    if bytes.is_empty() {
        return Err(ClientError::Empty);
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(ClientError::TooLarge { size: bytes.len() as u64, limit: limits.max_bytes });
    }
    let reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().expect("reading from memory cannot fail");
    let format = reader.format().ok_or(ClientError::UnknownFormat)?;
    let corrupt =
        |e: image::ImageError| ClientError::Corrupt { format: format_name(format), reason: e.to_string() };
    let decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ClientError::TooManyPixels { width, height, limit: limits.max_pixels });
    }
    if pixels == 0 {
        return Err(ClientError::Corrupt { format: format_name(format), reason: "it has no pixels".into() });
    }
    Ok(Header { format, width, height, decoded_bytes: decoder.total_bytes() })
}

/// Checks that `bytes` is one whole image within `limits`. CPU-bound (it decodes the image):
/// call it from a blocking thread.
pub fn validate(bytes: Bytes, limits: ImageLimits) -> Result<ValidImage, ClientError> {
    // 1. The header alone: refuse a decompression bomb before allocating its bitmap.
    let Header { format, width, height, .. } = inspect(&bytes, limits)?;
    let pixels = u64::from(width) * u64::from(height);
    let reader = || {
        ImageReader::new(Cursor::new(&bytes[..]))
            .with_guessed_format()
            .expect("reading from memory cannot fail")
    };
    let corrupt =
        |e: image::ImageError| ClientError::Corrupt { format: format_name(format), reason: e.to_string() };

    // 2. A full decode, bounded to what the header announced: truncated and corrupt files fail
    //    here, not on the GPU worker.
    let mut decoder = reader();
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(width);
    decode_limits.max_image_height = Some(height);
    // 16 bytes per pixel covers every colour type (RGBA 32-bit float), plus decoder scratch.
    decode_limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(64 << 20));
    decoder.limits(decode_limits);
    decoder.decode().map_err(corrupt)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end(&bytes) {
        // JPEG decoders fill a cut-off scan with grey instead of failing: check the end marker.
        return Err(ClientError::Corrupt {
            format: format_name(format),
            reason: "the file ends before the JPEG end-of-image marker (truncated)".into(),
        });
    }
    Ok(ValidImage { bytes, format, width, height })
}

/// Whether a JPEG file contains its end-of-image marker (FF D9). Some cameras append data
/// after it, so it is looked for near the end, not only in the last two bytes.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    bytes.windows(2).rev().take(1 << 20).any(|w| w == [0xFF, 0xD9])
}
