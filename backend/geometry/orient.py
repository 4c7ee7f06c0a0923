"""Consistent, outward face winding for meshes from any tool.

Marching cubes (scikit-image's among them), scanners and remeshers may wind every triangle
inward, or mix windings between patches; normals computed from such faces point into the body.
Registration matches surfaces by their normals (a vertex must not snap onto the far side of a
thin part), so every mesh is re-wound before its normals are used: faces sharing a manifold
edge are made to traverse it in opposite directions (a breadth-first pass over the face graph),
then each patch so connected is flipped as a whole when its signed volume, taken about its own
centroid, is negative. Open patches (holes) keep the same rule: for a surface that mostly
encloses its centroid the sign still says which side is outside.

Only the order of corners changes: vertex indices, count and order of faces stay as given.
"""

from __future__ import annotations

import numpy as np

from .normals import face_geometry
from .weld import weld_map

def _manifold_pairs(faces_w: np.ndarray):
    """(face a, face b, same direction?) for every edge that exactly two faces share."""
    n_f = len(faces_w)
    src = faces_w.reshape(-1)
    dst = faces_w[:, [1, 2, 0]].reshape(-1)
    face = np.repeat(np.arange(n_f), 3)
    ok = src != dst
    src, dst, face = src[ok], dst[ok], face[ok]
    key = np.minimum(src, dst) * (int(faces_w.max()) + 1) + np.maximum(src, dst)
    order = np.argsort(key, kind="stable")
    key, src, face = key[order], src[order], face[order]
    new = np.ones(len(key), dtype=bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(key)))
    pair = starts[counts == 2]
    a, b = face[pair], face[pair + 1]
    same = src[pair] == src[pair + 1]  # both traverse the edge from the same end: inconsistent
    keep = a != b
    return a[keep], b[keep], same[keep]


def _flip_parity(n_f: int, a: np.ndarray, b: np.ndarray, same: np.ndarray):
    """Per face: whether to flip it so every manifold pair agrees; and its patch label."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n_f, n_f)).tocsr()
    n_comp, labels = connected_components(graph, directed=False)
    if not same.any():  # already consistent (the usual case, inward-wound files included): no walk
        return np.zeros(n_f, dtype=bool), labels, n_comp
    # One breadth-first pass over all patches: a virtual root joined to one face of each.
    roots = np.unique(labels, return_index=True)[1]
    ra = np.concatenate([a, np.full(len(roots), n_f)])
    rb = np.concatenate([b, roots])
    full = coo_matrix((np.ones(len(ra), np.int8), (ra, rb)), shape=(n_f + 1, n_f + 1)).tocsr()
    order, pred = breadth_first_order(full, n_f, directed=False, return_predecessors=True)
    # The relation of each face to its tree parent, looked up among the pairs (both directions).
    key_pairs = np.concatenate([a * (n_f + 1) + b, b * (n_f + 1) + a])
    rel_pairs = np.concatenate([same, same])
    sort = np.argsort(key_pairs)
    key_pairs, rel_pairs = key_pairs[sort], rel_pairs[sort]
    faces_in_order = order[1:]
    parent = pred[faces_in_order]
    rel = np.zeros(n_f + 1, dtype=bool)
    tree = parent != n_f
    q = faces_in_order[tree] * (n_f + 1) + parent[tree]
    pos = np.minimum(np.searchsorted(key_pairs, q), len(key_pairs) - 1)
    rel[faces_in_order[tree]] = rel_pairs[pos]
    flip = [False] * (n_f + 1)
    rel_l, parent_l = rel.tolist(), pred.tolist()
    for f in faces_in_order.tolist():
        flip[f] = flip[parent_l[f]] ^ rel_l[f]
    return np.asarray(flip[:n_f], dtype=bool), labels, n_comp


def orient_faces(vertices, faces) -> np.ndarray:
    """Faces [F,3] (int64) re-wound consistently and outward, patch by patch (module docstring)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0 or len(v) == 0:
        return f.copy()
    _, weld = weld_map(v)  # exporters split vertices along UV and normal seams
    fw = weld[f]
    a, b, same = _manifold_pairs(fw)
    flip, labels, n_comp = _flip_parity(len(f), a, b, same)
    out = f.copy()
    out[flip] = out[flip][:, [0, 2, 1]]
    # Signed volume of each patch about its own centroid (area-weighted face centres).
    p0, p1, p2 = v[out[:, 0]], v[out[:, 1]], v[out[:, 2]]
    cross, area = face_geometry(v, out)
    centre = (p0 + p1 + p2) / 3.0
    w = np.bincount(labels, weights=area, minlength=n_comp)
    c = np.stack([np.bincount(labels, weights=area * centre[:, k], minlength=n_comp) for k in range(3)], 1)
    c /= np.maximum(w, 1e-300)[:, None]
    vol = np.bincount(labels, weights=np.einsum("ij,ij->i", centre - c[labels], cross), minlength=n_comp)
    inward = vol < 0
    turn = inward[labels]
    out[turn] = out[turn][:, [0, 2, 1]]
    return out
