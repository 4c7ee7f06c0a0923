# SPDX-License-Identifier: GPL-3.0-or-later
"""Files the add-on and the backend exchange through a job folder (numpy only, no bpy).

The reference goes out as binary PLY, which keeps vertex order exactly (the backend reads it
with trimesh's process=False); the result comes back as animation.npz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ResultError(ValueError):
    """The backend's result file is missing, unreadable or does not fit the mesh."""


def write_ply(path: Path, vertices: np.ndarray, triangles: np.ndarray) -> None:
    vertices = np.ascontiguousarray(vertices, dtype="<f4").reshape(-1, 3)
    triangles = np.ascontiguousarray(triangles, dtype="<i4").reshape(-1, 3)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(triangles)}\nproperty list uchar int vertex_indices\nend_header\n")
    faces = np.empty(len(triangles), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    faces["n"] = 3
    faces["v"] = triangles
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertices.tobytes())
        f.write(faces.tobytes())


def read_offsets(path: Path, n_vertices: int) -> tuple[np.ndarray, float]:
    """Offsets [T,V,3] float32 and fps from an animation.npz, checked against the mesh."""
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"the backend reported success but {path.name} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            offsets = np.asarray(data["offsets"], dtype=np.float32)
            fps = float(data["fps"]) if "fps" in data else 24.0
    except Exception as exc:
        raise ResultError(f"could not read {path.name}: {exc}") from exc
    if offsets.ndim != 3 or offsets.shape[1:] != (n_vertices, 3):
        raise ResultError(f"result has offsets of shape {offsets.shape}, expected (frames, {n_vertices}, 3)")
    if not np.isfinite(offsets).all():
        raise ResultError("result offsets contain NaN or infinite values")
    return offsets, fps


def fit_summary(frame_fit) -> str:
    """One line on how well the frames fit, from the backend's per-frame report ("frame_fit"):
    the mean surface distance before and after (percent of the mesh's size), and the frames whose
    result was held back at its starting pose. Empty when the report is missing."""
    try:
        before = [float(e["fit_before"]) for e in frame_fit]
        after = [float(e["fit_after"]) for e in frame_fit]
        held = [int(e["frame"]) for e in frame_fit if not e["accepted"]]
    except (TypeError, KeyError, ValueError):
        return ""
    if not before:
        return ""
    line = f"surface fit {100 * sum(before) / len(before):.2f}% -> {100 * sum(after) / len(after):.2f}% of its size"
    if held:
        shown = ", ".join(str(f) for f in held[:8]) + (" ..." if len(held) > 8 else "")
        line += f"; held back (check): frame{'s' if len(held) > 1 else ''} {shown}"
    return line
