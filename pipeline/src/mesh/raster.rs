//! Rasterising UV triangles by nvdiffrast's rules (`dr.rasterize` with a `RasterizeCudaContext`,
//! as upstream's `export_mesh_wt_uv` calls it on `uv * 2 - 1` with z = 0, w = 1), on the CPU.
//!
//! The rules, from nvdiffrast's CUDA rasteriser (Laine & Karras, "High-Performance Software
//! Rasterization on GPUs", HPG 2011) and its documentation:
//!
//! - **Snapping.** Clip-space x, y (w = 1) are scaled to 1/16-pixel fixed point about the
//!   viewport centre, `round_half_even(x * width * 8)`, and all coverage is decided on these
//!   integers. Triangles with zero snapped area are dropped; there is no backface culling (a
//!   clockwise triangle is handled as if its last two vertices were swapped).
//! - **Samples.** Pixel `(col, row)` samples its centre: `16 col + 8 - 8 width` (and likewise for
//!   rows), row 0 at clip y = -1 (so texel row r holds v in [r, r + 1) / height).
//! - **Edge rule.** With the triangle counter-clockwise, a sample is inside an edge a -> b when
//!   `(a - s) x (b - a) > 0`, or `= 0` unless the edge is "exclusive":
//!   `dy > 0 || (dy == 0 && dx <= 0)` (a top-left style rule, so a shared edge belongs to exactly
//!   one of its two triangles).
//! - **Which triangle wins.** All UV triangles have the same depth, the depth test passes on
//!   equality, and primitives are processed in order, so the highest-index covering triangle wins.
//! - **Barycentrics.** Recomputed in f32 from the float clip positions of the winning triangle
//!   in its original vertex order, as nvdiffrast's pixel shader does (edge functions at the
//!   pixel centre, normalised, each clamped to [0, 1], the pair scaled down if their sum passes 1).
//!
//! UVs outside [0, 1] are rasterised without nvdiffrast's frustum clipper: only pixels inside the
//! image are written, which matches it up to the clipper's sub-triangle snapping.

/// Which triangle covers each texel and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    /// Texels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Per texel, row-major (row 0 at v = 0): the covering triangle's index + 1, or 0 for none
    /// (nvdiffrast's `rast[..., 3]`).
    pub tri: Vec<u32>,
    /// Per texel: barycentric weights of the triangle's vertices 0 and 1 (`rast[..., 0:2]`);
    /// vertex 2 gets `1 - b0 - b1`.
    pub bary: Vec<[f32; 2]>,
}

impl Raster {
    /// Texels covered by some triangle.
    pub fn covered(&self) -> usize {
        self.tri.iter().filter(|&&t| t != 0).count()
    }
}

/// Rasterises the UV triangles `uv_faces` (indices into `uvs`, u and v in [0, 1]) into a
/// `width` x `height` grid (both at most 2048, nvdiffrast's single-pass viewport limit).
pub fn rasterize_uv(uvs: &[[f32; 2]], uv_faces: &[[u32; 3]], width: usize, height: usize) -> Raster {
    assert!(width > 0 && height > 0 && width <= 2048 && height <= 2048, "viewport {width}x{height}");
    let mut raster =
        Raster { width, height, tri: vec![0; width * height], bary: vec![[0.0; 2]; width * height] };
    let clip: Vec<[f32; 2]> = uvs.iter().map(|t| [t[0] * 2.0 - 1.0, t[1] * 2.0 - 1.0]).collect();
    // Later triangles overwrite earlier ones: the highest index wins.
    for_each_covered(uvs, uv_faces, width, height, |t, k| raster.tri[k] = t as u32 + 1);
    // Barycentrics of the winning triangle at each covered texel (nvdiffrast's pixel shader).
    let xs = 2.0f32 / width as f32;
    let xo = 1.0f32 / width as f32 - 1.0;
    let ys = 2.0f32 / height as f32;
    let yo = 1.0f32 / height as f32 - 1.0;
    for py in 0..height {
        let fy = ys * py as f32 + yo;
        for px in 0..width {
            let k = py * width + px;
            let Some(t) = raster.tri[k].checked_sub(1) else { continue };
            let fx = xs * px as f32 + xo;
            let [p0, p1, p2] = uv_faces[t as usize].map(|i| clip[i as usize]);
            raster.bary[k] = shade(p0, p1, p2, fx, fy);
        }
    }
    raster
}

/// Calls `hit(triangle, texel)` for every texel (row-major index) whose centre each triangle
/// covers by the rules above, triangles in order. Within a triangle fan sharing vertices no
/// texel is hit twice, so counting hits finds overlapping charts.
pub fn for_each_covered(
    uvs: &[[f32; 2]],
    uv_faces: &[[u32; 3]],
    width: usize,
    height: usize,
    mut hit: impl FnMut(usize, usize),
) {
    let (w, h) = (width as i64, height as i64);
    let scale = [(width * 8) as f32, (height * 8) as f32];
    let snap = |t: &[f32; 2]| -> [i64; 2] {
        [
            ((t[0] * 2.0 - 1.0) * scale[0]).round_ties_even() as i64,
            ((t[1] * 2.0 - 1.0) * scale[1]).round_ties_even() as i64,
        ]
    };
    for (t, face) in uv_faces.iter().enumerate() {
        let [a, b, c] = face.map(|i| snap(&uvs[i as usize]));
        let area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if area == 0 {
            continue;
        }
        // Counter-clockwise for the coverage test only.
        let (b, c) = if area < 0 { (c, b) } else { (b, c) };
        let edges = [edge(a, b), edge(b, c), edge(c, a)];
        // Pixel range whose sample points can lie in the triangle's bounding box.
        let lo = [a[0].min(b[0]).min(c[0]), a[1].min(b[1]).min(c[1])];
        let hi = [a[0].max(b[0]).max(c[0]), a[1].max(b[1]).max(c[1])];
        let first = |v: i64, n: i64| ((v + 8 * n - 8 + 15).div_euclid(16)).max(0);
        let last = |v: i64, n: i64| ((v + 8 * n - 8).div_euclid(16)).min(n - 1);
        let (x0, x1) = (first(lo[0], w), last(hi[0], w));
        let (y0, y1) = (first(lo[1], h), last(hi[1], h));
        for py in y0..=y1 {
            let sy = 16 * py + 8 - 8 * h;
            for px in x0..=x1 {
                let sx = 16 * px + 8 - 8 * w;
                if edges.iter().all(|e| e.inside(sx, sy)) {
                    hit(t, py as usize * width + px as usize);
                }
            }
        }
    }
}

/// One edge a -> b of a counter-clockwise snapped triangle.
struct Edge {
    a: [i64; 2],
    d: [i64; 2],
    exclusive: bool,
}

fn edge(a: [i64; 2], b: [i64; 2]) -> Edge {
    let d = [b[0] - a[0], b[1] - a[1]];
    Edge { a, d, exclusive: d[1] > 0 || (d[1] == 0 && d[0] <= 0) }
}

impl Edge {
    fn inside(&self, sx: i64, sy: i64) -> bool {
        let e = (self.a[0] - sx) * self.d[1] - (self.a[1] - sy) * self.d[0];
        if self.exclusive {
            e > 0
        } else {
            e >= 0
        }
    }
}

/// nvdiffrast's `RasterizeCudaFwdShaderKernel` barycentrics (w = 1) at pixel centre (fx, fy).
fn shade(p0: [f32; 2], p1: [f32; 2], p2: [f32; 2], fx: f32, fy: f32) -> [f32; 2] {
    let (p0x, p0y) = (p0[0] - fx, p0[1] - fy);
    let (p1x, p1y) = (p1[0] - fx, p1[1] - fy);
    let (p2x, p2y) = (p2[0] - fx, p2[1] - fy);
    let a0 = p1x * p2y - p1y * p2x;
    let a1 = p2x * p0y - p2y * p0x;
    let a2 = p0x * p1y - p0y * p1x;
    let iw = 1.0f32 / (a0 + a1 + a2);
    let b0 = saturate(a0 * iw);
    let b1 = saturate(a1 * iw);
    let bs = 1.0f32 / (b0 + b1).max(1.0);
    [b0 * bs, b1 * bs]
}

/// CUDA `__saturatef`: clamp to [+0, 1], NaN to +0.
fn saturate(x: f32) -> f32 {
    if x > 0.0 {
        x.min(1.0)
    } else {
        0.0
    }
}

/// `dr.interpolate` of per-vertex `attr` (indexed by `faces`, the same triangles in the same
/// corner order as the rasterised UV faces) at every covered texel, row-major.
pub fn interpolate(raster: &Raster, faces: &[[u32; 3]], attr: &[[f32; 3]]) -> Vec<[f32; 3]> {
    let mut out = Vec::with_capacity(raster.covered());
    for (t, b) in raster.tri.iter().zip(&raster.bary) {
        let Some(t) = t.checked_sub(1) else { continue };
        let [v0, v1, v2] = faces[t as usize].map(|i| attr[i as usize]);
        let (b0, b1) = (b[0], b[1]);
        let b2 = 1.0f32 - b0 - b1;
        out.push([0, 1, 2].map(|i| b0 * v0[i] + b1 * v1[i] + b2 * v2[i]));
    }
    out
}
