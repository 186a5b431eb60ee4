"""Renders examples/mushroom.png: a small ray-cast toy mushroom on a white background.

The project cannot ship photos it does not own, so its example input is rendered here:
an ellipsoid cap over a cylindrical stem, Lambert + Blinn-Phong shading, a soft contact
shadow, like a product photo of a single object. Deterministic; needs only numpy and Pillow.
Run: python3 tools/make_example_image.py
"""

import os

import numpy as np
from PIL import Image

W = H = 512


def normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def render():
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    # Orthographic camera looking down -z, slightly from above.
    px = (xs - W / 2) / (W / 2) * 1.3
    py = -(ys - H / 2) / (H / 2) * 1.3
    tilt = np.radians(20)
    origin = np.stack([px, py * np.cos(tilt) + 5 * np.sin(tilt), py * -np.sin(tilt) + 5 * np.cos(tilt)], -1)
    direction = np.broadcast_to(np.array([0.0, -np.sin(tilt), -np.cos(tilt)]), origin.shape)

    t_best = np.full((H, W), np.inf)
    normal = np.zeros((H, W, 3))
    albedo = np.zeros((H, W, 3))

    # Cap: ellipsoid centred at (0, 0.25, 0), radii (0.9, 0.55, 0.9), upper half only.
    c, r = np.array([0.0, 0.25, 0.0]), np.array([0.9, 0.55, 0.9])
    o, d = (origin - c) / r, direction / r
    a = (d * d).sum(-1)
    b = 2 * (o * d).sum(-1)
    cc = (o * o).sum(-1) - 1
    disc = b * b - 4 * a * cc
    t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    p = origin + t[..., None] * direction
    hit = (t < t_best) & (p[..., 1] > 0.15)
    n = normalize((p - c) / (r * r))
    spots = (np.sin(p[..., 0] * 9) * np.sin(p[..., 2] * 9) * np.sin(p[..., 1] * 7) > 0.55)
    cap_col = np.where(spots[..., None], [0.95, 0.93, 0.88], [0.80, 0.12, 0.10])
    t_best = np.where(hit, t, t_best)
    normal = np.where(hit[..., None], n, normal)
    albedo = np.where(hit[..., None], cap_col, albedo)

    # Stem: cylinder radius 0.32 around the y axis, y in [-0.75, 0.3].
    o2, d2 = origin[..., [0, 2]], direction[..., [0, 2]]
    a = (d2 * d2).sum(-1)
    b = 2 * (o2 * d2).sum(-1)
    cc = (o2 * o2).sum(-1) - 0.32**2
    disc = b * b - 4 * a * cc
    t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    p = origin + t[..., None] * direction
    hit = (t < t_best) & (p[..., 1] > -0.75) & (p[..., 1] < 0.3)
    n = normalize(np.stack([p[..., 0], np.zeros_like(t), p[..., 2]], -1))
    t_best = np.where(hit, t, t_best)
    normal = np.where(hit[..., None], n, normal)
    albedo = np.where(hit[..., None], [0.92, 0.87, 0.74], albedo)

    light = normalize(np.array([-0.5, 0.8, 0.6]))
    view = -direction
    half = normalize(light + view)
    lambert = np.clip((normal * light).sum(-1), 0, 1)
    spec = np.clip((normal * half).sum(-1), 0, 1) ** 40
    obj = np.isfinite(t_best)
    colour = albedo * (0.25 + 0.75 * lambert[..., None]) + 0.35 * spec[..., None]

    # Soft contact shadow on the white ground under the stem.
    gx = (xs - W / 2) / (W * 0.30)
    gy = (ys - H * 0.80) / (H * 0.06)
    shadow = 1 - 0.35 * np.exp(-(gx**2 + gy**2))
    background = np.ones((H, W, 3)) * shadow[..., None]
    img = np.where(obj[..., None], colour, background)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(__file__), "..", "examples", "mushroom.png")
    with np.errstate(invalid="ignore"):
        pixels = render()
        Image.fromarray(pixels).save(out, optimize=True)
    print(f"wrote {os.path.normpath(out)}")
