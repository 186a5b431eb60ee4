//! The triangle mesh every mesh step reads and writes.

/// A triangle mesh: positions and triangles (indices into `vertices`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mesh {
    /// Vertex positions.
    pub vertices: Vec<[f32; 3]>,
    /// Triangles, counter-clockwise as FlexiCubes emits them.
    pub faces: Vec<[u32; 3]>,
}
