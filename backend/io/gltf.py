"""Binary glTF writers: the animated mesh (one morph target per frame and an animation playing
them, write_animated_glb) and the rigged mesh (a skin, joints and their animation, write_skinned_glb).

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

_FLOAT, _UINT, _USHORT = 5126, 5125, 5123
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
    _write_glb(path, gltf, buf)


def _write_glb(path, gltf: dict, buf: _Buffer) -> None:
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


def write_skinned_glb(path, vertices: np.ndarray, faces: np.ndarray, *, weights: np.ndarray, bind: np.ndarray,
                      parents: np.ndarray, names: list, local: np.ndarray, fps: float, name: str = "ActionMesh",
                      normals: "np.ndarray | None" = None) -> None:
    """A skinned binary glTF: the mesh at rest, one joint node per bone (its rest pose as its TRS),
    a skin (joints, inverse bind matrices), JOINTS_n/WEIGHTS_n (4 influences a set, up to 2 sets),
    and one animation of every joint's translation and rotation (LINEAR, one key a frame).
    weights [V, B], bind [B, 4, 4] and local [T, B, 4, 4] as backend/io/rig.py describes them."""
    from scipy.spatial.transform import Rotation

    vertices = np.asarray(vertices, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float64)
    bind, local = np.asarray(bind, np.float64), np.asarray(local, np.float64)
    parents = np.asarray(parents, np.int64)
    n_bones, n_frames = len(parents), local.shape[0]
    if weights.shape != (len(vertices), n_bones) or bind.shape != (n_bones, 4, 4) or local.shape[1:] != bind.shape:
        raise ValueError(f"rig shapes do not agree: weights {weights.shape}, bind {bind.shape}, local {local.shape}")
    buf = _Buffer()
    attributes = {"POSITION": buf.add(vertices, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True)}
    if normals is not None:
        attributes["NORMAL"] = buf.add(np.asarray(normals, np.float32), _FLOAT, "VEC3", _ARRAY_BUFFER)
    joints_sets, weight_sets = _influence_sets(weights)
    for i, (j, w) in enumerate(zip(joints_sets, weight_sets)):
        attributes[f"JOINTS_{i}"] = buf.add(j, _USHORT, "VEC4", _ARRAY_BUFFER)
        attributes[f"WEIGHTS_{i}"] = buf.add(w, _FLOAT, "VEC4", _ARRAY_BUFFER)
    indices = buf.add(np.asarray(faces, dtype=np.uint32).reshape(-1), _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    inverse_bind = np.linalg.inv(bind).transpose(0, 2, 1).reshape(n_bones, 16).astype(np.float32)  # column-major
    ibm = buf.add(inverse_bind, _FLOAT, "MAT4", None)
    rest_local = np.array([bind[b] if parents[b] < 0 else np.linalg.inv(bind[parents[b]]) @ bind[b]
                           for b in range(n_bones)])
    joint_nodes = []
    for b in range(n_bones):
        node = {"name": str(names[b]), **_trs(rest_local[b], Rotation)}
        children = [1 + c for c in np.flatnonzero(parents == b)]
        if children:
            node["children"] = [int(c) for c in children]
        joint_nodes.append(node)
    times = buf.add(np.arange(n_frames, dtype=np.float32) / float(fps), _FLOAT, "SCALAR", None, minmax=True)
    samplers, channels = [], []
    for b in range(n_bones):
        quats = Rotation.from_matrix(local[:, b, :3, :3]).as_quat()
        for t in range(1, n_frames):  # the shorter way round between keys
            if np.dot(quats[t], quats[t - 1]) < 0:
                quats[t] = -quats[t]
        for path_name, values, kind in (("translation", local[:, b, :3, 3], "VEC3"), ("rotation", quats, "VEC4")):
            samplers.append({"input": times, "output": buf.add(values.astype(np.float32), _FLOAT, kind, None),
                             "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": 1 + b, "path": path_name}})
    roots = [1 + b for b in np.flatnonzero(parents < 0)]
    gltf = {
        "asset": {"version": "2.0", "generator": "ActionMesh for Blender backend"},
        "scene": 0,
        "scenes": [{"nodes": [0] + [int(r) for r in roots]}],
        "nodes": [{"mesh": 0, "skin": 0, "name": name}] + joint_nodes,
        "skins": [{"name": f"{name}_rig", "joints": [1 + b for b in range(n_bones)], "inverseBindMatrices": ibm}],
        "meshes": [{"name": name, "primitives": [{"attributes": attributes, "indices": indices, "mode": 4}]}],
        "animations": [{"name": f"{name}_rig_action", "samplers": samplers, "channels": channels}],
        "buffers": [{"byteLength": buf.length}],
        "bufferViews": buf.views,
        "accessors": buf.accessors,
    }
    _write_glb(path, gltf, buf)


def _influence_sets(weights: np.ndarray) -> tuple[list, list]:
    """JOINTS_n [V, 4] uint16 and WEIGHTS_n [V, 4] float32 sets holding every non-zero weight
    (largest first), renormalised to sum to 1 as glTF asks."""
    per_vertex = int(max(1, (weights > 0).sum(axis=1).max()))
    if per_vertex > 8:
        raise ValueError(f"{per_vertex} bones weigh one vertex; glTF importers read at most 8")
    sets = (per_vertex + 3) // 4
    order = np.argsort(-weights, axis=1)[:, :4 * sets]
    w = np.take_along_axis(weights, order, axis=1)
    w = w / w.sum(axis=1, keepdims=True)
    j = np.where(w > 0, order, 0).astype(np.uint16)
    w = w.astype(np.float32)
    return [j[:, 4 * i:4 * i + 4].copy() for i in range(sets)], [w[:, 4 * i:4 * i + 4].copy() for i in range(sets)]


def _trs(matrix: np.ndarray, rotation_class) -> dict:
    quat = rotation_class.from_matrix(matrix[:3, :3]).as_quat()
    return {"translation": [float(x) for x in matrix[:3, 3]], "rotation": [float(x) for x in quat]}
