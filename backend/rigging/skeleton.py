"""A skeleton for skinning transforms: where each bone sits, its parent, its motion per frame.

Skinning needs no skeleton (each bone's transform is its own), but an animator and an engine do.
A bone's joint sits at the weighted centre of the vertices it moves (the rest pose), unrotated:
its bind matrix is that translation. The root is the bone whose joint lies nearest the mesh's
centre; every other bone hangs from the neighbour it moves most like, joints near each other
first (a spanning tree over the bones, edge cost = the distance between joints as a share of the
mesh's size + how much their relative transform changes over the clip), so a forearm hangs from
its upper arm rather than from the head.

Global joint transforms per frame: G_tb = M_tb B_b (M the skinning transform rest -> frame t, B
the bind matrix); local ones: L_tb = G_t,parent(b)^-1 G_tb (the root's is its global). A vertex
then moves by sum_b w_vb G_tb B_b^-1 x_v, as glTF's and Blender's skinning compute it.
"""

from __future__ import annotations

import numpy as np


def joint_positions(rest: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B, 3]: each bone's joint at the weighted centre of the rest vertices it moves."""
    total = np.maximum(weights.sum(axis=0), 1e-12)
    return (weights.T @ rest) / total[:, None]


def bind_matrices(joints: np.ndarray) -> np.ndarray:
    """[B, 4, 4]: unrotated joints at their positions."""
    out = np.tile(np.eye(4), (len(joints), 1, 1))
    out[:, :3, 3] = joints
    return out


def hierarchy(rest: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """parents [B] (-1 for the root): see the module docstring."""
    joints = joint_positions(rest, weights)
    n = len(joints)
    if n == 1:
        return np.array([-1])
    size = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0))) or 1.0
    spread = np.linalg.norm(joints[:, None] - joints[None], axis=-1) / size
    cost = spread + _motion_difference(transforms, joints, size)
    centre = rest.mean(axis=0)
    root = int(np.linalg.norm(joints - centre, axis=1).argmin())
    parents = np.full(n, -1)
    inside = np.zeros(n, bool)
    inside[root] = True
    best = cost[root].copy()
    via = np.full(n, root)
    for _ in range(n - 1):  # Prim's spanning tree from the root
        candidates = np.where(inside, np.inf, best)
        b = int(candidates.argmin())
        parents[b] = via[b]
        inside[b] = True
        closer = cost[b] < best
        best = np.where(closer, cost[b], best)
        via = np.where(closer, b, via)
    return parents


def local_transforms(globals_: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """[T, B, 4, 4] joint transforms relative to their parent's (the root's: to the armature)."""
    out = globals_.copy()
    for b, p in enumerate(parents):
        if p >= 0:
            out[:, b] = np.linalg.inv(globals_[:, p]) @ globals_[:, b]
    return out


def global_transforms(locals_: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """The inverse of local_transforms (parents come before children in `order`)."""
    out = locals_.copy()
    for b in topological_order(parents):
        if parents[b] >= 0:
            out[:, b] = out[:, parents[b]] @ locals_[:, b]
    return out


def topological_order(parents: np.ndarray) -> list:
    """Bones with every parent before its children; ValueError on a cycle or a bad index."""
    parents = np.asarray(parents)
    n = len(parents)
    if ((parents < -1) | (parents >= n)).any():
        raise ValueError("a parent index names no bone")
    order, placed = [], np.zeros(n, bool)
    while len(order) < n:
        ready = [b for b in range(n) if not placed[b] and (parents[b] < 0 or placed[parents[b]])]
        if not ready:
            raise ValueError("the bones' parents form a cycle")
        for b in ready:
            placed[b] = True
            order.append(b)
    return order


def _motion_difference(transforms: np.ndarray, joints: np.ndarray, size: float) -> np.ndarray:
    """[B, B]: how far bone b's joint strays, over the clip, from where bone a's motion would carry
    it (0 for two bones that move as one), as a share of the mesh's size."""
    homo = np.concatenate([joints, np.ones((len(joints), 1))], axis=1)  # [B, 4]
    # where each bone's motion carries every joint: [T, A, B, 3]
    carried = np.einsum("taij,bj->tabi", transforms[:, :, :3, :], homo)
    actual = np.einsum("tbij,bj->tbi", transforms[:, :, :3, :], homo)  # [T, B, 3]
    stray = np.linalg.norm(carried - actual[:, None], axis=-1).mean(axis=0) / size  # [A, B]
    return 0.5 * (stray + stray.T)
