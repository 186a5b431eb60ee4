//! Image validation without a network: each kind of bad input maps to its error and code,
//! and real images of each common format pass.

use std::io::Cursor;

use bytes::Bytes;
use img3d_gateway::validate::{validate, ImageLimits};
use img3d_gateway::ClientError;
use img3d_protocol::FailureCode;

const LIMITS: ImageLimits = ImageLimits { max_bytes: 1 << 20, max_pixels: 4_000_000 };

fn encode(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn check(bytes: Vec<u8>) -> Result<(u32, u32), ClientError> {
    validate(Bytes::from(bytes), LIMITS).map(|v| v.dimensions())
}

/// PNG, JPEG, BMP, TIFF and GIF images pass, with their dimensions read.
#[test]
fn common_formats_pass() {
    use image::ImageFormat::*;
    for format in [Png, Jpeg, Bmp, Tiff, Gif] {
        assert_eq!(check(encode(format, 64, 32)), Ok((64, 32)), "{format:?}");
    }
}

/// Empty, oversized and non-image data are refused with their codes.
#[test]
fn empty_oversized_and_garbage_are_refused() {
    assert_eq!(check(Vec::new()), Err(ClientError::Empty));
    let big = check(vec![0; (1 << 20) + 1]).unwrap_err();
    assert_eq!(big, ClientError::TooLarge { size: (1 << 20) + 1, limit: 1 << 20 });
    assert_eq!(big.code(), FailureCode::TooLarge);
    let garbage = check(b"GIF89 no, this is not a gif".to_vec()).unwrap_err();
    assert_eq!(garbage.code(), FailureCode::InvalidImage);
}

/// Truncated PNG and JPEG files fail the full decode (JPEG by its missing end marker).
#[test]
fn truncated_files_are_refused() {
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        let whole = encode(format, 300, 200);
        // PNG: inside the image data; JPEG: also just the end marker (its decoder would not fail).
        let cuts = match format {
            image::ImageFormat::Png => [whole.len() / 3, whole.len() * 2 / 3],
            _ => [whole.len() / 3, whole.len() - 2],
        };
        for cut in cuts {
            let e = check(whole[..cut].to_vec()).unwrap_err();
            assert!(matches!(e, ClientError::Corrupt { .. }), "{format:?} cut at {cut}: {e:?}");
            assert_eq!(e.code(), FailureCode::InvalidImage);
        }
    }
}

/// A header announcing more pixels than the limit is refused before decoding.
#[test]
fn pixel_limit_is_checked_from_the_header() {
    let flat = |w, h| {
        let mut out = Cursor::new(Vec::new());
        image::GrayImage::new(w, h).write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let e = check(flat(2001, 2000)).unwrap_err();
    assert_eq!(e, ClientError::TooManyPixels { width: 2001, height: 2000, limit: 4_000_000 });
    assert_eq!(e.code(), FailureCode::TooLarge);
    assert_eq!(check(flat(2000, 2000)), Ok((2000, 2000)));
}

/// Every refusal renders as a `failed` message with its code.
#[test]
fn errors_render_as_failed_messages() {
    let json = ClientError::Empty.to_message().to_json();
    assert_eq!(
        json,
        r#"{"type": "status", "status": "failed", "error": "the image frame is empty: send the whole image file as one binary frame", "code": "invalid_image"}"#
    );
}
