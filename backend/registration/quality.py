"""How well a registered mesh covers a target frame: the two-way mean surface distance.

Used by the "auto" method to keep, per frame, whichever candidate fits its frame better. The
measure is symmetric on purpose: one-way "registered -> target" distances reward a mesh that
shrinks onto part of the target; "target -> registered" catches the parts it left uncovered.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

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


class TargetSamples:
    """Dense samples of one target surface (and their k-d tree), reusable across candidates."""

    def __init__(self, target_vertices, target_faces, *, samples: int = DEFAULT_SAMPLES, seed: int = 0):
        self.samples, self.seed = int(samples), seed
        self.points = _surface_points(target_vertices, target_faces, self.samples, seed)
        self.tree = cKDTree(self.points)

    def error(self, vertices, faces) -> float:
        """Two-way mean distance between the surface (vertices, faces) and this target."""
        pts = _surface_points(vertices, faces, self.samples, self.seed + 1)
        forward = self.tree.query(pts)[0].mean()
        backward = cKDTree(pts).query(self.points)[0].mean()
        return float(0.5 * (forward + backward))


def surface_error(vertices, faces, target_vertices, target_faces, *, samples: int = DEFAULT_SAMPLES,
                  seed: int = 0) -> float:
    """Two-way mean distance (in the inputs' units) between two triangle surfaces.

    Both are sampled with `samples` area-weighted points (fixed seeds, so the same inputs always
    give the same value); the result is the mean of (registered -> nearest target sample) and
    (target -> nearest registered sample). A surface without faces (or without area) is
    represented by its vertices.
    """
    return TargetSamples(target_vertices, target_faces, samples=samples, seed=seed).error(vertices, faces)
