//! Mesh cleaning exactly as upstream's `kiui.mesh_utils.clean_mesh(verts, faces, repair=False,
//! remesh=False)` (CRM `inference.py`) did in CRM's time: kiui 0.2.x (early 2024; pinned as 0.2.4
//! in `tools/parity/requirements-mesh.txt`) with its defaults `min_f=64, min_d=20`. It runs these
//! pymeshlab filters, i.e. vcglib's `tri::Clean` functions, all in double precision:
//!
//! 1. `meshing_remove_unreferenced_vertices`: drop vertices no face uses.
//! 2. `meshing_merge_close_vertices(threshold=PercentageValue(1))`: `MergeCloseVertex`. The
//!    radius is 1% of the filter's range, which is 1% of the bounding-box diagonal, so
//!    `diag / 10000`, computed as MeshLab's float parameters do: `f32(diag / 100) * 0.01f`.
//!    `ClusterVertex` visits vertices in index order; each not yet visited one takes every
//!    unvisited vertex strictly inside its box and strictly closer than the radius (they move onto
//!    it). `RemoveDuplicateVertex` then keeps the lowest index of each exact position and deletes
//!    faces left with a repeated vertex.
//! 3. `meshing_remove_duplicate_faces`: faces with the same vertex *set*, sorted with
//!    libstdc++'s `std::sort` by that set; each face equal to its successor is deleted, so the
//!    survivor (and its winding) is whatever that unstable sort puts last (`super::stdsort`).
//! 4. `meshing_remove_null_faces`: faces whose doubled area `|(p1-p0) x (p2-p0)|` is `<= 0`.
//! 5. `meshing_remove_connected_component_by_diameter(PercentageValue(20))` then
//!    `meshing_remove_connected_component_by_face_number(64)`: pieces (faces connected through
//!    shared edges; touching at a vertex does not connect) whose bounding box has a diagonal
//!    under 20% of the mesh's, or with fewer than 64 faces, are deleted.
//!    Both filters then drop every unreferenced vertex, including those steps 3-4 left behind.
//!
//! kiui then compacts, keeping the order of what survives. Positions only ever move onto other
//! input positions, so the f32 output is exact.

use std::collections::HashMap;

use super::geometry::Mesh;
use super::stdsort;

/// kiui 0.2.x `clean_mesh(min_f=64)`: pieces with fewer faces are removed.
pub const MIN_PIECE_FACES: usize = 64;

/// kiui 0.2.x `clean_mesh(min_d=20)`: pieces whose bounding-box diagonal is under this percentage
/// of the whole mesh's are removed.
pub const MIN_PIECE_DIAMETER_PERCENT: f32 = 20.0;

/// Cleans a raw mesh as upstream's `clean_mesh` does (see the module docs). Faces with an index
/// outside `vertices` are dropped (pymeshlab would reject the mesh; FlexiCubes never makes them).
pub fn clean(vertices: &[[f32; 3]], faces: &[[i64; 3]]) -> Mesh {
    let n_in = vertices.len() as i64;
    let faces: Vec<[usize; 3]> = faces
        .iter()
        .filter(|f| f.iter().all(|&i| (0..n_in).contains(&i)))
        .map(|f| [f[0] as usize, f[1] as usize, f[2] as usize])
        .collect();

    // 1. Remove unreferenced vertices.
    let mut referenced = vec![false; vertices.len()];
    for f in &faces {
        for &i in f {
            referenced[i] = true;
        }
    }
    let mut remap = vec![usize::MAX; vertices.len()];
    let mut pos: Vec<[f64; 3]> = Vec::new();
    for (i, v) in vertices.iter().enumerate() {
        if referenced[i] {
            remap[i] = pos.len();
            pos.push([v[0] as f64, v[1] as f64, v[2] as f64]);
        }
    }
    let mut faces: Vec<[usize; 3]> = faces.iter().map(|f| f.map(|i| remap[i])).collect();
    if pos.is_empty() {
        return Mesh::default();
    }

    // 2. Merge close vertices: cluster, then fold exact duplicates.
    let radius = merge_radius(&pos);
    cluster_vertices(&mut pos, radius);
    let survivor = fold_duplicate_positions(&pos);
    for f in &mut faces {
        *f = f.map(|i| survivor[i]);
    }
    let mut alive: Vec<bool> = faces.iter().map(|f| f[0] != f[1] && f[0] != f[2] && f[1] != f[2]).collect();

    // 3. Remove duplicate faces.
    remove_duplicate_faces(&faces, &mut alive);

    // 4. Remove zero-area faces.
    for (f, a) in faces.iter().zip(alive.iter_mut()) {
        if *a && double_area(&pos[f[0]], &pos[f[1]], &pos[f[2]]) <= 0.0 {
            *a = false;
        }
    }

    // 5. Remove small pieces (the bounding box is still that of step 1: merged vertices moved
    //    onto others, and deleted faces leave their vertices in place until this step).
    let min_diameter = ((diag(&pos) as f32) * (MIN_PIECE_DIAMETER_PERCENT / 100.0)) as f64;
    remove_small_pieces(&pos, &faces, &mut alive, min_diameter, MIN_PIECE_FACES);

    // Compact: keep every vertex a surviving face uses, in order.
    let mut used = vec![false; pos.len()];
    for (f, _) in faces.iter().zip(&alive).filter(|(_, a)| **a) {
        for &i in f {
            used[i] = true;
        }
    }
    let mut index = vec![u32::MAX; pos.len()];
    let mut out = Mesh::default();
    for (i, p) in pos.iter().enumerate() {
        if used[i] {
            index[i] = out.vertices.len() as u32;
            out.vertices.push([p[0] as f32, p[1] as f32, p[2] as f32]);
        }
    }
    out.faces = faces.iter().zip(&alive).filter(|(_, a)| **a).map(|(f, _)| f.map(|i| index[i])).collect();
    out
}

/// `PercentageValue(1)` of the merge filter's range (`bbox.Diag() / 100`), in MeshLab's f32
/// parameter arithmetic: `f32(diag / 100) * (1f / 100)`.
fn merge_radius(pos: &[[f64; 3]]) -> f64 {
    (((diag(pos) / 100.0) as f32) * 0.01f32) as f64
}

/// The bounding-box diagonal of `pos` (non-empty).
fn diag(pos: &[[f64; 3]]) -> f64 {
    let mut lo = pos[0];
    let mut hi = pos[0];
    for p in pos {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    norm(sub(&lo, &hi))
}

/// vcglib `Clean::RemoveSmallConnectedComponentsDiameter` then `...Size`: deletes the faces of
/// every edge-connected piece whose bounding-box diagonal is `< min_diameter` or which has fewer
/// than `min_faces` faces. Pieces are found over the alive faces; any number of faces sharing an
/// edge (non-manifold ones too) are connected, as vcg's face-face ring links them all.
fn remove_small_pieces(
    pos: &[[f64; 3]],
    faces: &[[usize; 3]],
    alive: &mut [bool],
    min_diameter: f64,
    min_faces: usize,
) {
    let piece = edge_connected_pieces(faces, alive);
    let n_pieces = piece.iter().filter(|&&p| p != usize::MAX).map(|&p| p + 1).max().unwrap_or(0);
    let mut lo = vec![[f64::INFINITY; 3]; n_pieces];
    let mut hi = vec![[f64::NEG_INFINITY; 3]; n_pieces];
    let mut count = vec![0usize; n_pieces];
    for (f, &p) in faces.iter().zip(&piece) {
        if p == usize::MAX {
            continue;
        }
        count[p] += 1;
        for &v in f {
            for k in 0..3 {
                lo[p][k] = lo[p][k].min(pos[v][k]);
                hi[p][k] = hi[p][k].max(pos[v][k]);
            }
        }
    }
    let small: Vec<bool> =
        (0..n_pieces).map(|p| norm(sub(&hi[p], &lo[p])) < min_diameter || count[p] < min_faces).collect();
    for (a, &p) in alive.iter_mut().zip(&piece) {
        if p != usize::MAX && small[p] {
            *a = false;
        }
    }
}

/// Piece index per alive face (`usize::MAX` for dead ones): union-find over faces sharing an
/// undirected edge.
fn edge_connected_pieces(faces: &[[usize; 3]], alive: &[bool]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..faces.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut edges: Vec<(usize, usize, usize)> = Vec::with_capacity(faces.len() * 3);
    for (k, f) in faces.iter().enumerate().filter(|(k, _)| alive[*k]) {
        for e in 0..3 {
            let (a, b) = (f[e], f[(e + 1) % 3]);
            edges.push((a.min(b), a.max(b), k));
        }
    }
    edges.sort_unstable();
    for w in edges.windows(2) {
        if (w[0].0, w[0].1) == (w[1].0, w[1].1) {
            let (ra, rb) = (root(&mut parent, w[0].2), root(&mut parent, w[1].2));
            if ra != rb {
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let mut id = vec![usize::MAX; faces.len()];
    let mut piece = vec![usize::MAX; faces.len()];
    let mut next = 0;
    for k in 0..faces.len() {
        if alive[k] {
            let r = root(&mut parent, k);
            if id[r] == usize::MAX {
                id[r] = next;
                next += 1;
            }
            piece[k] = id[r];
        }
    }
    piece
}

/// vcglib `Clean::ClusterVertex`: in index order, each unvisited vertex absorbs (moves onto
/// itself) every unvisited vertex inside its open box of half-size `radius` and closer than it.
fn cluster_vertices(pos: &mut [[f64; 3]], radius: f64) {
    if radius.is_nan() || radius <= 0.0 {
        return;
    }
    // Hash grid with cells a bit larger than `radius` (margin for rounding in the division):
    // every candidate lies in the 27 cells around the visiting vertex's cell.
    let cell = radius * 1.5;
    let cell_of = |p: &[f64; 3]| -> [i64; 3] { p.map(|c| (c / cell).floor() as i64) };
    let mut grid: HashMap<[i64; 3], Vec<u32>> = HashMap::new();
    for (i, p) in pos.iter().enumerate() {
        grid.entry(cell_of(p)).or_default().push(i as u32);
    }
    let mut visited = vec![false; pos.len()];
    for i in 0..pos.len() {
        if visited[i] {
            continue;
        }
        visited[i] = true;
        let p = pos[i];
        let c = cell_of(&p);
        for dx in -1..=1 {
            for dy in -1..=1 {
                for dz in -1..=1 {
                    let Some(members) = grid.get(&[c[0] + dx, c[1] + dy, c[2] + dz]) else {
                        continue;
                    };
                    for &j in members {
                        let j = j as usize;
                        if visited[j] {
                            continue;
                        }
                        let q = pos[j];
                        let in_box = (0..3).all(|k| p[k] - radius < q[k] && p[k] + radius > q[k]);
                        if in_box && norm(sub(&p, &q)) < radius {
                            visited[j] = true;
                            pos[j] = p;
                        }
                    }
                }
            }
        }
    }
}

/// vcglib `Clean::RemoveDuplicateVertex`: for each exact position, the lowest index survives;
/// returns each vertex's survivor.
fn fold_duplicate_positions(pos: &[[f64; 3]]) -> Vec<usize> {
    // vcg Point3 `operator<` compares z, then y, then x; ties are broken by address (index).
    let mut order: Vec<usize> = (0..pos.len()).collect();
    order.sort_by(|&a, &b| {
        let (p, q) = (&pos[a], &pos[b]);
        if p == q {
            a.cmp(&b)
        } else if point_less(p, q) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    let mut survivor: Vec<usize> = (0..pos.len()).collect();
    let mut j = order[0];
    for &i in &order[1..] {
        if pos[i] == pos[j] {
            survivor[i] = j;
        } else {
            j = i;
        }
    }
    survivor
}

fn point_less(p: &[f64; 3], q: &[f64; 3]) -> bool {
    if p[2] != q[2] {
        p[2] < q[2]
    } else if p[1] != q[1] {
        p[1] < q[1]
    } else {
        p[0] < q[0]
    }
}

/// vcglib `Clean::RemoveDuplicateFace` (see the module docs for why the sort must be libstdc++'s).
fn remove_duplicate_faces(faces: &[[usize; 3]], alive: &mut [bool]) {
    let mut triples: Vec<([usize; 3], usize)> = faces
        .iter()
        .enumerate()
        .filter(|(k, _)| alive[*k])
        .map(|(k, f)| {
            let mut s = *f;
            s.sort_unstable();
            (s, k)
        })
        .collect();
    let less = |a: &([usize; 3], usize), b: &([usize; 3], usize)| {
        let (a, b) = (&a.0, &b.0);
        if a[2] != b[2] {
            a[2] < b[2]
        } else if a[1] != b[1] {
            a[1] < b[1]
        } else {
            a[0] < b[0]
        }
    };
    stdsort::sort_by(&mut triples, &less);
    for w in triples.windows(2) {
        if w[0].0 == w[1].0 {
            alive[w[0].1] = false;
        }
    }
}

/// vcg `DoubleArea`: `|(p1 - p0) x (p2 - p0)|`, in the same operation order.
fn double_area(p0: &[f64; 3], p1: &[f64; 3], p2: &[f64; 3]) -> f64 {
    let a = sub(p1, p0);
    let b = sub(p2, p0);
    norm([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])
}

fn sub(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}
