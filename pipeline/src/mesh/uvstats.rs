//! Measures of a UV atlas, the same for ours and xatlas': how much of the texture it uses, how
//! evenly it spreads texels over the surface, and how many charts it has.
//!
//! - **Utilisation**: the share of texels of a `res` x `res` texture whose centre a UV triangle
//!   covers by the bake's rasterisation rules ([`super::raster::for_each_covered`]), i.e. the
//!   texels the bake actually colours.
//! - **L2 stretch** (Sander et al., "Texture Mapping Progressive Meshes", 2001): per face the
//!   root mean square of the singular values of the UV -> surface map, area-weighted over the
//!   surface and normalised by the atlas' mean scale, so 1.0 is an isometry up to one global
//!   scale and larger values mean texel density varies over the surface or between directions.
//! - **Density spread**: per face the linear texel density sqrt(UV area / surface area); the
//!   ratio of its 95th to its 5th percentile, weighting faces by surface area (1.0: every face
//!   gets the same texels per unit of surface).
//! - **Charts**: connected groups of UV faces sharing UV vertices.

use super::geometry::{cross, dot, sub};
use super::obj::TexturedMesh;
use super::raster::for_each_covered;

/// The measures of one atlas (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtlasStats {
    /// Share of the `res`^2 texels covered, in [0, 1].
    pub utilisation: f64,
    /// Normalised L2 stretch (>= 1; 1 is isometric up to scale).
    pub l2_stretch: f64,
    /// 95th / 5th percentile of the per-face linear texel density, area-weighted (>= 1).
    pub density_spread: f64,
    /// UV charts (connected components of UV faces over shared UV vertices).
    pub charts: usize,
    /// Faces with a positive surface area but a zero UV area (they get no texels).
    pub collapsed_faces: usize,
}

/// Measures `atlas` (whose `vertices`/`faces` are the surface) for a `res` x `res` texture.
pub fn atlas_stats(atlas: &TexturedMesh, res: usize) -> AtlasStats {
    let mut covered = vec![false; res * res];
    for_each_covered(&atlas.uvs, &atlas.uv_faces, res, res, |_, k| covered[k] = true);
    let utilisation = covered.iter().filter(|&&c| c).count() as f64 / (res * res) as f64;
    let (l2_stretch, density_spread, collapsed_faces) = stretch(atlas);
    AtlasStats { utilisation, l2_stretch, density_spread, charts: charts(atlas), collapsed_faces }
}

/// (normalised L2 stretch, density spread, collapsed faces).
fn stretch(atlas: &TexturedMesh) -> (f64, f64, usize) {
    let (mut sum_l2, mut sum_area3, mut sum_area2) = (0.0, 0.0, 0.0);
    let mut density: Vec<(f64, f64)> = Vec::with_capacity(atlas.faces.len());
    let mut collapsed = 0;
    for (f, uf) in atlas.faces.iter().zip(&atlas.uv_faces) {
        let q = f.map(|i| atlas.vertices[i as usize].map(f64::from));
        let t = uf.map(|i| atlas.uvs[i as usize].map(f64::from));
        let e1 = sub(q[1], q[0]);
        let e2 = sub(q[2], q[0]);
        let n = cross(e1, e2);
        let area3 = 0.5 * dot(n, n).sqrt();
        if area3 <= 0.0 {
            continue;
        }
        let area2 =
            0.5 * ((t[1][0] - t[0][0]) * (t[2][1] - t[0][1]) - (t[2][0] - t[0][0]) * (t[1][1] - t[0][1]));
        if area2.abs() <= 0.0 {
            collapsed += 1;
            density.push((0.0, area3));
            continue;
        }
        // Partial derivatives of the surface point along s and t.
        let d = 2.0 * area2;
        let ss = [0, 1, 2].map(|k| {
            (q[0][k] * (t[1][1] - t[2][1]) + q[1][k] * (t[2][1] - t[0][1]) + q[2][k] * (t[0][1] - t[1][1]))
                / d
        });
        let st = [0, 1, 2].map(|k| {
            (q[0][k] * (t[2][0] - t[1][0]) + q[1][k] * (t[0][0] - t[2][0]) + q[2][k] * (t[1][0] - t[0][0]))
                / d
        });
        let l2sq = 0.5 * (dot(ss, ss) + dot(st, st));
        sum_l2 += l2sq * area3;
        sum_area3 += area3;
        sum_area2 += area2.abs();
        density.push(((area2.abs() / area3).sqrt(), area3));
    }
    let l2 = if sum_area3 > 0.0 && sum_area2 > 0.0 {
        (sum_l2 / sum_area3).sqrt() * (sum_area2 / sum_area3).sqrt()
    } else {
        f64::INFINITY
    };
    density.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = density.iter().map(|d| d.1).sum();
    let percentile = |p: f64| {
        let mut acc = 0.0;
        for &(d, w) in &density {
            acc += w;
            if acc >= p * total {
                return d;
            }
        }
        density.last().map_or(0.0, |d| d.0)
    };
    let (lo, hi) = (percentile(0.05), percentile(0.95));
    let spread = if lo > 0.0 { hi / lo } else { f64::INFINITY };
    (l2, spread, collapsed)
}

/// Connected components of the UV faces over shared UV vertex indices.
fn charts(atlas: &TexturedMesh) -> usize {
    let mut parent: Vec<u32> = (0..atlas.uvs.len() as u32).collect();
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            parent[x as usize] = parent[parent[x as usize] as usize];
            x = parent[x as usize];
        }
        x
    }
    let mut used = vec![false; atlas.uvs.len()];
    for f in &atlas.uv_faces {
        for &i in f {
            used[i as usize] = true;
        }
        let a = find(&mut parent, f[0]);
        for &i in &f[1..] {
            let b = find(&mut parent, i);
            if a != b {
                parent[b as usize] = a;
            }
        }
    }
    let mut roots = 0;
    for i in 0..atlas.uvs.len() as u32 {
        if used[i as usize] && find(&mut parent, i) == i {
            roots += 1;
        }
    }
    roots
}
