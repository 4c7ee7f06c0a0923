"""A binary glTF of the reference mesh with one morph target per frame and an animation playing them.

trimesh writes no morph targets, so this is a small writer of our own: one mesh, one node,
POSITION deltas per target, and a weights animation with STEP keys so frame t shows target t
exactly. Blender's glTF importer turns the targets back into relative shape keys.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from .meshio import atomic_write

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


class _Buffer:
    def __init__(self):
        self.chunks: list[bytes] = []
        self.views: list[dict] = []
        self.accessors: list[dict] = []
        self.length = 0

    def add(self, array: np.ndarray, component: int, kind: str, target: int | None, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        pad = (-self.length) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.length += pad
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.chunks.append(data)
        self.length += len(data)
        accessor = {"bufferView": len(self.views) - 1, "componentType": component,
                    "count": int(array.shape[0]), "type": kind}
        if minmax:
            flat = array.reshape(array.shape[0], -1)
            accessor["min"] = [float(x) for x in flat.min(axis=0)]
            accessor["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def write_animated_glb(path, vertices: np.ndarray, faces: np.ndarray, offsets: np.ndarray, fps: float,
                       name: str = "ActionMesh") -> None:
    vertices = np.asarray(vertices, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.float32)
    n_frames = offsets.shape[0]
    buf = _Buffer()
    position = buf.add(vertices, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True)
    indices = buf.add(np.asarray(faces, dtype=np.uint32).reshape(-1), _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": buf.add(offsets[t], _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True)}
               for t in range(n_frames)]
    times = buf.add(np.arange(n_frames, dtype=np.float32) / float(fps), _FLOAT, "SCALAR", None, minmax=True)
    weights = buf.add(np.eye(n_frames, dtype=np.float32).reshape(-1), _FLOAT, "SCALAR", None)
    names = [f"AM_{t:03d}" for t in range(n_frames)]
    gltf = {
        "asset": {"version": "2.0", "generator": "ActionMesh for Blender backend"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "weights": [0.0] * n_frames, "extras": {"targetNames": names},
                    "primitives": [{"attributes": {"POSITION": position}, "indices": indices,
                                    "mode": 4, "targets": targets}]}],
        "animations": [{"name": f"{name}_deform",
                        "samplers": [{"input": times, "output": weights, "interpolation": "STEP"}],
                        "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}],
        "buffers": [{"byteLength": buf.length}],
        "bufferViews": buf.views,
        "accessors": buf.accessors,
    }
    body = b"".join(buf.chunks)
    body += b"\0" * ((-len(body)) % 4)
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * ((-len(js)) % 4)
    blob = (struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(js) + 8 + len(body))
            + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(body), 0x004E4942) + body)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(blob)

    atomic_write(path, write)
