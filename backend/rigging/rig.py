"""A rig from motion: a new armature for an animation, or an existing rig animated by it.

new_rig: the skinning decomposition (backend.rigging.skinning) at a bone count chosen by the error
it reaches (AUTO_BONES: 16 first, 32 where 16 misses AUTO_TARGET) or given, its weights smoothed
across pieces that move together and the transforms solved again for them; then the skeleton
(backend.rigging.skeleton): joints, parents, per-frame local transforms.
animate_rig: a rig's weights, joints and parents held; per-frame bone transforms solved.
Both return a Rig whose reconstruction error per frame is measured on what it exports (rigid
joint transforms, the weights as written).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInput
from .skeleton import bind_matrices, global_transforms, hierarchy, joint_positions, local_transforms
from .skinning import decompose, skin, smooth_weights, solve_transforms

# "auto" tries 16 bones, then 32 where 16 leave more than AUTO_TARGET of the bounding-box diagonal
# (the benchmark's 1 % bar, chosen before measuring anything: a mean error an animator would not
# see at a glance). More than 32 bones is rarely what an animator wants to key by hand.
AUTO_BONES = (16, 32)
AUTO_TARGET = 0.01
MAX_BONES = 128
MAX_INFLUENCES = 8  # glTF carries 4 per attribute set; two sets are as far as importers go


@dataclass
class Rig:
    rest: np.ndarray  # [V, 3]
    faces: np.ndarray  # [F, 3]
    weights: np.ndarray  # [V, B]
    bind: np.ndarray  # [B, 4, 4]
    parents: np.ndarray  # [B]
    names: list
    local: np.ndarray  # [T, B, 4, 4]
    error: np.ndarray = field(default=None)  # [T] mean vertex error / bounding-box diagonal
    tried: dict = field(default_factory=dict)  # bone count -> mean error (new_rig)

    @property
    def skinning_transforms(self) -> np.ndarray:
        """[T, B, 4, 4]: rest -> frame t for each bone (G_tb B_b^-1)."""
        return global_transforms(self.local, self.parents) @ np.linalg.inv(self.bind)[None]

    def posed(self) -> np.ndarray:
        """[T, V, 3]: the rest pose carried by the rig, frame by frame."""
        return skin(self.rest, self.weights, self.skinning_transforms)


def check_animation(rest: np.ndarray, frames: np.ndarray) -> float:
    """The bounding-box diagonal; BadInput for what no rig can be made from."""
    if rest.ndim != 2 or rest.shape[1] != 3 or len(rest) < 3:
        raise BadInput(f"a rig needs a mesh of at least 3 vertices, got {rest.shape}")
    if frames.ndim != 3 or frames.shape[1:] != rest.shape:
        raise BadInput(f"frames {frames.shape} do not match the mesh's {rest.shape}")
    if len(frames) < 2:
        raise BadInput(f"a rig follows motion: it needs at least 2 frames, got {len(frames)}")
    if not (np.isfinite(rest).all() and np.isfinite(frames).all()):
        raise BadInput("the animation contains NaN or infinite positions")
    diag = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    if diag <= 0:
        raise BadInput("the mesh has no extent: all its vertices are at one point")
    return diag


def new_rig(rest: np.ndarray, frames: np.ndarray, faces: np.ndarray, *, bones="auto", influences: int = 4,
            seed: int = 0, progress=None) -> Rig:
    """A new rig for frames [T, V, 3] of rest [V, 3] (see the module docstring). progress(step,
    total, message) before each part; it may raise to cancel (a job's progress does)."""
    rest, frames = np.asarray(rest, np.float64), np.asarray(frames, np.float64)
    diag = check_animation(rest, frames)
    influences = _count("influences", influences, MAX_INFLUENCES)
    counts = AUTO_BONES if bones == "auto" else (_count("bones", bones, MAX_BONES, " or 'auto'"),)
    best, tried = None, {}
    done = [0]
    total = 3 * len(counts)

    def step(message):
        if progress:
            progress(done[0], total, message)
        done[0] += 1

    for count in counts:
        weights, transforms = decompose(rest, frames, faces, min(count, len(rest)), influences=influences,
                                        seed=seed, step=step)
        step(f"{count} bones: weights across pieces, transforms again")
        weights = smooth_weights(rest, frames, weights, influences)
        transforms = solve_transforms(rest, frames, faces, weights)
        error = _error(skin(rest, weights, transforms), frames, diag)
        tried[weights.shape[1]] = float(error.mean())
        if best is None or error.mean() < best[2].mean():
            best = (weights, transforms, error)
        if bones == "auto" and error.mean() <= AUTO_TARGET:
            break
    weights, transforms, _ = best
    joints = joint_positions(rest, weights)
    bind = bind_matrices(joints)
    parents = hierarchy(rest, weights, transforms)
    local = local_transforms(transforms @ bind[None], parents)
    rig = Rig(rest, np.asarray(faces, np.int64), weights, bind, parents,
              [f"Bone_{b:02d}" for b in range(weights.shape[1])], local, tried=tried)
    rig.error = _error(rig.posed(), frames, diag)
    return rig


def animate_rig(rest: np.ndarray, frames: np.ndarray, faces: np.ndarray, *, weights: np.ndarray,
                bind: np.ndarray, parents: np.ndarray, names: list, connected=None) -> Rig:
    """A given rig (weights [V, B], bind [B, 4, 4], parents [B]) animated to follow frames [T, V, 3].
    connected [B] (optional): bones whose head is held at their parent's (Blender's connected
    bones ignore a location key): they keep their rest offset from the parent and turn only, and
    the error is measured on that."""
    rest, frames = np.asarray(rest, np.float64), np.asarray(frames, np.float64)
    diag = check_animation(rest, frames)
    weights = np.asarray(weights, np.float64)
    if weights.shape[0] != len(rest):
        raise BadInput(f"the rig weighs {weights.shape[0]} vertices; the animation has {len(rest)}")
    weights = weights / weights.sum(axis=1, keepdims=True)
    transforms = solve_transforms(rest, frames, faces, weights)
    bind, parents = np.asarray(bind, np.float64), np.asarray(parents, np.int64)
    local = local_transforms(transforms @ bind[None], parents)
    if connected is not None:
        local = _turn_only(rest, frames, weights, bind, parents, local, np.asarray(connected, bool))
    rig = Rig(rest, np.asarray(faces, np.int64), weights, np.asarray(bind, np.float64),
              np.asarray(parents, np.int64), list(names), local)
    rig.error = _error(rig.posed(), frames, diag)
    return rig


def _turn_only(rest, frames, weights, bind, parents, local, connected) -> np.ndarray:
    """Connected bones keep their rest offset from the parent and only turn: parents first, each
    such bone's rotation about its joint fitted (Kabsch with the centre held) to the vertices it
    weighs, as its parent now moves them."""
    from .skeleton import global_transforms, topological_order

    local = local.copy()
    homo = np.concatenate([rest, np.ones((len(rest), 1))], axis=1)
    for b in topological_order(parents):
        p = parents[b]
        if p < 0 or not connected[b]:
            continue
        rest_local = np.linalg.inv(bind[p]) @ bind[b]
        parent_global = global_transforms(local, parents)[:, p]  # [T, 4, 4]
        carry = parent_global @ rest_local  # the joint's frame if it did not turn
        u = (homo @ np.linalg.inv(bind[b]).T)[:, :3]  # vertices in the joint's rest frame
        w = weights[:, b] ** 2
        for t in range(len(frames)):
            z = (frames[t] - carry[t, :3, 3]) @ carry[t, :3, :3]  # targets in that frame
            h = (u * w[:, None]).T @ z
            uu, _, vt = np.linalg.svd(h)
            d = np.sign(np.linalg.det(vt.T @ uu.T)) or 1.0
            turn = np.eye(4)
            turn[:3, :3] = vt.T @ np.diag([1.0, 1.0, d]) @ uu.T
            local[t, b] = rest_local @ turn
    return local


def _error(posed: np.ndarray, frames: np.ndarray, diag: float) -> np.ndarray:
    return np.linalg.norm(posed - frames, axis=-1).mean(axis=1) / diag


def _count(name: str, value, most: int, also: str = "") -> int:
    """A count from 1 to `most`; BadInput naming `name` (and `also`, what else it may be) otherwise."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number{also}, got {value!r}") from None
    if not 1 <= count <= most:
        raise BadInput(f"{name} must be between 1 and {most}, got {count}")
    return count
