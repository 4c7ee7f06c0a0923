# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job end to end in headless Blender (the bpy module), as `python3 build.py demo` runs it.

Installs and enables the built extension with Blender's own installer, then:

- with the example data (../shared/examples/panda: 16 RGBA frames and panda.glb, or --clip and
  --mesh): imports the mesh and animates it from the video with `actionmesh.animate_from_video`,
  method Fit (no model weights, CPU), camera estimated from frame 0 and added to the scene; the
  clip's first frame is put behind the panda in the camera view (`actionmesh.show_frame0`);
- without it (a clone with no ../shared): the mesh-sequence job on a generated example
  (`actionmesh.animate_from_sequence`), and says so.

Saves a .blend and renders a preview with Cycles on the CPU: four frames of the result through
the estimated camera, under the same frames of the video.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO.parent / "shared" / "examples" / "panda"
PREVIEW_FRAMES = 4
PREVIEW_SIZE = 320


def make_example(out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "backend", "example", "--out", str(out / "example")], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def build_scene(bpy, reference: str):
    bpy.ops.wm.obj_import(filepath=reference)
    obj = bpy.context.selected_objects[0]
    bpy.context.view_layer.objects.active = obj
    obj.name = "Creature"
    bpy.ops.object.shade_smooth()
    material = bpy.data.materials.new("Creature")
    material.diffuse_color = (0.8, 0.45, 0.2, 1.0)
    if hasattr(material, "use_nodes"):
        material.use_nodes = True
    bsdf = material.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = (0.8, 0.45, 0.2, 1.0)
    obj.data.materials.append(material)

    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("Camera")
    cam = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0.4, -3.1, 1.1)
    direction = -np.array(cam.location)
    cam.rotation_euler = (np.arctan2(np.hypot(direction[0], direction[1]), -direction[2]), 0.0,
                          np.arctan2(direction[1], direction[0]) - np.pi / 2)
    scene.camera = cam
    _add_light_and_world(bpy)
    return obj


def _pixels(bpy, path: Path, size: int | None = None) -> np.ndarray:
    """An image file as float RGBA rows from the bottom (Blender's order), optionally resized."""
    image = bpy.data.images.load(str(path))
    if size is not None and tuple(image.size) != (size, size):
        image.scale(size, size)
    pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(pixels)
    out = pixels.reshape(image.size[1], image.size[0], 4)
    bpy.data.images.remove(image)
    return out


def _save_png(bpy, pixels: np.ndarray, path: Path) -> None:
    image = bpy.data.images.new("preview", pixels.shape[1], pixels.shape[0], alpha=True)
    image.pixels.foreach_set(pixels.ravel())
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def render_preview(bpy, out_png: Path, frames: list[int], above: list[Path] = ()) -> None:
    """Renders `frames` side by side into out_png; `above`: images (the video's frames) for a
    row above them, composited on white."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.render.resolution_x = scene.render.resolution_y = PREVIEW_SIZE
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"  # the texture's own colours, to compare with the video
    scene.render.image_settings.file_format = "PNG"
    tiles = []
    for frame in frames:
        scene.frame_set(frame)
        path = out_png.parent / f"frame_{frame:03d}.png"
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        tiles.append(_pixels(bpy, path))
        path.unlink()
    strip = np.concatenate(tiles, axis=1)
    if above:
        video = []
        for frame_png in above:
            rgba = _pixels(bpy, frame_png, PREVIEW_SIZE)
            rgb = rgba[:, :, :3] * rgba[:, :, 3:] + (1.0 - rgba[:, :, 3:])  # on white
            video.append(np.concatenate([rgb, np.ones_like(rgba[:, :, :1])], axis=2))
        strip = np.concatenate([strip, np.concatenate(video, axis=1)], axis=0)  # rows from the bottom
    _save_png(bpy, strip, out_png)


def _job_outputs():
    import importlib

    return importlib.import_module("bl_ext.user_default.actionmesh.session").current_job.outputs or {}


def _add_light_and_world(bpy) -> None:
    scene = bpy.context.scene
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    light.data.energy = 3.0
    light.rotation_euler = (0.7, 0.2, 0.5)
    scene.collection.objects.link(light)
    world = bpy.data.worlds.new("World")
    world.color = (0.9, 0.9, 0.92)
    if hasattr(world, "use_nodes"):
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background") if world.node_tree else None
    if background is not None:
        background.inputs["Color"].default_value = (0.9, 0.9, 0.92, 1.0)
        background.inputs["Strength"].default_value = 1.0
    scene.world = world


def panda_demo(bpy, clip: Path, mesh: Path, out: Path) -> int:
    frames = sorted(p for p in clip.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    bpy.ops.import_scene.gltf(filepath=str(mesh))
    obj = max((o for o in bpy.context.scene.objects if o.type == "MESH"), key=lambda o: len(o.data.vertices))
    obj.name = "Panda"
    for other in bpy.context.selected_objects:
        other.select_set(other == obj)
    bpy.context.view_layer.objects.active = obj
    _add_light_and_world(bpy)
    print(f"3/4 animating '{obj.name}' ({len(obj.data.vertices):,} vertices, its UVs and texture kept) from "
          f"{len(frames)} video frames by fitting (no model weights; camera estimated from frame 0)", flush=True)
    started = time.monotonic()
    status = bpy.ops.actionmesh.animate_from_video(source="FOLDER", input=str(clip), method="fit",
                                                   camera="ESTIMATE")
    if status != {"FINISHED"}:
        print(f"error: {bpy.context.window_manager.actionmesh_job.last_error}", file=sys.stderr)
        return 1
    outputs = _job_outputs()
    keys = [k.name for k in obj.data.shape_keys.key_blocks if k.name.startswith("AM_")]
    fit = outputs.get("fit") or {}
    print(f"    {len(keys)} shape keys in {time.monotonic() - started:.1f} s; silhouette IoU "
          f"{fit.get('before', float('nan')):.3f} still -> {fit.get('after', float('nan')):.3f} fitted", flush=True)
    print(f"    {bpy.context.window_manager.actionmesh_job.status}", flush=True)
    for warning in outputs.get("warnings", []):
        print(f"    warning: {warning}", flush=True)
    scene = bpy.context.scene
    if scene.camera is not None:  # the clip's frame 0 behind the panda in the camera view
        bpy.ops.actionmesh.show_frame0(source="FOLDER", input=str(clip))
    scene.frame_set(scene.frame_start)
    blend = out / "actionmesh_demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print("4/4 rendering the preview (bottom: the result through the estimated camera; top: the video)", flush=True)
    picks = [round(i * (len(keys) - 1) / (PREVIEW_FRAMES - 1)) for i in range(PREVIEW_FRAMES)]
    preview = out / "preview.png"
    render_preview(bpy, preview, [scene.frame_start + i for i in picks], above=[frames[i] for i in picks])
    print(f"\nDone.\n  scene:   {blend}\n  preview: {preview}")
    return 0


def sequence_demo(bpy, out: Path) -> int:
    example = make_example(out)
    obj = build_scene(bpy, example["reference"])
    print(f"3/4 animating '{obj.name}' ({len(obj.data.vertices)} vertices) from {example['frames']} frames "
          f"of {example['frame_vertices']} vertices", flush=True)
    started = time.monotonic()
    status = bpy.ops.actionmesh.animate_from_sequence(sequence=example["sequence"], space="LOCAL")
    if status != {"FINISHED"}:
        print(f"error: {bpy.context.window_manager.actionmesh_job.last_error}", file=sys.stderr)
        return 1
    keys = [k.name for k in obj.data.shape_keys.key_blocks if k.name.startswith("AM_")]
    outputs = _job_outputs()
    print(f"    {len(keys)} shape keys in {time.monotonic() - started:.1f} s (method: {outputs.get('method')}"
          + (f", {outputs['refined_frames']} of {len(keys)} frames refined by optimisation"
             if "refined_frames" in outputs else "") + ")", flush=True)
    for warning in outputs.get("warnings", []):
        print(f"    warning: {warning}", flush=True)
    blend = out / "actionmesh_demo.blend"
    preview = out / "preview.png"
    scene = bpy.context.scene
    scene.frame_set(scene.frame_start)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print("4/4 rendering the preview", flush=True)
    step = max(1, len(keys) // PREVIEW_FRAMES)
    render_preview(bpy, preview, [scene.frame_start + i * step for i in range(PREVIEW_FRAMES)])
    print(f"\nDone.\n  scene:   {blend}\n  preview: {preview}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extension", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--clip", default=str(EXAMPLE), help="folder of RGBA frames (default: the panda example)")
    parser.add_argument("--mesh", default=str(EXAMPLE / "panda.glb"), help="the mesh to animate from --clip")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clip, mesh = Path(args.clip), Path(args.mesh)
    have_example = clip.is_dir() and mesh.is_file()
    print("1/4 " + (f"using the video {clip} and the mesh {mesh.name}" if have_example else
                    f"no example video here ({clip} is absent: it ships with the project's shared data, not "
                    "with the code); showing the mesh-sequence job on a generated example instead"), flush=True)
    import bpy

    print(f"2/4 installing {Path(args.extension).name} into Blender {bpy.app.version_string}", flush=True)
    # Factory settings first: resetting them later would disable the extension again.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.extensions.package_install_files(filepath=args.extension, repo="user_default", enable_on_install=True)
    return panda_demo(bpy, clip, mesh, out) if have_example else sequence_demo(bpy, out)


if __name__ == "__main__":
    sys.exit(main())
