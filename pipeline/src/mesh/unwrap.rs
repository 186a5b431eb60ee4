//! UV unwrapping: normal-cone charts, planar projection, packed into the texture square.
//!
//! Upstream calls `xatlas.parametrize`, which is most of its `generate3d` time (4.6 s of 4.75 s
//! on an H200 box for a 20.6k-face mesh; chart building, not packing, dominates and grows
//! super-linearly). This unwrapper is ~25x faster and fully deterministic, and fills more of the
//! texture than xatlas on CRM's meshes, at the price of more stretch (planar charts):
//!
//! 1. **Charts** grow breadth-first over edge-adjacent faces (manifold edges only) from the first
//!    unassigned face, taking a face while its normal lies within [`MAX_CHART_ANGLE_DEG`] of the
//!    seed's normal and its projection on the seed's plane overlaps none of the chart's faces
//!    (separating-axis test over a grid), so no chart ever overlaps itself, even on the jagged
//!    meshes random weights give. Faces too small to have a reliable normal join whichever chart
//!    reaches them.
//! 2. **Projection** onto the plane normal to the chart's area-weighted mean normal when that
//!    folds and overlaps nothing (it usually distorts less), else onto the seed's plane: every face
//!    keeps its orientation; area is compressed by at most `cos(angle)` along one direction.
//! 3. **Orientation**: each chart is rotated to its minimum-area bounding rectangle (rotating
//!    calipers over the convex hull), lying flat.
//! 4. **Packing** ([`super::pack`]): per-column chart outlines in four quarter turns on a texel
//!    bitmap (holes under earlier charts get filled) with a fixed texel gap, the uniform scale
//!    searched so the atlas fills the square, then stretched per axis to fill what is left.
//!
//! Every step iterates in index order (no hash-map iteration, no threads, no randomness), so the
//! same mesh always gives the same atlas. UV face `i` is face `i` with the same corner order,
//! which is what the bake relies on (nvdiffrast's triangle id indexes both).

use super::geometry::{cross, dot, sub, Mesh};
use super::pack::{pack, Outline};
use crate::mesh::obj::TexturedMesh;

/// Largest angle between a face normal and its chart's seed normal.
pub const MAX_CHART_ANGLE_DEG: f64 = 70.0;

/// Gap kept between charts, in texels of the target texture (room for the bake's one-texel
/// dilation on each side, so neighbouring charts never bleed into each other).
pub const CHART_GAP_TEXELS: u32 = 2;

/// Unwraps `mesh` for a `resolution` x `resolution` texture.
pub fn unwrap(mesh: &Mesh, resolution: u32) -> TexturedMesh {
    let geo = FaceGeometry::new(mesh);
    let charts = grow_charts(mesh, &geo);
    let mut flat: Vec<FlatChart> = charts.iter().map(|faces| project(mesh, &geo, faces)).collect();
    for chart in &mut flat {
        orient(chart);
    }
    let outlines: Vec<Outline<'_>> =
        flat.iter().map(|c| Outline { points: &c.points, triangles: &c.corners, size: c.size }).collect();
    let placed = pack(&outlines, resolution, CHART_GAP_TEXELS);

    let res = resolution as f64;
    let mut out = TexturedMesh {
        vertices: mesh.vertices.clone(),
        faces: mesh.faces.clone(),
        uvs: Vec::new(),
        uv_faces: vec![[0; 3]; mesh.faces.len()],
    };
    for (chart, rect) in flat.iter().zip(&placed) {
        let base = out.uvs.len() as u32;
        for p in &chart.points {
            let [x, y] = rect.map(*p);
            out.uvs.push([(x / res).clamp(0.0, 1.0) as f32, (y / res).clamp(0.0, 1.0) as f32]);
        }
        for (f, corners) in chart.faces.iter().zip(&chart.corners) {
            out.uv_faces[*f as usize] = corners.map(|c| base + c);
        }
    }
    out
}

/// Per-face unit normals and areas (f64).
struct FaceGeometry {
    normals: Vec<[f64; 3]>,
    areas: Vec<f64>,
    /// Faces below this area have no reliable normal.
    tiny_area: f64,
    /// Mean edge length (the overlap grid's cell).
    mean_edge: f64,
}

impl FaceGeometry {
    fn new(mesh: &Mesh) -> Self {
        let mut normals = Vec::with_capacity(mesh.faces.len());
        let mut areas = Vec::with_capacity(mesh.faces.len());
        for f in &mesh.faces {
            let [a, b, c] = f.map(|i| mesh.vertices[i as usize].map(f64::from));
            let n = cross(sub(b, a), sub(c, a));
            let len = dot(n, n).sqrt();
            areas.push(0.5 * len);
            normals.push(if len > 0.0 { n.map(|x| x / len) } else { [0.0; 3] });
        }
        let mean = areas.iter().sum::<f64>() / areas.len().max(1) as f64;
        let mut edge_sum = 0.0;
        for f in &mesh.faces {
            let [a, b, _] = f.map(|i| mesh.vertices[i as usize].map(f64::from));
            let d = sub(a, b);
            edge_sum += dot(d, d).sqrt();
        }
        let mean_edge = edge_sum / mesh.faces.len().max(1) as f64;
        FaceGeometry { normals, areas, tiny_area: mean * 1e-6, mean_edge }
    }
}

/// Charts as lists of face indices (steps 1-2 together: a face joins only if its projection on
/// the seed's plane overlaps no face already in the chart).
fn grow_charts(mesh: &Mesh, geo: &FaceGeometry) -> Vec<Vec<u32>> {
    let neighbours = face_neighbours(mesh);
    let cos_max = MAX_CHART_ANGLE_DEG.to_radians().cos();
    let mut chart_of = vec![u32::MAX; mesh.faces.len()];
    let mut charts: Vec<Vec<u32>> = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    let mut grid = OverlapGrid::new(geo.mean_edge);
    for seed in 0..mesh.faces.len() {
        if chart_of[seed] != u32::MAX || geo.areas[seed] <= geo.tiny_area {
            continue;
        }
        let id = charts.len() as u32;
        let axis = geo.normals[seed];
        let (t, b) = basis(axis);
        let flat = |f: usize| {
            mesh.faces[f].map(|v| {
                let p = mesh.vertices[v as usize].map(f64::from);
                [dot(p, t), dot(p, b)]
            })
        };
        grid.clear();
        let mut faces = vec![seed as u32];
        chart_of[seed] = id;
        grid.insert(flat(seed));
        queue.push_back(seed);
        while let Some(f) = queue.pop_front() {
            for &g in &neighbours[f] {
                let g = g as usize;
                if chart_of[g] != u32::MAX {
                    continue;
                }
                let tiny = geo.areas[g] <= geo.tiny_area;
                if !tiny && dot(geo.normals[g], axis) < cos_max {
                    continue;
                }
                let tri = flat(g);
                if !tiny && grid.overlaps(&tri) {
                    continue;
                }
                grid.insert(tri);
                chart_of[g] = id;
                faces.push(g as u32);
                queue.push_back(g);
            }
        }
        charts.push(faces);
    }
    // Tiny faces no chart reached (isolated slivers) get one each.
    for (f, chart) in chart_of.iter_mut().enumerate() {
        if *chart == u32::MAX {
            *chart = charts.len() as u32;
            charts.push(vec![f as u32]);
        }
    }
    charts
}

/// The projected triangles of the chart being grown, bucketed on a square grid.
struct OverlapGrid {
    cell: f64,
    cells: std::collections::HashMap<[i64; 2], Vec<u32>>,
    triangles: Vec<[[f64; 2]; 3]>,
}

impl OverlapGrid {
    fn new(cell: f64) -> Self {
        let cell = if cell > 0.0 { cell } else { 1.0 };
        OverlapGrid { cell, cells: std::collections::HashMap::new(), triangles: Vec::new() }
    }

    fn clear(&mut self) {
        self.cells.clear();
        self.triangles.clear();
    }

    fn range(&self, tri: &[[f64; 2]; 3]) -> ([i64; 2], [i64; 2]) {
        let lo = [0, 1].map(|k| (tri[0][k].min(tri[1][k]).min(tri[2][k]) / self.cell).floor() as i64);
        let hi = [0, 1].map(|k| (tri[0][k].max(tri[1][k]).max(tri[2][k]) / self.cell).floor() as i64);
        (lo, hi)
    }

    fn overlaps(&self, tri: &[[f64; 2]; 3]) -> bool {
        let (lo, hi) = self.range(tri);
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                if let Some(list) = self.cells.get(&[x, y]) {
                    if list.iter().any(|&k| triangles_overlap(tri, &self.triangles[k as usize])) {
                        return true;
                    }
                }
            }
        }
        false
    }

    fn insert(&mut self, tri: [[f64; 2]; 3]) {
        let (lo, hi) = self.range(&tri);
        let k = self.triangles.len() as u32;
        self.triangles.push(tri);
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                self.cells.entry([x, y]).or_default().push(k);
            }
        }
    }
}

/// Whether two triangles' interiors overlap (separating-axis test; touching along an edge or at
/// a vertex, within a relative tolerance, is not overlapping).
fn triangles_overlap(a: &[[f64; 2]; 3], b: &[[f64; 2]; 3]) -> bool {
    for tri in [a, b] {
        for k in 0..3 {
            let (p, q) = (tri[k], tri[(k + 1) % 3]);
            let n = [p[1] - q[1], q[0] - p[0]];
            let len2 = n[0] * n[0] + n[1] * n[1];
            if len2 == 0.0 {
                continue;
            }
            let proj = |t: &[[f64; 2]; 3]| {
                let d = t.map(|v| v[0] * n[0] + v[1] * n[1]);
                (d[0].min(d[1]).min(d[2]), d[0].max(d[1]).max(d[2]))
            };
            let (amin, amax) = proj(a);
            let (bmin, bmax) = proj(b);
            let scale = (amax - amin).abs().max((bmax - bmin).abs()).max(len2.sqrt() * 1e-12);
            let eps = 1e-9 * scale;
            if amax <= bmin + eps || bmax <= amin + eps {
                return false;
            }
        }
    }
    true
}

/// Edge-adjacent faces across manifold edges (exactly two faces), in a deterministic order.
fn face_neighbours(mesh: &Mesh) -> Vec<Vec<u32>> {
    let mut edges: Vec<(u32, u32, u32)> = Vec::with_capacity(mesh.faces.len() * 3);
    for (fi, f) in mesh.faces.iter().enumerate() {
        for k in 0..3 {
            let (a, b) = (f[k], f[(k + 1) % 3]);
            edges.push((a.min(b), a.max(b), fi as u32));
        }
    }
    edges.sort_unstable();
    let mut neighbours = vec![Vec::new(); mesh.faces.len()];
    let mut i = 0;
    while i < edges.len() {
        let mut j = i + 1;
        while j < edges.len() && edges[j].0 == edges[i].0 && edges[j].1 == edges[i].1 {
            j += 1;
        }
        if j - i == 2 && edges[i].2 != edges[i + 1].2 {
            let (f, g) = (edges[i].2, edges[i + 1].2);
            neighbours[f as usize].push(g);
            neighbours[g as usize].push(f);
        }
        i = j;
    }
    neighbours
}

/// A chart flattened to 2D (world units).
struct FlatChart {
    /// The chart's faces (global indices).
    faces: Vec<u32>,
    /// Per face, its corners as indices into `points`.
    corners: Vec<[u32; 3]>,
    /// Chart-local 2D positions, one per distinct mesh vertex of the chart.
    points: Vec<[f64; 2]>,
    /// Bounding size after [`orient`] (points then lie in [0, size]).
    size: [f64; 2],
}

/// Step 2: planar projection.
fn project(mesh: &Mesh, geo: &FaceGeometry, faces: &[u32]) -> FlatChart {
    // The chart grew overlap-free on its seed's plane; the plane of its mean normal usually
    // flattens it with less distortion, so use that when it is also fold- and overlap-free.
    let seed = geo.normals[faces[0] as usize];
    let mut mean = [0.0; 3];
    for &f in faces {
        let (n, a) = (geo.normals[f as usize], geo.areas[f as usize]);
        mean = [mean[0] + n[0] * a, mean[1] + n[1] * a, mean[2] + n[2] * a];
    }
    let len = dot(mean, mean).sqrt();
    let mut axis = if dot(seed, seed) == 0.0 { [0.0, 0.0, 1.0] } else { seed };
    if len > 0.0 && faces.len() > 1 {
        let m = mean.map(|x| x / len);
        let folds = faces
            .iter()
            .any(|&f| geo.areas[f as usize] > geo.tiny_area && dot(geo.normals[f as usize], m) <= 0.0);
        if !folds && !self_overlaps(mesh, geo, faces, m) {
            axis = m;
        }
    }
    let (t, b) = basis(axis);
    // Local vertex ids in first-use order.
    let mut local: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let mut points = Vec::new();
    let mut corners = Vec::with_capacity(faces.len());
    for &f in faces {
        let c = mesh.faces[f as usize].map(|v| {
            *local.entry(v).or_insert_with(|| {
                let p = mesh.vertices[v as usize].map(f64::from);
                points.push([dot(p, t), dot(p, b)]);
                (points.len() - 1) as u32
            })
        });
        corners.push(c);
    }
    FlatChart { faces: faces.to_vec(), corners, points, size: [0.0; 2] }
}

/// Whether the chart's faces overlap when projected along `axis`.
fn self_overlaps(mesh: &Mesh, geo: &FaceGeometry, faces: &[u32], axis: [f64; 3]) -> bool {
    let (t, b) = basis(axis);
    let mut grid = OverlapGrid::new(geo.mean_edge);
    for &f in faces {
        let tri = mesh.faces[f as usize].map(|v| {
            let p = mesh.vertices[v as usize].map(f64::from);
            [dot(p, t), dot(p, b)]
        });
        if geo.areas[f as usize] > geo.tiny_area && grid.overlaps(&tri) {
            return true;
        }
        grid.insert(tri);
    }
    false
}

/// An orthonormal tangent pair for `n`, right-handed (t x b = n) so projected faces keep their
/// counter-clockwise order.
fn basis(n: [f64; 3]) -> ([f64; 3], [f64; 3]) {
    let helper = if n[0].abs() < 0.9 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
    let t = cross(helper, n);
    let tl = dot(t, t).sqrt();
    let t = t.map(|x| x / tl);
    let b = cross(n, t);
    (t, b)
}

/// Step 3: rotate to the minimum-area bounding rectangle, wider than tall, at the origin.
fn orient(chart: &mut FlatChart) {
    let hull = convex_hull(&chart.points);
    let mut best = (f64::INFINITY, 1.0, 0.0);
    for i in 0..hull.len() {
        let (p, q) = (hull[i], hull[(i + 1) % hull.len()]);
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            continue;
        }
        let (c, s) = (dx / len, dy / len);
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for h in &hull {
            let r = [c * h[0] + s * h[1], -s * h[0] + c * h[1]];
            for k in 0..2 {
                lo[k] = lo[k].min(r[k]);
                hi[k] = hi[k].max(r[k]);
            }
        }
        let area = (hi[0] - lo[0]) * (hi[1] - lo[1]);
        if area < best.0 {
            best = (area, c, s);
        }
    }
    let (_, c, s) = best;
    for p in &mut chart.points {
        *p = [c * p[0] + s * p[1], -s * p[0] + c * p[1]];
    }
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in &chart.points {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let mut size = [hi[0] - lo[0], hi[1] - lo[1]];
    // A quarter turn (x, y) -> (-y, x) keeps the orientation; then shift into [0, size].
    let turn = size[1] > size[0];
    for p in &mut chart.points {
        let q = [p[0] - lo[0], p[1] - lo[1]];
        *p = if turn { [size[1] - q[1], q[0]] } else { q };
    }
    if turn {
        size = [size[1], size[0]];
    }
    chart.size = size;
}

/// Andrew's monotone chain; counter-clockwise, no repeated points.
fn convex_hull(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let turn =
        |o: [f64; 2], a: [f64; 2], b: [f64; 2]| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(pts.len() + 1);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f64; 2]>> =
            if pass == 0 { Box::new(pts.iter()) } else { Box::new(pts.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 && turn(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}
