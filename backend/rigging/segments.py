"""Rigid segments: the mesh cut into parts that each move as one rigid body.

Vertices are clustered by motion: each part gets, per frame, the rigid transform (rotation and
translation, Kabsch) that best carries its rest positions to where its vertices are, and each
vertex joins the part whose transforms explain its own path best; the two steps alternate (the
initialisation of Le & Deng's SSDR, 2012). Seeded by k-means++ on the vertices' whole paths, so
parts start where both place and motion agree.

Two uses: the `bench rig` baseline (one bone per part, no blending) and the start the skinning
decomposition refines (backend.rigging.skinning): its own start clusters by mesh connectivity,
which leaves meshes made of many separate pieces (the panda has hundreds) with pieces that stand
still bound to bones that move.
"""

from __future__ import annotations

import numpy as np

SEGMENT_ITERATIONS = 15
# A part with fewer vertices than this cannot pin a rotation: it is re-seeded where the fit is worst.
MIN_PART_VERTICES = 3


def rigid_fit(rest: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kabsch for many parts and frames at once.

    rest [V, 3], targets [T, V, 3], weights [K, V] (non-negative, one row per part) ->
    rotations [K, T, 3, 3] and translations [K, T, 3] minimising, per part and frame,
    sum_v w_kv |R x_v + t - y_tv|^2 (proper rotations: det +1)."""
    w = np.asarray(weights, dtype=np.float64)
    total = np.maximum(w.sum(axis=1), 1e-12)  # [K]
    rest_c = (w @ rest) / total[:, None]  # [K, 3]
    target_c = np.einsum("kv,tvi->kti", w, targets) / total[:, None, None]  # [K, T, 3]
    # H = sum_v w (x - cx)(y - cy)^T = sum_v w x y^T - total cx cy^T
    wx = w[:, :, None] * rest[None]  # [K, V, 3]
    h = np.einsum("kvi,tvj->ktij", wx, targets) - total[:, None, None, None] * np.einsum(
        "ki,ktj->ktij", rest_c, target_c)
    u, _, vt = np.linalg.svd(h)  # h = u s vt; the rotation is v diag(1, 1, d) u^T
    v, ut = vt.swapaxes(-1, -2), u.swapaxes(-1, -2)
    d = np.sign(np.linalg.det(v @ ut))
    fix = np.ones(h.shape[:-1])
    fix[..., 2] = np.where(d == 0, 1.0, d)  # a reflection would fit a mirrored part: never a bone's motion
    rot = v @ (fix[..., :, None] * ut)
    trans = target_c - np.einsum("ktij,kj->kti", rot, rest_c)
    return rot, trans


def rigid_segments(rest: np.ndarray, frames: np.ndarray, parts: int, *, iterations: int = SEGMENT_ITERATIONS,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rest [V, 3], frames [T, V, 3], parts K -> (labels [V], rotations [K, T, 3, 3],
    translations [K, T, 3]): each vertex's part and each part's rigid motion, rest -> frame t."""
    rest = np.asarray(rest, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64)
    n = len(rest)
    parts = int(min(parts, n))
    rng = np.random.default_rng(seed)
    paths = np.concatenate([rest[None], frames], axis=0).transpose(1, 0, 2).reshape(n, -1)
    labels = _kmeans_plus_plus_labels(paths, parts, rng)
    one_hot = np.zeros((parts, n))
    rot = trans = None
    for _ in range(iterations):
        one_hot[:] = 0.0
        one_hot[labels, np.arange(n)] = 1.0
        rot, trans = rigid_fit(rest, frames, one_hot)
        cost = _path_cost(rest, frames, rot, trans)  # [K, V]
        new = cost.argmin(axis=0)
        new = _reseed_small_parts(new, cost, parts)
        if np.array_equal(new, labels):
            break
        labels = new
    one_hot[:] = 0.0
    one_hot[labels, np.arange(n)] = 1.0
    rot, trans = rigid_fit(rest, frames, one_hot)
    return labels, rot, trans


def apply_segments(rest: np.ndarray, labels: np.ndarray, rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Every vertex carried by its part's rigid motion: -> [T, V, 3]."""
    return np.einsum("vtij,vj->tvi", rot[labels], rest) + trans[labels].transpose(1, 0, 2)


def _path_cost(rest, frames, rot, trans) -> np.ndarray:
    """Squared distance, summed over frames, of each vertex's path from each part's motion: [K, V]."""
    cost = np.zeros((rot.shape[0], len(rest)))
    for t in range(frames.shape[0]):  # a frame at a time: [K, V, 3] stays small
        moved = np.einsum("kij,vj->kvi", rot[:, t], rest) + trans[:, t, None, :]
        cost += ((moved - frames[t][None]) ** 2).sum(axis=-1)
    return cost


def _kmeans_plus_plus_labels(points: np.ndarray, k: int, rng) -> np.ndarray:
    centres = [points[rng.integers(len(points))]]
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        total = nearest.sum()
        pick = rng.integers(len(points)) if total <= 0 else rng.choice(len(points), p=nearest / total)
        centres.append(points[pick])
        nearest = np.minimum(nearest, ((points - centres[-1]) ** 2).sum(axis=1))
    centres = np.asarray(centres)
    # [V, K] distances, in blocks so a large mesh does not need V x K x D at once
    labels = np.empty(len(points), dtype=np.int64)
    for s in range(0, len(points), 4096):
        block = points[s:s + 4096]
        labels[s:s + 4096] = ((block[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    return labels


def _reseed_small_parts(labels: np.ndarray, cost: np.ndarray, parts: int) -> np.ndarray:
    """A part left with too few vertices takes the vertices its motion fits worst elsewhere."""
    counts = np.bincount(labels, minlength=parts)
    if counts.min() >= MIN_PART_VERTICES:
        return labels
    labels = labels.copy()
    worst = np.argsort(cost[labels, np.arange(len(labels))])[::-1]
    taken = 0
    for k in np.flatnonzero(counts < MIN_PART_VERTICES):
        for v in worst[taken:taken + MIN_PART_VERTICES]:
            if counts[labels[v]] > MIN_PART_VERTICES:
                counts[labels[v]] -= 1
                labels[v] = k
                counts[k] += 1
        taken += MIN_PART_VERTICES
    return labels
