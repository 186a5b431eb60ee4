//! Reconstruction: upstream's `generate3d` from the six views to a mesh (thu-ml/CRM at 4964e36).

pub mod flexicubes;
