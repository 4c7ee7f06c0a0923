"""Mesh clean-up after extraction: merge duplicates, drop floaters, decimate to a face budget.

Each step is a plain function on (vertices [V,3], faces [F,3]) numpy arrays and returns new
arrays; none needs a package beyond numpy and scipy. Decimation is our own quadric-error edge
collapse (Garland & Heckbert), vectorised in rounds: every round scores all edges, picks a set of
cheap edges whose neighbourhoods do not touch, rejects collapses that would flip a face or make
the mesh non-manifold, and collapses the rest at once.
"""

from __future__ import annotations

import numpy as np

from .normals import face_normals_and_areas

DEFAULT_MIN_COMPONENT_FRACTION = 0.02


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses, renumbering faces."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[faces].astype(np.int64)


def _drop_degenerate(faces: np.ndarray) -> np.ndarray:
    """Faces with a repeated corner, and exact duplicates (same corners, any rotation/winding)."""
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[ok]
    if len(faces) == 0:
        return faces
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    return faces[np.sort(first)]


def merge_vertices(vertices: np.ndarray, faces: np.ndarray, tolerance: float = 1e-7):
    """Weld vertices closer than `tolerance` (on a grid of that size), drop degenerate faces."""
    vertices = np.asarray(vertices)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(vertices) == 0:
        return vertices.reshape(0, 3), faces.reshape(0, 3)
    keys = np.round(vertices / tolerance).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    merged = vertices[first]
    faces = _drop_degenerate(inverse.reshape(-1)[faces])
    return _compact(merged, faces)


def connected_components(num_vertices: int, faces: np.ndarray) -> np.ndarray:
    """Component label per face (faces sharing a vertex are connected)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(num_vertices, num_vertices))
    _, labels = cc(graph, directed=False)
    return labels[faces[:, 0]]


def remove_floaters(vertices: np.ndarray, faces: np.ndarray,
                    min_fraction: float = DEFAULT_MIN_COMPONENT_FRACTION):
    """Keep connected components with at least min_fraction x the largest one's face count."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return np.asarray(vertices).reshape(-1, 3)[:0], faces
    labels = connected_components(len(vertices), faces)
    counts = np.bincount(labels)
    keep = counts >= min_fraction * counts.max()
    return _compact(np.asarray(vertices), faces[keep[labels]])


# ---------------------------------------------------------------- decimation


def _vertex_quadrics(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted sum of face-plane quadrics per vertex: [V, 4, 4]."""
    unit, area = face_normals_and_areas(v, faces)
    d = -np.einsum("ij,ij->i", unit, v[faces[:, 0]])
    p = np.concatenate([unit, d[:, None]], axis=1)
    q = (p[:, :, None] * p[:, None, :]) * area[:, None, None]
    out = np.zeros((len(v), 4, 4))
    for c in range(3):
        np.add.at(out, faces[:, c], q)
    return out


def _edges(faces: np.ndarray) -> np.ndarray:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def _boundary_vertices(num_vertices: int, faces: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    out = np.zeros(num_vertices, dtype=bool)
    out[uniq[counts != 2].reshape(-1)] = True
    return out


def _collapse_targets(v, quadric, edges):
    """Optimal position per edge (falls back to the best of ends and midpoint) and its cost."""
    q = quadric[edges[:, 0]] + quadric[edges[:, 1]]
    a = q[:, :3, :3]
    b = -q[:, :3, 3]
    det = np.linalg.det(a)
    scale = np.maximum(np.abs(a).max(axis=(1, 2)) ** 3, 1e-300)
    good = np.abs(det) > 1e-9 * scale
    pos = 0.5 * (v[edges[:, 0]] + v[edges[:, 1]])
    if good.any():
        pos[good] = np.linalg.solve(a[good], b[good][:, :, None])[:, :, 0]
    # Keep the optimum only when it stays near the edge; else pick the best of 3 candidates.
    length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    far = np.linalg.norm(pos - 0.5 * (v[edges[:, 0]] + v[edges[:, 1]]), axis=1) > 2.0 * length
    bad = ~good | far

    def cost(p):
        h = np.concatenate([p, np.ones((len(p), 1))], axis=1)
        return np.einsum("ni,nij,nj->n", h, q, h)

    best = cost(pos)
    if bad.any():
        options = [v[edges[bad, 0]], v[edges[bad, 1]], 0.5 * (v[edges[bad, 0]] + v[edges[bad, 1]])]
        qb = q[bad]
        costs = []
        for p in options:
            h = np.concatenate([p, np.ones((len(p), 1))], axis=1)
            costs.append(np.einsum("ni,nij,nj->n", h, qb, h))
        costs = np.stack(costs)
        pick = costs.argmin(axis=0)
        pos[bad] = np.stack(options)[pick, np.arange(bad.sum())]
        best[bad] = costs[pick, np.arange(bad.sum())]
    return pos, np.maximum(best, 0.0)


def _independent(edges: np.ndarray, rank: np.ndarray, eligible: np.ndarray, faces: np.ndarray,
                 locked: np.ndarray, passes: int = 4) -> np.ndarray:
    """A set of eligible edges no two of which touch a common face, cheapest (lowest rank) first.

    Each pass takes the edges whose rank is the lowest among all eligible edges touching any face
    around their two ends, then locks every vertex of those faces; later passes fill the gaps.
    Two chosen edges thus never share a face neighbourhood: their collapses are independent and
    each face has at most one corner that moves. `locked` [V] (updated in place) marks vertices
    that must not be an end of a chosen edge.
    """
    big = np.iinfo(np.int64).max
    num_vertices = len(locked)
    chosen = np.zeros(len(edges), dtype=bool)
    for _ in range(passes):
        live = eligible & ~chosen & ~locked[edges[:, 0]] & ~locked[edges[:, 1]]
        if not live.any():
            break
        r = np.where(live, rank, big)
        vmin = np.full(num_vertices, big, dtype=np.int64)
        np.minimum.at(vmin, edges[:, 0], r)
        np.minimum.at(vmin, edges[:, 1], r)
        fmin = vmin[faces].min(axis=1)
        vfmin = np.full(num_vertices, big, dtype=np.int64)
        for c in range(3):
            np.minimum.at(vfmin, faces[:, c], fmin)
        new = live & (r == vfmin[edges[:, 0]]) & (r == vfmin[edges[:, 1]])
        chosen |= new
        ends = np.zeros(num_vertices, dtype=bool)
        ends[edges[new].reshape(-1)] = True
        claimed = ends[faces].any(axis=1)
        locked[faces[claimed].reshape(-1)] = True
    return chosen


def _link_ok(edges: np.ndarray, faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Link condition for interior edges of a manifold: the two ends share exactly 2 neighbours."""
    from scipy.sparse import coo_matrix

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.int32)
    common = np.asarray(adj[edges[:, 0]].multiply(adj[edges[:, 1]]).sum(axis=1)).reshape(-1)
    return common == 2


def _flip_ok(v: np.ndarray, faces: np.ndarray, edges: np.ndarray, targets: np.ndarray,
             min_normal_dot: float) -> np.ndarray:
    """Whether moving both ends of each (independent) edge to its target keeps every surviving
    face around it from turning past acos(min_normal_dot) or collapsing to zero area."""
    owner = np.full(len(v), -1, dtype=np.int64)
    owner[edges[:, 0]] = np.arange(len(edges))
    owner[edges[:, 1]] = np.arange(len(edges))
    corner_owner = owner[faces]
    moving = corner_owner >= 0
    check = moving.any(axis=1) & (moving.sum(axis=1) < 2)  # faces on the edge itself vanish
    fc = faces[check]
    co = corner_owner[check]
    old = v[fc]
    new = old.copy()
    mv = co >= 0
    new[mv] = targets[co[mv]]
    n_old = np.cross(old[:, 1] - old[:, 0], old[:, 2] - old[:, 0])
    n_new = np.cross(new[:, 1] - new[:, 0], new[:, 2] - new[:, 0])
    len_old = np.linalg.norm(n_old, axis=1)
    len_new = np.linalg.norm(n_new, axis=1)
    dot = np.einsum("ij,ij->i", n_old, n_new) / np.maximum(len_old * len_new, 1e-300)
    bad = (dot < min_normal_dot) | (len_new <= 1e-12 * np.maximum(len_old, 1e-300))
    ok = np.ones(len(edges), dtype=bool)
    ok[co.max(axis=1)[bad]] = False
    return ok


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int, *, max_rounds: int = 200,
             min_normal_dot: float = 0.2):
    """Quadric edge collapse until at most `target_faces` faces (or no collapse is allowed).

    Boundary vertices never move, so open edges (a surface cut by the grid bounds) stay put. A
    collapse is refused when a surrounding face would turn by more than acos(min_normal_dot) or
    become degenerate, or when the edge fails the link condition (it would pinch the surface).
    """
    v = np.asarray(vertices, dtype=np.float64).copy()
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3).copy()
    target_faces = max(int(target_faces), 4)
    for _ in range(max_rounds):
        if len(f) <= target_faces:
            break
        nv = len(v)
        quadric = _vertex_quadrics(v, f)
        edges = _edges(f)
        boundary = _boundary_vertices(nv, f)
        edges = edges[~boundary[edges[:, 0]] & ~boundary[edges[:, 1]]]
        if len(edges) == 0:
            break
        pos, cost = _collapse_targets(v, quadric, edges)
        order = np.argsort(cost, kind="stable")
        rank = np.empty(len(edges), dtype=np.int64)
        rank[order] = np.arange(len(edges))
        # Each collapse removes about 2 faces. Only the cheapest quarter of the edges (or what the
        # budget still needs, if fewer) compete in a round; later rounds re-score the result.
        needed = (len(f) - target_faces + 1) // 2
        eligible = rank < max(1, min(needed, len(edges) // 4))
        eligible &= _link_ok(edges, f, nv)
        locked = np.zeros(nv, dtype=bool)
        accepted, targets = [], []
        for _attempt in range(3):
            idx = np.flatnonzero(_independent(edges, rank, eligible, f, locked.copy()))
            if len(idx) == 0:
                break
            # Try the quadric optimum, then the midpoint, then either end; keep the first that
            # turns no face around the edge too far.
            e = edges[idx]
            target = np.full((len(idx), 3), np.nan)
            for p in (pos[idx], 0.5 * (v[e[:, 0]] + v[e[:, 1]]), v[e[:, 0]], v[e[:, 1]]):
                todo = np.isnan(target[:, 0])
                if not todo.any():
                    break
                ok = _flip_ok(v, f, e[todo], p[todo], min_normal_dot)
                sub = np.flatnonzero(todo)[ok]
                target[sub] = p[todo][ok]
            good = ~np.isnan(target[:, 0])
            accepted.append(idx[good])
            targets.append(target[good])
            eligible[idx] = False
            # Lock the neighbourhoods of the accepted collapses only, so that the next attempt may
            # pick edges next to the refused ones.
            ends = np.zeros(nv, dtype=bool)
            ends[edges[idx[good]].reshape(-1)] = True
            locked[f[ends[f].any(axis=1)].reshape(-1)] = True
        if not accepted or sum(len(x) for x in accepted) == 0:
            break
        idx = np.concatenate(accepted)
        new_pos = np.concatenate(targets)
        a, b = edges[idx, 0], edges[idx, 1]
        v[a] = new_pos
        remap = np.arange(nv)
        remap[b] = a
        f = _drop_degenerate(remap[f])
        v, f = _compact(v, f)
    return v.astype(np.asarray(vertices).dtype if np.asarray(vertices).dtype.kind == "f" else np.float64), f


def postprocess_mesh(vertices: np.ndarray, faces: np.ndarray, *,
                     min_component_fraction: float = DEFAULT_MIN_COMPONENT_FRACTION,
                     target_faces: int | None = None, merge_tolerance: float = 1e-7):
    """merge_vertices -> remove_floaters -> decimate (when target_faces is given)."""
    v, f = merge_vertices(vertices, faces, merge_tolerance)
    if min_component_fraction > 0:
        v, f = remove_floaters(v, f, min_component_fraction)
    if target_faces is not None and len(f) > target_faces:
        v, f = decimate(v, f, target_faces)
    return v, f
