"""animated.glb on a textured mesh (backend.io.gltf + backend.io.surface.load_surface_attributes).

In mesh mode the result lies on the given mesh's own vertices, so its UVs and material can travel
with it: panda.glb (the release's textured example) written with a few frames of offsets must
read back with the same vertices in the same order, the same UVs, its JPEG texture and one morph
target per frame, in trimesh and in Blender's own importer (shape keys, UV layer, image texture).
No models: every test here takes seconds.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from blender_harness import missing_data, run_blender

FRAMES = 4


def _read_glb(path: Path) -> tuple[dict, bytes]:
    raw = Path(path).read_bytes()
    assert raw[:4] == b"glTF" and struct.unpack_from("<I", raw, 8)[0] == len(raw)
    length = struct.unpack_from("<I", raw, 12)[0]
    gltf = json.loads(raw[20:20 + length])
    blen = struct.unpack_from("<I", raw, 20 + length)[0]
    return gltf, raw[28 + length:28 + length + blen]


def _accessor(gltf: dict, body: bytes, index: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    assert "byteStride" not in view
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc["type"]]
    dtype = {5126: np.float32, 5125: np.uint32}[acc["componentType"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(body, dtype, acc["count"] * width, start).reshape(acc["count"], width)


def _image(gltf: dict, body: bytes) -> bytes:
    view = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
    return body[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]


@pytest.fixture(scope="module")
def panda_glb(tmp_path_factory):
    """(source path, load_mesh's Mesh, SurfaceAttributes, offsets, written animated.glb)."""
    from blender_harness import SHARED

    from backend.geometry.normals import smooth_normals
    from backend.io.gltf import write_animated_glb
    from backend.io.mesh import load_mesh
    from backend.io.surface import load_surface_attributes

    source = SHARED / "examples" / "panda" / "panda.glb"
    if not source.is_file():
        missing_data(f"needs the shared example data at {source.parent.parent} "
                     "(present in CI, absent in a user's clone)")
    mesh = load_mesh(source)
    surface = load_surface_attributes(source, mesh)
    rng = np.random.default_rng(0)
    offsets = (rng.normal(scale=0.01, size=(FRAMES,) + mesh.vertices.shape)).astype(np.float32)
    offsets[0] = 0
    out = tmp_path_factory.mktemp("panda_glb") / "animated.glb"
    write_animated_glb(out, mesh.vertices, mesh.faces, offsets, 24.0, name="panda", uv=surface.uv,
                       material=surface.material, normals=smooth_normals(mesh.vertices, mesh.faces))
    return source, mesh, surface, offsets, out


def test_panda_surface_attributes(panda_glb):
    import trimesh

    source, mesh, surface, _, _ = panda_glb
    given = trimesh.load(str(source), process=False, force="mesh")
    assert surface.warnings == []
    assert np.array_equal(surface.uv, given.visual.uv)  # the same array load_mesh's vertices index
    mat = surface.material
    assert mat["doubleSided"] is True and mat["metallicFactor"] == 0.0 and mat["alphaMode"] == "OPAQUE"
    tex = mat["baseColorTexture"]
    assert tex["mimeType"] == "image/jpeg" and tex["image"][:3] == b"\xff\xd8\xff"  # the file's own JPEG


def test_panda_animated_glb_reads_back(panda_glb):
    import trimesh
    from PIL import Image

    source, mesh, surface, offsets, out = panda_glb
    gltf, body = _read_glb(out)
    src_gltf, src_body = _read_glb(source)
    prim = gltf["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0"} and prim["material"] == 0

    # vertices, order, faces
    assert np.array_equal(_accessor(gltf, body, prim["attributes"]["POSITION"]), mesh.vertices.astype(np.float32))
    assert np.array_equal(_accessor(gltf, body, prim["indices"]).reshape(-1, 3), mesh.faces)
    # UVs: glTF's own numbers are the source file's own numbers (both top-left origin)
    src_uv = _accessor(src_gltf, src_body, src_gltf["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    assert np.array_equal(_accessor(gltf, body, prim["attributes"]["TEXCOORD_0"]), src_uv)
    normals = _accessor(gltf, body, prim["attributes"]["NORMAL"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    # morph targets: one per frame, the offsets themselves
    assert len(prim["targets"]) == FRAMES
    for t, target in enumerate(prim["targets"]):
        assert np.array_equal(_accessor(gltf, body, target["POSITION"]), offsets[t])
    assert gltf["meshes"][0]["extras"]["targetNames"] == [f"AM_{t:03d}" for t in range(FRAMES)]
    # material and the embedded image
    material = gltf["materials"][0]
    assert material["doubleSided"] is True and material["pbrMetallicRoughness"]["metallicFactor"] == 0.0
    assert material["pbrMetallicRoughness"]["baseColorTexture"] == {"index": 0}
    assert gltf["textures"][0]["source"] == 0 and gltf["samplers"][0]["minFilter"] == 9987
    assert _image(gltf, body) == _image(src_gltf, src_body)
    assert Image.open(io.BytesIO(_image(gltf, body))).size == (2048, 2048)

    # and trimesh reads it as the source: same vertices in order, same UVs, a 2048^2 texture
    back = trimesh.load(str(out), process=False, force="mesh")
    given = trimesh.load(str(source), process=False, force="mesh")
    assert np.array_equal(np.asarray(back.vertices, np.float32), np.asarray(given.vertices, np.float32))
    assert np.array_equal(back.visual.uv, given.visual.uv)
    assert back.visual.material.baseColorTexture.size == (2048, 2048)


def test_without_surface_writes_as_before(tmp_path):
    """register's call (no UVs, material or normals): positions, indices and targets only."""
    from backend.io.gltf import write_animated_glb

    rng = np.random.default_rng(1)
    v, f = rng.normal(size=(20, 3)), rng.integers(0, 20, (30, 3))
    write_animated_glb(tmp_path / "a.glb", v, f, rng.normal(size=(3, 20, 3)), 12.0, name="ref")
    gltf, _ = _read_glb(tmp_path / "a.glb")
    prim = gltf["meshes"][0]["primitives"][0]
    assert list(prim) == ["attributes", "indices", "mode", "targets"] and list(prim["attributes"]) == ["POSITION"]
    assert not {"materials", "textures", "images", "samplers"} & set(gltf)
    assert len(gltf["bufferViews"]) == len(gltf["accessors"]) == 2 + 3 + 2


def test_uv_flip_and_texture_without_uv(tmp_path):
    from backend.io.gltf import write_animated_glb

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2]])
    uv = np.array([[0.0, 0.0], [1.0, 0.25], [0.5, 1.0]])
    material = {"name": "m", "baseColorFactor": [1, 0, 0, 1], "metallicFactor": 0.5, "roughnessFactor": 0.25,
                "alphaMode": "MASK", "alphaCutoff": 0.3, "doubleSided": False,
                "baseColorTexture": {"image": b"\x89PNG\r\n\x1a\n", "mimeType": "image/png", "sampler": None,
                                     "transform": {"scale": [2.0, 2.0]}}}
    write_animated_glb(tmp_path / "a.glb", v, f, np.zeros((2, 3, 3)), 24.0, uv=uv, material=material)
    gltf, body = _read_glb(tmp_path / "a.glb")
    prim = gltf["meshes"][0]["primitives"][0]
    assert np.array_equal(_accessor(gltf, body, prim["attributes"]["TEXCOORD_0"]),
                          np.array([[0.0, 1.0], [1.0, 0.75], [0.5, 0.0]], np.float32))
    m = gltf["materials"][0]
    assert m["alphaMode"] == "MASK" and m["alphaCutoff"] == pytest.approx(0.3)
    assert m["pbrMetallicRoughness"]["baseColorFactor"] == [1, 0, 0, 1]
    assert m["pbrMetallicRoughness"]["baseColorTexture"]["extensions"]["KHR_texture_transform"] == {"scale": [2, 2]}
    assert gltf["extensionsUsed"] == ["KHR_texture_transform"] and "samplers" not in gltf
    # no UVs: the factors stay, the texture (nothing to map it with) does not
    write_animated_glb(tmp_path / "b.glb", v, f, np.zeros((2, 3, 3)), 24.0, material=material)
    gltf, _ = _read_glb(tmp_path / "b.glb")
    assert "baseColorTexture" not in gltf["materials"][0]["pbrMetallicRoughness"] and "images" not in gltf


def _textured_box(color, shift, seed):
    import trimesh
    from PIL import Image
    from trimesh.visual.material import PBRMaterial, SimpleMaterial

    m = trimesh.creation.box()
    m.vertices += shift
    uv = np.random.default_rng(seed).random((len(m.vertices), 2))
    image = Image.new("RGB", (8, 4), color)
    mat = PBRMaterial(baseColorTexture=image) if seed else SimpleMaterial(image=image)
    m.visual = trimesh.visual.TextureVisuals(uv=uv, material=mat)
    return m, uv


def test_multi_material_glb_keeps_uvs_drops_material(tmp_path):
    """trimesh merges two textured primitives into one mesh with a texture atlas of its own: the
    original UVs are kept (aligned with load_mesh's vertices) and no material is guessed."""
    import trimesh

    from backend.io.mesh import load_mesh
    from backend.io.surface import load_surface_attributes

    (a, ua), (b, ub) = _textured_box("red", 0.0, 1), _textured_box("blue", 3.0, 2)
    trimesh.Scene([a, b]).export(str(tmp_path / "two.glb"))
    mesh = load_mesh(tmp_path / "two.glb")
    surface = load_surface_attributes(tmp_path / "two.glb", mesh)
    assert surface.material is None and any("2 parts" in w for w in surface.warnings)
    assert surface.uv.shape == (len(mesh.vertices), 2)
    ours = {tuple(np.round(p, 6)): tuple(np.round(u, 6)) for p, u in zip(mesh.vertices, surface.uv)}
    for box, uv in ((a, ua), (b, ub)):
        assert all(ours[tuple(np.round(p, 6))] == tuple(np.round(u, 6)) for p, u in zip(box.vertices, uv))


def test_obj_with_texture(tmp_path):
    """An OBJ + MTL + PNG as trimesh writes it: its UVs and its base colour texture, as a PNG."""
    import trimesh
    from PIL import Image

    from backend.geometry.normals import smooth_normals
    from backend.io.gltf import write_animated_glb
    from backend.io.mesh import load_mesh
    from backend.io.surface import load_surface_attributes

    box, _ = _textured_box((10, 200, 30), 0.0, 0)
    box.export(str(tmp_path / "box.obj"))
    assert (tmp_path / "material.mtl").is_file() or list(tmp_path.glob("*.mtl"))
    mesh = load_mesh(tmp_path / "box.obj")
    given = trimesh.load(str(tmp_path / "box.obj"), process=False, force="mesh")
    surface = load_surface_attributes(tmp_path / "box.obj", mesh)
    assert surface.warnings == [] and np.array_equal(surface.uv, given.visual.uv)
    tex = surface.material["baseColorTexture"]
    assert tex["mimeType"] == "image/png" and surface.material["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]
    write_animated_glb(tmp_path / "a.glb", mesh.vertices, mesh.faces, np.zeros((2,) + mesh.vertices.shape), 24.0,
                       uv=surface.uv, material=surface.material,
                       normals=smooth_normals(mesh.vertices, mesh.faces))
    back = trimesh.load(str(tmp_path / "a.glb"), process=False, force="mesh")
    assert np.allclose(back.visual.uv, given.visual.uv, atol=1e-7)
    image = back.visual.material.baseColorTexture
    assert image.size == (8, 4) and image.convert("RGB").getpixel((0, 0)) == (10, 200, 30)
    assert Image.open(io.BytesIO(tex["image"])).size == (8, 4)


def test_untextured_mesh_has_no_surface(tmp_path):
    import trimesh

    from backend.io.mesh import load_mesh
    from backend.io.surface import load_surface_attributes

    trimesh.creation.icosphere(subdivisions=1).export(str(tmp_path / "s.ply"))
    surface = load_surface_attributes(tmp_path / "s.ply", load_mesh(tmp_path / "s.ply"))
    assert surface.uv is None and surface.material is None and surface.warnings == []


def test_panda_animated_glb_in_blender(panda_glb, bpy_version, tmp_path):
    """Blender's glTF importer: one shape key per frame, the UV layer equal to panda.glb's UVs per
    loop, and a material whose Base Color is an image texture of the source's 2048 x 2048."""
    source, mesh, surface, _, out = panda_glb
    script = f'''
import json
import bpy

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath={str(out)!r})
obj = [o for o in bpy.context.scene.objects if o.type == "MESH"][0]
me = obj.data
keys = me.shape_keys
n = len(me.loops)
uv = [0.0] * (2 * n)
me.uv_layers[0].data.foreach_get("uv", uv)
vidx = [0] * n
me.loops.foreach_get("vertex_index", vidx)
co = [0.0] * (3 * len(me.vertices))
me.vertices.foreach_get("co", co)
images = []
mat = obj.active_material
for node in (mat.node_tree.nodes if mat and mat.use_nodes else []):
    if node.type == "TEX_IMAGE" and node.image is not None:
        images.append(list(node.image.size))
print("RESULT: " + json.dumps(dict(keys=[k.name for k in keys.key_blocks] if keys else [],
                                   vertices=len(me.vertices), uv_layers=len(me.uv_layers), uv=uv, vidx=vidx,
                                   co=co, images=images, material=mat.name if mat else None)))
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    assert r["keys"][1:] == [f"AM_{t:03d}" for t in range(FRAMES)]
    assert r["vertices"] == len(mesh.vertices) and r["uv_layers"] == 1
    # Blender's glTF import is Y-up -> Z-up: (x, y, z) -> (x, -z, y); the vertex order is the file's
    co = np.asarray(r["co"]).reshape(-1, 3)
    assert np.allclose(co, mesh.vertices[:, [0, 2, 1]] * [1, -1, 1], atol=1e-6)
    uv, vidx = np.asarray(r["uv"]).reshape(-1, 2), np.asarray(r["vidx"])
    assert np.allclose(uv, surface.uv[vidx], atol=1e-6)
    assert r["material"] == "baked_texture_material" and [2048, 2048] in r["images"]
