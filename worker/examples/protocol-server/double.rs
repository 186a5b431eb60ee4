//! A pipeline test double: valid placeholder parts derived from the input image, after a
//! configurable delay. No model, no libtorch work. Used by the protocol test server and by
//! tests; never reachable from the shipped binaries (it lives under examples/).

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use image::{imageops, DynamicImage, ImageFormat, RgbImage};
use img3d_pipeline::mesh::glb::glb_bytes;
use img3d_pipeline::mesh::TexturedMesh;
use img3d_protocol::{FailureCode, JobOptions, PartName, ProgressStage};
use img3d_queue::Failure;
use img3d_worker::{JobRunner, JobSink};

/// Width and height of one view, as the real pipeline's.
const VIEW: u32 = 256;

/// The double: decodes the input and returns placeholder parts of the real shapes.
#[derive(Debug, Clone)]
pub struct PlaceholderPipeline {
    /// Total time a job takes, spread over the three parts.
    pub delay: Duration,
    /// Pads `output3d.zip` with a stored entry of noise (`padding.bin`) until the part is at
    /// least this many bytes (0: no padding), for tests of large parts. Each entry carries its
    /// CRC-32, so a reader can tell the part arrived intact.
    pub output_bytes: usize,
}

impl PlaceholderPipeline {
    /// Waits `d`, checking for cancellation every 10 ms like a diffusion loop between steps.
    fn work(&self, sink: &mut dyn JobSink, stage: ProgressStage, d: Duration) -> Result<(), Failure> {
        let start = Instant::now();
        let total = 10;
        for step in 0..total {
            sink.progress(stage, step, total);
            while start.elapsed() < d * (step + 1) / total {
                if sink.is_cancelled() {
                    return Err(Failure::cancelled());
                }
                std::thread::sleep(Duration::from_millis(10).min(d / total + Duration::from_millis(1)));
            }
        }
        if sink.is_cancelled() {
            return Err(Failure::cancelled());
        }
        Ok(())
    }
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).expect("encoding a PNG in memory");
    out.into_inner()
}

/// Six views side by side: the input, then five hue-shifted copies (1536x256).
pub fn views(input: &RgbImage, shift: impl Fn(usize, [u8; 3]) -> [u8; 3]) -> RgbImage {
    let mut strip = RgbImage::new(VIEW * 6, VIEW);
    for v in 0..6 {
        let mut view = input.clone();
        for p in view.pixels_mut() {
            p.0 = shift(v, p.0);
        }
        imageops::replace(&mut strip, &view, i64::from(VIEW) * v as i64, 0);
    }
    strip
}

/// Deterministic incompressible bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A zip with a textured cube: `mesh.obj`, `mesh.mtl`, `mesh.png` (the input as texture), and
/// `padding.bin` (stored noise) if needed to reach `min_bytes`.
pub fn mesh_zip(texture: &RgbImage, min_bytes: usize) -> Vec<u8> {
    let mut obj = String::from("# placeholder cube from the img3d protocol test double\nmtllib mesh.mtl\n");
    for (x, y, z) in
        [(-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1), (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)]
    {
        obj.push_str(&format!("v {x} {y} {z}\n"));
    }
    obj.push_str("vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl material0\n");
    // Counter-clockwise seen from outside, as OBJ viewers take front faces.
    for [a, b, c, d] in [[1, 2, 3, 4], [5, 8, 7, 6], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 8, 4], [5, 1, 4, 8]] {
        obj.push_str(&format!("f {a}/1 {d}/4 {c}/3 {b}/2\n"));
    }
    let mtl = "newmtl material0\nKa 1 1 1\nKd 1 1 1\nmap_Kd mesh.png\n";
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in
        [("mesh.obj", obj.into_bytes()), ("mesh.mtl", mtl.as_bytes().to_vec()), ("mesh.png", png(texture))]
    {
        zip.start_file(name, options).expect("zip entry");
        zip.write_all(&bytes).expect("zip write");
    }
    // Entry and central directory headers of padding.bin: well under 200 bytes.
    let written = zip.get_ref().map_or(0, |w| w.get_ref().len());
    let pad = min_bytes.saturating_sub(written + 200);
    if pad > 0 {
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(pad >= u32::MAX as usize);
        zip.start_file("padding.bin", stored).expect("zip entry");
        zip.write_all(&noise(pad)).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// The placeholder cube as binary glTF (the pipeline's GLB writer), textured with `texture`.
pub fn cube_glb(texture: &RgbImage) -> Vec<u8> {
    let corners = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)];
    let cube = TexturedMesh {
        vertices: corners.iter().map(|&(x, y, z)| [x as f32 - 0.5, y as f32 - 0.5, z as f32 - 0.5]).collect(),
        // The pipeline mesh's winding (clockwise seen from outside): the GLB writer
        // reverses it for glTF.
        faces: [[0, 1, 2, 3], [4, 7, 6, 5], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]]
            .iter()
            .flat_map(|&[a, b, c, d]| [[a, b, c], [a, c, d]])
            .collect(),
        // Origin at the texture's top-left, as the pipeline's (the OBJ writer flips v).
        uvs: vec![[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]],
        uv_faces: (0..6).flat_map(|_| [[0, 3, 2], [0, 2, 1]]).collect(),
    };
    glb_bytes(&cube, &png(texture)).expect("a GLB of the cube")
}

impl JobRunner for PlaceholderPipeline {
    fn run(&self, image: &[u8], options: &JobOptions, sink: &mut dyn JobSink) -> Result<(), Failure> {
        let input = image::load_from_memory(image)
            .map_err(|e| Failure::new(FailureCode::InvalidImage, format!("cannot decode the image: {e}")))?;
        let square = DynamicImage::ImageRgb8(input.to_rgb8())
            .resize_exact(VIEW, VIEW, imageops::FilterType::Triangle)
            .to_rgb8();
        let step = self.delay / 3;

        self.work(sink, ProgressStage::Stage1, step)?;
        let pixels = views(&square, |v, [r, g, b]| match v % 3 {
            0 => [r, g, b],
            1 => [g, b, r],
            _ => [b, r, g],
        });
        sink.part(PartName::PixelImages, png(&pixels))?;

        self.work(sink, ProgressStage::Stage2, step)?;
        let xyz = views(&square, |v, [r, g, b]| [255 - r, 255 - g, (b as usize + v * 40) as u8]);
        sink.part(PartName::XyzImages, png(&xyz))?;

        self.work(sink, ProgressStage::Export, step)?;
        sink.part(PartName::Output3d, mesh_zip(&square, self.output_bytes))?;
        if options.wants_glb() {
            sink.part(PartName::OutputGlb, cube_glb(&square))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "protocol test double: placeholder parts derived from the input after {:?}, NO model",
            self.delay
        )
    }
}
