# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job end to end in headless Blender (the bpy module), as `python3 build.py demo` runs it.

Installs and enables the built extension with Blender's own installer, imports an example
reference mesh, runs the operator on a folder of per-frame meshes, saves a .blend and renders
a preview strip of four frames with Cycles on the CPU.
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
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    light.data.energy = 3.0
    light.rotation_euler = (0.7, 0.2, 0.5)
    scene.collection.objects.link(light)
    world = bpy.data.worlds.new("World")
    world.color = (0.9, 0.9, 0.92)
    scene.world = world
    return obj


def render_preview(bpy, out_png: Path, frames: list[int]) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.render.resolution_x = scene.render.resolution_y = PREVIEW_SIZE
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    tiles = []
    for frame in frames:
        scene.frame_set(frame)
        path = out_png.parent / f"frame_{frame:03d}.png"
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(str(path))
        pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
        image.pixels.foreach_get(pixels)
        tiles.append(pixels.reshape(image.size[1], image.size[0], 4))
        bpy.data.images.remove(image)
        path.unlink()
    strip = np.concatenate(tiles, axis=1)
    image = bpy.data.images.new("preview", strip.shape[1], strip.shape[0], alpha=True)
    image.pixels.foreach_set(strip.ravel())
    image.filepath_raw = str(out_png)
    image.file_format = "PNG"
    image.save()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extension", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    print("1/4 writing the example mesh sequence", flush=True)
    example = make_example(out)
    import bpy

    print(f"2/4 installing {Path(args.extension).name} into Blender {bpy.app.version_string}", flush=True)
    # Factory settings first: resetting them later would disable the extension again.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.extensions.package_install_files(filepath=args.extension, repo="user_default", enable_on_install=True)
    obj = build_scene(bpy, example["reference"])
    print(f"3/4 animating '{obj.name}' ({len(obj.data.vertices)} vertices) from {example['frames']} frames "
          f"of {example['frame_vertices']} vertices", flush=True)
    started = time.monotonic()
    status = bpy.ops.actionmesh.animate_from_sequence(directory=example["sequence"], space="LOCAL")
    if status != {"FINISHED"}:
        print(f"error: {bpy.context.window_manager.actionmesh_job.last_error}", file=sys.stderr)
        return 1
    keys = [k.name for k in obj.data.shape_keys.key_blocks if k.name.startswith("AM_")]
    import importlib

    outputs = importlib.import_module("bl_ext.user_default.actionmesh.session").current_job.outputs or {}
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


if __name__ == "__main__":
    sys.exit(main())
