"""rig.npz: a skinned rig and its animation, as `python -m backend rig` writes it and `--rig` reads it.

    rest_vertices [V, 3] float32   the mesh at rest (the animation's vertices), its coordinates
    faces         [F, 3] int64
    weights       [V, B] float32   per-vertex bone weights, non-negative, summing to 1
    bind          [B, 4, 4] float64  each joint's rest transform in the mesh's coordinates
    parents       [B] int64          each bone's parent, -1 for a root
    names         [B] str            bone names
    local         [T, B, 4, 4] float64  per frame, each joint's transform relative to its parent's
                                        (a root's: to the mesh's coordinates); may be empty (T = 0)
    fps           float
    connected     [B] bool (optional)   bones whose head stays at their parent's (they only turn)

A rig to animate (`--rig`) needs rest_vertices, weights, bind, parents and names (the add-on writes
them from an armature and its vertex groups); `local` and `fps` may be left out. Column vectors
throughout: a point moves as M @ [x, y, z, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput
from .mesh import atomic_write, load_npz


@dataclass
class RigFile:
    rest_vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    bind: np.ndarray
    parents: np.ndarray
    names: list
    local: np.ndarray
    fps: float
    connected: np.ndarray = None


def write_rig_npz(path: str | os.PathLike, rig: RigFile) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, rest_vertices=np.asarray(rig.rest_vertices, np.float32),
                     faces=np.asarray(rig.faces, np.int64), weights=np.asarray(rig.weights, np.float32),
                     bind=np.asarray(rig.bind, np.float64), parents=np.asarray(rig.parents, np.int64),
                     names=np.asarray(rig.names, dtype=str), local=np.asarray(rig.local, np.float64),
                     fps=np.float64(rig.fps),
                     connected=np.zeros(len(rig.parents), bool) if rig.connected is None else
                     np.asarray(rig.connected, bool))

    atomic_write(Path(path), write)


def read_rig_npz(path: str | os.PathLike) -> RigFile:
    """Load and check a rig.npz; BadInput naming the problem."""
    path = Path(path)
    data = load_npz(path, "rig", ("rest_vertices", "weights", "bind", "parents"))
    try:
        rest = np.asarray(data["rest_vertices"], np.float64)
        weights = np.asarray(data["weights"], np.float64)
        bind = np.asarray(data["bind"], np.float64)
        parents = np.asarray(data["parents"], np.int64)
        names = [str(n) for n in data["names"]] if "names" in data else [f"Bone_{b:02d}" for b in
                                                                          range(len(parents))]
        faces = np.asarray(data["faces"], np.int64) if "faces" in data else np.zeros((0, 3), np.int64)
        local = np.asarray(data["local"], np.float64) if "local" in data else np.zeros((0,) + bind.shape)
        fps = float(data["fps"]) if "fps" in data else 24.0
        connected = np.asarray(data["connected"], bool) if "connected" in data else np.zeros(len(parents), bool)
    except (TypeError, ValueError) as exc:  # arrays of the wrong kind (text where numbers belong)
        raise BadInput(f"{path.name} is not a valid rig.npz: {exc}") from exc
    _check(path.name, rest, weights, bind, parents, names)
    if connected.shape != parents.shape:
        raise BadInput(f"{path.name}: connected has {connected.shape}, expected one flag per bone")
    return RigFile(rest, faces, weights, bind, parents, names, local, fps, connected)


def _check(name, rest, weights, bind, parents, names) -> None:
    n_bones = len(parents)
    if rest.ndim != 2 or rest.shape[1] != 3:
        raise BadInput(f"{name}: rest_vertices has shape {rest.shape}, expected [V, 3]")
    if weights.shape != (len(rest), n_bones):
        raise BadInput(f"{name}: weights {weights.shape} do not match {len(rest)} vertices and {n_bones} bones")
    if bind.shape != (n_bones, 4, 4):
        raise BadInput(f"{name}: bind {bind.shape}, expected [{n_bones}, 4, 4]")
    if len(names) != n_bones:
        raise BadInput(f"{name}: {len(names)} bone names for {n_bones} bones")
    for label, array in (("rest_vertices", rest), ("weights", weights), ("bind", bind)):
        if not np.isfinite(array).all():
            raise BadInput(f"{name}: {label} contains NaN or infinite values")
    if (weights < 0).any():
        raise BadInput(f"{name}: negative weights")
    unweighted = np.flatnonzero(weights.sum(axis=1) <= 0)
    if len(unweighted):
        raise BadInput(f"{name}: {len(unweighted)} vertices have no bone weight (e.g. vertex {unweighted[0]}); "
                       "every vertex needs at least one bone")
    if ((parents < -1) | (parents >= n_bones)).any():
        raise BadInput(f"{name}: a parent index names no bone")
