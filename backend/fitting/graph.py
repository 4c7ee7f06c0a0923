"""An embedded deformation graph: few degrees of freedom that keep a surface sane.

A hundred or so nodes spread over the surface (farthest points) each carry a rotation and a
translation; every vertex moves by the blend of its nearest nodes' rigid motions (Sumner et al.
2007). "Nearest" is measured along the surface when faces are given (shortest paths over the
mesh's edges), so two legs that touch in space but not on the body move apart freely; separate
parts are joined by their closest points at three times the distance, so they still move together.
The regulariser asks neighbouring nodes to agree on where they put each other, which is
as-rigid-as-possible at the graph's scale: limbs bend, the surface does not crumple, and what the
video cannot see (depth, the far side) follows what it can.

The registration's proxy (backend.registration.proxy) is a second deformation graph, numpy and
solved by ARAP; backend.geometry.deformation_graph says why the two stay apart and holds the
blend weights they share.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from backend.geometry.deformation_graph import blend_weights
from backend.geometry.normals import face_normals_and_areas
from backend.geometry.sampling import farthest_point_sampling

VERTEX_NODES = 6  # nodes blended per vertex
NODE_NEIGHBOURS = 8  # graph edges per node


def axis_angle_to_matrix(rvec: torch.Tensor) -> torch.Tensor:
    """[..., 3] axis-angle -> [..., 3, 3] rotation (Rodrigues), smooth at zero."""
    theta2 = (rvec * rvec).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    k = rvec / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    kmat = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*k.shape[:-1], 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device).expand(kmat.shape)
    return eye + s * kmat + (1 - c) * (kmat @ kmat)


class DeformationGraph:
    """Nodes over a mesh and the blend weights of its vertices (all fixed at the rest pose)."""

    def __init__(self, vertices: np.ndarray, n_nodes: int, seed: int = 0, faces=None):
        v = np.asarray(vertices, dtype=np.float64)
        n_nodes = int(min(n_nodes, len(v)))
        rng = np.random.default_rng(seed)
        idx = farthest_point_sampling(v, n_nodes, start_index=int(rng.integers(len(v))))
        self.nodes = v[idx]
        k = min(VERTEX_NODES, n_nodes)
        if faces is not None and len(faces) and n_nodes > k:
            dist, near, node_near = _surface_neighbours(v, np.asarray(faces, dtype=np.int64), idx, k + 1,
                                                        min(NODE_NEIGHBOURS + 1, n_nodes))
        else:
            dist, near = cKDTree(self.nodes).query(v, k=k + 1 if n_nodes > k else k)
            node_near = None
        dist, near = np.atleast_2d(dist), np.atleast_2d(near)
        # With no (k+1)-th node to fall to zero at, a little beyond the k-th does.
        far = dist[:, -1:] if dist.shape[1] > k else dist[:, -1:] * 1.5 + 1e-12
        self.vertex_nodes = near[:, :k]
        self.vertex_weights = blend_weights(dist[:, :k], far)
        kn = min(NODE_NEIGHBOURS + 1, n_nodes)
        if node_near is not None:
            nn = node_near
        else:
            _, nn = cKDTree(self.nodes).query(self.nodes, k=kn)
            nn = np.atleast_2d(nn)
        self.edges = np.stack([np.repeat(np.arange(n_nodes), kn - 1), nn[:, 1:].reshape(-1)], 1)
        self._t = {}

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def tensors(self, dtype=torch.float32):
        if dtype not in self._t:
            self._t[dtype] = dict(
                nodes=torch.as_tensor(self.nodes, dtype=dtype),
                vn=torch.as_tensor(self.vertex_nodes, dtype=torch.long),
                vw=torch.as_tensor(self.vertex_weights, dtype=dtype),
                ei=torch.as_tensor(self.edges[:, 0], dtype=torch.long),
                ej=torch.as_tensor(self.edges[:, 1], dtype=torch.long),
            )
        return self._t[dtype]

    def bind(self, corners: np.ndarray, bary: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Blend nodes and weights ([P, k] each) for surface points given as barycentric weights
        bary [P, 3] over the vertices corners [P, 3]: the corners' blends mixed by the barycentric
        weights, duplicates merged, the k strongest kept. Pass the pair to `deform` as `binding`."""
        corners = np.asarray(corners, dtype=np.int64)
        bary = np.asarray(bary, dtype=np.float64)
        k = self.vertex_nodes.shape[1]
        n_pts = len(corners)
        cand_n = self.vertex_nodes[corners].reshape(n_pts, -1)
        cand_w = (bary[:, :, None] * self.vertex_weights[corners]).reshape(n_pts, -1)
        rows = np.repeat(np.arange(n_pts), cand_n.shape[1])
        keys, inv = np.unique(rows * self.n_nodes + cand_n.reshape(-1), return_inverse=True)
        w = np.bincount(inv.reshape(-1), cand_w.reshape(-1), len(keys))
        r, nodes = keys // self.n_nodes, keys % self.n_nodes
        order = np.lexsort((-w, r))
        r, nodes, w = r[order], nodes[order], w[order]
        start = np.searchsorted(r, np.arange(n_pts))
        rank = np.arange(len(r)) - start[r]
        keep = rank < k
        vn = np.zeros((n_pts, k), np.int64)
        vw = np.zeros((n_pts, k), np.float64)
        vn[r[keep], rank[keep]] = nodes[keep]
        vw[r[keep], rank[keep]] = w[keep]
        vw /= np.maximum(vw.sum(1, keepdims=True), 1e-12)
        return torch.as_tensor(vn), torch.as_tensor(vw)

    def deform(self, rest: torch.Tensor, rvec: torch.Tensor, trans: torch.Tensor, index=None,
               binding=None) -> torch.Tensor:
        """Positions [V, 3] of the vertices `rest` (all of them, or those at `index`, a tensor of
        vertex indices with rest = their rest positions, or any points bound by `bind`, with
        binding = its result) for node rotations rvec [N, 3] and translations trans [N, 3]."""
        t = self.tensors(rest.dtype)
        if binding is not None:
            vn, vw = binding[0], binding[1].to(rest.dtype)
        else:
            vn, vw = (t["vn"], t["vw"]) if index is None else (t["vn"][index], t["vw"][index])
        rot = axis_angle_to_matrix(rvec)  # [N, 3, 3]
        g = t["nodes"]
        # Each vertex, moved rigidly by each of its nodes, then blended.
        local = rest[:, None, :] - g[vn]  # [V, k, 3]
        moved = torch.einsum("vkab,vkb->vka", rot[vn], local) + g[vn] + trans[vn]
        return (vw[..., None] * moved).sum(1)

    def regularity(self, rvec: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """Mean squared disagreement of neighbouring nodes about each other's position."""
        t = self.tensors(trans.dtype)
        rot = axis_angle_to_matrix(rvec)
        g = t["nodes"]
        gi, gj = g[t["ei"]], g[t["ej"]]
        pred = torch.einsum("eab,eb->ea", rot[t["ei"]], gj - gi) + gi + trans[t["ei"]]
        return ((pred - (gj + trans[t["ej"]])) ** 2).sum(-1).mean()


def _surface_neighbours(v: np.ndarray, faces: np.ndarray, node_idx: np.ndarray, k: int, kn: int):
    """Distances along the surface: (dist [V, k], nearest nodes [V, k], each node's kn nearest
    nodes [N, kn], itself first). Separate parts are bridged by kNN edges at 3x their length."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components, dijkstra

    n = len(v)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1) + 1e-12
    n_comp, labels = connected_components(sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)), directed=False)
    if n_comp > 1:
        d, j = cKDTree(v).query(v, k=min(8, n))
        i = np.repeat(np.arange(n), d.shape[1])
        j, d = j.reshape(-1), d.reshape(-1)
        bridge = labels[i] != labels[j]
        e = np.concatenate([e, np.stack([i[bridge], j[bridge]], 1)])
        w = np.concatenate([w, 3.0 * d[bridge] + 1e-12])
    graph = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    # Nodes reach about as far as a few node spacings: beyond that no vertex needs them. The
    # spacing is the surface's (its area shared among the nodes): a bounding-box estimate is
    # far too small for a long thin shape, whose end nodes then found no neighbours in reach.
    area = face_normals_and_areas(v, faces)[1].sum()
    spacing = np.sqrt(max(area, 1e-12) / max(len(node_idx), 1))
    dist = dijkstra(graph, directed=False, indices=node_idx, limit=8 * spacing)  # [N, V]
    order = np.argsort(dist, axis=0)[:k].T  # [V, k] node indices
    d = np.take_along_axis(dist.T, order, axis=1)
    # Vertices no node reaches within the limit: fall back to straight-line distance.
    lost = ~np.isfinite(d).all(axis=1)
    if lost.any():
        d_e, o_e = cKDTree(v[node_idx]).query(v[lost], k=k)
        order[lost], d[lost] = o_e, d_e
    node_d = dist[:, node_idx]  # [N, N]
    node_near = np.argsort(node_d, axis=1)[:, :kn]
    # A node with fewer than kn others in reach takes its nearest in a straight line for the rest
    # (not whichever unreachable ones the sort happened to list first).
    short = ~np.isfinite(np.take_along_axis(node_d, node_near, axis=1))
    if short.any():
        _, straight = cKDTree(v[node_idx]).query(v[node_idx], k=min(len(node_idx), 3 * kn))
        for r in np.flatnonzero(short.any(axis=1)):
            have = list(node_near[r][~short[r]])
            have += [c for c in straight[r] if c not in have][:kn - len(have)]
            node_near[r] = have
    return d, order, node_near
