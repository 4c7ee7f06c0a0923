"""Per-frame meshes as other tools make them: voxel re-meshing, winding, scan noise, holes.

Registration benchmarks and tests need frames with the defects users' files really have, not
only clean meshes from our own generators:
- `voxel_remesh`: fill a voxel grid from any triangle soup (open seams, several intersecting
  parts, as game models are built), take a signed distance and run scikit-image's marching
  cubes, as remeshers and many 4D pipelines do. Every frame gets its own topology.
- `set_winding`: all faces wound inward (normals into the body, as scikit-image's marching
  cubes, some scanners and exporters emit), or mixed (one half of the surface flipped, as when
  patches from different sources are joined).
- `scan_noise`, `punch_holes`: jittered vertices and missing patches, as a depth scan has.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from backend.geometry.sampling import sample_surface

WINDINGS = ("outward", "inward", "mixed")


def voxel_remesh(vertices, faces, resolution: int = 112, *, samples: int = 200_000, seed: int = 0):
    """A new mesh of the surface (vertices, faces): (vertices [N,3] float64, faces [M,3] int64).

    `resolution` voxels along the longest side. Unsigned distances come from dense surface
    samples; the outside is what a flood fill reaches from the grid's border without crossing a
    voxel closer than half a diagonal to the surface, so open seams narrower than a voxel still
    close and intersecting parts merge into one body. The returned winding is scikit-image's own.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    h = float((hi - lo).max()) / resolution
    lo = lo - 3 * h
    shape = np.ceil((hi + 3 * h - lo) / h).astype(int) + 1
    pts, _ = sample_surface(v, f, samples, seed=seed)
    axes = [lo[k] + h * np.arange(shape[k]) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    # Only distances under 2 voxels matter: every edge where the field changes sign has one end
    # in the band (< 0.87 voxel) and the other within a voxel of it.
    dist = cKDTree(pts).query(grid, workers=-1, distance_upper_bound=2 * h)[0]
    dist = np.minimum(dist, 2 * h).reshape(shape)
    band = dist < 0.87 * h
    labels, _ = ndimage.label(~band)
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                                       labels[:, :, [0, -1]].ravel()]))
    outside = np.isin(labels, border[border > 0])
    field = np.where(outside, dist, -dist).astype(np.float32)
    verts, tris, _, _ = marching_cubes(field, level=0.0, spacing=(h, h, h))
    return verts.astype(np.float64) + lo, tris.astype(np.int64)


def signed_volume(vertices, faces) -> float:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


def set_winding(vertices, faces, winding: str, *, seed: int = 0) -> np.ndarray:
    """Faces wound "outward" (positive volume), "inward", or "mixed" (one side of a random plane
    through the centre flipped relative to the other)."""
    if winding not in WINDINGS:
        raise ValueError(f"winding must be one of {WINDINGS}, not {winding!r}")
    f = np.asarray(faces, dtype=np.int64).copy()
    if signed_volume(vertices, f) < 0:
        f = f[:, [0, 2, 1]]
    if winding == "inward":
        return f[:, [0, 2, 1]]
    if winding == "mixed":
        v = np.asarray(vertices, dtype=np.float64)
        centres = v[f].mean(axis=1)
        normal = np.random.default_rng(seed).normal(size=3)
        flip = (centres - centres.mean(axis=0)) @ normal > 0
        f[flip] = f[flip][:, [0, 2, 1]]
    return f


def scan_noise(vertices, sigma: float, *, seed: int = 0) -> np.ndarray:
    """Vertices jittered by isotropic Gaussian noise of standard deviation `sigma` (input units)."""
    v = np.asarray(vertices, dtype=np.float64)
    return v + np.random.default_rng(seed).normal(scale=sigma, size=v.shape)


def punch_holes(vertices, faces, count: int, radius: float, *, seed: int = 0):
    """(vertices, faces) with every face within `radius` of `count` random surface points removed.

    Unused vertices are dropped and the faces renumbered, as a scanner would never emit them."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    centres, _ = sample_surface(v, f, count, seed=seed)
    near = cKDTree(centres).query(v[f].mean(axis=1), distance_upper_bound=radius)[0] < radius
    f = f[~near]
    used = np.unique(f)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]
