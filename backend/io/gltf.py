"""A binary glTF of the reference mesh with one morph target per frame and an animation playing them.

trimesh writes no morph targets, so this is a small writer of our own: one mesh, one node,
POSITION deltas per target, and a weights animation with STEP keys so frame t shows target t
exactly. Blender's glTF importer turns the targets back into relative shape keys.

Optionally the base carries the source mesh's surface: TEXCOORD_0 (given in trimesh's and
Blender's convention, origin at the image's bottom left, written as glTF's top-left v' = 1 - v),
a NORMAL per vertex (without one Blender's importer shades every face flat; the caller computes
them, e.g. backend.geometry.normals.smooth_normals), and one material
(base colour factor and texture with its image embedded as a bufferView, metallic/roughness
factors, alpha mode, double-sided), as backend.io.surface.load_surface_attributes returns it.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from .mesh import atomic_write

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


class _Buffer:
    def __init__(self):
        self.chunks: list[bytes] = []
        self.views: list[dict] = []
        self.accessors: list[dict] = []
        self.length = 0

    def add_bytes(self, data: bytes) -> int:
        """A plain bufferView (an embedded image): -> its index."""
        pad = (-self.length) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.length += pad
        self.views.append({"buffer": 0, "byteOffset": self.length, "byteLength": len(data)})
        self.chunks.append(bytes(data))
        self.length += len(data)
        return len(self.views) - 1

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


def _material_json(material: dict, buf: "_Buffer", gltf: dict, has_uv: bool) -> None:
    """materials/textures/images/samplers for one material dict (see backend.io.surface.SurfaceAttributes)."""
    out = {"name": str(material.get("name") or "material"),
           "pbrMetallicRoughness": {
               "baseColorFactor": [float(x) for x in material.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0])],
               "metallicFactor": float(material.get("metallicFactor", 1.0)),
               "roughnessFactor": float(material.get("roughnessFactor", 1.0))},
           "doubleSided": bool(material.get("doubleSided", False))}
    alpha = material.get("alphaMode", "OPAQUE")
    if alpha in ("MASK", "BLEND"):
        out["alphaMode"] = alpha
        if alpha == "MASK":
            out["alphaCutoff"] = float(material.get("alphaCutoff", 0.5))
    tex = material.get("baseColorTexture") if has_uv else None  # no UVs: nothing to map it with
    if tex is not None:
        view = buf.add_bytes(tex["image"])
        image = {"bufferView": view, "mimeType": tex["mimeType"]}
        if tex.get("name"):
            image["name"] = str(tex["name"])
        texture = {"source": 0}
        if tex.get("sampler"):
            gltf["samplers"] = [{k: v for k, v in tex["sampler"].items()
                                 if k in ("magFilter", "minFilter", "wrapS", "wrapT")}]
            texture["sampler"] = 0
        info = {"index": 0}
        if tex.get("transform"):
            info["extensions"] = {"KHR_texture_transform": dict(tex["transform"])}
            gltf["extensionsUsed"] = ["KHR_texture_transform"]
        gltf["images"], gltf["textures"] = [image], [texture]
        out["pbrMetallicRoughness"]["baseColorTexture"] = info
    gltf["materials"] = [out]


def write_animated_glb(path, vertices: np.ndarray, faces: np.ndarray, offsets: np.ndarray, fps: float,
                       name: str = "ActionMesh", *, uv: np.ndarray | None = None, material: dict | None = None,
                       normals: "np.ndarray | None" = None) -> None:
    """uv: [V,2] in trimesh's/Blender's convention (v up from the image's bottom), or None.
    material: a dict as backend.io.surface.load_surface_attributes returns it, or None.
    normals: [V,3] (backend.geometry.normals.smooth_normals), or None for none."""
    vertices = np.asarray(vertices, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.float32)
    n_frames = offsets.shape[0]
    buf = _Buffer()
    position = buf.add(vertices, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True)
    attributes = {"POSITION": position}
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float32)
        if normals.shape != vertices.shape:
            raise ValueError(f"normals {normals.shape} do not match vertices {vertices.shape}")
        attributes["NORMAL"] = buf.add(normals, _FLOAT, "VEC3", _ARRAY_BUFFER)
    if uv is not None:
        uv = np.asarray(uv, dtype=np.float64)
        if uv.shape != (len(vertices), 2):
            raise ValueError(f"uv {uv.shape} does not match {len(vertices)} vertices")
        # glTF's v runs down from the image's top: v' = 1 - v (exact in float64, so reading it
        # back and flipping again gives the source's float32 numbers).
        attributes["TEXCOORD_0"] = buf.add(np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32),
                                           _FLOAT, "VEC2", _ARRAY_BUFFER)
    indices = buf.add(np.asarray(faces, dtype=np.uint32).reshape(-1), _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": buf.add(offsets[t], _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True)}
               for t in range(n_frames)]
    times = buf.add(np.arange(n_frames, dtype=np.float32) / float(fps), _FLOAT, "SCALAR", None, minmax=True)
    weights = buf.add(np.eye(n_frames, dtype=np.float32).reshape(-1), _FLOAT, "SCALAR", None)
    names = [f"AM_{t:03d}" for t in range(n_frames)]
    primitive = {"attributes": attributes, "indices": indices, "mode": 4, "targets": targets}
    gltf = {
        "asset": {"version": "2.0", "generator": "ActionMesh for Blender backend"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "weights": [0.0] * n_frames, "extras": {"targetNames": names},
                    "primitives": [primitive]}],
        "animations": [{"name": f"{name}_deform",
                        "samplers": [{"input": times, "output": weights, "interpolation": "STEP"}],
                        "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}],
        "buffers": [{"byteLength": buf.length}],
        "bufferViews": buf.views,
        "accessors": buf.accessors,
    }
    if material is not None:
        _material_json(material, buf, gltf, uv is not None)  # after the accessors: only appends a bufferView
        primitive["material"] = 0
        gltf["buffers"][0]["byteLength"] = buf.length
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
