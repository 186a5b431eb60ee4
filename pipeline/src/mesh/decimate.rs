//! The face budget (`faces`): quadric-error decimation with meshoptimizer's `meshopt_simplify`
//! (Garland-Heckbert edge collapses with attribute-free error metric), run on the cleaned mesh
//! before the UV unwrap and the bake, so the texture is baked for the decimated surface and
//! carries no stretch from a mesh it no longer matches.
//!
//! Border vertices are locked (`LockBorder`): FlexiCubes meshes are mostly closed, and where
//! they have open edges (cut by the grid's bounds) the outline, i.e. the silhouette, keeps its
//! shape. The error bound is left open (1.0, the mesh's whole extent) so the target is what
//! stops the collapses; meshoptimizer stops earlier only when no collapse keeps the topology
//! valid, and then returns what it reached.

use meshopt::{SimplifyOptions, VertexDataAdapter};

use super::geometry::Mesh;

/// What a decimation did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decimation {
    /// Faces before.
    pub faces_before: usize,
    /// Faces after (at most the target unless meshoptimizer could not reach it).
    pub faces_after: usize,
    /// meshoptimizer's error estimate, relative to the mesh's extent.
    pub relative_error: f32,
}

/// `mesh` with at most `target` faces where meshoptimizer can get there, unreferenced vertices
/// dropped (vertex order kept). A mesh already within the budget is returned unchanged.
pub fn decimate(mesh: &Mesh, target: usize) -> (Mesh, Decimation) {
    let faces_before = mesh.faces.len();
    if faces_before <= target {
        return (mesh.clone(), Decimation { faces_before, faces_after: faces_before, relative_error: 0.0 });
    }
    let indices: Vec<u32> = mesh.faces.iter().flatten().copied().collect();
    let positions = meshopt::typed_to_bytes(&mesh.vertices);
    let adapter = VertexDataAdapter::new(positions, std::mem::size_of::<[f32; 3]>(), 0)
        .expect("[f32; 3] rows are a whole number of 12-byte vertices");
    let mut relative_error = 0.0f32;
    let kept = meshopt::simplify(
        &indices,
        &adapter,
        target * 3,
        1.0,
        SimplifyOptions::LockBorder,
        Some(&mut relative_error),
    );
    let out = compact(&mesh.vertices, &kept);
    let faces_after = out.faces.len();
    (out, Decimation { faces_before, faces_after, relative_error })
}

/// The mesh of the triangle list `indices` over `vertices`, keeping only referenced vertices in
/// their original order (so the result is deterministic and the unwrap sees a compact mesh).
fn compact(vertices: &[[f32; 3]], indices: &[u32]) -> Mesh {
    let mut remap = vec![u32::MAX; vertices.len()];
    for &i in indices {
        remap[i as usize] = 0;
    }
    let mut kept = Vec::new();
    for (i, slot) in remap.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = kept.len() as u32;
            kept.push(vertices[i]);
        }
    }
    let faces = indices
        .chunks_exact(3)
        .map(|t| [remap[t[0] as usize], remap[t[1] as usize], remap[t[2] as usize]])
        .collect();
    Mesh { vertices: kept, faces }
}

/// The symmetric Hausdorff distance between two meshes' surfaces, estimated from vertices and
/// face centroids of each to the nearest point of the other's triangles (brute force over a
/// uniform grid of buckets). For benchmarks and tests, not the job path.
pub fn hausdorff(a: &Mesh, b: &Mesh) -> f32 {
    one_sided(a, b).max(one_sided(b, a))
}

/// Largest distance from a sample of `from`'s surface to `to`'s surface.
fn one_sided(from: &Mesh, to: &Mesh) -> f32 {
    let tris: Vec<[[f32; 3]; 3]> = to.faces.iter().map(|f| f.map(|i| to.vertices[i as usize])).collect();
    let grid = Buckets::new(&tris);
    let samples = from.vertices.iter().copied().chain(from.faces.iter().map(|f| {
        let [a, b, c] = f.map(|i| from.vertices[i as usize]);
        [(a[0] + b[0] + c[0]) / 3.0, (a[1] + b[1] + c[1]) / 3.0, (a[2] + b[2] + c[2]) / 3.0]
    }));
    samples.map(|p| grid.nearest(&tris, p)).fold(0.0, f32::max)
}

/// Triangles bucketed by a uniform grid over their bounding box, searched in growing shells.
struct Buckets {
    lo: [f32; 3],
    cell: f32,
    n: usize,
    cells: Vec<Vec<u32>>,
}

impl Buckets {
    fn new(tris: &[[[f32; 3]; 3]]) -> Self {
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for p in tris.iter().flatten() {
            for k in 0..3 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        let extent = (0..3).map(|k| hi[k] - lo[k]).fold(1e-6, f32::max);
        let n = 32usize;
        let cell = extent / n as f32;
        let mut cells = vec![Vec::new(); n * n * n];
        for (t, tri) in tris.iter().enumerate() {
            let (mut a, mut b) = ([usize::MAX; 3], [0usize; 3]);
            for p in tri {
                for k in 0..3 {
                    let c = (((p[k] - lo[k]) / cell) as usize).min(n - 1);
                    a[k] = a[k].min(c);
                    b[k] = b[k].max(c);
                }
            }
            for x in a[0]..=b[0] {
                for y in a[1]..=b[1] {
                    for z in a[2]..=b[2] {
                        cells[(x * n + y) * n + z].push(t as u32);
                    }
                }
            }
        }
        Buckets { lo, cell, n, cells }
    }

    /// Distance from `p` to the nearest triangle: shells of cells around `p` until the best
    /// found is closer than anything the next shell could hold.
    fn nearest(&self, tris: &[[[f32; 3]; 3]], p: [f32; 3]) -> f32 {
        let n = self.n as i64;
        let home: Vec<i64> =
            (0..3).map(|k| (((p[k] - self.lo[k]) / self.cell).floor() as i64).clamp(0, n - 1)).collect();
        let mut best = f32::INFINITY;
        for r in 0..n {
            for x in (home[0] - r).max(0)..=(home[0] + r).min(n - 1) {
                for y in (home[1] - r).max(0)..=(home[1] + r).min(n - 1) {
                    for z in (home[2] - r).max(0)..=(home[2] + r).min(n - 1) {
                        let shell = (x - home[0]).abs().max((y - home[1]).abs()).max((z - home[2]).abs());
                        if shell != r {
                            continue;
                        }
                        for &t in &self.cells[((x * n + y) * n + z) as usize] {
                            best = best.min(point_triangle(p, &tris[t as usize]));
                        }
                    }
                }
            }
            // Any triangle in shell r+1 or beyond is at least r cells away.
            if best <= r as f32 * self.cell {
                break;
            }
        }
        best
    }
}

/// Distance from `p` to triangle `t` (Ericson, "Real-Time Collision Detection", 5.1.5).
fn point_triangle(p: [f32; 3], t: &[[f32; 3]; 3]) -> f32 {
    let sub = |a: [f32; 3], b: [f32; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let dot = |a: [f32; 3], b: [f32; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let [a, b, c] = *t;
    let (ab, ac, ap) = (sub(b, a), sub(c, a), sub(p, a));
    let at = |v: f32, w: f32| {
        [a[0] + ab[0] * v + ac[0] * w, a[1] + ab[1] * v + ac[1] * w, a[2] + ab[2] * v + ac[2] * w]
    };
    let dist = |q: [f32; 3]| dot(sub(p, q), sub(p, q)).sqrt();
    let (d1, d2) = (dot(ab, ap), dot(ac, ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return dist(a);
    }
    let bp = sub(p, b);
    let (d3, d4) = (dot(ab, bp), dot(ac, bp));
    if d3 >= 0.0 && d4 <= d3 {
        return dist(b);
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return dist(at(d1 / (d1 - d3), 0.0));
    }
    let cp = sub(p, c);
    let (d5, d6) = (dot(ab, cp), dot(ac, cp));
    if d6 >= 0.0 && d5 <= d6 {
        return dist(c);
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return dist(at(0.0, d2 / (d2 - d6)));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        let w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
        return dist([b[0] + (c[0] - b[0]) * w, b[1] + (c[1] - b[1]) * w, b[2] + (c[2] - b[2]) * w]);
    }
    let denom = 1.0 / (va + vb + vc);
    dist(at(vb * denom, vc * denom))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UV sphere of `n` rings (closed, welded).
    fn sphere(n: u32) -> Mesh {
        let mut vertices = vec![[0.0, 0.0, 1.0]];
        for i in 1..n {
            let theta = std::f32::consts::PI * i as f32 / n as f32;
            for j in 0..2 * n {
                let phi = std::f32::consts::PI * j as f32 / n as f32;
                vertices.push([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()]);
            }
        }
        vertices.push([0.0, 0.0, -1.0]);
        let ring = |i: u32, j: u32| 1 + (i - 1) * 2 * n + j % (2 * n);
        let south = vertices.len() as u32 - 1;
        let mut faces = Vec::new();
        for j in 0..2 * n {
            faces.push([0, ring(1, j), ring(1, j + 1)]);
            faces.push([south, ring(n - 1, j + 1), ring(n - 1, j)]);
        }
        for i in 1..n - 1 {
            for j in 0..2 * n {
                faces.push([ring(i, j), ring(i + 1, j), ring(i + 1, j + 1)]);
                faces.push([ring(i, j), ring(i + 1, j + 1), ring(i, j + 1)]);
            }
        }
        Mesh { vertices, faces }
    }

    /// A sphere decimated to a tenth of its faces stays within the budget, keeps no unused
    /// vertex, and stays within a few percent of its radius of the original surface.
    #[test]
    fn decimation_meets_the_budget_and_keeps_the_shape() {
        let mesh = sphere(64);
        let target = mesh.faces.len() / 10;
        let (small, report) = decimate(&mesh, target);
        assert!(small.faces.len() <= target && small.faces.len() > target / 2, "{report:?}");
        let mut used = vec![false; small.vertices.len()];
        small.faces.iter().flatten().for_each(|&i| used[i as usize] = true);
        assert!(used.iter().all(|&u| u), "unreferenced vertices left");
        let d = hausdorff(&mesh, &small);
        assert!(d > 0.0 && d < 0.05, "Hausdorff distance {d}");
    }

    /// A mesh within the budget comes back unchanged.
    #[test]
    fn within_budget_is_unchanged() {
        let mesh = sphere(8);
        let (same, report) = decimate(&mesh, mesh.faces.len());
        assert_eq!(same, mesh);
        assert_eq!(report.faces_after, report.faces_before);
    }

    /// The distance estimate is exact for a point above a triangle's interior and its corner.
    #[test]
    fn point_triangle_distance() {
        let t = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert!((point_triangle([0.2, 0.2, 0.5], &t) - 0.5).abs() < 1e-6);
        assert!((point_triangle([-3.0, -4.0, 0.0], &t) - 5.0).abs() < 1e-6);
    }
}
