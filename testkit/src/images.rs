//! Images that tests send.

use std::io::Write;

/// A decompression bomb within the default pixel limit: an 8000x8000 16-bit RGBA PNG of zeros,
/// about 0.5 MB of file that decodes to 488 MiB. Written row by row (the bitmap is never held).
pub fn bomb_png() -> Vec<u8> {
    let (w, h) = (8000u32, 8000u32);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; w as usize * 8];
    for _ in 0..h {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
    drop(writer);
    out
}
