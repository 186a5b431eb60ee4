//! Test helpers: the real protocol-server as a process, a scripted WebSocket server for the
//! misbehaving-server cases the real one never produces, and test inputs.
#![allow(dead_code)]

pub mod fake;
pub mod server;

use std::io::{Cursor, Write};

/// A small valid PNG (a gradient, so it is not trivially blank).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Whether `bytes` start with the PNG signature.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// A zip with the given (name, contents) files, stored uncompressed.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A zip holding a symlink entry `name` -> `target` and then a file written through it.
pub fn zip_with_symlink(name: &str, target: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.add_symlink(name, target, opts).unwrap();
    w.start_file(format!("{name}/pwned.txt"), opts).unwrap();
    w.write_all(b"pwned").unwrap();
    w.finish().unwrap().into_inner()
}
