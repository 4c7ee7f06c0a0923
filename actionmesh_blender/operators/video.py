# SPDX-License-Identifier: GPL-3.0-or-later
"""Video operators (the backend's `generate` job):

* actionmesh.generate_from_video: a clip -> a new object (the generated mesh) with one shape key
  per frame;
* actionmesh.animate_from_video: the active mesh follows a clip (fitted to its silhouettes and
  optical flow, or moved by the learned models, or both), as shape keys on that mesh;
* actionmesh.transfer_motion: the same, with the motion of a clip or of another animated object,
  which Blender renders to frames first;
* actionmesh.show_frame0: the clip's first frame as the scene camera's background, to check the
  pose before animating.

Every setting is an operator property, so scripts need no UI; the panel copies the scene's
settings into them. Clips are the Sequencer's movie strip, a movie file or a folder of images.
Keys are timed to the scene: the clip's rate mapped onto the scene's (a 12 fps clip in a 24 fps
scene gets a key every 2 frames), from the strip's own start frame (else the scene's start).
"""

import json
import os
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from .. import cameras, shape_keys, sources
from ..availability import learned_unavailable_reason
from ..backend_client import Job
from ..blender_mesh import Y_UP_TO_Z_UP, Z_UP_TO_Y_UP, new_mesh_object, reference_geometry, remove_object, world_matrix
from ..exchange import ResultError, read_animation, read_glb_mesh, read_offsets, write_ply
from ..config import get_prefs, models_dir
from ..props import (MEMORY_ITEMS, OPERATOR_CAMERA_ITEMS, QUALITY_ITEMS, TRANSFER_CAMERA_ITEMS,
                     VIDEO_METHOD_ITEMS, VIDEO_SOURCE_ITEMS)
from .job import JobOperator, UserError, target_mesh

RENDER_SIZE = 256


class VideoSettings:
    """Properties every video operator shares (a mixin: Blender collects annotations of bases)."""

    source: bpy.props.EnumProperty(name="Source", items=VIDEO_SOURCE_ITEMS, default="STRIP")
    # The backend's words (`generate --input --frames --masks`), as the panel's settings are.
    input: bpy.props.StringProperty(name="Input", subtype="FILE_PATH",
                                    description="Source Movie File: the movie; Image Folder: the folder of PNG/JPG "
                                                "frames, in name order; unused for a strip")
    strip: bpy.props.StringProperty(name="Strip", description="Movie strip to use; empty: the active strip")
    start: bpy.props.IntProperty(name="Start", default=-1, min=-1,
                                 description="First frame of the clip to use (0 = its first); -1: the strip's "
                                             "first visible frame, else 0")
    frames: bpy.props.IntProperty(name="Frames", default=0, min=0,
                                  description="How many frames to use; 0: the strip's length, else to the end")
    stride: bpy.props.IntProperty(name="Stride", default=1, min=1, description="Use every N-th frame")
    fps: bpy.props.FloatProperty(name="Clip FPS", default=0.0, min=0.0,
                                 description="The clip's frame rate; 0: the movie's own (the scene's for images)")
    masks: bpy.props.StringProperty(name="Masks Folder", subtype="DIR_PATH",
                                    description="One mask image per frame (white = subject); empty: the frames' own "
                                                "alpha, else the background remover (RMBG-1.4) when it is stored")


class ModelSettings:
    seed: bpy.props.IntProperty(name="Seed", default=44, min=0)
    quality: bpy.props.EnumProperty(name="Quality", items=QUALITY_ITEMS, default="DEFAULT")
    memory: bpy.props.EnumProperty(name="Memory", items=MEMORY_ITEMS, default="AUTO")
    models_dir: bpy.props.StringProperty(name="Models Folder", subtype="DIR_PATH", options={"HIDDEN"},
                                         description="Models folder (DIR/<org>/<name>); empty: the preference, "
                                                     "else the Hugging Face cache")
    # Expert overrides, for tests and quick previews (0: the release's settings).
    stage0_steps: bpy.props.IntProperty(name="Stage 0 Steps", default=0, min=0, options={"HIDDEN"})
    stage1_steps: bpy.props.IntProperty(name="Stage I Steps", default=0, min=0, options={"HIDDEN"})
    resolution: bpy.props.IntProperty(name="Resolution", default=0, min=0, options={"HIDDEN"})


def _source(op, context) -> sources.VideoSource:
    try:
        return sources.resolve(context.scene, kind=op.source, input=op.input, strip_name=op.strip, start=op.start,
                               frames=op.frames, stride=op.stride, fps=op.fps)
    except sources.SourceError as exc:
        raise UserError(str(exc)) from None


def _generate_args(op, context, src: sources.VideoSource, job_dir: Path, method: str) -> dict:
    prefs = get_prefs(context)
    args = {"input": src.path, "out": str(job_dir / "out"), "method": method, "start": src.start,
            "stride": src.stride, "seed": op.seed, "device": prefs.device if prefs else "auto",
            "fast": op.quality == "FAST", "low_vram": op.memory == "LOW_VRAM"}
    if src.frames is not None:
        args["frames"] = src.frames
    if src.fps:
        args["fps"] = src.fps
    if op.masks:
        masks = bpy.path.abspath(op.masks)
        if not os.path.isdir(masks):
            raise UserError(f"Masks folder not found: {masks}")
        args["masks"] = masks
    folder = models_dir(context, op.models_dir)
    if folder:
        args["models_dir"] = folder
    for name in ("stage0_steps", "stage1_steps", "resolution"):
        if getattr(op, name):
            args[name] = getattr(op, name)
    return args


def _result_timing(job: Job, scene, fps: float) -> float:
    """Scene frames per key from the animation's rate (the clip's rate over the stride)."""
    if not fps or fps <= 0:
        raise ResultError("the result has no frame rate")
    return sources.scene_fps(scene) / fps


def _frame_end_restore(scene, before: int):
    scene.frame_end = before


# ---------------------------------------------------------------------------------------------


class ACTIONMESH_OT_generate_from_video(VideoSettings, ModelSettings, JobOperator, bpy.types.Operator):
    """Generate a new animated object from a video: the mesh of its first frame, and one shape key
    per frame"""

    bl_idname = "actionmesh.generate_from_video"
    bl_label = "Generate from Video"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "generation job"

    stage1_meshes: bpy.props.BoolProperty(
        name="Stage I Meshes", default=False,
        description="Also import each frame's Stage I shape into a collection, for inspection")

    def _prepare(self, context, job_dir: Path):
        src = _source(self, context)
        args = _generate_args(self, context, src, job_dir, "learned")
        args["stage1_meshes"] = self.stage1_meshes
        layer_collection = context.view_layer.active_layer_collection
        self._target = {"scene": context.scene.name, "collection": layer_collection.collection.name,
                        "name": src.name, "scene_start": src.scene_start}
        return "generate", args

    def _apply(self, context, job: Job) -> str:
        target = self._target
        scene = bpy.data.scenes.get(target["scene"])
        if scene is None:
            raise UserError(f"Scene '{target['scene']}' is gone; nothing was written")
        collection = bpy.data.collections.get(target["collection"]) or scene.collection
        vertices, faces, offsets, fps = read_animation(Path(job.outputs["animation"]))
        step = _result_timing(job, scene, fps)
        stage1 = []
        if self.stage1_meshes:
            folder = Path(job.outputs.get("out", "")) / "stage1"
            stage1 = [read_glb_mesh(p) for p in sorted(folder.glob("frame_*.glb"))]
        # Everything is read and checked; from here on the scene changes, all or nothing.
        frame_end = scene.frame_end
        made = []
        stage1_collection = None
        try:
            obj = new_mesh_object(target["name"], vertices @ Y_UP_TO_Z_UP.T, faces, collection)
            made.append(obj)
            local = (offsets.reshape(-1, 3) @ Y_UP_TO_Z_UP.T).astype(np.float32).reshape(offsets.shape)
            written = shape_keys.apply_offsets_as_shape_keys(obj, local, start_frame=target["scene_start"],
                                                             frame_step=step, scene=scene)
            if stage1:
                stage1_collection = bpy.data.collections.new(f"{obj.name} Stage I")
                collection.children.link(stage1_collection)
                for t, (v, f) in enumerate(stage1):
                    made.append(new_mesh_object(f"{obj.name} Stage I {t:03d}", v @ Y_UP_TO_Z_UP.T, f,
                                                stage1_collection))
        except BaseException:
            for o in reversed(made):
                remove_object(o)
            if stage1_collection is not None:
                bpy.data.collections.remove(stage1_collection)
            _frame_end_restore(scene, frame_end)
            raise
        view_layer = context.view_layer
        try:  # the new object becomes the selection, where it is in the view layer
            for other in view_layer.objects.selected:
                other.select_set(False)
            obj.select_set(True, view_layer=view_layer)
            view_layer.objects.active = obj
        except RuntimeError:
            pass
        extra = f", {len(stage1)} Stage I meshes" if stage1 else ""
        return (f"new object '{obj.name}': {len(vertices):,} vertices, {len(written)} shape keys every "
                f"{step:g} frames{extra}")


# ---------------------------------------------------------------------------------------------


def _scene_camera_json(scene, camera_obj, file_from_world: np.ndarray, width: int | None = None,
                       height: int | None = None) -> dict:
    render = scene.render
    if width is None:
        width = int(round(render.resolution_x * render.resolution_percentage / 100))
        height = int(round(render.resolution_y * render.resolution_percentage / 100))
    cam = camera_obj.data
    if cam.type != "PERSP":
        raise UserError(f"Camera '{camera_obj.name}' is {cam.type.lower()}; only perspective cameras are supported")
    return cameras.camera_json(
        camera_matrix_world=np.array(camera_obj.matrix_world), file_from_world=file_from_world, lens=cam.lens,
        sensor_width=cam.sensor_width, sensor_height=cam.sensor_height, sensor_fit=cam.sensor_fit, width=width,
        height=height, pixel_aspect_x=render.pixel_aspect_x, pixel_aspect_y=render.pixel_aspect_y,
        shift_x=cam.shift_x, shift_y=cam.shift_y)


def render_camera_json(cam: dict, width: int, height: int, file_from_world: np.ndarray) -> dict:
    """camera.json of the camera render_object_frames rendered through (its settings at the first frame)."""
    if cam["type"] != "PERSP":
        raise UserError("Only perspective cameras are supported")
    return cameras.camera_json(
        camera_matrix_world=cam["matrix_world"], file_from_world=file_from_world, lens=cam["lens"],
        sensor_width=cam["sensor_width"], sensor_height=cam["sensor_height"], sensor_fit=cam["sensor_fit"],
        width=width, height=height, pixel_aspect_x=cam["pixel_aspect_x"], pixel_aspect_y=cam["pixel_aspect_y"],
        shift_x=cam["shift_x"], shift_y=cam["shift_y"])


def read_camera_file(path: str) -> dict:
    """A camera.json as the backend reads it (its own checks come later; this one names the file)."""
    full = bpy.path.abspath(path)
    if not path or not os.path.isfile(full):
        raise UserError(f"Camera file not found: {full}" if path else "Camera File: choose a camera.json")
    try:
        camera = json.loads(Path(full).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read the camera file {full}: {exc}") from None
    if not isinstance(camera, dict) or "intrinsics" not in camera or "world_to_camera" not in camera:
        raise UserError(f"{full} is not a camera.json (intrinsics and world_to_camera)")
    return camera


class AnimateMeshJob(VideoSettings, ModelSettings, JobOperator):
    """The active mesh follows frames: shared by animate_from_video and transfer_motion (a mixin:
    Blender does not allow registering a subclass of a registered operator)."""

    camera: bpy.props.EnumProperty(name="Camera", items=OPERATOR_CAMERA_ITEMS, default="SCENE")
    # A camera.json in world coordinates, Y up, as SCENE's is written: it sees the mesh where it stands.
    camera_file: bpy.props.StringProperty(name="Camera File", subtype="FILE_PATH",
                                          description="Camera File: the camera.json (e.g. Make Clip's, beside its "
                                                      "clip)")
    add_camera: bpy.props.BoolProperty(
        name="Add Estimated Camera", default=True,
        description="When the camera was estimated, add it to the scene (as the scene camera if there is none), "
                    "so the result can be viewed as the clip sees it")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Select a mesh object to animate")
            return False
        return super().poll(context)

    def _placement(self, context, world: np.ndarray) -> np.ndarray:
        """World -> world 4x4 the mesh (world vertices [V, 3]) is moved by before it goes out, and
        its offsets moved back by: identity, the mesh is fitted where it stands."""
        return np.eye(4)

    def _frames(self, context, job_dir: Path, file_from_world: np.ndarray):
        """(VideoSource, camera.json dict or None) of the clip the mesh follows."""
        src = _source(self, context)
        camera = None
        if self.camera == "FILE":
            camera = read_camera_file(self.camera_file)
        elif self.camera == "SCENE":
            if context.scene.camera is None:
                self.report({"WARNING"}, "The scene has no camera: the camera is estimated from frame 0")
            else:
                camera = _scene_camera_json(context.scene, context.scene.camera, file_from_world)
        return src, camera

    def _prepare(self, context, job_dir: Path):
        obj = context.active_object
        vertices, triangles = reference_geometry(obj)
        if len(vertices) == 0 or len(triangles) == 0:
            raise UserError(f"Mesh '{obj.name}' has no faces to animate")
        matrix = world_matrix(obj)
        linear = matrix[:3, :3]
        if abs(np.linalg.det(linear)) < 1e-12:
            raise UserError(f"Object '{obj.name}' has a zero scale; apply or fix its scale first")
        if self.method == "learned":
            reason = learned_unavailable_reason(models_dir(context, self.models_dir))
            if reason:
                raise UserError(f"{reason}; choose Fit (no models needed), or download the models")
        # The mesh goes out with its world transform applied, Y up, so a scene camera applies as is.
        file_from_world = Z_UP_TO_Y_UP
        world = vertices.astype(np.float64) @ linear.T + matrix[:3, 3]
        place = self._placement(context, world)
        world = world @ place[:3, :3].T + place[:3, 3]
        write_ply(job_dir / "mesh.ply", world @ file_from_world.T, triangles)
        src, camera = self._frames(context, job_dir, file_from_world)
        args = _generate_args(self, context, src, job_dir, self.method)
        args["mesh"] = str(job_dir / "mesh.ply")
        if camera is not None:
            (job_dir / "camera.json").write_text(json.dumps(camera, indent=1))
            args["camera"] = str(job_dir / "camera.json")
        # file -> local: world = Y_UP_TO_Z_UP @ file, undo the placement, local = linear^-1 @ world
        # (offsets: no translation).
        from_file = np.linalg.inv(linear) @ np.linalg.inv(place[:3, :3]) @ np.linalg.inv(file_from_world)
        self._target = {"scene": context.scene.name, "name": obj.name, "n_vertices": len(vertices),
                        "from_file": from_file,
                        "scene_start": src.scene_start}
        return "generate", args

    def _apply(self, context, job: Job) -> str:
        target = self._target
        scene = bpy.data.scenes.get(target["scene"]) or context.scene
        obj = target_mesh(target["name"], target["n_vertices"])
        offsets, fps = read_offsets(Path(job.outputs["animation"]), target["n_vertices"])
        step = _result_timing(job, scene, fps)
        local = (offsets.reshape(-1, 3) @ target["from_file"].T).astype(np.float32).reshape(offsets.shape)
        written = shape_keys.apply_offsets_as_shape_keys(obj, local, start_frame=target["scene_start"],
                                                         frame_step=step, scene=scene)
        how = job.outputs.get("method", self.method)
        message = f"{len(written)} shape keys on '{obj.name}' every {step:g} frames ({how})"
        fit = job.outputs.get("fit") or {}
        if self.add_camera and fit.get("camera_estimated") and job.outputs.get("camera"):
            message += "; " + _add_estimated_camera(scene, obj.name, Path(job.outputs["camera"]))
        return message


def _add_estimated_camera(scene, name: str, path: Path) -> str:
    """A camera object where the fit estimated the clip's camera; the scene camera if it has none."""
    data = json.loads(path.read_text())
    # The mesh went out with its world transform applied, Y up (AnimateMeshJob._prepare).
    placed = cameras.blender_camera(data, Z_UP_TO_Y_UP)
    cam = bpy.data.cameras.new(f"{name} Camera")
    cam.lens, cam.sensor_width, cam.sensor_fit = placed["lens"], placed["sensor_width"], "AUTO"
    cam.shift_x, cam.shift_y = placed["shift_x"], placed["shift_y"]
    cam.clip_start = 0.01
    obj = bpy.data.objects.new(f"{name} Camera", cam)
    obj.matrix_world = Matrix(placed["matrix_world"].tolist())  # Matrix takes rows, as numpy stores them
    scene.collection.objects.link(obj)
    width, height = placed["resolution"]
    note = f"added the estimated camera '{obj.name}' (for a {width}x{height} clip)"
    if scene.camera is None:
        scene.camera = obj
        note += " as the scene camera"
    return note


class ACTIONMESH_OT_animate_from_video(AnimateMeshJob, bpy.types.Operator):
    """Animate the active mesh from a video: shape keys that follow the clip (its UVs, materials,
    modifiers and other shape keys stay as they are)"""

    bl_idname = "actionmesh.animate_from_video"
    bl_label = "Animate from Video"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "video job"

    method: bpy.props.EnumProperty(name="Method", items=VIDEO_METHOD_ITEMS, default="learned-fit")


# ---------------------------------------------------------------------------------------------


def _bounds_over_frames(objects, frames) -> tuple[np.ndarray, np.ndarray]:
    """World-space box of `objects` over `frames` of the context scene (evaluated)."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for obj in objects:
            ev = obj.evaluated_get(depsgraph)
            m = np.array(ev.matrix_world)
            corners = np.array([list(c) for c in ev.bound_box], dtype=np.float64) @ m[:3, :3].T + m[:3, 3]
            lo, hi = np.minimum(lo, corners.min(axis=0)), np.maximum(hi, corners.max(axis=0))
    return lo, hi


def _framing_camera(lo: np.ndarray, hi: np.ndarray, lens: float = 50.0, sensor: float = 36.0, aspect: float = 1.0):
    """A camera object (not linked anywhere) seeing the box [lo, hi] whole, from the front (-Y),
    a little to the side and above, in an image `aspect` (width / height) wide."""
    from mathutils import Vector

    centre = 0.5 * (lo + hi)
    radius = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-3)
    # The sensor spans the longer side (AUTO): the shorter one sees less.
    half_fov = np.arctan(0.5 * sensor * min(aspect, 1.0 / aspect) / lens)
    distance = radius / np.sin(half_fov) * 1.05
    direction = np.array([0.35, -1.0, 0.45])
    direction /= np.linalg.norm(direction)
    eye = centre + distance * direction
    data = bpy.data.cameras.new("ActionMesh Framing")
    data.lens, data.sensor_width, data.sensor_fit = lens, sensor, "AUTO"
    data.clip_start, data.clip_end = max(1e-3, (distance - 2 * radius) * 0.5), distance + 4 * radius
    cam = bpy.data.objects.new("ActionMesh Framing", data)
    cam.location = Vector(eye)
    cam.rotation_euler = Vector(centre - eye).to_track_quat("-Z", "Y").to_euler()
    return cam


def render_object_frames(scene, source_obj, frames: list[int], folder: Path, *, camera_mode: str,
                         also_frame: np.ndarray | None = None, size: int = RENDER_SIZE, aspect: float = 1.0,
                         color_type: str = "OBJECT"):
    """Render `source_obj`'s animation at scene `frames` to RGBA PNGs in `folder` (Workbench,
    studio light, transparent film) in a temporary scene, and return (camera settings with its
    matrix_world at the first frame, width, height). The user's scene is not changed: the
    temporary scene, camera, their data and the Render Result are removed, and the scene's frame
    is evaluated again. (Objects the source depends on, a parent or an armature, are evaluated as
    its dependencies.) also_frame: world points [N, 3] the framing camera keeps in view too;
    aspect: the framing camera's image width / height (the scene camera renders the scene's);
    color_type: Workbench's colouring (OBJECT: flat, for silhouettes; TEXTURE: the materials'
    images and colours)."""
    folder.mkdir(parents=True, exist_ok=True)
    images_before = set(bpy.data.images)
    render_scene = bpy.data.scenes.new("ActionMesh Render")
    temp_cam = None
    frame_before = scene.frame_current
    try:
        render = render_scene.render
        render.engine = "BLENDER_WORKBENCH"
        render.film_transparent = True
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        render.fps, render.fps_base = scene.render.fps, scene.render.fps_base
        render_scene.display.shading.light = "STUDIO"
        render_scene.display.shading.color_type = color_type
        render_scene.collection.objects.link(source_obj)
        # Rendering and evaluating another scene needs it to be the context's scene: the render
        # operator's `scene` argument alone renders stale animation.
        with bpy.context.temp_override(scene=render_scene, view_layer=render_scene.view_layers[0]):
            if camera_mode == "SCENE":
                if scene.camera is None:
                    raise UserError("The scene has no camera: add one, or choose the Framing camera")
                camera = scene.camera
                render_scene.collection.objects.link(camera)
                w, h = scene.render.resolution_x, scene.render.resolution_y
                k = size / max(w, h)
                width, height = max(8, round(w * k)), max(8, round(h * k))
                render.pixel_aspect_x = scene.render.pixel_aspect_x
                render.pixel_aspect_y = scene.render.pixel_aspect_y
            else:
                lo, hi = _bounds_over_frames([source_obj], frames)
                if also_frame is not None and len(also_frame):
                    lo, hi = np.minimum(lo, also_frame.min(axis=0)), np.maximum(hi, also_frame.max(axis=0))
                temp_cam = camera = _framing_camera(lo, hi, aspect=aspect)
                render_scene.collection.objects.link(camera)
                k = size / max(aspect, 1.0)
                width, height = max(8, round(k * aspect)), max(8, round(k))
            render_scene.camera = camera
            render.resolution_x, render.resolution_y = width, height
            render.resolution_percentage = 100
            matrix = None
            for i, frame in enumerate(frames):
                render_scene.frame_set(frame)
                if matrix is None:
                    matrix = np.array(camera.evaluated_get(bpy.context.evaluated_depsgraph_get()).matrix_world)
                render.filepath = str(folder / f"frame_{i:04d}.png")
                bpy.ops.render.render(write_still=True)
        data = camera.data
        cam_info = {"matrix_world": matrix, "lens": data.lens, "sensor_width": data.sensor_width,
                    "sensor_height": data.sensor_height, "sensor_fit": data.sensor_fit, "shift_x": data.shift_x,
                    "shift_y": data.shift_y, "type": data.type, "pixel_aspect_x": render.pixel_aspect_x,
                    "pixel_aspect_y": render.pixel_aspect_y}
        return cam_info, width, height
    finally:
        bpy.data.scenes.remove(render_scene)
        if temp_cam is not None:
            data = temp_cam.data
            bpy.data.objects.remove(temp_cam)
            bpy.data.cameras.remove(data)
        for image in set(bpy.data.images) - images_before:  # the Render Result the renders made
            bpy.data.images.remove(image)
        scene.frame_set(frame_before)


class ACTIONMESH_OT_transfer_motion(AnimateMeshJob, bpy.types.Operator):
    """Give the active mesh the motion of a video or of another animated object (rendered to frames
    by Blender first), as shape keys"""

    bl_idname = "actionmesh.transfer_motion"
    bl_label = "Transfer Motion"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "motion transfer job"

    motion_source: bpy.props.EnumProperty(
        name="Motion From", default="OBJECT",
        items=[("OBJECT", "Animated Object", "Another object's animation, rendered by Blender to frames"),
               ("VIDEO", "Video", "The clip chosen by Source (movie strip, movie file or image folder)")])
    source_object: bpy.props.StringProperty(name="Object", description="The animated object to take the motion from")
    render_camera: bpy.props.EnumProperty(name="Render Camera", items=TRANSFER_CAMERA_ITEMS, default="FRAMING")
    frame_start: bpy.props.IntProperty(name="First Frame", default=-1,
                                       description="Scene frame to start at; -1: the scene's start")
    render_size: bpy.props.IntProperty(name="Render Size", default=RENDER_SIZE, min=64, max=1024,
                                       description="Longer side of the rendered frames, in pixels")
    method: bpy.props.EnumProperty(name="Method", items=VIDEO_METHOD_ITEMS, default="fit")

    def _source_object(self, context):
        source_obj = bpy.data.objects.get(self.source_object)
        if source_obj is None:
            raise UserError(f"No object named '{self.source_object}' to take the motion from" if self.source_object
                            else "Choose the animated object to take the motion from")
        if source_obj == context.active_object:
            raise UserError("The motion must come from another object than the one being animated")
        return source_obj

    def _first_frame(self, scene) -> int:
        return scene.frame_start if self.frame_start < 0 else self.frame_start

    def _placement(self, context, world: np.ndarray) -> np.ndarray:
        """The target fitted as if it stood in the source's place at the first frame, wherever it
        stands: moved by the source's transform relative to its own (facing, scale; exact for the
        same mesh), then its box centred on the source's and scaled to its diagonal (a differently
        sized or modelled mesh). The offsets are moved back into the target's own space."""
        self._placed = world
        if self.motion_source != "OBJECT":
            return np.eye(4)
        scene = context.scene
        source_obj = self._source_object(context)
        frame_before = scene.frame_current
        try:
            scene.frame_set(self._first_frame(scene))
            depsgraph = context.evaluated_depsgraph_get()
            evaluated = source_obj.evaluated_get(depsgraph)
            source_matrix = np.array(evaluated.matrix_world)
            mesh = evaluated.to_mesh()
            try:
                co = np.empty(len(mesh.vertices) * 3, np.float32)
                mesh.vertices.foreach_get("co", co)
            finally:
                evaluated.to_mesh_clear()
        finally:
            scene.frame_set(frame_before)
        if len(co) == 0:
            raise UserError(f"'{source_obj.name}' has no vertices at frame {self._first_frame(scene)}")
        source = co.reshape(-1, 3).astype(np.float64) @ source_matrix[:3, :3].T + source_matrix[:3, 3]
        relative = source_matrix @ np.linalg.inv(np.array(context.active_object.matrix_world))
        moved = world @ relative[:3, :3].T + relative[:3, 3]
        centre = 0.5 * (moved.min(axis=0) + moved.max(axis=0))
        size = float(np.linalg.norm(moved.max(axis=0) - moved.min(axis=0)))
        if size <= 0:
            raise UserError(f"'{context.active_object.name}' has no extent to place")
        scale = float(np.linalg.norm(source.max(axis=0) - source.min(axis=0))) / size
        fit_box = np.eye(4)
        fit_box[:3, :3] *= scale
        fit_box[:3, 3] = 0.5 * (source.min(axis=0) + source.max(axis=0)) - scale * centre
        place = fit_box @ relative
        self._placed = world @ place[:3, :3].T + place[:3, 3]
        return place

    def _prepare(self, context, job_dir: Path):
        command, args = super()._prepare(context, job_dir)
        # A result from a mesh that does not cover the source's first frame is not written.
        args["refuse_mismatch"] = True
        return command, args

    def _frames(self, context, job_dir: Path, file_from_world: np.ndarray):
        if self.motion_source == "VIDEO":
            return super()._frames(context, job_dir, file_from_world)
        scene = context.scene
        source_obj = self._source_object(context)
        first = self._first_frame(scene)
        last = scene.frame_end if self.frames <= 0 else first + (self.frames - 1) * self.stride
        frames = list(range(first, last + 1, self.stride))
        if len(frames) < 2:
            raise UserError(f"Frames {first}..{last} by {self.stride} give {len(frames)} frame; at least 2 are needed")
        cam, width, height = render_object_frames(scene, source_obj, frames, job_dir / "frames",
                                                  camera_mode=self.render_camera, also_frame=self._placed,
                                                  size=self.render_size)
        camera = render_camera_json(cam, width, height, file_from_world)
        src = sources.VideoSource(path=str(job_dir / "frames"), name=source_obj.name,
                                  fps=sources.scene_fps(scene) / self.stride, start=0, frames=None, stride=1,
                                  scene_start=first)
        return src, camera


# ---------------------------------------------------------------------------------------------


class ACTIONMESH_OT_show_frame0(VideoSettings, bpy.types.Operator):
    """Show the clip's first frame behind the objects in the camera view, to check the pose and
    the camera before animating"""

    bl_idname = "actionmesh.show_frame0"
    bl_label = "Show Frame 0"
    bl_options = {"REGISTER", "UNDO"}

    alpha: bpy.props.FloatProperty(name="Opacity", default=0.6, min=0.0, max=1.0)

    @classmethod
    def poll(cls, context):
        if context.scene.camera is None:
            cls.poll_message_set("The scene has no camera")
            return False
        return True

    def execute(self, context):
        try:
            src = _source(self, context)
            image, offset = sources.first_frame_image(src)
        except (UserError, sources.SourceError, RuntimeError) as exc:
            self.report({"ERROR"}, f"ActionMesh: {exc}")
            return {"CANCELLED"}
        cam = context.scene.camera.data
        # One background per image: showing the same clip again reuses it.
        bg = next((b for b in cam.background_images if b.source == "IMAGE" and b.image == image), None)
        if bg is None:
            bg = cam.background_images.new()
        bg.source = "IMAGE"
        bg.image = image
        bg.alpha = self.alpha
        bg.display_depth = "BACK"
        bg.frame_method = "FIT"
        if image.source == "MOVIE":
            bg.image_user.frame_start = context.scene.frame_current
            bg.image_user.frame_offset = offset
            bg.image_user.frame_duration = 1
        cam.show_background_images = True
        self.report({"INFO"}, f"Frame {src.start} of {src.name} behind camera '{context.scene.camera.name}'")
        return {"FINISHED"}
