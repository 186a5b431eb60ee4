//! The camera vectors that condition each frame of the multi-view UNet.
//!
//! Port of `get_camera_for_index` and the helpers it uses (`create_camera_to_world_matrix`,
//! `convert_opengl_to_blender`) in `imagedream/camera_utils.py`, and of the camera set-up in
//! `libs/sample.py` (`ImageDreamDiffusion.__init__`), thu-ml/CRM at 4964e36. Each vector is the
//! flattened (row-major) 4x4 camera-to-world matrix of a camera on the unit sphere looking at
//! the origin, in Blender axes, computed in f64 and stored as f32 like upstream's.

use tch::{Device, Kind, Tensor};

/// (elevation, azimuth) in degrees of CRM's six canonical views: front, left, bottom, back,
/// right, top (`get_camera_for_index`).
pub const VIEW_ANGLES: [(f64, f64); 6] =
    [(0.0, 0.0), (0.0, -90.0), (-90.0, 0.0), (0.0, 180.0), (0.0, 90.0), (90.0, 0.0)];

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn normalized(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

/// The flattened Blender-axes camera-to-world matrix of a camera at `elevation`/`azimuth`
/// degrees on the unit sphere, looking at the origin with +y up.
pub fn camera_matrix(elevation: f64, azimuth: f64) -> [f64; 16] {
    let (e, a) = (elevation.to_radians(), azimuth.to_radians());
    let pos = [e.cos() * a.sin(), e.sin(), e.cos() * a.cos()];
    let forward = normalized([-pos[0], -pos[1], -pos[2]]);
    let right = normalized(cross(forward, [0.0, 1.0, 0.0]));
    let up = normalized(cross(right, forward));
    // OpenGL camera-to-world: columns right, up, -forward, position.
    let gl = |r: usize| [right[r], up[r], -forward[r], pos[r]];
    // Blender axes: flip_yz = [[1,0,0,0],[0,0,-1,0],[0,1,0,0],[0,0,0,1]] applied on the left.
    let rows = [gl(0), gl(2).map(|x| -x), gl(1), [0.0, 0.0, 0.0, 1.0]];
    let mut out = [0.0; 16];
    for (i, row) in rows.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(row);
    }
    out
}

/// The camera vector of canonical view `index` (0..6), upstream `get_camera_for_index`.
pub fn camera_for_index(index: usize) -> [f32; 16] {
    let (elevation, azimuth) = VIEW_ANGLES[index];
    camera_matrix(elevation, azimuth).map(|x| x as f32)
}

/// The `[F, 16]` fp32 camera vectors of `views`, with the reference frame's vector zeroed
/// (upstream: `camera[ref_position] = zeros`).
pub fn camera_vectors(views: &[usize], ref_position: Option<usize>, device: Device) -> Tensor {
    let flat: Vec<f32> = views
        .iter()
        .enumerate()
        .flat_map(|(i, &view)| if Some(i) == ref_position { [0.0; 16] } else { camera_for_index(view) })
        .collect();
    Tensor::from_slice(&flat).view([views.len() as i64, 16]).to_kind(Kind::Float).to_device(device)
}
