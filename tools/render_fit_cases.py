# SPDX-License-Identifier: GPL-3.0-or-later
"""Render test cases for video-guided fitting: textured meshes under a known motion, with truth.

    .venv/bin/python tools/render_fit_cases.py --out DIR [--cases panda-bend,sydney-run,...]
        [--frames 16] [--size 512] [--samples 16] [--no-denoise]

For each case this writes DIR/<case>/:
  frames/00.png ...  RGBA renders (Cycles on the CPU, transparent background), one per frame;
  truth.npz          `vertices` [T,V,3] float64, the true position of every vertex of the case's
                     mesh file in every frame, in that file's coordinates and in the vertex order
                     `backend.meshio.load_mesh` reads; `faces` [F,3]; `rest` [V,3], the mesh file's
                     own vertices (frame 0 equals them except in panda-sway, whose motion is
                     already under way at frame 0);
  mesh.glb           the mesh the fitter receives, with its texture (MD2 cases only; the panda
                     cases name ../shared/examples/panda/panda.glb in case.json instead);
  camera.json        intrinsics and extrinsics in OpenCV's convention, in the mesh file's frame
                     (the file states the convention), plus Blender's own camera values;
  case.json          mesh path, motion, seed, frame count, fps and how far the mesh moves.

Every mesh file here is glTF-style Y-up. The Blender object is the mesh file's vertices as they
are, placed under the glTF importer's Y-up -> Z-up rotation, so no importer can merge, split or
reorder vertices between what is rendered and what truth.npz describes. Renders are deterministic
(fixed motion seeds, fixed Cycles seed). Nothing here is committed: build the cases when needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PANDA = REPO.parent / "shared" / "examples" / "panda" / "panda.glb"
CASES = ("panda-bend", "panda-sway", "sydney-run", "faerie-run")
MD2_SKINS = {"sydney": "sydney.bmp", "faerie": "faerie2.bmp"}
# The glTF importer's axis change: glTF (x, y, z), Y up, front +Z -> Blender (x, -z, y), Z up.
GLTF_TO_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
# Camera: a 50 mm lens on a 36 mm sensor (a 39.6 degree field of view), 35 degrees round from
# the front and 18 degrees above, so the fitter cannot lean on a straight-on silhouette.
LENS_MM, SENSOR_MM = 50.0, 36.0
AZIMUTH_DEG, ELEVATION_DEG = 35.0, 18.0
# The whole motion fills at most this fraction of the half-width: a margin of 10 % a side.
FILL = 0.8


@dataclass
class Case:
    """One fitting case in the mesh file's own (Y-up, front +Z) coordinates."""

    name: str
    motion: str
    seed: int
    fps: float
    vertices: np.ndarray  # [T,V,3] truth
    rest: np.ndarray  # [V,3] the mesh file's own vertices, as load_mesh reads them
    faces: np.ndarray  # [F,3]
    uv: np.ndarray  # [V,2], origin bottom-left
    texture: object  # PIL image
    mesh_path: Path | None  # an existing mesh file, or None: write mesh.glb
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- cases


def panda_case(name: str, n_frames: int, panda: Path) -> Case:
    """The panda under one of the synthetic maps of space; truth for the backend's vertex order."""
    import trimesh

    from backend.meshio import load_mesh
    from backend.synthetic.deforming import bend_hinge_squash, deform_mesh_sequence

    rest = load_mesh(panda)  # float32-rounded, exactly as the backend will see the reference
    scene_mesh = trimesh.load(str(panda), process=False, force="mesh")
    if len(scene_mesh.vertices) != len(rest.vertices):
        raise SystemExit(f"{panda}: trimesh and load_mesh disagree on the vertex count")
    seed = 0
    if name == "panda-bend":
        motion, truth = "bend_hinge_squash", bend_hinge_squash(rest.vertices, n_frames, seed=seed)
    else:
        motion, truth = "deform_mesh_sequence", deform_mesh_sequence(rest.vertices, rest.faces, n_frames, seed=seed)
    material = scene_mesh.visual.material
    uv = np.asarray(scene_mesh.visual.uv, np.float64)
    return Case(name, motion, seed, 24.0, truth, rest.vertices, rest.faces, uv, material.baseColorTexture, panda)


def md2_case(name: str, n_frames: int) -> Case:
    """An MD2 character's "run" clip, one cycle over `n_frames`; the mesh is its first pose.

    MD2 keeps UVs apart from vertices, so vertices on a UV seam are split (one per distinct
    (vertex, uv) pair, as any exporter does); `extra["md2_vertex"]` maps them back. Quake
    coordinates (Z up, facing +X, 1 unit ~ 1 inch) become glTF's (Y up, facing +Z); triangles,
    wound clockwise in MD2, are reversed so that glTF viewers, which cull back faces, show them."""
    from PIL import Image

    from backend.synthetic.md2 import animation, md2_folder, play, read_md2, read_md2_uv

    folder = md2_folder()
    character = name.split("-")[0]
    if folder is None:
        raise SystemExit("no MD2 characters found: run `python3 build.py setup` (needs apt-get)")
    skin = folder / MD2_SKINS[character]
    if not skin.is_file():
        raise SystemExit(f"{skin} is missing: rerun `python3 build.py setup` after removing {folder}, or copy the "
                         ".bmp files from Debian's assimp-testmodels (usr/share/assimp/models/MD2)")
    path = folder / f"{character}.md2"
    keyframes, tris, names = read_md2(path)
    uv_st, uv_tris, _ = read_md2_uv(path)
    keys = animation(names, "run")
    poses = play(keyframes, keys, n_frames)  # [T,V,3], Quake coordinates
    corners = np.stack([tris.ravel(), uv_tris.ravel()], axis=1)
    pairs, corner_to_new = np.unique(corners, axis=0, return_inverse=True)
    faces = corner_to_new.reshape(-1, 3)[:, ::-1].astype(np.int64)
    quake_to_gltf = np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])  # (y, z, x): up -> +Y, front -> +Z
    truth = poses[:, pairs[:, 0]] @ quake_to_gltf.T
    # The mesh file stores float32; truth[0] is exactly what load_mesh will read from it.
    truth = truth.astype(np.float32).astype(np.float64)
    # Quake plays MD2 keyframes at 10 per second; one cycle over n_frames sets the clip's rate.
    fps = n_frames / (len(keys) / 10.0)
    texture = Image.open(skin).convert("RGB")  # the skins are 8-bit palette BMPs
    return Case(name, "md2:run", 0, fps, truth, truth[0], faces, uv_st[pairs[:, 1]], texture, None,
                {"md2_vertex": pairs[:, 0], "md2_file": str(path), "md2_keyframes": [names[k] for k in keys]})


def write_mesh_glb(case: Case, path: Path) -> None:
    """The first pose, textured, as glb; checked to load back in the same vertex order."""
    import trimesh
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    from backend.meshio import load_mesh

    material = PBRMaterial(baseColorTexture=case.texture, metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True)
    mesh = trimesh.Trimesh(case.rest, case.faces, visual=TextureVisuals(uv=case.uv, material=material),
                           process=False)
    path.write_bytes(mesh.export(file_type="glb"))
    back = load_mesh(path)
    if not (np.array_equal(back.vertices, case.rest) and np.array_equal(back.faces, case.faces)):
        raise SystemExit(f"{path}: does not load back in the order written; truth.npz would be wrong")


# ---------------------------------------------------------------- camera


def look_from(direction: np.ndarray, target: np.ndarray, distance: float) -> np.ndarray:
    """OpenCV world-to-camera 4x4 (x right, y down, z forward) for a camera at target +
    distance * direction looking at target, with the mesh's +Y up in the image."""
    z = -direction / np.linalg.norm(direction)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ (target + distance * direction)
    return w2c


def frame_camera(points: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """Place the camera round the front and above so every frame's vertices fit with margin.

    `points` is every vertex of every frame; the distance is refined until the widest of them
    sits at FILL of the half-image, so the framing is the same for large and small meshes."""
    az, el = math.radians(AZIMUTH_DEG), math.radians(ELEVATION_DEG)
    front, side, up = np.array([0.0, 0, 1]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    direction = math.cos(el) * (math.cos(az) * front + math.sin(az) * side) + math.sin(el) * up
    lo, hi = points.min(axis=0), points.max(axis=0)
    target = 0.5 * (lo + hi)
    tan_half = SENSOR_MM / (2 * LENS_MM)
    distance = np.linalg.norm(points - target, axis=1).max() / math.sin(math.atan(tan_half))
    for _ in range(30):
        w2c = look_from(direction, target, distance)
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        reach = np.abs(cam[:, :2] / cam[:, 2:3]).max() / tan_half
        if abs(reach - FILL) < 1e-4:
            break
        distance *= reach / FILL  # image size ~ 1 / distance; converges in a few steps
    f = LENS_MM / SENSOR_MM * size
    intrinsics = {"fx": f, "fy": f, "cx": size / 2 - 0.5, "cy": size / 2 - 0.5, "width": size, "height": size}
    return w2c, intrinsics


def project(w2c: np.ndarray, intrinsics: dict, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (u, v) of points in the mesh frame: OpenCV, pixel (i, j) centred at (i, j)."""
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([intrinsics["fx"] * cam[:, 0] / cam[:, 2] + intrinsics["cx"],
                     intrinsics["fy"] * cam[:, 1] / cam[:, 2] + intrinsics["cy"]], axis=1)


# ---------------------------------------------------------------- Blender


def setup_scene(bpy, size: int, samples: int, denoise: bool) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.seed = 0  # same noise every run: the frames are deterministic
    scene.cycles.use_animated_seed = False
    scene.cycles.use_denoising = denoise
    if denoise:
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
    # Direct light plus a bounce is all a textured figure under a sun needs; fewer bounces = faster.
    scene.cycles.max_bounces = 3
    scene.cycles.diffuse_bounces = 2
    scene.cycles.glossy_bounces = 1
    scene.cycles.transmission_bounces = scene.cycles.volume_bounces = scene.cycles.transparent_max_bounces = 0
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    # "Standard" maps the texture's colours through unchanged; AgX/Filmic would wash them out.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    world = bpy.data.worlds.new("World")
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0, where setting it is deprecated
        world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.55, 0.57, 0.62, 1.0)  # soft fill from all round
    background.inputs["Strength"].default_value = 0.8
    scene.world = world


def add_textured_mesh(bpy, case: Case, image_path: Path):
    """The case's mesh as a Blender object, vertices in the mesh file's frame under GLTF_TO_BLENDER."""
    from mathutils import Matrix

    mesh = bpy.data.meshes.new(case.name)
    mesh.from_pydata(case.rest.tolist(), [], case.faces.tolist())
    # from_pydata makes loops face by face, corner by corner: the per-corner UVs line up.
    layer = mesh.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", case.uv[case.faces].astype(np.float32).ravel())
    mesh.polygons.foreach_set("use_smooth", np.ones(len(case.faces), bool))
    image = bpy.data.images.load(str(image_path))
    image.pack()  # the temporary PNG may go away before the last frame is rendered
    material = bpy.data.materials.new(case.name)
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0, where setting it is deprecated
        material.use_nodes = True
    nodes = material.node_tree.nodes
    bsdf = nodes["Principled BSDF"]
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Linear"
    material.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8
    bsdf.inputs["Metallic"].default_value = 0.0
    mesh.materials.append(material)
    obj = bpy.data.objects.new(case.name, mesh)
    obj.matrix_world = Matrix(GLTF_TO_BLENDER.tolist())
    bpy.context.scene.collection.objects.link(obj)
    return obj


def add_camera_and_sun(bpy, w2c: np.ndarray):
    """Blender's camera for an OpenCV world-to-camera matrix in the mesh frame, and a sun."""
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    data = bpy.data.cameras.new("Camera")
    data.lens, data.sensor_width, data.sensor_fit = LENS_MM, SENSOR_MM, "HORIZONTAL"
    c2w = np.linalg.inv(w2c)
    centre = np.linalg.norm(w2c[:3, 3])
    data.clip_start, data.clip_end = centre * 0.01, centre * 100
    cam = bpy.data.objects.new("Camera", data)
    # Blender cameras look down -Z with +Y up: OpenCV axes with y and z negated.
    cam.matrix_world = Matrix((GLTF_TO_BLENDER @ c2w @ np.diag([1.0, -1, -1, 1])).tolist())
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 4.0
    sun.data.angle = math.radians(8)  # slightly soft shadows
    # From above and over the camera's shoulder: the visible side is lit, with some shading.
    az, el = math.radians(AZIMUTH_DEG - 50), math.radians(50)
    towards_sun = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    sun.rotation_euler = (-Vector((GLTF_TO_BLENDER[:3, :3] @ towards_sun).tolist())).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(sun)
    return cam


# ---------------------------------------------------------------- main


def build_case(bpy, name: str, out: Path, args) -> None:
    if name.startswith("panda-"):
        case = panda_case(name, args.frames, Path(args.panda))
    else:
        case = md2_case(name, args.frames)
    folder = out / name
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    if case.mesh_path is None:
        write_mesh_glb(case, folder / "mesh.glb")
        mesh_ref = "mesh.glb"
    else:
        mesh_ref = str(case.mesh_path.resolve())

    w2c, intrinsics = frame_camera(case.vertices.reshape(-1, 3), args.size)
    setup_scene(bpy, args.size, args.samples, not args.no_denoise)
    with tempfile.TemporaryDirectory() as tmp:
        texture_png = Path(tmp) / "texture.png"
        case.texture.save(texture_png)
        obj = add_textured_mesh(bpy, case, texture_png)
    cam = add_camera_and_sun(bpy, w2c)

    mesh, scene = obj.data, bpy.context.scene
    times = []
    for t, positions in enumerate(case.vertices):
        mesh.vertices.foreach_set("co", positions.astype(np.float32).ravel())
        mesh.update()
        scene.render.filepath = str(folder / "frames" / f"{t:02d}.png")
        started = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        times.append(time.perf_counter() - started)
        print(f"  {name} frame {t:02d}: {times[-1]:.2f} s", flush=True)

    np.savez_compressed(folder / "truth.npz", vertices=case.vertices, faces=case.faces, rest=case.rest,
                        **({"md2_vertex": case.extra["md2_vertex"]} if "md2_vertex" in case.extra else {}))
    camera = {
        "convention": ("OpenCV pinhole. world_to_camera maps a point p given in the MESH FILE's coordinates "
                       "(the frame truth.npz uses; glTF Y-up) to camera coordinates x right, y down, z forward: "
                       "c = R p + t with [R t] the top 3 rows of world_to_camera. Pixel coordinates: "
                       "u = fx c_x / c_z + cx, v = fy c_y / c_z + cy, with u to the right and v down from the "
                       "top-left, and pixel (i, j) (column i, row j of the PNG) centred at u = i, v = j; so "
                       "the image centre is ((width - 1) / 2, (height - 1) / 2). No lens distortion."),
        "intrinsics": intrinsics,
        "world_to_camera": w2c.tolist(),
        "camera_to_world": np.linalg.inv(w2c).tolist(),
        "blender": {
            "lens_mm": LENS_MM, "sensor_width_mm": SENSOR_MM, "sensor_fit": "HORIZONTAL", "shift_x": 0.0,
            "shift_y": 0.0, "clip_start": cam.data.clip_start, "clip_end": cam.data.clip_end,
            "mesh_to_blender_world": GLTF_TO_BLENDER.tolist(),
            "camera_matrix_world": [list(row) for row in cam.matrix_world],
            "note": "Blender world is Z-up; its camera looks down its local -Z with +Y up.",
        },
        "placement": {"azimuth_from_front_deg": AZIMUTH_DEG, "elevation_deg": ELEVATION_DEG,
                      "front": "+Z of the mesh file", "up": "+Y of the mesh file"},
    }
    (folder / "camera.json").write_text(json.dumps(camera, indent=2) + "\n")

    rest = case.rest
    diagonal = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    moved = np.linalg.norm(case.vertices - rest, axis=2)
    info = {
        "case": name,
        "mesh": mesh_ref,
        "mesh_note": "relative paths are relative to this case folder",
        "motion": case.motion,
        "seed": case.seed,
        "frames": len(case.vertices),
        "fps": case.fps,
        "vertices": int(rest.shape[0]),
        "faces": int(len(case.faces)),
        "frame0_is_rest": bool(np.allclose(case.vertices[0], rest, rtol=0, atol=1e-6 * diagonal)),
        "bbox_diagonal": diagonal,
        # From the mesh file's pose, over all frames and vertices, over its bounding-box diagonal.
        "displacement_over_diagonal": {"max": float(moved.max() / diagonal), "mean": float(moved.mean() / diagonal)},
        "render": {"engine": "CYCLES", "device": "CPU", "samples": args.samples,
                   "denoiser": None if args.no_denoise else "OPENIMAGEDENOISE", "size": args.size,
                   "seconds_per_frame": float(np.mean(times))},
        **{k: v for k, v in case.extra.items() if k != "md2_vertex"},
    }
    (folder / "case.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{name}: {len(case.vertices)} frames, {rest.shape[0]} vertices, mean {np.mean(times):.2f} s/frame "
          f"at {args.size}x{args.size}, {args.samples} samples; max displacement "
          f"{info['displacement_over_diagonal']['max']:.3f} of the diagonal", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the cases into")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--no-denoise", action="store_true", help="skip OpenImageDenoise")
    parser.add_argument("--panda", default=str(PANDA), help="the panda glb")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    import bpy

    out = Path(args.out).resolve()
    for name in names:
        build_case(bpy, name, out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
