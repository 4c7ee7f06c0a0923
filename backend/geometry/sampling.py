"""Surface sampling, farthest point sampling, and normalising a mesh into the model's [-1, 1] box."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .normals import face_geometry


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, *, seed=0):
    """Area-weighted random points on the surface with the normal of the face each lies on.

    Returns (points [count, 3] float32, normals [count, 3] float32 unit length). `seed` is an int
    or a numpy Generator; the same seed gives the same samples. Normals follow the winding
    (counter-clockwise seen from outside -> pointing outwards).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    cross, areas = face_geometry(v, f)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("mesh has no surface area to sample")
    rng = _rng(seed)
    cdf = np.cumsum(areas / total)
    face = np.minimum(np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right"), len(areas) - 1)
    # Uniform in the triangle: reflect (u, v) from the unit square's far half.
    uv = rng.random((count, 2))
    flip = uv.sum(axis=1) > 1.0
    uv[flip] = 1.0 - uv[flip]
    tri = f[face]
    a = v[tri[:, 0]]
    points = a + uv[:, :1] * (v[tri[:, 1]] - a) + uv[:, 1:] * (v[tri[:, 2]] - a)
    # Unit normals of the chosen faces only (as face_normals_and_areas computes them).
    normals = cross[face] / np.maximum(2.0 * areas[face], 1e-300)[:, None]
    return points.astype(np.float32), normals.astype(np.float32)


def farthest_point_sampling(points: np.ndarray, count: int, start_index: int = 0) -> np.ndarray:
    """Greedy FPS over [N, 3] points -> indices [count] (numpy; see backend.models.vae for torch)."""
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if count > n:
        raise ValueError(f"cannot pick {count} of {n} points")
    out = np.empty(count, dtype=np.int64)
    nearest = np.full(n, np.inf)
    current = int(start_index)
    for i in range(count):
        out[i] = current
        nearest = np.minimum(nearest, ((pts - pts[current]) ** 2).sum(axis=1))
        current = int(nearest.argmax())
    return out


@dataclass(frozen=True)
class Normalization:
    """x_normalised = (x - center) * scale; `invert` maps results back to the input's frame."""

    center: np.ndarray  # [3]
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.center) * self.scale

    def invert(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + self.center

    def to_dict(self) -> dict:
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}


def normalization_for(vertices: np.ndarray, *, margin: float = 0.0) -> Normalization:
    """Centre of the bounding box to the origin, largest half-extent to 1 - margin."""
    v = np.asarray(vertices, dtype=np.float64)
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError("cannot normalise an empty mesh or one with non-finite coordinates")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    lo, hi = v.min(axis=0), v.max(axis=0)
    half = float((hi - lo).max()) / 2.0
    if half <= 0:
        raise ValueError("cannot normalise a mesh whose vertices all coincide")
    return Normalization(center=(lo + hi) / 2.0, scale=(1.0 - margin) / half)


def normalize_mesh(vertices: np.ndarray, *, margin: float = 0.0) -> tuple[np.ndarray, Normalization]:
    """-> (vertices in [-1, 1] (minus the margin), the transform); `transform.invert` undoes it."""
    t = normalization_for(vertices, margin=margin)
    return t.apply(vertices), t


def denormalize(vertices: np.ndarray, transform: Normalization) -> np.ndarray:
    return transform.invert(vertices)
