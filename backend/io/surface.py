"""What a mesh file carries besides its shape (UVs, a material), for the animated glTF written on
its vertices. Kept apart from backend.io.mesh, which reads shapes only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .mesh import Mesh

@dataclass
class SurfaceAttributes:
    """What a mesh file carries besides its shape, for the animated glTF written on its vertices.

    uv: [V,2] float64 in trimesh's (and Blender's, and OBJ's) convention, origin at the image's
    bottom left, aligned with `load_mesh`'s vertices; None when the file has none.
    material: a plain dict for backend.io.gltf (name, baseColorFactor, metallicFactor,
    roughnessFactor, alphaMode, alphaCutoff, doubleSided, and baseColorTexture = {"image": PNG or
    JPEG bytes, "mimeType", "sampler": glTF sampler dict or None, "transform": KHR_texture_transform
    dict or None}); None when there is none or it cannot be carried over faithfully.
    warnings: what was not carried over, for the job's warnings.
    """

    uv: "np.ndarray | None" = None
    material: "dict | None" = None
    warnings: list = field(default_factory=list)


def load_surface_attributes(path: str | os.PathLike, mesh: "Mesh | None" = None) -> SurfaceAttributes:
    """The UVs and material of a mesh file, aligned with `load_mesh(path)`'s vertices.

    Never raises for a readable mesh: anything that cannot be carried over becomes a warning.
    `mesh` (what load_mesh returned for the same file) is used to check the alignment.

    How the alignment is kept: `trimesh.load(path, process=False, force="mesh")` (load_mesh) is
    `util.concatenate` of the Trimesh parts of the scene's `dump()`, in that order. So the file is
    read here as that scene and each part's own UVs are concatenated in the same order: for one
    part this is exactly force="mesh"'s UV array; for several (primitives, materials, instances)
    it keeps each part's original UVs, where force="mesh" would have re-packed them into a texture
    atlas of its own. The concatenated positions are then compared with load_mesh's.
    """
    path = Path(path)
    try:
        return _surface_attributes(path, mesh)
    except Exception as exc:  # a texture or material we cannot read must not fail the job
        return SurfaceAttributes(warnings=[f"{path.name}: its UVs and material could not be read ({exc}); "
                                           "the animation is written without them"])


def _surface_attributes(path: Path, mesh: "Mesh | None") -> SurfaceAttributes:
    import trimesh

    out = SurfaceAttributes()
    scene = trimesh.load(str(path), process=False, force="scene")
    parts = [d for d in scene.dump() if isinstance(d, trimesh.Trimesh)]
    if not parts:
        return out
    uvs = [getattr(p.visual, "uv", None) if getattr(p.visual, "kind", None) == "texture" else None for p in parts]
    uvs = [None if uv is None or np.shape(uv) != (len(p.vertices), 2) else np.asarray(uv, np.float64)
           for uv, p in zip(uvs, parts)]
    if mesh is not None:
        stacked = np.concatenate([np.asarray(p.vertices, np.float32) for p in parts]).astype(np.float64)
        if stacked.shape != mesh.vertices.shape or not np.array_equal(stacked, mesh.vertices):
            out.warnings.append(f"{path.name}: its UVs could not be matched to its vertices; "
                                "the animation is written without UVs or material")
            return out
    if any(uv is not None for uv in uvs):
        if any(uv is None for uv in uvs):
            out.warnings.append(f"{path.name}: some of its parts have no UVs (set to 0 there)")
        out.uv = np.concatenate([np.zeros((len(p.vertices), 2)) if uv is None else uv for uv, p in zip(uvs, parts)])
    if len(parts) > 1:
        out.warnings.append(f"{path.name} has {len(parts)} parts (primitives/materials) merged into one mesh: "
                            "its UVs are kept but no material is carried over (assign it again in Blender)")
        return out
    if path.suffix.lower() in (".glb", ".gltf"):
        out.material = _gltf_material(path, out.uv is not None, out.warnings)
    else:
        out.material = _trimesh_material(path, parts[0], out.uv is not None, out.warnings)
    return out


def _image_bytes(data: bytes) -> tuple[bytes, str]:
    """(bytes, mimeType) glTF core accepts: PNG and JPEG as they are, anything PIL reads as PNG."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return data, "image/jpeg"
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return _png_bytes(img), "image/png"


def _png_bytes(img) -> bytes:
    import io

    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _read_gltf(path: Path) -> tuple[dict, list[bytes]]:
    """The glTF JSON and its buffers (GLB binary chunk, data: URIs, or files next to a .gltf)."""
    import base64
    import json
    import struct
    from urllib.parse import unquote

    raw = path.read_bytes()
    binary = None
    if raw[:4] == b"glTF":
        offset, gltf = 12, None
        while offset + 8 <= len(raw):
            length, kind = struct.unpack_from("<II", raw, offset)
            chunk = raw[offset + 8:offset + 8 + length]
            if kind == 0x4E4F534A:
                gltf = json.loads(chunk)
            elif kind == 0x004E4942 and binary is None:
                binary = chunk
            offset += 8 + length
    else:
        gltf = json.loads(raw)
    buffers = []
    for i, b in enumerate(gltf.get("buffers", [])):
        uri = b.get("uri")
        if uri is None:
            buffers.append(binary if i == 0 and binary is not None else b"")
        elif uri.startswith("data:"):
            buffers.append(base64.b64decode(uri.split(",", 1)[1]))
        else:
            buffers.append((path.parent / unquote(uri)).read_bytes())
    return gltf, buffers


def _gltf_material(path: Path, has_uv: bool, warnings: list) -> "dict | None":
    """The material of a glTF's one triangle primitive, read from the file's own JSON.

    Read directly rather than from trimesh's PBRMaterial: this keeps the image's own bytes (a
    JPEG stays the JPEG, not a decoded and re-encoded PNG several times its size), its sampler,
    alphaCutoff and a KHR_texture_transform, which trimesh drops.
    """
    from urllib.parse import unquote

    gltf, buffers = _read_gltf(path)
    nodes, meshes = gltf.get("nodes", []), gltf.get("meshes", [])
    scenes = gltf.get("scenes", [])
    if scenes:
        stack = list(scenes[gltf.get("scene", 0)].get("nodes", []))
        node_ids = []
        while stack:
            n = stack.pop()
            node_ids.append(n)
            stack.extend(nodes[n].get("children", []))
    else:
        node_ids = range(len(nodes))
    prims = [p for n in node_ids if "mesh" in nodes[n] for p in meshes[nodes[n]["mesh"]].get("primitives", [])
             if p.get("mode", 4) in (4, 5, 6)]
    if len(prims) != 1:  # trimesh saw one part; the file disagrees: rather no material than a wrong one
        warnings.append(f"{path.name}: its material could not be matched to its mesh; none is carried over")
        return None
    if "material" not in prims[0]:
        return None
    src = gltf["materials"][prims[0]["material"]]
    pbr = src.get("pbrMetallicRoughness", {})
    material = {"name": src.get("name", "material"),
                "baseColorFactor": [float(x) for x in pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0])],
                "metallicFactor": float(pbr.get("metallicFactor", 1.0)),
                "roughnessFactor": float(pbr.get("roughnessFactor", 1.0)),
                "alphaMode": src.get("alphaMode", "OPAQUE"), "alphaCutoff": float(src.get("alphaCutoff", 0.5)),
                "doubleSided": bool(src.get("doubleSided", False)), "baseColorTexture": None}
    dropped = [k for k in ("metallicRoughnessTexture",) if k in pbr]
    dropped += [k for k in ("normalTexture", "occlusionTexture", "emissiveTexture") if k in src]
    info = pbr.get("baseColorTexture")
    if info is not None:
        transform = (info.get("extensions") or {}).get("KHR_texture_transform")
        tex_coord = (transform or {}).get("texCoord", info.get("texCoord", 0))
        texture = gltf["textures"][info["index"]]
        source = texture.get("source")
        if source is None:  # e.g. EXT_texture_webp: its image is in the extension
            source = next((e["source"] for e in (texture.get("extensions") or {}).values()
                           if isinstance(e, dict) and "source" in e), None)
        if not has_uv or tex_coord != 0 or source is None:
            dropped.append("baseColorTexture")
        else:
            image = gltf["images"][source]
            if "bufferView" in image:
                view = gltf["bufferViews"][image["bufferView"]]
                start = view.get("byteOffset", 0)
                data = buffers[view["buffer"]][start:start + view["byteLength"]]
            elif image.get("uri", "").startswith("data:"):
                import base64

                data = base64.b64decode(image["uri"].split(",", 1)[1])
            else:
                data = (path.parent / unquote(image["uri"])).read_bytes()
            data, mime = _image_bytes(data)
            sampler = gltf["samplers"][texture["sampler"]] if "sampler" in texture else None
            if transform is not None:
                transform = {k: v for k, v in transform.items() if k in ("offset", "rotation", "scale")} or None
            material["baseColorTexture"] = {"image": data, "mimeType": mime, "name": image.get("name"),
                                            "sampler": sampler, "transform": transform}
    if dropped:
        warnings.append(f"{path.name}: its material's {', '.join(dropped)} not carried over "
                        "(only the base colour, metallic/roughness factors, alpha and sidedness are)")
    return material


def _trimesh_material(path: Path, part, has_uv: bool, warnings: list) -> "dict | None":
    """An OBJ's (or other format's) material as trimesh read it: its base colour and texture."""
    from trimesh.visual.material import PBRMaterial, SimpleMaterial

    mat = getattr(part.visual, "material", None) if getattr(part.visual, "kind", None) == "texture" else None
    if mat is None:
        return None
    if isinstance(mat, PBRMaterial):
        image = mat.baseColorTexture
        factor = mat.baseColorFactor
        factor = [1.0, 1.0, 1.0, 1.0] if factor is None else [float(x) / 255.0 for x in np.asarray(factor)]
        material = {"name": mat.name or path.stem, "baseColorFactor": factor,
                    "metallicFactor": float(1.0 if mat.metallicFactor is None else mat.metallicFactor),
                    "roughnessFactor": float(1.0 if mat.roughnessFactor is None else mat.roughnessFactor),
                    "alphaMode": mat.alphaMode or "OPAQUE",
                    "alphaCutoff": float(0.5 if mat.alphaCutoff is None else mat.alphaCutoff),
                    "doubleSided": bool(mat.doubleSided)}
    elif isinstance(mat, SimpleMaterial):
        image = getattr(mat, "image", None)
        diffuse = np.asarray(getattr(mat, "diffuse", [255, 255, 255, 255]), dtype=np.float64).reshape(-1)
        # As Blender's OBJ importer does: with a map_Kd the texture alone is the base colour
        # (exporters write Kd 0.8 beside it); without one, Kd is.
        factor = [1.0, 1.0, 1.0, 1.0] if image is not None else [float(x) / 255.0 for x in diffuse[:4]]
        if len(factor) == 3:
            factor.append(1.0)
        material = {"name": mat.name or path.stem, "baseColorFactor": factor, "metallicFactor": 0.0,
                    "roughnessFactor": 1.0, "alphaMode": "OPAQUE", "alphaCutoff": 0.5, "doubleSided": False}
    else:
        return None
    material["baseColorTexture"] = None
    if image is not None and has_uv:
        if material["alphaMode"] == "OPAQUE" and "A" in image.getbands():
            alpha = np.asarray(image.getchannel("A"))
            if alpha.size and alpha.min() < 255 and isinstance(mat, SimpleMaterial):
                material["alphaMode"] = "BLEND"
        material["baseColorTexture"] = {"image": _png_bytes(image), "mimeType": "image/png", "name": None,
                                        "sampler": None, "transform": None}
    elif image is not None:
        warnings.append(f"{path.name}: it has a texture but no UVs; the texture is not carried over")
    return material
