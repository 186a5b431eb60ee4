//! The three result parts, in protocol order.

/// One of the three result parts of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartName {
    /// The six generated views side by side (stage 1), `image/png`, 1536x256 RGB.
    PixelImages,
    /// The six canonical coordinate maps (stage 2), `image/png`, 1536x256 RGB.
    XyzImages,
    /// The textured mesh: OBJ + MTL + PNG, `application/zip`.
    Output3d,
}

/// All parts in the order they are sent.
pub const PARTS: [PartName; 3] = [PartName::PixelImages, PartName::XyzImages, PartName::Output3d];

impl PartName {
    /// The file name sent in the `result_part` announcement.
    pub fn file_name(self) -> &'static str {
        match self {
            PartName::PixelImages => "pixel_images.png",
            PartName::XyzImages => "xyz_images.png",
            PartName::Output3d => "output3d.zip",
        }
    }

    /// The MIME type sent in the `result_part` announcement.
    pub fn content_type(self) -> &'static str {
        match self {
            PartName::PixelImages | PartName::XyzImages => "image/png",
            PartName::Output3d => "application/zip",
        }
    }

    /// Position in the protocol order, 0-based. Also the part's sequence number in the queue.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The part at a protocol position.
    pub fn from_index(i: usize) -> Option<Self> {
        PARTS.get(i).copied()
    }

    /// Parses a file name as sent on the wire.
    pub fn from_file_name(name: &str) -> Option<Self> {
        PARTS.into_iter().find(|p| p.file_name() == name)
    }
}

impl std::fmt::Display for PartName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_name())
    }
}
