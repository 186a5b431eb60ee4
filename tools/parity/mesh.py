"""Parity fixtures for the mesh half of generate3d (pipeline/src/mesh/).

Usage (the parity Python of tools/parity/requirements-mesh.txt: kiui 0.2.4 as of CRM's time,
pymeshlab 2023.12.post1, xatlas, trimesh, opencv):
    python tools/parity/mesh.py /path/to/CRM            # every fixture below
    python tools/parity/mesh.py /path/to/CRM clean      # only mesh_clean.io.safetensors

Writes into pipeline/tests/data/:
  mesh_clean.io.safetensors   raw meshes and kiui.mesh_utils.clean_mesh(repair=False,
                              remesh=False) of each, exactly as upstream's inference.py calls it,
                              with kiui 0.2.4's defaults (pieces under 64 faces or under 20% of
                              the bounding-box diagonal removed); cases 4-5 have floaters
  mesh_obj.io.safetensors     a small textured mesh and the OBJ/MTL bytes of upstream's writer
                              (CRM.export_mesh_wt_uv, ported below line for line)
  mesh_raster.io.safetensors  UV triangles (xatlas atlas at 192x160, rule edge cases at 40x24) and
                              the reference rasterisation by nvdiffrast's rules (see below)
  mesh_bake.io.safetensors    the texture upstream's code makes from that atlas raster with a
                              fixed colour function (PNG bytes as cv2 writes them)
  mesh_blob.io.safetensors    a ~20k-face FlexiCubes mesh of a bumpy sphere (upstream's FlexiCubes
                              on an 80^3 grid, cleaned), for the benchmark
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import add_upstream, save_io  # noqa: E402


def import_clean_mesh():
    from importlib.metadata import version

    # Upstream's cleaning is kiui's of early 2024: 0.2.x (x <= 10) removes small pieces by
    # default, later releases do not (see tools/parity/requirements-mesh.txt).
    assert version("kiui") == "0.2.4", f"kiui {version('kiui')}: install requirements-mesh.txt"
    from kiui.mesh_utils import clean_mesh

    return clean_mesh


def upstream_clean(clean_mesh, v, f):
    # inference.py: clean_mesh(verts float32, faces int32, repair=False, remesh=False, remesh_size=0.005)
    cv, cf = clean_mesh(v.astype(np.float32), f.astype(np.int32), repair=False, remesh=False,
                        remesh_size=0.005)
    return cv, cf


def perturbed_sphere(seed):
    """An icosphere with near-duplicate vertices (some inside, some outside the weld radius),
    duplicate faces in rotated and reversed order, exactly collinear and repeated-vertex faces,
    and unreferenced vertices (one far away, which must not widen the weld radius)."""
    import trimesh

    rng = np.random.default_rng(seed)
    m = trimesh.creation.icosphere(subdivisions=3)
    v = np.asarray(m.vertices) * 0.6 + rng.normal(size=(len(m.vertices), 3)) * 0.01
    f = np.asarray(m.faces).copy()
    nv = len(v)
    sel = rng.choice(nv, 300, replace=False)
    copies = v[sel] + rng.normal(size=(300, 3)) * 1.2e-4  # radius is diag/1e4 ~ 2e-4
    v = np.concatenate([v, copies])
    for k, s in enumerate(sel):
        for fi in np.nonzero((f == s).any(1))[0][:2]:
            f[fi][f[fi] == s] = nv + k
    dup = []
    for fi in rng.choice(len(f), 400):
        t = np.roll(f[fi], rng.integers(3))
        dup.append(t[::-1] if rng.random() < 0.5 else t)
    f = np.concatenate([f, np.array(dup)])
    base = len(v)
    v = np.concatenate([v, [[0.1, 0.2, 0.3], [0.3, 0.2, 0.3], [0.2, 0.2, 0.3], [5, 5, 5]]])
    f = np.concatenate([f, [[base, base + 1, base + 2], [0, 0, 1]]])
    f = f[rng.permutation(len(f))]
    return v.astype(np.float32), f.astype(np.int64)


def strip(n_faces, start, step, width):
    """A flat strip of `n_faces` triangles (one edge-connected piece) from `start` along `step`."""
    n_quads = (n_faces + 1) // 2
    start, step, width = (np.asarray(x, np.float64) for x in (start, step, width))
    v = [start + step * i + width * j for i in range(n_quads + 1) for j in (0, 1)]
    f = []
    for i in range(n_quads):
        a, b, c, d = 2 * i, 2 * i + 1, 2 * i + 2, 2 * i + 3
        f.extend([[a, c, b], [b, c, d]])
    return np.array(v), np.array(f[:n_faces])


def floaters(seed):
    """A noisy sphere with pieces on both sides of each of kiui 0.2.4's thresholds (fewer than 64
    faces; bounding-box diagonal under 20% of the mesh's), pieces that only touch the sphere at a
    vertex (separate) or along a non-manifold edge (joined), a flap welded on by the merge, and a
    zero-area face whose vertices end up unreferenced."""
    import trimesh

    rng = np.random.default_rng(seed)
    parts = []

    def add(v, f):
        base = sum(len(p[0]) for p in parts)
        parts.append((np.asarray(v, np.float64), np.asarray(f) + base))
        return base

    s = trimesh.creation.icosphere(subdivisions=3)
    sphere_v = np.asarray(s.vertices) * 0.6 + rng.normal(size=(len(s.vertices), 3)) * 0.01
    add(sphere_v, s.faces)
    ico = lambda k, r, c: (np.asarray(trimesh.creation.icosphere(subdivisions=k).vertices) * r + c,  # noqa: E731
                           np.asarray(trimesh.creation.icosphere(subdivisions=k).faces))
    add(*ico(0, 0.02, [0.9, 0.0, 0.0]))        # 20 faces, tiny: removed
    add(*ico(2, 0.05, [0.0, 0.9, 0.0]))        # 320 faces, small: removed by diameter
    add(*ico(2, 0.3, [0.0, 0.0, -1.0]))        # 320 faces, large: kept
    add(*strip(30, [-1, -1, 0.8], [0.06, 0, 0], [0, 0.02, 0]))   # long, 30 faces: removed by count
    add(*strip(63, [-1, -0.8, 0.8], [0.03, 0, 0], [0, 0.02, 0]))  # long, 63 faces: removed
    add(*strip(64, [-1, -0.6, 0.8], [0.03, 0, 0], [0, 0.02, 0]))  # long, 64 faces: kept
    # A fan of 4 faces on sphere vertex 0 only (vertex contact is no connection): removed.
    p0 = sphere_v[0]
    fan = [p0 + [0.03, 0, 0], p0 + [0, 0.03, 0], p0 + [-0.03, 0, 0], p0 + [0, -0.03, 0]]
    base = add(fan, [[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]])  # placeholders, fixed below
    parts[-1] = (parts[-1][0], np.array([[0, base + 0, base + 1], [0, base + 1, base + 2],
                                         [0, base + 2, base + 3], [0, base + 3, base + 0]]))
    # A fin on a sphere edge (a third face on that edge, non-manifold): part of the sphere, kept.
    e0, e1 = s.faces[5][0], s.faces[5][1]
    base = add([(sphere_v[e0] + sphere_v[e1]) / 2 * 1.2], [[0, 0, 0]])
    parts[-1] = (parts[-1][0], np.array([[e0, e1, base]]))
    # A flap whose two base vertices lie within the weld radius of a sphere edge: welded on, kept.
    e0, e1 = s.faces[40][0], s.faces[40][1]
    flap = [sphere_v[e0] + 3e-5, sphere_v[e1] - 3e-5, (sphere_v[e0] + sphere_v[e1]) / 2 * 1.15]
    add(flap, [[0, 1, 2]])
    # A collinear face on its own vertices: dropped, and its vertices with it.
    add([[0.1, 0.2, 0.3], [0.3, 0.2, 0.3], [0.2, 0.2, 0.3]], [[0, 1, 2]])
    v = np.concatenate([p[0] for p in parts])
    f = np.concatenate([p[1] for p in parts])
    f = f[rng.permutation(len(f))]
    return v.astype(np.float32), f.astype(np.int64)


def flexicubes_floaters(res, seed):
    """FlexiCubes on a bumpy sphere plus small and mid-sized balls around it, as random weights
    produce: the floaters FlexiCubes itself makes, with its own triangulation."""
    from util.flexicubes import FlexiCubes

    fc = FlexiCubes(device="cpu")
    x, cubes = fc.construct_voxel_grid(res)
    x = x * 2
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(6, 3, generator=g) * 3
    ph = torch.rand(6, generator=g) * 6.28
    sdf = x.norm(dim=-1) - 0.5 + sum(0.04 * torch.sin(x @ k[i] + ph[i]) for i in range(6))
    centres = torch.rand(10, 3, generator=g) * 1.6 - 0.8
    radii = torch.rand(10, generator=g) * 0.15 + 0.05
    for c, r in zip(centres, radii):
        sdf = torch.minimum(sdf, (x - c).norm(dim=-1) - r)
    v, f, _ = fc(x, sdf, cubes, res, training=False)
    return v.numpy().astype(np.float32), f.numpy().astype(np.int64)


def flexicubes_blob(res, radius, seed):
    """Upstream's FlexiCubes (default weights) on a bumpy-sphere SDF over a res^3 grid spanning
    [-1, 1]^3 (construct_voxel_grid's [-0.5, 0.5]^3 times FlexiCubesGeometry's scale 2)."""
    from util.flexicubes import FlexiCubes

    fc = FlexiCubes(device="cpu")
    x, cubes = fc.construct_voxel_grid(res)
    x = x * 2
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(6, 3, generator=g) * 3
    ph = torch.rand(6, generator=g) * 6.28
    bumps = sum(0.04 * torch.sin(x @ k[i] + ph[i]) for i in range(6))
    sdf = x.norm(dim=-1) - radius + bumps
    v, f, _ = fc(x, sdf, cubes, res, training=False)
    return v.numpy().astype(np.float32), f.numpy().astype(np.int64)


def write_clean(clean_mesh):
    out = {}
    cases = [perturbed_sphere(s) for s in range(3)]
    cases.append(flexicubes_blob(24, 0.6, 1))
    cases.append(floaters(5))
    cases.append(flexicubes_floaters(32, 3))
    for i, (v, f) in enumerate(cases):
        cv, cf = upstream_clean(clean_mesh, v, f)
        assert np.array_equal(cv.astype(np.float32).astype(np.float64), cv), "positions stay f32"
        out[f"case{i}.vertices"] = torch.from_numpy(v)
        out[f"case{i}.faces"] = torch.from_numpy(f)
        out[f"case{i}.clean_vertices"] = torch.from_numpy(cv.astype(np.float32))
        out[f"case{i}.clean_faces"] = torch.from_numpy(cf.astype(np.int64))
        print(f"clean case{i}: {v.shape[0]} v {f.shape[0]} f -> {cv.shape[0]} v {cf.shape[0]} f")
    save_io("mesh_clean", out)


def upstream_obj_mtl(out_dir, verts, faces_pos, uvs, indices):
    """CRM.export_mesh_wt_uv's writer (model/crm/model.py), with the tensors it is given."""
    mesh_pos_idx = torch.tensor(faces_pos, dtype=torch.int64)
    faces = mesh_pos_idx[..., [2, 1, 0]].squeeze().cpu().numpy()
    indices = indices[..., [2, 1, 0]]
    with open(f"{out_dir}.mtl", "w") as fid:
        fid.write('newmtl material_0\n')
        fid.write('Kd 1 1 1\n')
        fid.write('Ka 1 1 1\n')
        fid.write('Ks 0.4 0.4 0.4\n')
        fid.write('Ns 10\n')
        fid.write('illum 2\n')
        fid.write(f'map_Kd {out_dir.split("/")[-1]}.png\n')
    with open(f'{out_dir}.obj', 'w') as fid:
        fid.write('mtllib %s.mtl\n' % out_dir.split("/")[-1])
        for pidx, p in enumerate(verts):
            pp = p
            fid.write('v %f %f %f\n' % (pp[0], pp[2], - pp[1]))
        for pidx, p in enumerate(uvs):
            pp = p
            fid.write('vt %f %f\n' % (pp[0], 1 - pp[1]))
        fid.write('usemtl material_0\n')
        for i, f in enumerate(faces):
            f1 = f + 1
            f2 = indices[i] + 1
            fid.write('f %d/%d %d/%d %d/%d\n' % (f1[0], f2[0], f1[1], f2[1], f1[2], f2[2]))


def write_obj():
    import tempfile

    import xatlas

    rng = np.random.default_rng(7)
    v, f = perturbed_sphere(3)
    clean_mesh = import_clean_mesh()
    v, f = upstream_clean(clean_mesh, v, f)
    v = v.astype(np.float32)
    # Values where six-decimal rounding and signs are delicate.
    special = np.array([[0.0, 0.0, -0.0], [0.0078125, -0.0078125, 1e-7], [2.5e-7, -2.5e-7, 0.1234565],
                        [123.4567885, -5e-7, 7.5e-7]], dtype=np.float32)
    v[: len(special)] = special
    v[len(special):len(special) + 50] *= rng.uniform(-300, 300, size=(50, 1)).astype(np.float32)
    vmapping, indices, uvs = xatlas.parametrize(v, f)
    uvs = uvs.astype(np.float32)
    uvs[:4] = np.array([[0, 0], [1, 1], [0.5, 0.0000005], [0.0078125, 1 - 0.0078125]], dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        base = os.path.join(d, "output3d")
        upstream_obj_mtl(base, v, f, uvs, indices.astype(np.int64))
        obj = open(base + ".obj", "rb").read()
        mtl = open(base + ".mtl", "rb").read()
    save_io("mesh_obj", {
        "vertices": torch.from_numpy(v),
        "faces": torch.from_numpy(f.astype(np.int64)),
        "uvs": torch.from_numpy(uvs),
        "uv_faces": torch.from_numpy(indices.astype(np.int64)),
        "obj": torch.from_numpy(np.frombuffer(obj, dtype=np.uint8).copy()),
        "mtl": torch.from_numpy(np.frombuffer(mtl, dtype=np.uint8).copy()),
    })
    print(f"obj: {len(v)} v {len(f)} f {len(uvs)} vt, {len(obj)} bytes")


def write_blob(clean_mesh):
    v, f = flexicubes_blob(80, 0.62, 2)
    v, f = upstream_clean(clean_mesh, v, f)
    save_io("mesh_blob", {"vertices": torch.from_numpy(v.astype(np.float32)),
                          "faces": torch.from_numpy(f.astype(np.int32))})
    print(f"blob: {len(v)} v {len(f)} f")


# ---------------------------------------------------------------------------------------------
# UV rasterisation: a reference of nvdiffrast's rules (nvdiffrast itself needs CUDA and is not
# installable here), written from its documented behaviour and the CudaRaster paper:
# 1/16-pixel snapping with round-half-even about the viewport centre, pixel-centre samples
# (row 0 at clip y = -1), the edge rule (inclusive unless dy > 0 or dy == 0 and dx <= 0, on the
# counter-clockwise triangle), no backface culling, zero-area triangles dropped, the last
# triangle wins on equal depth, and the pixel shader's f32 barycentrics.

def raster_reference(uvs, faces, width, height):
    uvs = uvs.astype(np.float32)
    clip = uvs * np.float32(2.0) - np.float32(1.0)
    snap = np.stack([np.round(clip[:, 0] * np.float32(width * 8)),
                     np.round(clip[:, 1] * np.float32(height * 8))], 1).astype(np.int64)  # half-even
    tri = np.zeros((height, width), np.int32)
    sx = 16 * np.arange(width, dtype=np.int64) + 8 - 8 * width
    sy = 16 * np.arange(height, dtype=np.int64) + 8 - 8 * height
    SX, SY = np.meshgrid(sx, sy)
    for t, f in enumerate(faces):
        a, b, c = snap[f[0]], snap[f[1]], snap[f[2]]
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if area == 0:
            continue
        if area < 0:
            b, c = c, b
        inside = np.ones_like(SX, dtype=bool)
        for p, q in ((a, b), (b, c), (c, a)):
            dx, dy = q[0] - p[0], q[1] - p[1]
            e = (p[0] - SX) * dy - (p[1] - SY) * dx
            exclusive = dy > 0 or (dy == 0 and dx <= 0)
            inside &= (e > 0) if exclusive else (e >= 0)
        tri[inside] = t + 1
    # Pixel shader barycentrics (f32, w = 1).
    f32 = np.float32
    xs, xo = f32(2.0) / f32(width), f32(1.0) / f32(width) - f32(1.0)
    ys, yo = f32(2.0) / f32(height), f32(1.0) / f32(height) - f32(1.0)
    py, px = np.nonzero(tri)
    fx = xs * px.astype(np.float32) + xo
    fy = ys * py.astype(np.float32) + yo
    fidx = faces[tri[py, px] - 1]
    p0, p1, p2 = clip[fidx[:, 0]], clip[fidx[:, 1]], clip[fidx[:, 2]]
    p0x, p0y = p0[:, 0] - fx, p0[:, 1] - fy
    p1x, p1y = p1[:, 0] - fx, p1[:, 1] - fy
    p2x, p2y = p2[:, 0] - fx, p2[:, 1] - fy
    a0 = p1x * p2y - p1y * p2x
    a1 = p2x * p0y - p2y * p0x
    a2 = p0x * p1y - p0y * p1x
    with np.errstate(divide="ignore", invalid="ignore"):
        iw = f32(1.0) / (a0 + a1 + a2)
        b0 = np.nan_to_num(np.clip(a0 * iw, 0, 1), nan=0.0).astype(np.float32)
        b1 = np.nan_to_num(np.clip(a1 * iw, 0, 1), nan=0.0).astype(np.float32)
    bs = f32(1.0) / np.maximum(b0 + b1, f32(1.0))
    bary = np.zeros((height, width, 2), np.float32)
    bary[py, px, 0] = b0 * bs
    bary[py, px, 1] = b1 * bs
    return tri, bary


def adversarial_uvs(width, height):
    """Triangles on the rule's edge cases at a small non-square size: vertices on pixel centres,
    shared edges through centres (horizontal, vertical, diagonal), clockwise triangles, overlaps
    (the later one wins), a zero-area and a between-samples sliver, and the [0, 1] border."""
    cx = lambda i: (i + 0.5) / width   # noqa: E731
    cy = lambda j: (j + 0.5) / height  # noqa: E731
    pts, tris = [], []

    def tri(a, b, c):
        base = len(pts)
        pts.extend([a, b, c])
        tris.append([base, base + 1, base + 2])

    # A quad split along a diagonal through centres, both windings.
    tri((cx(2), cy(2)), (cx(10), cy(2)), (cx(10), cy(10)))
    tri((cx(2), cy(2)), (cx(2), cy(10)), (cx(10), cy(10)))
    # Shared vertical and horizontal edges through centres.
    tri((cx(12), cy(1)), (cx(16), cy(1)), (cx(16), cy(9)))
    tri((cx(16), cy(1)), (cx(20), cy(9)), (cx(16), cy(9)))
    tri((cx(12), cy(12)), (cx(20), cy(12)), (cx(16), cy(16)))
    tri((cx(12), cy(12)), (cx(16), cy(8.5)), (cx(20), cy(12)))
    # Overlapping pair: the second must win where both cover.
    tri((0.55, 0.1), (0.95, 0.1), (0.75, 0.6))
    tri((0.6, 0.05), (0.9, 0.5), (0.6, 0.5))
    # Zero-area and a sliver between samples.
    tri((0.1, 0.8), (0.2, 0.8), (0.3, 0.8))
    tri((cx(3) + 0.1 / width, 0.7), (cx(3) + 0.3 / width, 0.7), (cx(3) + 0.2 / width, 0.95))
    # Touching the border and the corners.
    tri((0.0, 0.0), (0.3, 0.0), (0.0, 0.3))
    tri((1.0, 1.0), (0.6, 1.0), (1.0, 0.62))
    # Odd subpixel positions (not on the 1/16 grid: exercises the rounding).
    tri((0.3137, 0.5213), (0.4971, 0.5599), (0.3811, 0.6871))
    tri((0.4971, 0.5599), (0.3137, 0.5213), (0.5231, 0.4413))
    return np.array(pts, np.float32), np.array(tris, np.int64)


def colour_reference(points, coef):
    """The fixed colour function of the bake fixture, elementwise f32 (no matmul, so libtorch
    versions agree): c_k = sin(a x + b y + c z + d) * 1.4 - 0.6, in [-2, 0.8] so clipping and
    the dark-texel mask both occur."""
    cols = []
    for k in range(3):
        a, b, c, d = coef[k]
        s = points[:, 0] * a + points[:, 1] * b + points[:, 2] * c + d
        cols.append(torch.sin(s) * 1.4 - 0.6)
    return torch.stack(cols, 1)


def upstream_texture(tex_unsqz, mask_unsqz, colors, res):
    """The texture part of CRM.export_mesh_wt_uv after the colour query, line for line, returning
    the PNG bytes cv2 writes."""
    import tempfile

    import cv2

    lo, hi = (-1, 1)
    colors = (colors - lo) * (255 / (hi - lo))
    colors = colors.clip(0, 255)
    tex_unsqz[mask_unsqz] = colors
    tex = tex_unsqz.view(res + (3,))
    img = np.asarray(tex.data.cpu().numpy(), dtype=np.float32)
    mask = np.sum(img.astype(float), axis=-1, keepdims=True)
    mask = (mask <= 3.0).astype(float)
    kernel = np.ones((3, 3), 'uint8')
    dilate_img = cv2.dilate(img, kernel, iterations=1)
    img = img * (1 - mask) + dilate_img * mask
    img = img.clip(0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.png")
        cv2.imwrite(path, img[..., [2, 1, 0]])
        return open(path, "rb").read()


def write_raster_and_bake():
    import xatlas

    clean_mesh = import_clean_mesh()
    v, f = perturbed_sphere(4)
    v, f = upstream_clean(clean_mesh, v, f)
    v = v.astype(np.float32)
    f = f.astype(np.int64)
    _, indices, uvs = xatlas.parametrize(v, f)
    indices = indices.astype(np.int64)
    out = {"atlas.vertices": torch.from_numpy(v), "atlas.faces": torch.from_numpy(f),
           "atlas.uvs": torch.from_numpy(uvs.astype(np.float32)), "atlas.uv_faces": torch.from_numpy(indices)}
    w, h = 192, 160
    tri, bary = raster_reference(uvs, indices, w, h)
    out["atlas.tri"] = torch.from_numpy(tri)
    out["atlas.bary"] = torch.from_numpy(bary)
    auv, af = adversarial_uvs(40, 24)
    atri, abary = raster_reference(auv, af, 40, 24)
    out.update({"edge.uvs": torch.from_numpy(auv), "edge.uv_faces": torch.from_numpy(af),
                "edge.tri": torch.from_numpy(atri), "edge.bary": torch.from_numpy(abary)})
    print(f"raster: atlas {np.count_nonzero(tri)} of {w * h} texels, edge cases {np.count_nonzero(atri)}")
    save_io("mesh_raster", out)

    # Bake: upstream's interpolate -> colour -> texture on the atlas raster above.
    g = torch.Generator().manual_seed(11)
    coef = torch.randn(3, 4, generator=g) * 3
    mask = tri.reshape(-1) > 0
    t = tri.reshape(-1)[mask] - 1
    b = bary.reshape(-1, 2)[mask]
    fv = f[t]
    b0, b1 = b[:, 0:1], b[:, 1:2]
    b2 = np.float32(1.0) - b0 - b1
    pos = b0 * v[fv[:, 0]] + b1 * v[fv[:, 1]] + b2 * v[fv[:, 2]]  # dr.interpolate
    colors = colour_reference(torch.from_numpy(pos), coef.tolist())
    tex_unsqz = torch.zeros((h * w, 3), dtype=torch.float32) + 1
    png = upstream_texture(tex_unsqz, torch.from_numpy(mask), colors, (h, w))
    save_io("mesh_bake", {"coef": coef, "positions": torch.from_numpy(pos.astype(np.float32)),
                          "png": torch.from_numpy(np.frombuffer(png, dtype=np.uint8).copy())})
    print(f"bake: {len(pos)} texels queried, png {len(png)} bytes")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    add_upstream(sys.argv[1])
    clean_mesh = import_clean_mesh()
    write_clean(clean_mesh)
    if sys.argv[2:] == ["clean"]:
        return
    write_obj()
    write_blob(clean_mesh)
    write_raster_and_bake()


if __name__ == "__main__":
    main()
