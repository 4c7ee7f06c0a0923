# SPDX-License-Identifier: GPL-3.0-or-later
"""A prompt -> a clip to judge (the backend's `prompt_video` job):

* actionmesh.make_clip: a video model makes a short clip of the prompt. For Target Active Mesh it
  continues a render of the active mesh (its rest shape, as the fit sees it) from the scene camera,
  else from a temporary camera framing it, and that camera is kept as camera.json for the fit.
  The clip lands as a movie strip in the scene's Sequencer; the scene settings remember it
  (prompt_clip, prompt_camera, prompt_object, and the seed in prompt_seed). `regenerate` makes
  the next one: the remembered seed + 1.

Generate (ui/panel.py) then runs the video operators on the clip, as on any movie file.

The clip, its first frame and camera are moved out of the job folder into the user folder's
prompt_clips/: job folders are pruned after a few jobs, and the strip and Generate read the clip
later.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import bpy
import numpy as np

from .. import cameras, sources
from ..backend_client import Job
from ..blender_mesh import Z_UP_TO_Y_UP, reference_geometry, remove_object, world_matrix
from ..config import get_prefs, models_dir, user_dir
from ..exchange import ResultError
from ..props import MEMORY_ITEMS, TARGET_ITEMS
from .job import JobOperator, UserError
from .video import render_camera_json, render_object_frames

CLIP_FRAMES = 16  # the backend's default and least: one Stage I window
VIEW_SIZE = 1280  # the image-to-video model's width: its first frame is not upscaled


def clips_root() -> Path:
    root = user_dir() / "prompt_clips"
    root.mkdir(parents=True, exist_ok=True)
    return root


def clip_stem(prompt: str, seed: int) -> str:
    """The clip's file name (and so Generate's new object's): the prompt's first words and the seed."""
    words = re.findall(r"[A-Za-z0-9]+", prompt)
    slug = "_".join(words)[:40].strip("_") or "clip"
    return f"{slug}_s{seed}"


def _stand_in(obj, rest: np.ndarray):
    """A temporary object (linked nowhere) showing `obj` as the fit sees it: the rest shape, with
    no shape keys or modifiers, its materials, where `obj` stands. The caller removes it."""
    # From the original object: its undeformed mesh, with no shape keys (a copy would carry a Key
    # datablock that outlives it) and no modifiers, but its materials and UVs.
    mesh = bpy.data.meshes.new_from_object(obj)
    stand_in = bpy.data.objects.new(f"{obj.name} (first frame)", mesh)
    try:
        mesh.vertices.foreach_set("co", rest.ravel())
        mesh.update()
        for own, slot in zip(obj.material_slots, stand_in.material_slots):
            if own.link == "OBJECT":
                slot.link, slot.material = "OBJECT", own.material
        stand_in.matrix_world = obj.matrix_world
    except BaseException:
        remove_object(stand_in)
        raise
    return stand_in


def _in_view(camera: dict, points: np.ndarray) -> float:
    """Share of `points` (file coordinates) in front of the camera and inside its image."""
    ext = np.asarray(camera["world_to_camera"], dtype=np.float64)
    k = camera["intrinsics"]
    depth = points @ ext[2, :3] + ext[2, 3]
    with np.errstate(divide="ignore", invalid="ignore"):  # points behind the camera are left out below
        uv = cameras.project(camera, points)
    inside = (depth > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < k["width"] - 0.5) & (uv[:, 1] >= -0.5) \
        & (uv[:, 1] < k["height"] - 0.5)
    return float(inside.mean()) if len(points) else 0.0


class ACTIONMESH_OT_make_clip(JobOperator, bpy.types.Operator):
    """Make a short clip of the prompt with a video model (for Active Mesh, continuing a render of
    the selected mesh) and put it in the Sequencer, to judge before Generate"""

    bl_idname = "actionmesh.make_clip"
    bl_label = "Make Clip"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "clip job"

    # The backend's words (`prompt-video --prompt --frames --seed --image`), as elsewhere.
    prompt: bpy.props.StringProperty(name="Prompt", description="The subject and its motion")
    target: bpy.props.EnumProperty(name="Target", items=TARGET_ITEMS, default="NEW",
                                   description="New Object: a clip from the prompt alone; Active Mesh: a clip that "
                                               "starts from a render of the selected mesh")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="The video model's seed")
    regenerate: bpy.props.BoolProperty(
        name="Regenerate", default=False,
        description="Another clip of the prompt: the seed of the scene's last clip (Clip Seed) + 1, not Seed")
    frames: bpy.props.IntProperty(name="Frames", default=0, min=0,
                                  description=f"The clip's length (16 to 49); 0: {CLIP_FRAMES}")
    memory: bpy.props.EnumProperty(name="Memory", items=MEMORY_ITEMS, default="AUTO")
    render_size: bpy.props.IntProperty(name="Render Size", default=VIEW_SIZE, min=64, max=4096,
                                       description="Active Mesh: the longer side of the first frame's render")
    video_model: bpy.props.StringProperty(name="Video Model", options={"HIDDEN"},
                                          description="The backend's video model (models list); empty: its default "
                                                      "for text, or for a first frame")
    models_dir: bpy.props.StringProperty(name="Models Folder", subtype="DIR_PATH", options={"HIDDEN"},
                                         description="Models folder (DIR/<org>/<name>); empty: the preference, "
                                                     "else the Hugging Face cache")

    def _prepare(self, context, job_dir: Path):
        prompt = " ".join(self.prompt.split())
        if not prompt:
            raise UserError("The prompt is empty: describe the subject and its motion, e.g. \"a red dragon flapping "
                            "its wings, side view\"")
        scene = context.scene
        seed = scene.actionmesh.prompt_seed + 1 if self.regenerate else self.seed
        prefs = get_prefs(context)
        stem = clip_stem(prompt, seed)
        args = {"prompt": prompt, "out": str(job_dir / f"{stem}.mp4"), "frames": self.frames or CLIP_FRAMES,
                "seed": seed, "device": prefs.device if prefs else "auto", "low_vram": self.memory == "LOW_VRAM"}
        folder = models_dir(context, self.models_dir)
        if folder:
            args["models_dir"] = folder
        if self.video_model:
            args["video_model"] = self.video_model
        self._clip = {"scene": scene.name, "prompt": prompt, "seed": seed, "job_dir": job_dir, "object": "",
                      "camera": ""}
        if self.target == "ACTIVE":
            args["image"] = str(self._render_first_frame(context, job_dir))
        return "prompt_video", args

    def _render_first_frame(self, context, job_dir: Path) -> Path:
        """view.png: the active mesh as the clip's first frame, through the scene camera (else a
        temporary framing camera), and camera.json: that camera, for the fit."""
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            raise UserError("Target Active Mesh: select the mesh the clip should start from")
        rest, triangles = reference_geometry(obj)
        if len(rest) == 0 or len(triangles) == 0:
            raise UserError(f"Mesh '{obj.name}' has no faces to render and animate")
        scene = context.scene
        camera_obj = scene.camera
        if camera_obj is not None and (camera_obj.type != "CAMERA" or camera_obj.data.type != "PERSP"):
            raise UserError(f"The scene camera '{camera_obj.name}' is not a perspective camera; make it one, or "
                            "remove it for a framing camera")
        render = scene.render
        aspect = (render.resolution_x * render.pixel_aspect_x) / (render.resolution_y * render.pixel_aspect_y)
        stand_in = _stand_in(obj, rest)
        try:
            # TEXTURE: the video model continues what it sees, so it should see the mesh's own look.
            cam, width, height = render_object_frames(
                scene, stand_in, [scene.frame_current], job_dir / "first_frame",
                camera_mode="SCENE" if camera_obj is not None else "FRAMING", size=self.render_size, aspect=aspect,
                color_type="TEXTURE")
        finally:
            remove_object(stand_in)
        camera = render_camera_json(cam, width, height, Z_UP_TO_Y_UP)
        matrix = world_matrix(obj)
        world = rest.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
        if camera_obj is not None and _in_view(camera, world @ Z_UP_TO_Y_UP.T) == 0.0:
            raise UserError(f"'{obj.name}' is not in view of the scene camera '{camera_obj.name}': aim it at the "
                            "mesh, or remove it for a framing camera")
        view = job_dir / "view.png"
        os.replace(job_dir / "first_frame" / "frame_0000.png", view)
        (job_dir / "camera.json").write_text(json.dumps(camera, indent=1))
        self._clip.update(object=obj.name, camera=f"the scene camera '{camera_obj.name}'" if camera_obj is not None
                          else "a framing camera")
        return view

    def _apply(self, context, job: Job) -> str:
        clip = self._clip
        scene = bpy.data.scenes.get(clip["scene"])
        if scene is None:
            raise UserError(f"Scene '{clip['scene']}' is gone; nothing was written")
        made = Path(job.outputs.get("video", ""))
        if not made.is_file():
            raise ResultError(f"the backend reported no clip ({made})")
        # Out of the job folder (pruned after a few jobs) into a folder of its own.
        folder = clips_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        path = folder / made.name
        shutil.move(str(made), path)
        camera_file = ""
        if clip["object"]:
            for name in ("view.png", "camera.json"):
                shutil.move(str(clip["job_dir"] / name), folder / name)
            camera_file = str(folder / "camera.json")
        try:
            strip = sources.add_movie_strip(scene, clip["prompt"], str(path), scene.frame_start)
        except sources.SourceError as exc:
            raise UserError(str(exc)) from None
        settings = scene.actionmesh
        settings.prompt, settings.prompt_seed = clip["prompt"], clip["seed"]
        settings.prompt_clip, settings.prompt_camera, settings.prompt_object = str(path), camera_file, clip["object"]
        out = job.outputs
        seen = f", continuing '{clip['object']}' seen by {clip['camera']}" if clip["object"] else ""
        return (f"{out.get('model', 'the video model')}, seed {clip['seed']}: clip '{path.name}' ({out.get('frames')} "
                f"frames at {out.get('fps', 0):g} fps{seen}; the model took {out.get('seconds', 0):.1f} s) on Sequencer "
                f"channel {strip.channel} from frame {strip.frame_final_start}")
