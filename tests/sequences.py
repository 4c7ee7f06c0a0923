"""Small mesh sequences on disk for tests: a reference and frames of a different topology.

Deliberately simpler and faster than backend.synthetic: tests need seconds, not realism.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh


def bend(vertices: np.ndarray, t: float) -> np.ndarray:
    """Bend a shape standing along y sideways (a rotation about z growing with height), t in [0, 1].

    A bend, not a twist: a twist of a smooth body slides points along its own surface, which no
    closest-point method can see, so it would test nothing but luck.
    """
    x, y, z = vertices.T
    angle = 0.5 * t * y
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * x - s * y, s * x + c * y, z + 0.1 * t * y], axis=1)


def make_sequence(root: Path, n_frames: int = 4, ref_subdiv: int = 3, frame_subdiv: int = 4) -> dict:
    """reference.obj (an elongated icosphere) and sequence/frame_XXX.ply, each frame re-meshed finer."""
    root = Path(root)
    ref = trimesh.creation.icosphere(subdivisions=ref_subdiv)
    ref.vertices = ref.vertices * np.array([0.5, 1.2, 0.4])
    fine = trimesh.creation.icosphere(subdivisions=frame_subdiv)
    fine.vertices = fine.vertices * np.array([0.5, 1.2, 0.4])
    seq = root / "sequence"
    seq.mkdir(parents=True, exist_ok=True)
    ref_path = root / "reference.obj"
    trimesh.Trimesh(ref.vertices, ref.faces, process=False).export(ref_path)
    gt = []
    for i in range(n_frames):
        t = i / max(1, n_frames - 1)
        trimesh.Trimesh(bend(fine.vertices, t), fine.faces, process=False).export(seq / f"frame_{i:03d}.ply")
        gt.append(bend(ref.vertices, t))
    return {"reference": ref_path, "sequence": seq, "ref_vertices": np.asarray(ref.vertices),
            "gt_vertices": np.stack(gt)}
