//! The OBJ and MTL text upstream writes (`CRM.export_mesh_wt_uv` in `model/crm/model.py`),
//! byte for byte:
//!
//! ```text
//! mtllib NAME.mtl
//! v %f %f %f        per vertex: x, z, -y          (axis swap)
//! vt %f %f          per UV vertex: u, 1 - v (f64)  (v flipped)
//! usemtl material_0
//! f %d/%d %d/%d %d/%d   per face, corners in order 2, 1, 0 (reversed winding), 1-based
//! ```
//!
//! and the MTL with upstream's material values. Python's `%f` is the correctly rounded
//! six-decimal form (ties to even on the exact binary value), which Rust's `{:.6}` also produces.

use std::fmt::Write;

/// A mesh with its UV atlas, as the OBJ writer needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TexturedMesh {
    /// Vertex positions (upstream's axes, before the export swap).
    pub vertices: Vec<[f32; 3]>,
    /// Position triangles, indices into `vertices`.
    pub faces: Vec<[u32; 3]>,
    /// UV coordinates in [0, 1] (v up, before the export flip).
    pub uvs: Vec<[f32; 2]>,
    /// UV triangles, one per face with the same corner order, indices into `uvs`.
    pub uv_faces: Vec<[u32; 3]>,
}

/// Upstream's MTL for texture `NAME.png` (`name` is the file stem).
pub fn mtl_text(name: &str) -> String {
    format!("newmtl material_0\nKd 1 1 1\nKa 1 1 1\nKs 0.4 0.4 0.4\nNs 10\nillum 2\nmap_Kd {name}.png\n")
}

/// Upstream's OBJ for `mesh`, referencing `NAME.mtl`.
pub fn obj_text(name: &str, mesh: &TexturedMesh) -> String {
    // ~40 bytes per `v`, ~20 per `vt`, ~40 per `f` line.
    let mut out =
        String::with_capacity(64 + 40 * mesh.vertices.len() + 20 * mesh.uvs.len() + 40 * mesh.faces.len());
    let _ = writeln!(out, "mtllib {name}.mtl");
    for p in &mesh.vertices {
        out.push_str("v ");
        push_f(&mut out, p[0]);
        out.push(' ');
        push_f(&mut out, p[2]);
        out.push(' ');
        push_f(&mut out, -p[1]);
        out.push('\n');
    }
    for t in &mesh.uvs {
        out.push_str("vt ");
        push_f(&mut out, t[0]);
        out.push(' ');
        // numpy 1.x (upstream's): `1 - float32 scalar` is computed in float64.
        push_f64(&mut out, 1.0 - t[1] as f64);
        out.push('\n');
    }
    out.push_str("usemtl material_0\n");
    for (f, t) in mesh.faces.iter().zip(&mesh.uv_faces) {
        let _ = writeln!(
            out,
            "f {}/{} {}/{} {}/{}",
            f[2] as u64 + 1,
            t[2] as u64 + 1,
            f[1] as u64 + 1,
            t[1] as u64 + 1,
            f[0] as u64 + 1,
            t[0] as u64 + 1
        );
    }
    out
}

/// Python's `'%f' % x` for an f32 value (widened to double as numpy does).
fn push_f(out: &mut String, x: f32) {
    push_f64(out, x as f64)
}

/// Python's `'%f' % x`.
fn push_f64(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(out, "{x:.6}");
    }
}
