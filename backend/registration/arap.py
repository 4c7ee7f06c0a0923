"""As-rigid-as-possible deformation energy on a vertex graph, with a prefactorised global solve.

The data term has a constant weight per vertex (mu * vertex area), so the system matrix
L + mu*M never changes and one sparse LU per stiffness level serves every iteration of every
frame. Per-vertex confidence is expressed through the target instead of the weight: pulling a
vertex toward x + g*(c - x) with weight mu has, at convergence, the same stationary point as
pulling it toward c with weight g*mu.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree

from backend.geometry.normals import face_geometry

# Cotangents blow up on slivers; beyond this they only make the system ill-conditioned.
_COT_MAX = 10.0
# A floor keeps every mesh edge in the graph, so clamping obtuse (negative) weights to zero
# cannot split a surface into pieces that move independently.
_W_MIN = 0.02
# Weight of a k-NN edge: about one cotangent edge, so loose points are as stiff as the surface.
_KNN_W = 0.5


def cotangent_graph(vertices, faces):
    """Undirected edges (i, j, w) with clamped cotangent weights and lumped vertex areas."""
    n_v = len(vertices)
    mass = np.zeros(n_v)
    if len(faces) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), mass
    _, area = face_geometry(vertices, faces)
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, l = faces[:, k], faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]
        a, b = vertices[j] - vertices[i], vertices[l] - vertices[i]
        cross = np.linalg.norm(np.cross(a, b), axis=1)
        dot = np.einsum("ij,ij->i", a, b)
        ok = cross > 1e-12 * np.maximum(np.einsum("ij,ij->i", a, a) + np.einsum("ij,ij->i", b, b), 1e-300)
        cot = np.where(ok, dot / np.where(ok, cross, 1.0), 0.0)
        rows.append(j), cols.append(l), vals.append(0.5 * np.clip(cot, 0.0, _COT_MAX))
        mass += np.bincount(i, weights=area / 3.0, minlength=n_v)
    w = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_v, n_v))
    w = (w + w.T).tocoo()
    upper = w.row < w.col  # also drops self-loops from faces that repeat a vertex
    return w.row[upper], w.col[upper], np.maximum(w.data[upper], _W_MIN), mass


def knn_edges(points, sources, anchors, k=6):
    """Edges from each source point to its k nearest anchor points (excluding itself)."""
    if len(sources) == 0 or len(anchors) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    k = min(k, len(anchors) - 1)
    _, nn = cKDTree(points[anchors]).query(points[sources], k=k + 1, workers=-1)
    i = np.repeat(sources, k + 1)
    j = anchors[nn.reshape(-1)]
    keep = i != j
    return i[keep], j[keep], np.full(keep.sum(), _KNN_W)


def _polar_svd(a):
    u, _, vt = np.linalg.svd(a)
    r = u @ vt
    flip = np.linalg.det(r) < 0
    if flip.any():
        # Reflection: negate the axis of the smallest singular value to get a rotation.
        u[flip, :, 2] *= -1.0
        r[flip] = u[flip] @ vt[flip]
    return r


def _polar_newton(a, steps=8, tol=1e-6):
    """Orthogonal polar factors by Frobenius-scaled Newton; `ok` marks proper rotations."""
    x = a.copy()
    for _ in range(steps):
        c0, c1, c2 = x[:, :, 0], x[:, :, 1], x[:, :, 2]
        cof = np.stack([np.cross(c1, c2), np.cross(c2, c0), np.cross(c0, c1)], axis=2)
        det = np.einsum("ij,ij->i", c0, cof[:, :, 0])
        safe = np.where(np.abs(det) > 1e-300, det, 1.0)
        inv_t = cof / safe[:, None, None]  # inverse transpose
        g = np.sqrt(np.sqrt((inv_t**2).sum(axis=(1, 2)) / np.maximum((x**2).sum(axis=(1, 2)), 1e-300)))
        nxt = 0.5 * (g[:, None, None] * x + inv_t / g[:, None, None])
        delta = np.abs(nxt - x).max()
        x = nxt
        if delta < tol:
            break
    ok = (det > 0) & (np.abs(np.einsum("nij,nij->n", x, x) - 3.0) < 1e-4)
    return x, ok


class ArapSolver:
    """ARAP + point-target data term; `levels` are data weights, softest (stiffest ARAP) first."""

    def __init__(self, rest, edge_i, edge_j, edge_w, mass, levels):
        n = len(rest)
        self.rest = rest
        self.mass = mass
        # Both directions of every edge: the local step of vertex i sums over its own ring.
        self.ei = np.concatenate([edge_i, edge_j])
        self.ej = np.concatenate([edge_j, edge_i])
        self.w = np.concatenate([edge_w, edge_w])
        self.d = rest[self.ei] - rest[self.ej]
        self.wd = self.w[:, None] * self.d
        # Sums per-edge rows onto their first vertex; a sparse product beats np.add.at.
        self.gather = sp.csr_matrix((np.ones(len(self.ei)), (self.ei, np.arange(len(self.ei)))), shape=(n, len(self.ei)))
        w = sp.csr_matrix((self.w, (self.ei, self.ej)), shape=(n, n))
        lap = sp.diags(np.asarray(w.sum(axis=1)).ravel()) - w
        # Size of each ring's covariance, so the regulariser in `rotations` is scale-free.
        self.ring_scale = np.maximum(np.asarray(self.gather @ (self.w * (self.d**2).sum(axis=1))).ravel(), 1e-30)
        self.levels = list(levels)
        self._lu = [splu((lap + sp.diags(mu * mass)).tocsc(), permc_spec="COLAMD") for mu in self.levels]

    def rotations(self, x, warm, normals):
        """Per-vertex best-fit rotations (the polar factor of each ring's covariance).

        A batched 3x3 SVD costs more than the rest of an iteration, so this runs a scaled
        Newton polar iteration instead. Flat rings give rank-2 covariances on which Newton
        stalls; adding c * W (n n^T + eps I), with W the previous rotation, restores full rank
        and leaves the answer unchanged once W is right (A = R P implies A + c R S = R (P + c S)
        for symmetric S). Vertices it cannot settle (inverted rings) fall back to the SVD.
        """
        e = x[self.ei] - x[self.ej]
        cov = (e[:, :, None] * self.wd[:, None, :]).reshape(-1, 9)
        a = np.asarray(self.gather @ cov).reshape(-1, 3, 3)  # sum of w * e d^T
        reg = normals[:, :, None] * normals[:, None, :] + 1e-2 * np.eye(3)
        a += (0.2 * self.ring_scale)[:, None, None] * (warm @ reg)
        r, ok = _polar_newton(a)
        if not ok.all():
            r[~ok] = _polar_svd(a[~ok])
        return r

    def solve(self, level, rot, target):
        rd = np.einsum("eab,eb->ea", rot[self.ei] + rot[self.ej], self.wd)
        b = 0.5 * np.asarray(self.gather @ rd)
        rhs = b + (self.levels[level] * self.mass)[:, None] * target
        return self._lu[level].solve(rhs)
