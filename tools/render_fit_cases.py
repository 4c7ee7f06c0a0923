# SPDX-License-Identifier: GPL-3.0-or-later
"""Render test cases for video-guided fitting: textured meshes under a known motion, with truth.

    .venv/bin/python tools/render_fit_cases.py --out DIR [--cases SPEC,SPEC,... | --set tuning|validation|all]
        [--frames 16] [--size 512] [--samples 16] [--no-denoise]

A case is named by a spec, CHARACTER:CLIP[@OPTION,...] (backend/bench/fit_sets.py says it all):
the character (panda, sydney, faerie), its clip (the panda's synthetic motions bend, sway,
twist, wave; any animation the MD2 files hold), the camera (azDEG azimuth from the front,
elDEG elevation, fMM focal length, dX distance factor), the mesh file's up axis (yup, zup) and
the seed; e.g. `sydney:wave@az120,el-5,f35,zup`. panda-bend, panda-sway, sydney-run and
faerie-run name the four cases rendered before specs existed, with the same renders.

For each case this writes DIR/<folder>/ (the canonical spec with ":" as "-", e.g. panda-bend or
sydney-wave@az120,el-5,f35,zup):
  frames/00.png ...  RGBA renders (Cycles on the CPU, transparent background), one per frame;
  truth.npz          `vertices` [T,V,3] float64, the true position of every vertex of the case's
                     mesh file in every frame, in that file's coordinates and in the vertex order
                     `backend.io.mesh.load_mesh` reads; `faces` [F,3]; `rest` [V,3], the mesh file's
                     own vertices (frame 0 equals them except in panda:sway, whose motion is
                     already under way at frame 0; an MD2 case's mesh is its clip's first pose);
  mesh.glb           the mesh the fitter receives, with its texture (MD2 cases, and Z-up panda
                     cases; the Y-up panda cases name ../shared/examples/panda/panda.glb in
                     case.json instead);
  camera.json        intrinsics and extrinsics in OpenCV's convention, in the mesh file's frame
                     (the file states the convention), plus Blender's own camera values;
  case.json          spec, mesh path, motion, seed, frame count, fps and how far the mesh moves.

The scene is built in glTF's frame (Y up, front +Z): the motion, the camera's placement and the
light. A Y-up case's mesh file holds those coordinates; a Z-up case's holds them turned as a
Z-up tool (Blender) writes them, (x, y, z) -> (x, -z, y), exactly (a signed permutation), and
only the numbers in the file (and in truth.npz and camera.json) differ: the Blender object is
always the scene's vertices in the mesh's order, placed under the glTF importer's Y-up -> Z-up
rotation, so a Y-up case and its Z-up twin render the same pixels bit for bit, and no importer
can merge, split or reorder vertices between what is rendered and what truth.npz describes.
Renders are deterministic (fixed motion seeds, fixed Cycles seed).
Nothing here is committed: build the cases when needed.
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

from backend.bench.fit_sets import (MD2_LOOPS, PANDA_CLIPS, SPEC_HELP, TUNING, CaseSpec, parse_spec,  # noqa: E402
                                    set_cases, split_cases)

PANDA = REPO.parent / "shared" / "examples" / "panda" / "panda.glb"
CASES = TUNING  # the four names of old; any spec works
MD2_SKINS = {"sydney": "sydney.bmp", "faerie": "faerie2.bmp"}
# The glTF importer's axis change: glTF (x, y, z), Y up, front +Z -> Blender (x, -z, y), Z up.
GLTF_TO_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
# A mesh file's coordinates from the scene's (glTF's): Y-up files hold them as they are, Z-up
# files as a Z-up tool writes them, which is Blender's own frame.
FILE_FROM_GLTF = {"y": np.eye(4), "z": GLTF_TO_BLENDER}
# A 36 mm sensor; the default camera (fit_sets.DEFAULTS) is a 50 mm lens (a 39.6 degree field of
# view) 35 degrees round from the front and 18 degrees above, so the fitter cannot lean on a
# straight-on silhouette.
SENSOR_MM = 36.0
# The whole motion fills at most this fraction of the half-width (distance factor 1): a margin of
# 10 % a side.
FILL = 0.8


@dataclass
class Case:
    """One fitting case in glTF's frame (Y up, front +Z), whatever its mesh file's axes."""

    name: str
    motion: str
    seed: int
    fps: float
    vertices: np.ndarray  # [T,V,3] truth
    rest: np.ndarray  # [V,3] the mesh's own vertices, as load_mesh reads them from a Y-up file
    faces: np.ndarray  # [F,3]
    uv: np.ndarray  # [V,2], origin bottom-left
    texture: object  # PIL image
    mesh_path: Path | None  # an existing Y-up mesh file, or None: write mesh.glb
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- cases


def panda_case(spec: CaseSpec | str, n_frames: int, panda: Path) -> Case:
    """The panda under one of the synthetic maps of space; truth for the backend's vertex order."""
    import trimesh

    from backend.io.mesh import load_mesh
    from backend.synthetic import deforming

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    rest = load_mesh(panda)  # float32-rounded, exactly as the backend will see the reference
    scene_mesh = trimesh.load(str(panda), process=False, force="mesh")
    if len(scene_mesh.vertices) != len(rest.vertices):
        raise SystemExit(f"{panda}: trimesh and load_mesh disagree on the vertex count")
    motion = PANDA_CLIPS[spec.clip]
    if motion == "deform_mesh_sequence":
        truth = deforming.deform_mesh_sequence(rest.vertices, rest.faces, n_frames, seed=spec.seed)
    else:
        truth = getattr(deforming, motion)(rest.vertices, n_frames, seed=spec.seed)
    material = scene_mesh.visual.material
    uv = np.asarray(scene_mesh.visual.uv, np.float64)
    return Case(spec.folder, motion, spec.seed, 24.0, truth, rest.vertices, rest.faces, uv,
                material.baseColorTexture, panda)


def md2_case(spec: CaseSpec | str, n_frames: int) -> Case:
    """An MD2 character's clip over `n_frames`; the mesh is the clip's first pose.

    A looping clip (fit_sets.MD2_LOOPS: run, stand, ...) plays one cycle, from the keyframe its
    seed names, on toward the first again; any other is played once, first keyframe to last.
    MD2 keeps UVs apart from vertices, so vertices on a UV seam are split (one per distinct
    (vertex, uv) pair, as any exporter does); `extra["md2_vertex"]` maps them back. Quake
    coordinates (Z up, facing +X, 1 unit ~ 1 inch) become glTF's (Y up, facing +Z); triangles,
    wound clockwise in MD2, are reversed so that glTF viewers, which cull back faces, show them."""
    from PIL import Image

    from backend.synthetic.md2 import animation, md2_folder, play, read_md2, read_md2_uv

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    folder = md2_folder()
    if folder is None:
        raise SystemExit("no MD2 characters found: run `python3 build.py setup` (needs apt-get)")
    skin = folder / MD2_SKINS[spec.character]
    if not skin.is_file():
        raise SystemExit(f"{skin} is missing: rerun `python3 build.py setup` after removing {folder}, or copy the "
                         ".bmp files from Debian's assimp-testmodels (usr/share/assimp/models/MD2)")
    path = folder / f"{spec.character}.md2"
    keyframes, tris, names = read_md2(path)
    uv_st, uv_tris, _ = read_md2_uv(path)
    keys = animation(names, spec.clip)
    if spec.clip in MD2_LOOPS:
        keys = np.roll(keys, -spec.seed)
        poses = play(keyframes, keys, n_frames)  # [T,V,3], Quake coordinates
        # Quake plays MD2 keyframes at 10 per second; one cycle over n_frames sets the clip's rate.
        fps = n_frames / (len(keys) / 10.0)
    else:
        # play's step is len(keys) * cycles / n_frames keyframes a frame: this many cycles make it
        # (len(keys) - 1) / (n_frames - 1), the last frame landing on the last keyframe.
        poses = play(keyframes, keys, n_frames, cycles=(len(keys) - 1) * n_frames / (len(keys) * (n_frames - 1)))
        fps = (n_frames - 1) / ((len(keys) - 1) / 10.0)
    corners = np.stack([tris.ravel(), uv_tris.ravel()], axis=1)
    pairs, corner_to_new = np.unique(corners, axis=0, return_inverse=True)
    faces = corner_to_new.reshape(-1, 3)[:, ::-1].astype(np.int64)
    quake_to_gltf = np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])  # (y, z, x): up -> +Y, front -> +Z
    truth = poses[:, pairs[:, 0]] @ quake_to_gltf.T
    # The mesh file stores float32; truth[0] is exactly what load_mesh will read from it.
    truth = truth.astype(np.float32).astype(np.float64)
    texture = Image.open(skin).convert("RGB")  # the skins are 8-bit palette BMPs
    return Case(spec.folder, f"md2:{spec.clip}", spec.seed, fps, truth, truth[0], faces, uv_st[pairs[:, 1]],
                texture, None, {"md2_vertex": pairs[:, 0], "md2_file": str(path),
                                "md2_keyframes": [names[k] for k in keys]})


def write_mesh_glb(case: Case, path: Path, rest: np.ndarray | None = None) -> None:
    """The mesh (its rest pose, or `rest`: the same in a mesh file's own axes), textured, as glb;
    checked to load back in the same vertex order."""
    import trimesh
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    from backend.io.mesh import load_mesh

    rest = case.rest if rest is None else rest
    material = PBRMaterial(baseColorTexture=case.texture, metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True)
    mesh = trimesh.Trimesh(rest, case.faces, visual=TextureVisuals(uv=case.uv, material=material), process=False)
    path.write_bytes(mesh.export(file_type="glb"))
    back = load_mesh(path)
    if not (np.array_equal(back.vertices, rest) and np.array_equal(back.faces, case.faces)):
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


def frame_camera(points: np.ndarray, size: int, spec: CaseSpec | None = None) -> tuple[np.ndarray, dict]:
    """Place the camera as the spec says, round from the front and above, so every frame's
    vertices fit with margin, then move it back by the spec's distance factor.

    `points` is every vertex of every frame (glTF's frame); the distance is refined until the
    widest of them sits at FILL of the half-image, so the framing is the same for large and small
    meshes and for any lens."""
    spec = spec or parse_spec("panda:bend")
    az, el = math.radians(spec.azimuth), math.radians(spec.elevation)
    front, side, up = np.array([0.0, 0, 1]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    direction = math.cos(el) * (math.cos(az) * front + math.sin(az) * side) + math.sin(el) * up
    lo, hi = points.min(axis=0), points.max(axis=0)
    target = 0.5 * (lo + hi)
    tan_half = SENSOR_MM / (2 * spec.lens)
    distance = np.linalg.norm(points - target, axis=1).max() / math.sin(math.atan(tan_half))
    for _ in range(30):
        w2c = look_from(direction, target, distance)
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        reach = np.abs(cam[:, :2] / cam[:, 2:3]).max() / tan_half
        if abs(reach - FILL) < 1e-4:
            break
        distance *= reach / FILL  # image size ~ 1 / distance; converges in a few steps
    if spec.distance != 1.0:
        w2c = look_from(direction, target, distance * spec.distance)
    f = spec.lens / SENSOR_MM * size
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
    """The case's mesh as a Blender object, vertices in glTF's frame under GLTF_TO_BLENDER."""
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


def add_camera_and_sun(bpy, w2c: np.ndarray, spec: CaseSpec):
    """Blender's camera for an OpenCV world-to-camera matrix in glTF's frame, and a sun."""
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    data = bpy.data.cameras.new("Camera")
    data.lens, data.sensor_width, data.sensor_fit = spec.lens, SENSOR_MM, "HORIZONTAL"
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
    az, el = math.radians(spec.azimuth - 50), math.radians(50)
    towards_sun = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    sun.rotation_euler = (-Vector((GLTF_TO_BLENDER[:3, :3] @ towards_sun).tolist())).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(sun)
    return cam


# ---------------------------------------------------------------- main


def build_case(bpy, spec: CaseSpec | str, out: Path, args) -> Path:
    """Render one case into out/<spec's folder>/; -> that folder."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.md2:
        case = md2_case(spec, args.frames)
    else:
        case = panda_case(spec, args.frames, Path(args.panda))
    name = spec.folder
    folder = out / name
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    file_from_gltf = FILE_FROM_GLTF[spec.up]
    turn = file_from_gltf[:3, :3]
    # A signed permutation: the turned float32 coordinates are still exactly float32.
    file_rest, file_truth = case.rest @ turn.T, case.vertices @ turn.T
    if case.mesh_path is None or spec.up != "y":
        write_mesh_glb(case, folder / "mesh.glb", file_rest)
        mesh_ref = "mesh.glb"
    else:
        mesh_ref = str(case.mesh_path.resolve())

    w2c_gltf, intrinsics = frame_camera(case.vertices.reshape(-1, 3), args.size, spec)
    gltf_from_file = np.linalg.inv(file_from_gltf)
    w2c = w2c_gltf @ gltf_from_file  # the same camera, taking the file's coordinates
    to_blender = GLTF_TO_BLENDER @ gltf_from_file  # for camera.json: the file's frame -> Blender's
    setup_scene(bpy, args.size, args.samples, not args.no_denoise)
    with tempfile.TemporaryDirectory() as tmp:
        texture_png = Path(tmp) / "texture.png"
        case.texture.save(texture_png)
        # In the scene's frame whatever the file's: a Z-up twin's Blender transforms would round
        # differently, a few pixels of anti-aliasing the fit would see as other input.
        obj = add_textured_mesh(bpy, case, texture_png)
    cam = add_camera_and_sun(bpy, w2c_gltf, spec)

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

    np.savez_compressed(folder / "truth.npz", vertices=file_truth, faces=case.faces, rest=file_rest,
                        **({"md2_vertex": case.extra["md2_vertex"]} if "md2_vertex" in case.extra else {}))
    up_name, front_name = {"y": ("+Y", "+Z"), "z": ("+Z", "-Y")}[spec.up]
    camera = {
        "convention": ("OpenCV pinhole. world_to_camera maps a point p given in the MESH FILE's coordinates "
                       f"(the frame truth.npz uses; {up_name} up) to camera coordinates x right, y down, z forward: "
                       "c = R p + t with [R t] the top 3 rows of world_to_camera. Pixel coordinates: "
                       "u = fx c_x / c_z + cx, v = fy c_y / c_z + cy, with u to the right and v down from the "
                       "top-left, and pixel (i, j) (column i, row j of the PNG) centred at u = i, v = j; so "
                       "the image centre is ((width - 1) / 2, (height - 1) / 2). No lens distortion."),
        "intrinsics": intrinsics,
        "world_to_camera": w2c.tolist(),
        "camera_to_world": np.linalg.inv(w2c).tolist(),
        "blender": {
            "lens_mm": spec.lens, "sensor_width_mm": SENSOR_MM, "sensor_fit": "HORIZONTAL", "shift_x": 0.0,
            "shift_y": 0.0, "clip_start": cam.data.clip_start, "clip_end": cam.data.clip_end,
            "mesh_to_blender_world": to_blender.tolist(),
            "camera_matrix_world": [list(row) for row in cam.matrix_world],
            "note": "Blender world is Z-up; its camera looks down its local -Z with +Y up.",
        },
        "placement": {"azimuth_from_front_deg": spec.azimuth, "elevation_deg": spec.elevation,
                      "distance_factor": spec.distance, "front": f"{front_name} of the mesh file",
                      "up": f"{up_name} of the mesh file"},
    }
    (folder / "camera.json").write_text(json.dumps(camera, indent=2) + "\n")

    rest = file_rest
    diagonal = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    moved = np.linalg.norm(file_truth - rest, axis=2)
    info = {
        "case": name,
        "spec": spec.name,
        "mesh": mesh_ref,
        "mesh_note": "relative paths are relative to this case folder",
        "up": up_name,
        "motion": case.motion,
        "seed": case.seed,
        "frames": len(file_truth),
        "fps": case.fps,
        "vertices": int(rest.shape[0]),
        "faces": int(len(case.faces)),
        "frame0_is_rest": bool(np.allclose(file_truth[0], rest, rtol=0, atol=1e-6 * diagonal)),
        "bbox_diagonal": diagonal,
        # From the mesh file's pose, over all frames and vertices, over its bounding-box diagonal.
        "displacement_over_diagonal": {"max": float(moved.max() / diagonal), "mean": float(moved.mean() / diagonal)},
        "render": {"engine": "CYCLES", "device": "CPU", "samples": args.samples,
                   "denoiser": None if args.no_denoise else "OPENIMAGEDENOISE", "size": args.size,
                   "seconds_per_frame": float(np.mean(times))},
        **{k: v for k, v in case.extra.items() if k != "md2_vertex"},
    }
    (folder / "case.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{name}: {len(file_truth)} frames, {rest.shape[0]} vertices, mean {np.mean(times):.2f} s/frame "
          f"at {args.size}x{args.size}, {args.samples} samples; max displacement "
          f"{info['displacement_over_diagonal']['max']:.3f} of the diagonal", flush=True)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the cases into")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--cases", help=f"specs or aliases, separated by spaces, ';' or commas ({SPEC_HELP}); "
                                       f"default: {', '.join(CASES)}")
    which.add_argument("--set", choices=("tuning", "validation", "all"),
                       help="a named set of backend/bench/fit_sets.py")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--no-denoise", action="store_true", help="skip OpenImageDenoise")
    parser.add_argument("--panda", default=str(PANDA), help="the panda glb")
    args = parser.parse_args(argv)
    texts = set_cases(args.set) if args.set else split_cases(args.cases) if args.cases else list(CASES)
    try:
        specs = [parse_spec(t) for t in texts]
    except ValueError as exc:
        parser.error(str(exc))
    if not specs:
        parser.error("no cases given")
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    import bpy

    out = Path(args.out).resolve()
    for spec in specs:
        build_case(bpy, spec, out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
