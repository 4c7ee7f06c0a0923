"""Target surface sampling and two-way closest-point correspondences with outlier rejection."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from backend.geometry.normals import face_geometry, vertex_normals
from backend.geometry.orient import orient_faces


class TargetSurface:
    """A frame mesh as dense oriented samples in a k-d tree.

    Vertices plus face centroids already sample a fine mesh densely; coarse meshes get
    area-weighted random points on top, and huge meshes are subsampled, so the cost per frame
    is bounded whatever the frame's resolution. The faces are re-wound outward first
    (backend.geometry.orient), so the sample normals do not depend on the tool that made the mesh.
    """

    def __init__(self, vertices, faces, n_nodes, rng, min_samples=20000, max_samples=150000, back_ratio=4.0):
        faces = orient_faces(vertices, faces)
        n_face, area = face_geometry(vertices, faces)
        total = float(area.sum())
        good = area > 1e-12 * max(total, 1e-300)
        unit = np.zeros_like(n_face)
        unit[good] = n_face[good] / (2.0 * area[good])[:, None]
        pts = [vertices[np.unique(faces)], vertices[faces].mean(axis=1)[good]]
        nrm = [vertex_normals(vertices, faces)[np.unique(faces)], unit[good]]
        want = int(np.clip(8 * n_nodes, min_samples, max_samples))
        have = len(pts[0]) + len(pts[1])
        if have > max_samples:
            pts, nrm = [], []
        if have < want or not pts:
            extra = want - (have if pts else 0)
            f = rng.choice(len(faces), size=extra, p=area / total)
            r = rng.random((extra, 2))
            flip = r.sum(axis=1) > 1.0
            r[flip] = 1.0 - r[flip]
            tri = vertices[faces[f]]
            pts.append(tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0]))
            nrm.append(unit[f])
        self.points = np.concatenate(pts)
        self.normals = np.concatenate(nrm)
        self.spacing = np.sqrt(total / len(self.points))
        self.tree = cKDTree(self.points)
        # The reverse direction only needs to cover the surface a few times per node.
        n_back = min(len(self.points), max(int(back_ratio * n_nodes), 4000))
        self.back = rng.choice(len(self.points), size=n_back, replace=False) if n_back < len(self.points) else np.arange(len(self.points))


def correspondences(x, x_normals, target, max_dist, min_cos, back_plane=0.0, backward=True):
    """Per-node target positions and confidences in [0, 1].

    Forward: each node to its closest sample, slid onto that sample's tangent plane (a
    point-to-plane match, which does not drag the surface sideways). Backward: each sample to
    its closest node, which is what pulls out limbs the forward direction never reaches.
    Matches farther than `max_dist` or with normals facing away (cos < min_cos) are dropped;
    nodes without normals (loose points) skip the normal test.
    """
    n = len(x)
    has_n = np.einsum("ij,ij->i", x_normals, x_normals) > 0.25

    dist, idx = target.tree.query(x, workers=-1, distance_upper_bound=max_dist)
    idx = np.minimum(idx, len(target.points) - 1)  # misses come back as n; masked out below
    s, sn = target.points[idx], target.normals[idx]
    off = x - s
    tangential = off - np.einsum("ij,ij->i", off, sn)[:, None] * sn
    # Trust the tangent plane only about one sample spacing away from the sample.
    t_len = np.linalg.norm(tangential, axis=1, keepdims=True)
    tangential *= np.minimum(1.0, target.spacing / np.maximum(t_len, 1e-30))
    fwd = s + tangential
    ok_f = (dist < max_dist) & (~has_n | (np.einsum("ij,ij->i", x_normals, sn) > min_cos))

    if not backward:
        # Forward matches only, with the sample normals, for point-to-plane rigid alignment.
        return np.where(ok_f[:, None], fwd, x), ok_f.astype(float), sn

    bp, bn = target.points[target.back], target.normals[target.back]
    bdist, bidx = cKDTree(x).query(bp, workers=-1, distance_upper_bound=max_dist)
    bidx = np.minimum(bidx, n - 1)
    ok_b = (bdist < max_dist) & (~has_n[bidx] | (np.einsum("ij,ij->i", x_normals[bidx], bn) > min_cos))
    bidx, bp, bn = bidx[ok_b], bp[ok_b], bn[ok_b]
    # Along the sample's normal only (mostly): the mean of the samples nearest to a node is its
    # Voronoi-cell centroid, and pulling toward it would slide the mesh sideways.
    along = np.einsum("ij,ij->i", bp - x[bidx], bn)[:, None] * bn
    bp = x[bidx] + back_plane * along + (1.0 - back_plane) * (bp - x[bidx])
    count = np.bincount(bidx, minlength=n).astype(float)
    back_sum = np.stack([np.bincount(bidx, weights=bp[:, c], minlength=n) for c in range(3)], axis=1)

    # Weigh the two directions about equally overall, whatever the sample/node ratio.
    beta = n / max(len(target.back), 1)
    wf = ok_f.astype(float)
    wb = beta * count
    total = wf + wb
    conf = np.minimum(total, 1.0)
    tgt = x.copy()
    has = total > 0
    tgt[has] = (wf[has, None] * fwd[has] + beta * back_sum[has]) / total[has, None]
    return tgt, conf
