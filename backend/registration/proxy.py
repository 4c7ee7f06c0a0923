"""A sparse stand-in for references too large to solve directly.

The registration runs on a few thousand surface nodes joined by a k-NN graph; every original
vertex then follows its nearest nodes by blending their rigid motions (embedded-deformation
style), which keeps time and memory linear in the vertex count.

The fit's deformation graph (backend.fitting.graph) is the other one, torch and optimised by
gradient descent; backend.geometry.deformation_graph says why the two stay apart and holds the
blend weights they share.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from backend.geometry.deformation_graph import blend_weights
from backend.geometry.normals import face_geometry

from .arap import knn_edges

_BLEND_K = 4
_CHUNK = 200_000


def pick_nodes(vertices, n_nodes, rng, check=lambda: None):
    """About n_nodes vertex indices spread evenly over the shape (one per occupied voxel)."""
    lo = vertices.min(axis=0)
    extent = np.maximum(vertices.max(axis=0) - lo, 1e-12)
    # Start from a surface-like guess and correct it twice: occupied voxels scale as 1/h^2.
    h = float(np.linalg.norm(extent)) / np.sqrt(n_nodes)
    order = rng.permutation(len(vertices))
    for _ in range(3):
        keys = np.floor((vertices[order] - lo) / h).astype(np.int64)
        dims = keys.max(axis=0) + 1
        flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
        _, first = np.unique(flat, return_index=True)
        h *= np.sqrt(len(first) / n_nodes)
        check()
    return np.sort(order[first])


def proxy_graph(node_points, mass_total):
    n = len(node_points)
    i, j, w = knn_edges(node_points, np.arange(n), np.arange(n), k=8)
    # Symmetric duplicates just double a few weights; harmless for the solve.
    mass = np.full(n, mass_total / n if mass_total > 0 else 1.0 / n)
    return i, j, w, mass


def surface_area(vertices, faces):
    total = 0.0
    for start in range(0, len(faces), _CHUNK):
        total += float(face_geometry(vertices, faces[start:start + _CHUNK])[1].sum())
    return total


class Blender:
    """Carries node motion (positions + rotations) to every vertex of the full reference."""

    def __init__(self, vertices, node_rest, check=lambda: None):
        k = min(_BLEND_K + 1, len(node_rest))
        tree = cKDTree(node_rest)
        dist = np.empty((len(vertices), k))
        idx = np.empty((len(vertices), k), dtype=np.int64)
        # In chunks, so a cancel request is seen within a fraction of a second.
        for s in range(0, len(vertices), _CHUNK):
            dd, ii = tree.query(vertices[s:s + _CHUNK], k=k, workers=-1)
            dist[s:s + _CHUNK], idx[s:s + _CHUNK] = dd.reshape(-1, k), ii.reshape(-1, k)
            check()
        w = blend_weights(dist[:, :-1], dist[:, -1:] + 1e-12) if k > 1 else np.ones_like(dist)
        self.idx = idx[:, :-1] if k > 1 else idx
        self.w = w.astype(np.float32)
        self.vertices = vertices
        self.node_rest = node_rest

    def apply(self, node_x, node_rot, out, check=lambda: None):
        for s in range(0, len(self.vertices), _CHUNK):
            check()
            sl = slice(s, s + _CHUNK)
            idx, w = self.idx[sl], self.w[sl]
            local = self.vertices[sl, None, :] - self.node_rest[idx]
            moved = np.einsum("nkab,nkb->nka", node_rot[idx], local) + node_x[idx]
            out[sl] = np.einsum("nk,nka->na", w, moved)
        return out
