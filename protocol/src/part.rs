//! The result parts, in protocol order: the original three, then the opt-in GLB.

/// One of the result parts of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartName {
    /// The six generated views side by side (stage 1), `image/png`, 1536x256 RGB.
    PixelImages,
    /// The six canonical coordinate maps (stage 2), `image/png`, 1536x256 RGB.
    XyzImages,
    /// The textured mesh: OBJ + MTL + PNG, `application/zip`.
    Output3d,
    /// Opt-in (`formats` has `glb`): the same mesh as binary glTF 2.0, `model/gltf-binary`,
    /// after the zip.
    OutputGlb,
}

/// The parts every job sends, in the order they are sent (the original protocol's three).
pub const PARTS: [PartName; 3] = [PartName::PixelImages, PartName::XyzImages, PartName::Output3d];

/// Every part a job may send, in protocol order (a job's own list is
/// [`crate::JobOptions::parts`]).
pub const ALL_PARTS: [PartName; 4] =
    [PartName::PixelImages, PartName::XyzImages, PartName::Output3d, PartName::OutputGlb];

impl PartName {
    /// The file name sent in the `result_part` announcement.
    pub fn file_name(self) -> &'static str {
        match self {
            PartName::PixelImages => "pixel_images.png",
            PartName::XyzImages => "xyz_images.png",
            PartName::Output3d => "output3d.zip",
            PartName::OutputGlb => "output3d.glb",
        }
    }

    /// The MIME type sent in the `result_part` announcement.
    pub fn content_type(self) -> &'static str {
        match self {
            PartName::PixelImages | PartName::XyzImages => "image/png",
            PartName::Output3d => "application/zip",
            PartName::OutputGlb => "model/gltf-binary",
        }
    }

    /// Position in the protocol order, 0-based. Also the part's sequence number in the queue.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The part at a protocol position.
    pub fn from_index(i: usize) -> Option<Self> {
        ALL_PARTS.get(i).copied()
    }

    /// Parses a file name as sent on the wire.
    pub fn from_file_name(name: &str) -> Option<Self> {
        ALL_PARTS.into_iter().find(|p| p.file_name() == name)
    }
}

impl std::fmt::Display for PartName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_name())
    }
}
