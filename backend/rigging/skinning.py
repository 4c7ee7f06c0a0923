"""Skinning decomposition: bones, per-vertex weights and per-frame bone transforms that reproduce
a mesh animation (SSDR, Le & Deng 2012), through Dem Bones (EA SEED's open-source solver, BSD-3,
bound by the `py-dem-bones` wheel).

Linear blend skinning: frame t's vertex v is sum_b w_vb M_tb [x_v; 1], x the rest pose, M_tb bone
b's rigid transform rest -> frame t (column vectors), w non-negative, summing to 1, at most
`influences` non-zero per vertex.

New rig: the solver starts from rigid segments (backend.rigging.segments: one part per bone, its
vertices weighted 1) and alternates transforms and weights from there. Given rig: its weights are
held and only the transforms are solved.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput, Unsupported
from .segments import rigid_fit, rigid_segments

SOLVER_ITERATIONS = 20
TRANSFORM_ITERATIONS = 10
NO_SOLVER = ("the rig command needs the `py-dem-bones` package (Dem Bones, BSD-3), which has wheels for "
             "Linux x86_64, Windows x64 and macOS (Intel and Apple silicon) on Python 3.10-3.12; it is not "
             "installed in this backend's environment{why}. Install it with `python -m pip install "
             "py-dem-bones==0.13.1`, or rig on a machine it supports")


def _solver_module():
    try:
        from py_dem_bones import portable
        from py_dem_bones._py_dem_bones import DemBones
    except ImportError as exc:
        raise Unsupported(NO_SOLVER.format(why=f" ({exc})")) from None
    return portable, DemBones


def skin(rest: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Linear blend skinning: rest [V, 3], weights [V, B], transforms [T, B, 4, 4] -> [T, V, 3]."""
    homo = np.concatenate([rest, np.ones((len(rest), 1))], axis=1)
    out = np.zeros((transforms.shape[0], len(rest), 3))
    for t in range(transforms.shape[0]):  # a frame at a time: [B, V, 3] stays small
        moved = np.einsum("bij,vj->bvi", transforms[t, :, :3, :], homo)
        out[t] = np.einsum("vb,bvi->vi", weights, moved)
    return out


def decompose(rest: np.ndarray, frames: np.ndarray, faces: np.ndarray, bones: int, *, influences: int = 4,
              iterations: int = SOLVER_ITERATIONS, seed: int = 0, step=None) -> tuple[np.ndarray, np.ndarray]:
    """A new rig's weights [V, B] and transforms [T, B, 4, 4] for frames [T, V, 3] of rest [V, 3].
    step(message), when given, is called before each part (a progress report and a chance to
    cancel: the solver itself runs to its end once started)."""
    portable, dem_bones = _solver_module()
    if step:
        step(f"{bones} bones: rigid segments")
    labels, rot, trans = rigid_segments(rest, frames, bones, seed=seed)
    if step:
        step(f"{bones} bones: skinning decomposition")
    bones = rot.shape[0]
    solver = portable._prepare_solver(rest, frames, bones, faces=_polygons(faces), max_influences=influences,
                                      iterations=iterations, solver=dem_bones())
    start = np.zeros((bones, len(rest)))
    start[labels, np.arange(len(rest))] = 1.0
    solver.set_weights(start)
    solver.set_transformations(portable._pack_transformations(_matrices(rot, trans), bones))
    solver.compute()
    result = portable._read_skinning_result(solver)
    return _clean_weights(result.weights.T, influences), _rigid(result.transforms)


# Weights smoothed over near vertices that move together (pairs closer than SEAM_RADIUS of the
# diagonal at rest whose distance changes by at most SEAM_STRETCH of itself over the clip),
# SEAM_PASSES times by half: a mesh of separate pieces (the panda's jacket, buttons, eyes) keeps
# each piece on the bones of the surface under it, so fewer cracks open between them; limbs that
# only pass near each other are not joined. A radius, not k nearest: a dense piece's k nearest
# are its own vertices. Chosen on the tuning cases and the real panda clip's fit (seams, the
# neighbour-offset error of bench rig: panda-bend 0.144 -> 0.091 %, real panda 0.100 -> 0.088 %;
# vertex error 0.309 -> 0.294 %; sydney-run unchanged, 0.173 %).
SEAM_RADIUS, SEAM_STRETCH, SEAM_PASSES = 0.01, 0.2, 5


def smooth_weights(rest: np.ndarray, frames: np.ndarray, weights: np.ndarray, influences: int) -> np.ndarray:
    """weights [V, B] blended with those of near vertices that move together (see SEAM_*)."""
    from scipy.spatial import cKDTree

    diag = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    pairs = cKDTree(rest).query_pairs(SEAM_RADIUS * diag, output_type="ndarray")
    if not len(pairs):
        return weights
    i, j = pairs[:, 0], pairs[:, 1]
    apart = rest[i] - rest[j]
    change = np.zeros(len(i))
    for t in range(len(frames)):  # a frame at a time: [pairs, 3] stays small
        change = np.maximum(change, np.linalg.norm(frames[t][i] - frames[t][j] - apart, axis=1))
    keep = change <= SEAM_STRETCH * np.maximum(np.linalg.norm(apart, axis=1), 1e-12)
    i, j = i[keep], j[keep]
    count = np.bincount(i, minlength=len(rest)) + np.bincount(j, minlength=len(rest))
    share = 0.5 * (count > 0)[:, None]
    w = np.asarray(weights, np.float64)
    for _ in range(SEAM_PASSES):
        total = np.zeros_like(w)
        np.add.at(total, i, w[j])
        np.add.at(total, j, w[i])
        w = (1.0 - share) * w + share * total / np.maximum(count, 1)[:, None]
    return _clean_weights(w, influences)


def solve_transforms(rest: np.ndarray, frames: np.ndarray, faces: np.ndarray, weights: np.ndarray, *,
                     iterations: int = TRANSFORM_ITERATIONS) -> np.ndarray:
    """A given rig's transforms [T, B, 4, 4] for frames [T, V, 3]: its weights [V, B] held."""
    portable, dem_bones = _solver_module()
    bones = weights.shape[1]
    # Start from each bone's own rigid fit to the vertices it weighs most.
    rot, trans = rigid_fit(rest, frames, weights.T ** 2)
    solver = portable._prepare_solver(rest, frames, bones, faces=_polygons(faces),
                                      max_influences=max(1, int((weights > 0).sum(axis=1).max())),
                                      iterations=iterations, solver=dem_bones())
    solver.set_weights(np.ascontiguousarray(weights.T))
    solver.set_transformations(portable._pack_transformations(_matrices(rot, trans), bones))
    solver.nWeightsIters = 0
    solver.lockW = np.ones(len(rest))
    solver.compute()
    return _rigid(portable._read_skinning_result(solver).transforms)


def _polygons(faces) -> list:
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not len(faces):
        raise BadInput("the mesh has no faces: a rig needs a surface to spread its weights over")
    return faces.tolist()


def _matrices(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """[K, T, 3, 3] and [K, T, 3] -> [T, K, 4, 4]."""
    k, t = rot.shape[:2]
    out = np.zeros((t, k, 4, 4))
    out[:, :, :3, :3] = rot.transpose(1, 0, 2, 3)
    out[:, :, :3, 3] = trans.transpose(1, 0, 2)
    out[:, :, 3, 3] = 1.0
    return out


def _rigid(transforms: np.ndarray) -> np.ndarray:
    """The nearest proper rotation of every transform (the solver's are rigid up to rounding): a
    joint in glTF or Blender carries rotation and translation only."""
    out = np.array(transforms, dtype=np.float64)
    u, _, vt = np.linalg.svd(out[..., :3, :3])
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= np.where(d == 0, 1.0, d)[..., None]
    out[..., :3, :3] = u @ vt
    out[..., 3, :] = (0.0, 0.0, 0.0, 1.0)
    return out


def _clean_weights(weights: np.ndarray, influences: int) -> np.ndarray:
    """At most `influences` weights per vertex, non-negative, summing to 1."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if w.shape[1] > influences:
        drop = np.argsort(w, axis=1)[:, :-influences]
        np.put_along_axis(w, drop, 0.0, axis=1)
    total = w.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    w[empty] = 0.0
    w[empty, 0] = 1.0  # cannot happen with the solver's weights; a defined answer if it does
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
