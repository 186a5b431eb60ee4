"""Parity fixtures for FlexiCubes mesh extraction (pipeline/src/recon/flexicubes.rs).

Usage (parity Python; upstream's FlexiCubes needs only torch):
    python tools/parity/flexicubes.py /path/to/CRM            # thu-ml/CRM at 4964e36

Writes pipeline/tests/data/flexicubes.io.safetensors with, for each grid resolution R in
RESOLUTIONS:

  rR.verts, rR.indices          FlexiCubesGeometry(grid_res=R, scale=2.0).verts / .indices
                                (construct_voxel_grid(R) * 2), the grid the network samples
  rR.x                          deformed vertices: verts + tanh(d) / R * 0.95 / 0.95 * 0.5, d
                                seeded normal noise (util/renderer.py's formula with CRM's
                                scale 0.95)
  rR.weight                     seeded normal [F, 21] * 0.1 (model.py's weightMlp(..) * 0.1)
and for each field NAME of `fields` (a mildly noisy sphere, a strongly noisy one):
  rR.NAME.sdf                   the scalar field
  rR.NAME.vertices, .faces     FlexiCubes(weight_scale=0.5)(x, sdf, indices, R,
                                beta=weight[:, :12], alpha=weight[:, 12:20], gamma=weight[:, 20],
                                training=False), i.e. FlexiCubesGeometry.get_mesh at inference

The FlexiCubes modules are imported directly (util/renderer.py imports nvdiffrast, which the
parity environment lacks; its deformation formula is reproduced above). The script prints, per
field, how many cubes hit the ambiguous cases C16/C19 and how many were inverted by the
check_table pass, and how many quads split along each diagonal and were flipped, and fails if a
path is not exercised.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import add_upstream, save_io  # noqa: E402

RESOLUTIONS = (8, 16)


def fields(verts, res, gen):
    """Named SDFs on the grid: a sphere with mild noise (a clean surface, like the sphere prior)
    and a strongly noisy one (many ambiguous faces, so the C16/C19 inversion runs)."""
    r = verts.norm(dim=-1)
    h = 2.0 / res  # grid spacing
    mild = r - 0.55 + torch.randn(r.shape, generator=gen) * 0.1 * h
    noisy = r - 0.6 + torch.randn(r.shape, generator=gen) * 1.5 * h
    return {"sphere": mild, "noisy": noisy}


def stats(fc, x, sdf, indices, res, weight):
    """Counts of the code paths one extraction takes (upstream's own private steps)."""
    surf_cubes, occ_fx8 = fc._identify_surf_cubes(sdf, indices)
    raw = (occ_fx8[surf_cubes] * fc.cube_corners_idx.unsqueeze(0)).sum(-1)
    ambiguous = int((fc.check_table[raw][:, 0] == 1).sum())
    resolved = fc._get_case_id(occ_fx8, surf_cubes, res)
    inverted = int((resolved != raw).sum())
    # Quad split direction and flips, as _triangulate decides them.
    beta, alpha, gamma = fc._normalize_weights(weight[:, :12], weight[:, 12:20], weight[:, 20], surf_cubes)
    surf_edges, idx_map, edge_counts, surf_edges_mask = fc._identify_surf_edges(sdf, indices, surf_cubes)
    vd, _, vd_gamma, vd_idx_map = fc._compute_vd(x, indices[surf_cubes], surf_edges, sdf, resolved, beta,
                                                 alpha, gamma, idx_map, None)
    group_mask = (edge_counts == 4) & surf_edges_mask
    group = idx_map.reshape(-1)[group_mask]
    vd_idx = vd_idx_map[group_mask]
    edge_indices, order = torch.sort(group, stable=True)
    quad = vd_idx[order].reshape(-1, 4)
    s_edges = sdf[surf_edges[edge_indices.reshape(-1, 4)[:, 0]].reshape(-1)].reshape(-1, 2)
    flip = s_edges[:, 0] > 0
    quad = torch.cat((quad[flip][:, [0, 1, 3, 2]], quad[~flip][:, [2, 3, 1, 0]]))
    g = vd_gamma[quad.reshape(-1)].reshape(-1, 4)
    split1 = int((g[:, 0] * g[:, 2] > g[:, 1] * g[:, 3]).sum())
    return {
        "surf_cubes": int(surf_cubes.sum()),
        "ambiguous": ambiguous,
        "inverted": inverted,
        "num_vd": sorted(set(fc.num_vd_table[resolved].tolist())),
        "quads": quad.shape[0],
        "split1": split1,
        "split2": quad.shape[0] - split1,
        "flipped": int(flip.sum()),
        "unflipped": int((~flip).sum()),
    }


@torch.no_grad()
def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    add_upstream(sys.argv[1])
    from util.flexicubes_geometry import FlexiCubesGeometry

    torch.set_num_threads(1)
    out = {}
    total = {"inverted": 0}
    for res in RESOLUTIONS:
        geo = FlexiCubesGeometry(grid_res=res, scale=2.0, device="cpu")
        fc = geo.fc
        verts, indices = geo.verts, geo.indices
        assert verts.dtype == torch.float32 and indices.dtype == torch.int64
        out[f"r{res}.verts"] = verts
        out[f"r{res}.indices"] = indices
        gen = torch.Generator().manual_seed(1000 + res)
        d = torch.randn(verts.shape, generator=gen)
        x = verts + torch.tanh(d) / res * 0.95 / 0.95 * 0.5
        weight = torch.randn((indices.shape[0], 21), generator=gen) * 0.1
        out[f"r{res}.x"] = x
        out[f"r{res}.weight"] = weight
        for name, sdf in fields(verts, res, gen).items():
            v, f, _ = geo.get_mesh(x, sdf, weight_n=weight, is_training=False)
            key = f"r{res}.{name}"
            out[f"{key}.sdf"] = sdf
            out[f"{key}.vertices"] = v
            out[f"{key}.faces"] = f
            s = stats(fc, x, sdf, indices, res, weight)
            print(f"{key}: {v.shape[0]} vertices, {f.shape[0]} faces; {s}")
            assert s["quads"] * 2 == f.shape[0]
            assert min(s["split1"], s["split2"], s["flipped"], s["unflipped"]) > 0, "a path is not exercised"
            total["inverted"] += s["inverted"]
    assert total["inverted"] > 0, "no C16/C19 inversion: the check_table path is not exercised"
    save_io("flexicubes", out)


if __name__ == "__main__":
    main()
