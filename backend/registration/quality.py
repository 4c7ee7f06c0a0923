"""How well a registered mesh covers a target frame: the two-way mean surface distance.

Used to keep, per frame, the better of two candidates: the "learned-optimize" method's learned vs refined
result, and every method's safeguard (a result is kept only if it fits its frame at least as
well as the pose it started from). The measure is symmetric on purpose: one-way "registered ->
target" distances reward a mesh that shrinks onto part of the target; "target -> registered"
catches the parts it left uncovered. It uses no normals, so it cannot be misled by how a frame's
triangles are wound.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from backend.geometry.normals import face_areas
from backend.geometry.sampling import sample_surface

DEFAULT_SAMPLES = 20_000


def _surface_points(vertices, faces, samples, seed):
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces if faces is not None else np.zeros((0, 3)), dtype=np.int64).reshape(-1, 3)
    if len(f):
        try:
            return sample_surface(v, f, samples, seed=seed)[0].astype(np.float64)
        except ValueError:  # no area at all (every face degenerate): fall back to the vertices
            pass
    return v


def two_way_distance(points, target_points, target_tree=None, back_points=None) -> float:
    """Mean of (points -> nearest target point) and (target points -> nearest of `points`).

    `back_points` (default: all of `target_points`) is the subset measured in the reverse direction.
    """
    tree = target_tree if target_tree is not None else cKDTree(target_points)
    forward = tree.query(points, workers=-1)[0].mean()
    back = target_points if back_points is None else back_points
    backward = cKDTree(points).query(back, workers=-1)[0].mean()
    return float(0.5 * (forward + backward))


def frame_fit_entry(frame, before, after, accepted, rigid_accepted=None) -> dict:
    """One frame of a fit report (distances as fractions of the reference's bounding-box diagonal)."""
    entry = {"frame": int(frame), "fit_before": round(float(before), 6), "fit_after": round(float(after), 6),
             "accepted": bool(accepted)}
    if rigid_accepted is not None:
        entry["rigid_accepted"] = bool(rigid_accepted)
    return entry


class SurfaceSampler:
    """Fixed material points on one topology: the same (face, barycentric) pairs for any pose of it,
    so two poses are compared on the same points. Without faces (or area) the vertices serve."""

    def __init__(self, vertices, faces, samples: int = DEFAULT_SAMPLES, seed: int = 0):
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces if faces is not None else np.zeros((0, 3)), dtype=np.int64).reshape(-1, 3)
        self.faces, self.bary = None, None
        if len(f):
            area = face_areas(v, f)
            total = area.sum()
            if np.isfinite(total) and total > 0:
                rng = np.random.default_rng(seed)
                idx = rng.choice(len(f), size=samples, p=area / total)
                uv = rng.random((samples, 2))
                flip = uv.sum(axis=1) > 1.0
                uv[flip] = 1.0 - uv[flip]
                self.faces = f[idx]
                self.bary = np.column_stack([1.0 - uv.sum(axis=1), uv])

    def points(self, vertices) -> np.ndarray:
        v = np.asarray(vertices, dtype=np.float64)
        if self.faces is None:
            return v
        return np.einsum("nk,nkc->nc", self.bary, v[self.faces])


class TargetSamples:
    """Dense samples of one target surface (and their k-d tree), reusable across candidates."""

    def __init__(self, target_vertices, target_faces, *, samples: int = DEFAULT_SAMPLES, seed: int = 0):
        self.samples, self.seed = int(samples), seed
        self.points = _surface_points(target_vertices, target_faces, self.samples, seed)
        self.tree = cKDTree(self.points)

    def error_points(self, points) -> float:
        """Two-way mean distance between points on a candidate surface and this target."""
        return two_way_distance(points, self.points, self.tree)

    def error(self, vertices, faces) -> float:
        """Two-way mean distance between the surface (vertices, faces) and this target."""
        return self.error_points(_surface_points(vertices, faces, self.samples, self.seed + 1))


def surface_error(vertices, faces, target_vertices, target_faces, *, samples: int = DEFAULT_SAMPLES,
                  seed: int = 0) -> float:
    """Two-way mean distance (in the inputs' units) between two triangle surfaces.

    Both are sampled with `samples` area-weighted points (fixed seeds, so the same inputs always
    give the same value); the result is the mean of (registered -> nearest target sample) and
    (target -> nearest registered sample). A surface without faces (or without area) is
    represented by its vertices.
    """
    return TargetSamples(target_vertices, target_faces, samples=samples, seed=seed).error(vertices, faces)


def hold_back_worse(ref_vertices, ref_faces, frames, offsets, start_offsets=None, *, samples: int = 4000,
                    seed: int = 0, check=None):
    """Every frame's result kept only if it fits that frame at least as well as its start.

    offsets / start_offsets: [T,V,3] results and the poses they started from (default: the
    reference left where it is). Returns (offsets with held-back frames replaced by their start,
    report: one dict per frame as frame_fit_entry makes them,
    distances as fractions of the reference's bounding-box diagonal). `check()` is called per frame.
    """
    ref_v = np.asarray(ref_vertices, dtype=np.float64)
    diag = float(np.linalg.norm(np.ptp(ref_v, axis=0))) or 1.0
    sampler = SurfaceSampler(ref_v, ref_faces, samples, seed)
    out = np.array(offsets, dtype=np.float32, copy=True)
    report = []
    for t, (fv, ff) in enumerate(frames):
        target = TargetSamples(fv, ff, samples=samples, seed=seed + t)
        start = np.zeros_like(ref_v) if start_offsets is None else np.asarray(start_offsets[t], np.float64)
        before = target.error_points(sampler.points(ref_v + start)) / diag
        after = target.error_points(sampler.points(ref_v + out[t])) / diag
        accepted = after <= before
        if not accepted:
            out[t] = start
        report.append(frame_fit_entry(t, before, min(before, after), accepted))
        if check is not None:
            check()
    return out, report
