//! `output3d.glb`: the textured mesh as binary glTF 2.0, for viewers and engines that load
//! glTF (three.js' `GLTFLoader`, Blender, model-viewer) without an OBJ/MTL/PNG triple.
//!
//! The same geometry and texture as the zip's OBJ, oriented as the OBJ is (positions
//! `(x, z, -y)`, winding reversed, so glTF's +Y is up and the front faces are counter-clockwise),
//! one vertex per distinct (position, UV) corner (glTF has one index per vertex), area-weighted
//! smooth normals, and the baked PNG embedded in the binary chunk. The JSON is built with
//! `gltf-json`; the container (12-byte header, a JSON chunk, a BIN chunk) is written here as the
//! glTF 2.0 specification's section 4.4 lays it out.

use std::collections::HashMap;

use gltf_json as json;
use json::validation::Checked::Valid;
use json::validation::USize64;

use super::obj::TexturedMesh;
use crate::PipelineError;

/// The file name of the part.
pub const GLB_NAME: &str = "output3d.glb";

/// The vertex arrays of the GLB: one entry per distinct (position, UV) corner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GlbVertices {
    /// Positions in glTF axes (the OBJ's `(x, z, -y)`).
    pub positions: Vec<[f32; 3]>,
    /// Unit normals.
    pub normals: Vec<[f32; 3]>,
    /// Texture coordinates, origin at the image's top-left (glTF's convention).
    pub uvs: Vec<[f32; 2]>,
    /// Triangles, counter-clockwise seen from outside.
    pub indices: Vec<[u32; 3]>,
}

/// The vertex arrays of `mesh` as the GLB holds them.
pub fn glb_vertices(mesh: &TexturedMesh) -> GlbVertices {
    // The OBJ writer's axis swap, and its corner order 2, 1, 0.
    let position = |p: [f32; 3]| [p[0], p[2], -p[1]];
    let corners = |f: [u32; 3]| [f[2], f[1], f[0]];
    let smooth =
        smooth_normals(&mesh.vertices.iter().map(|&p| position(p)).collect::<Vec<_>>(), mesh, corners);

    let mut out = GlbVertices::default();
    let mut index: HashMap<(u32, u32), u32> = HashMap::with_capacity(mesh.uvs.len());
    for (f, t) in mesh.faces.iter().zip(&mesh.uv_faces) {
        let (f, t) = (corners(*f), corners(*t));
        let mut tri = [0u32; 3];
        for k in 0..3 {
            tri[k] = *index.entry((f[k], t[k])).or_insert_with(|| {
                out.positions.push(position(mesh.vertices[f[k] as usize]));
                out.normals.push(smooth[f[k] as usize]);
                out.uvs.push(mesh.uvs[t[k] as usize]);
                out.positions.len() as u32 - 1
            });
        }
        out.indices.push(tri);
    }
    out
}

/// Area-weighted vertex normals of `positions` under `mesh`'s faces (corners reordered by
/// `corners`); a vertex on no face of positive area gets +Y (glTF requires unit normals).
fn smooth_normals(
    positions: &[[f32; 3]],
    mesh: &TexturedMesh,
    corners: impl Fn([u32; 3]) -> [u32; 3],
) -> Vec<[f32; 3]> {
    let mut acc = vec![[0f64; 3]; positions.len()];
    for f in &mesh.faces {
        let [a, b, c] = corners(*f).map(|i| positions[i as usize].map(f64::from));
        let (u, v) = (sub(b, a), sub(c, a));
        // The cross product's length is twice the area: the weight comes for free.
        let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
        for i in corners(*f) {
            for k in 0..3 {
                acc[i as usize][k] += n[k];
            }
        }
    }
    acc.into_iter()
        .map(|n| {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            if len > 1e-20 {
                n.map(|x| (x / len) as f32)
            } else {
                [0.0, 1.0, 0.0]
            }
        })
        .collect()
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// The bytes of `output3d.glb` for `mesh` textured with the PNG file `png`.
pub fn glb_bytes(mesh: &TexturedMesh, png: &[u8]) -> Result<Vec<u8>, PipelineError> {
    if mesh.faces.is_empty() {
        return Err(PipelineError::Internal("GLB export of a mesh without faces".into()));
    }
    let v = glb_vertices(mesh);
    let mut root = json::Root {
        asset: json::Asset { generator: Some("img3d".into()), ..Default::default() },
        ..Default::default()
    };
    let mut bin = Vec::new();

    // 1. binary chunk: positions, normals, UVs, indices, PNG; each view 4-byte aligned.
    let positions = append(&mut bin, f32_bytes(&v.positions));
    let normals = append(&mut bin, f32_bytes(&v.normals));
    let uvs = append(&mut bin, f32_bytes(&v.uvs));
    let indices = append(&mut bin, v.indices.iter().flatten().flat_map(|i| i.to_le_bytes()));
    let image = append(&mut bin, png.iter().copied());
    let buffer = root.push(json::Buffer {
        byte_length: USize64::from(bin.len()),
        uri: None,
        extensions: None,
        extras: Default::default(),
    });
    let view =
        |root: &mut json::Root, (offset, len): (usize, usize), target: Option<json::buffer::Target>| {
            root.push(json::buffer::View {
                buffer,
                byte_length: USize64::from(len),
                byte_offset: Some(USize64::from(offset)),
                byte_stride: None,
                target: target.map(Valid),
                extensions: None,
                extras: Default::default(),
            })
        };
    let array = Some(json::buffer::Target::ArrayBuffer);
    let (positions, normals, uvs) =
        (view(&mut root, positions, array), view(&mut root, normals, array), view(&mut root, uvs, array));
    let indices = view(&mut root, indices, Some(json::buffer::Target::ElementArrayBuffer));
    let image = view(&mut root, image, None);

    // 2. accessors (POSITION needs its bounds).
    let (min, max) = bounds(&v.positions);
    let count = v.positions.len();
    let f32s = json::accessor::ComponentType::F32;
    let vec3 = json::accessor::Type::Vec3;
    let positions = accessor(&mut root, positions, count, f32s, vec3, Some((min.to_vec(), max.to_vec())));
    let normals = accessor(&mut root, normals, count, f32s, vec3, None);
    let uvs = accessor(&mut root, uvs, count, f32s, json::accessor::Type::Vec2, None);
    let indices = accessor(
        &mut root,
        indices,
        v.indices.len() * 3,
        json::accessor::ComponentType::U32,
        json::accessor::Type::Scalar,
        None,
    );

    // 3. texture and material: the baked colour as base colour; no metal, fully rough (the
    //    bake holds the lighting-free albedo, as the OBJ's diffuse map).
    let image = root.push(json::Image {
        buffer_view: Some(image),
        mime_type: Some(json::image::MimeType("image/png".into())),
        uri: None,
        extensions: None,
        extras: Default::default(),
    });
    let sampler = root.push(json::texture::Sampler {
        mag_filter: Some(Valid(json::texture::MagFilter::Linear)),
        min_filter: Some(Valid(json::texture::MinFilter::LinearMipmapLinear)),
        wrap_s: Valid(json::texture::WrappingMode::ClampToEdge),
        wrap_t: Valid(json::texture::WrappingMode::ClampToEdge),
        ..Default::default()
    });
    let texture = root.push(json::Texture {
        sampler: Some(sampler),
        source: image,
        extensions: None,
        extras: Default::default(),
    });
    let material = root.push(json::Material {
        pbr_metallic_roughness: json::material::PbrMetallicRoughness {
            base_color_texture: Some(json::texture::Info {
                index: texture,
                tex_coord: 0,
                extensions: None,
                extras: Default::default(),
            }),
            metallic_factor: json::material::StrengthFactor(0.0),
            roughness_factor: json::material::StrengthFactor(1.0),
            ..Default::default()
        },
        ..Default::default()
    });

    // 4. mesh, node, scene.
    let attributes = [
        (json::mesh::Semantic::Positions, positions),
        (json::mesh::Semantic::Normals, normals),
        (json::mesh::Semantic::TexCoords(0), uvs),
    ]
    .into_iter()
    .map(|(semantic, accessor)| (Valid(semantic), accessor))
    .collect();
    let mesh = root.push(json::Mesh {
        primitives: vec![json::mesh::Primitive {
            attributes,
            indices: Some(indices),
            material: Some(material),
            mode: Valid(json::mesh::Mode::Triangles),
            targets: None,
            extensions: None,
            extras: Default::default(),
        }],
        weights: None,
        extensions: None,
        extras: Default::default(),
    });
    let node = root.push(json::Node { mesh: Some(mesh), ..Default::default() });
    let scene = root.push(json::Scene { nodes: vec![node], extensions: None, extras: Default::default() });
    root.scene = Some(scene);

    let json = root.to_vec().map_err(|e| PipelineError::Internal(format!("glTF JSON: {e}")))?;
    Ok(container(json, bin))
}

/// Appends `bytes` to `bin` at a 4-byte boundary; returns (offset, length).
fn append(bin: &mut Vec<u8>, bytes: impl IntoIterator<Item = u8>) -> (usize, usize) {
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let offset = bin.len();
    bin.extend(bytes);
    (offset, bin.len() - offset)
}

/// Little-endian bytes of f32 arrays.
fn f32_bytes<const N: usize>(items: &[[f32; N]]) -> impl Iterator<Item = u8> + '_ {
    items.iter().flatten().flat_map(|x| x.to_le_bytes())
}

fn accessor(
    root: &mut json::Root,
    view: json::Index<json::buffer::View>,
    count: usize,
    component: json::accessor::ComponentType,
    type_: json::accessor::Type,
    bounds: Option<(Vec<f32>, Vec<f32>)>,
) -> json::Index<json::Accessor> {
    let (min, max) = match bounds {
        Some((min, max)) => (Some(json::Value::from(min)), Some(json::Value::from(max))),
        None => (None, None),
    };
    root.push(json::Accessor {
        buffer_view: Some(view),
        byte_offset: None,
        count: USize64::from(count),
        component_type: Valid(json::accessor::GenericComponentType(component)),
        extensions: None,
        extras: Default::default(),
        type_: Valid(type_),
        min,
        max,
        normalized: false,
        sparse: None,
    })
}

/// Per-axis minimum and maximum of `points`.
fn bounds(points: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    points.iter().fold(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), |(mut lo, mut hi), p| {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
        (lo, hi)
    })
}

/// The GLB container: header (`glTF`, version 2, total length), the JSON chunk padded with
/// spaces, the BIN chunk padded with zeros (glTF 2.0 section 4.4).
fn container(mut json: Vec<u8>, mut bin: Vec<u8>) -> Vec<u8> {
    while !json.len().is_multiple_of(4) {
        json.push(b' ');
    }
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let total = 12 + 8 + json.len() + 8 + bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&json);
    out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out.extend_from_slice(&bin);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad() -> TexturedMesh {
        TexturedMesh {
            vertices: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
            faces: vec![[0, 1, 2], [0, 2, 3]],
            uvs: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]],
            // The second face's first corner has its own UV: a seam, so one more vertex.
            uv_faces: vec![[0, 1, 2], [4, 2, 3]],
        }
    }

    /// Corners sharing a position but not a UV become two vertices; positions are the OBJ's
    /// axes and the winding the OBJ's (reversed), so normals point along the OBJ's face normal.
    #[test]
    fn vertices_follow_the_obj() {
        let v = glb_vertices(&quad());
        assert_eq!(v.positions.len(), 5);
        assert_eq!(v.indices.len(), 2);
        // Face [0, 1, 2] becomes corners 2, 1, 0; source (1, 1, 0) is glTF (1, 0, -1).
        assert_eq!(v.positions[v.indices[0][0] as usize], [1.0, 0.0, -1.0]);
        // Every smooth normal agrees with the geometric normal of the written winding.
        let [a, b, c] = v.indices[0].map(|i| v.positions[i as usize]);
        let (u, w) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
        let n = [u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]];
        for normal in &v.normals {
            let dot = normal[0] * n[0] + normal[1] * n[1] + normal[2] * n[2];
            assert!(dot > 0.0, "normal {normal:?} against the face's {n:?}");
        }
    }

    /// The container's header and chunk lengths are consistent and 4-byte aligned, and the
    /// JSON chunk parses back into a glTF root with the PNG's view.
    #[test]
    fn container_is_well_formed() {
        let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
        let glb = glb_bytes(&quad(), &png).unwrap();
        assert_eq!(&glb[0..4], b"glTF");
        let word = |at: usize| u32::from_le_bytes(glb[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(word(4), 2);
        assert_eq!(word(8), glb.len());
        let json_len = word(12);
        assert_eq!(&glb[16..20], b"JSON");
        assert_eq!(json_len % 4, 0);
        let root = json::Root::from_slice(&glb[20..20 + json_len]).unwrap();
        assert_eq!(root.meshes.len(), 1);
        assert_eq!(root.images.len(), 1);
        let bin_at = 20 + json_len;
        assert_eq!(&glb[bin_at + 4..bin_at + 8], b"BIN\0");
        let bin = &glb[bin_at + 8..];
        let view = &root.buffer_views[root.images[0].buffer_view.unwrap().value()];
        let start = view.byte_offset.unwrap().0 as usize;
        assert_eq!(&bin[start..start + view.byte_length.0 as usize], &png[..]);
    }
}
