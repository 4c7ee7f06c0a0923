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


def fit_summary(fit) -> str:
    """One line on how well a job's result follows its input, from the result's "fit" (one shape
    for every fit: backend/pipelines/fit_report.py): a registration's mean surface distance
    (percent of the mesh's size) or a video fit's mean silhouette IoU, before -> after, and the
    frames held back at (or toward) their starting pose. Empty when the job ran no fit."""
    try:
        measure, before, after = fit["measure"], float(fit["before"]), float(fit["after"])
        held = [int(f) for f in fit.get("held_frames") or []]
    except (TypeError, KeyError, ValueError, AttributeError):
        return ""
    if measure == "silhouette_iou":
        line = f"silhouette IoU {before:.2f} -> {after:.2f}"
    elif measure == "surface_distance":
        line = f"surface fit {100 * before:.2f}% -> {100 * after:.2f}% of its size"
    else:
        return ""
    if held:
        shown = ", ".join(str(f) for f in held[:8]) + (" ..." if len(held) > 8 else "")
        line += f"; {len(held)} frame{'s' if len(held) != 1 else ''} held back (check {shown})"
    return line


def warnings_summary(warnings) -> str:
    """The job's warnings, for the status line: the first in full (it says what to check), and
    how many more (each is also in the info log)."""
    warnings = [str(w) for w in (warnings or [])]
    if not warnings:
        return ""
    more = f" (+{len(warnings) - 1} more in the info log)" if len(warnings) > 1 else ""
    return f"check: {warnings[0]}{more}"


def read_animation(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(vertices [V,3], triangles [F,3], offsets [T,V,3], fps) of an animation.npz with its own mesh
    (the `generate` job's result), checked."""
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"the backend reported success but {path.name} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            vertices = np.asarray(data["vertices"], dtype=np.float64)
            faces = np.asarray(data["faces"], dtype=np.int64)
    except Exception as exc:
        raise ResultError(f"could not read {path.name}: {exc}") from exc
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ResultError(f"result has vertices of shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= len(vertices))):
        raise ResultError("result faces do not index its vertices")
    if not np.isfinite(vertices).all():
        raise ResultError("result vertices contain NaN or infinite values")
    offsets, fps = read_offsets(path, len(vertices))
    return vertices, faces, offsets, fps


_GLB_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_GLB_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V,3], triangles [F,3]) of a binary glTF with triangle meshes (as the backend
    writes its stage1/ meshes), all primitives concatenated, node transforms ignored."""
    import json
    import struct

    data = Path(path).read_bytes()
    try:
        magic, _version, _length = struct.unpack_from("<4sII", data, 0)
        if magic != b"glTF":
            raise ValueError("not a binary glTF")
        offset, doc, binary = 12, None, b""
        while offset < len(data):
            size, kind = struct.unpack_from("<I4s", data, offset)
            chunk = data[offset + 8: offset + 8 + size]
            if kind == b"JSON":
                doc = json.loads(chunk)
            elif kind == b"BIN\x00":
                binary = chunk
            offset += 8 + size
        if doc is None:
            raise ValueError("no JSON chunk")

        def accessor(index):
            acc = doc["accessors"][index]
            view = doc["bufferViews"][acc["bufferView"]]
            dtype = np.dtype(_GLB_COMPONENTS[acc["componentType"]])
            width = _GLB_WIDTH[acc["type"]]
            start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
            stride = view.get("byteStride") or dtype.itemsize * width
            raw = np.frombuffer(binary, dtype=np.uint8, count=stride * (acc["count"] - 1) + dtype.itemsize * width,
                                offset=start) if acc["count"] else np.zeros(0, np.uint8)
            rows = np.lib.stride_tricks.as_strided(raw, shape=(acc["count"], dtype.itemsize * width),
                                                   strides=(stride, 1)).copy()
            return rows.view(dtype).reshape(acc["count"], width)

        vertices, faces, base = [], [], 0
        for mesh in doc.get("meshes", []):
            for prim in mesh["primitives"]:
                if prim.get("mode", 4) != 4:
                    continue
                v = accessor(prim["attributes"]["POSITION"]).astype(np.float64)
                f = (accessor(prim["indices"]).reshape(-1, 3).astype(np.int64) if "indices" in prim
                     else np.arange(len(v)).reshape(-1, 3))
                vertices.append(v)
                faces.append(f + base)
                base += len(v)
    except (ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
        raise ResultError(f"could not read {Path(path).name}: {exc}") from exc
    if not vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(vertices), np.concatenate(faces)


def write_animation_npz(path: Path, vertices: np.ndarray, triangles: np.ndarray, offsets: np.ndarray,
                        fps: float) -> None:
    """An animation.npz as the backend writes and reads it (vertices, faces, offsets, fps)."""
    with open(path, "wb") as f:
        np.savez(f, vertices=np.asarray(vertices, np.float32), faces=np.asarray(triangles, np.int64),
                 offsets=np.asarray(offsets, np.float32), fps=np.float32(fps))


def write_rig_npz(path: Path, rest: np.ndarray, triangles: np.ndarray, rig: dict) -> None:
    """A rig for `python -m backend rig --rig` (backend/io/rig.py's layout): the mesh at rest and
    `rig`'s weights [V, B], bind [B, 4, 4], parents [B] and names."""
    with open(path, "wb") as f:
        np.savez(f, rest_vertices=np.asarray(rest, np.float32), faces=np.asarray(triangles, np.int64),
                 weights=np.asarray(rig["weights"], np.float32), bind=np.asarray(rig["bind"], np.float64),
                 parents=np.asarray(rig["parents"], np.int64), names=np.asarray(rig["names"], dtype=str),
                 connected=np.asarray(rig.get("connected", np.zeros(len(rig["parents"]), bool)), bool))


def read_rig(path: Path, n_vertices: int) -> dict:
    """The rig job's rig.npz, checked against the mesh: weights [V, B], bind [B, 4, 4], parents [B],
    names [B], local [T, B, 4, 4]."""
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"the backend reported success but {path.name} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            rig = {"weights": np.asarray(data["weights"], np.float64), "bind": np.asarray(data["bind"], np.float64),
                   "parents": np.asarray(data["parents"], np.int64), "names": [str(n) for n in data["names"]],
                   "local": np.asarray(data["local"], np.float64)}
    except Exception as exc:
        raise ResultError(f"could not read {path.name}: {exc}") from exc
    bones = len(rig["parents"])
    if rig["weights"].shape != (n_vertices, bones) or rig["bind"].shape != (bones, 4, 4):
        raise ResultError(f"the rig has weights {rig['weights'].shape} and {bones} bones; the mesh has {n_vertices} "
                          "vertices")
    if rig["local"].ndim != 4 or rig["local"].shape[1:] != (bones, 4, 4) or not len(rig["local"]):
        raise ResultError(f"the rig's animation has shape {rig['local'].shape}")
    if not all(np.isfinite(rig[k]).all() for k in ("weights", "bind", "local")):
        raise ResultError("the rig contains NaN or infinite values")
    return rig
