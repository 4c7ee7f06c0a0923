"""Face normals, face areas and vertex normals of triangle meshes: the one numpy implementation.

Vertex normals here are area-weighted (each face's normal counts by its area), the weighting the
solvers, the previews and the glTF writer's callers have always used. The Stage II network reads
different ones: `backend.models.temporal_autoencoder.vertex_normals` weights by corner angle, as
trimesh does and as the network was trained, in torch on the model's tensors; it stays beside the
network, since models/ and geometry/ are both bottom floors and neither imports the other.
"""

from __future__ import annotations

import numpy as np

# Below this length a summed normal has no direction worth keeping (vertices of degenerate faces).
_MIN_LENGTH = 1e-20


def face_geometry(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """(face normals scaled by twice the face's area [F, 3], face areas [F]).

    The normals follow the winding (counter-clockwise seen from outside points outwards); left
    unscaled so callers can weight by area without a second pass over the faces."""
    v = np.asarray(vertices)
    f = np.asarray(faces)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return n, 0.5 * np.linalg.norm(n, axis=1)


def face_areas(vertices, faces) -> np.ndarray:
    return face_geometry(vertices, faces)[1]


def face_normals_and_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (right-hand rule on the face winding) and areas per face, in float64."""
    n, area = face_geometry(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    return n / np.maximum(2.0 * area, 1e-300)[:, None], area


def vertex_normals(vertices, faces, check=lambda: None, chunk=400_000) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (zero for vertices in no face or only in
    degenerate ones). `check` is called after every `chunk` faces."""
    n = np.zeros((len(vertices), 3))
    # In chunks so huge meshes neither hold every face normal at once nor block a cancel.
    for start in range(0, len(faces), chunk):
        f = faces[start:start + chunk]
        n_face, _ = face_geometry(vertices, f)
        for k in range(3):
            for c in range(3):
                n[:, c] += np.bincount(f[:, k], weights=n_face[:, c], minlength=len(vertices))
        check()
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > _MIN_LENGTH)


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals shared by every copy of a position: vertices split along UV
    seams get one normal, so the seams do not show in the shading. [V, 3] float32, unit length
    (+z where a position has no face with an area). Positions match at float32, what a glTF stores."""
    positions, group = np.unique(np.asarray(vertices, dtype=np.float32), axis=0, return_inverse=True)
    group = group.reshape(-1)
    n = vertex_normals(positions.astype(np.float64), group[np.asarray(faces, dtype=np.int64).reshape(-1, 3)])[group]
    n[~n.any(axis=1)] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)
