# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: animate the active mesh from a mesh sequence, cancel, set up the backend.

A job touches the scene only once, at the very end, after the backend's result has been read
and checked; everything before that happens in a job folder. So a failure, a cancel or a dead
backend leaves the object exactly as it was, and one undo step removes a finished result.
"""


import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import bpy
import numpy as np

from . import session, shape_keys
from .backend_client import BackendUnavailable, Job, backend_source_root
from .exchange import ResultError, fit_summary, read_offsets, write_ply
from .preferences import backend_python, default_env_python, get_prefs, user_dir
from .props import OPERATOR_METHOD_ITEMS, SPACE_ITEMS

KEEP_JOB_DIRS = 5
# Blender Z-up scene coordinates -> Y-up file coordinates (the glTF convention): x, z, -y.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


class UserError(Exception):
    """A problem the user can fix; reported as is, with nothing changed."""


def _jobs_root() -> Path:
    root = user_dir() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _new_job_dir() -> Path:
    root = _jobs_root()
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - KEEP_JOB_DIRS + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


def _reference_geometry(obj) -> tuple[np.ndarray, np.ndarray]:
    """The rest shape the keys are relative to (the reference key if any), and its triangles."""
    mesh = obj.data
    n = len(mesh.vertices)
    co = np.empty(n * 3, dtype=np.float32)
    if mesh.shape_keys is not None and mesh.shape_keys.reference_key is not None:
        mesh.shape_keys.reference_key.points.foreach_get("co", co)
    else:
        mesh.vertices.foreach_get("co", co)
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return co.reshape(n, 3), tris.reshape(-1, 3)


def _to_file_space(obj, space: str) -> np.ndarray:
    """3x3 linear map from the object's local coordinates to the sequence files' coordinates."""
    if space == "LOCAL":
        return np.eye(3)
    linear = np.array(obj.matrix_world.to_3x3(), dtype=np.float64)
    return Z_UP_TO_Y_UP @ linear if space == "WORLD_Y_UP" else linear


def _job_state(context):
    return context.window_manager.actionmesh_job


def _redraw(context) -> None:
    screen = getattr(context, "screen", None)
    for area in (screen.areas if screen else []):
        if area.type == "VIEW_3D":
            area.tag_redraw()


def _method(choice: str, prefs) -> str:
    if choice != "PREFERENCE":
        return choice
    return prefs.method if prefs is not None else "auto"


class ACTIONMESH_OT_animate_from_sequence(bpy.types.Operator):
    """Animate the active mesh with shape keys that follow a folder of per-frame meshes"""

    bl_idname = "actionmesh.animate_from_sequence"
    bl_label = "Animate from Mesh Sequence"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(
        name="Mesh Sequence", subtype="DIR_PATH",
        description="Folder with one mesh per frame (obj, ply, stl, glb), in name order")
    space: bpy.props.EnumProperty(name="Coordinates", items=SPACE_ITEMS, default="LOCAL")
    method: bpy.props.EnumProperty(name="Method", items=OPERATOR_METHOD_ITEMS, default="PREFERENCE")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Select a mesh object to animate")
            return False
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode")
            return False
        if session.busy():
            cls.poll_message_set("An ActionMesh job is already running")
            return False
        return True

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = session.current_job
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        job.update()
        self._show(context, job)
        if not job.finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(context)

    def execute(self, context):
        """Blocking path: scripts and `blender -b`, where timers and modal handlers never run."""
        if not self._start(context):
            return {"CANCELLED"}
        interactive = not bpy.app.background
        if interactive:
            context.window_manager.progress_begin(0, 1000)
        try:
            session.current_job.wait(on_update=lambda job: self._show(context, job, interactive))
        finally:
            if interactive:
                context.window_manager.progress_end()
        return self._finish(context)

    def _start(self, context) -> bool:
        state = _job_state(context)
        state.last_error = ""
        try:
            self._launch(context)
        except (UserError, BackendUnavailable, OSError) as exc:
            return self._fail(context, str(exc))
        state.running, state.progress, state.status = True, 0.0, "Starting the backend job"
        return True

    def _launch(self, context) -> None:
        obj = context.active_object
        directory = bpy.path.abspath(self.directory or context.scene.actionmesh.sequence_dir)
        if not directory:
            raise UserError("Choose the folder of per-frame meshes first")
        if not os.path.isdir(directory):
            raise UserError(f"Sequence folder not found: {directory}")
        vertices, triangles = _reference_geometry(obj)
        if len(vertices) == 0 or len(triangles) == 0:
            raise UserError(f"Mesh '{obj.name}' has no faces to register")
        to_file = _to_file_space(obj, self.space)
        if abs(np.linalg.det(to_file)) < 1e-12:
            raise UserError(f"Object '{obj.name}' has a zero scale; apply or fix its scale first")
        job_dir = _new_job_dir()
        write_ply(job_dir / "reference.ply", vertices @ to_file.T, triangles)
        prefs = get_prefs(context)
        scene = context.scene
        args = {"reference": str(job_dir / "reference.ply"), "sequence": directory, "out": str(job_dir / "out"),
                "method": _method(self.method, prefs), "device": prefs.device if prefs else "auto",
                "fps": scene.render.fps / scene.render.fps_base}
        if prefs and prefs.model_dir:
            args["weights_dir"] = bpy.path.abspath(prefs.model_dir)
        backend = session.get_backend(backend_python(context), cwd=str(_jobs_root()))
        session.current_job = Job(backend, "register", args)
        # Kept on the instance: the object is looked up again by name at the end, as the user
        # may have renamed, deleted or edited it while the job ran.
        self._target = {"name": obj.name, "n_vertices": len(vertices), "from_file": np.linalg.inv(to_file),
                        "start_frame": scene.frame_start, "directory": directory, "started": time.monotonic()}

    def _show(self, context, job: Job, cursor_progress: bool = False) -> None:
        state = _job_state(context)
        state.progress = job.fraction
        state.status = f"{job.stage}: {job.message}" if job.stage else job.message
        if cursor_progress:
            context.window_manager.progress_update(int(job.fraction * 1000))
        session.notify(job)
        _redraw(context)

    def _finish(self, context):
        job = session.current_job
        state = _job_state(context)
        state.running = False
        _redraw(context)
        if job.state == "cancelled":
            state.status = "Cancelled; nothing was changed"
            self.report({"WARNING"}, "ActionMesh job cancelled; nothing was changed")
            return {"CANCELLED"}
        if job.state != "done":
            return self._fail(context, f"{job.error} [{job.error_code}]")
        try:
            written = self._apply(context, job)
        except (UserError, ResultError, ValueError) as exc:
            return self._fail(context, str(exc))
        target = self._target
        for warning in job.outputs.get("warnings", []):
            self.report({"WARNING"}, warning)
        state.status = (f"{len(written)} shape keys on '{target['name']}' in "
                        f"{time.monotonic() - target['started']:.1f} s")
        fit = fit_summary(job.outputs.get("frame_fit"))
        if fit:
            state.status += f"; {fit}"
        self.report({"INFO"}, f"ActionMesh: {state.status}")
        return {"FINISHED"}

    def _apply(self, context, job: Job) -> list[str]:
        target = self._target
        obj = bpy.data.objects.get(target["name"])
        if obj is None or obj.type != "MESH":
            raise UserError(f"Object '{target['name']}' is gone; nothing was written")
        if len(obj.data.vertices) != target["n_vertices"]:
            raise UserError(f"Mesh '{obj.name}' changed from {target['n_vertices']} to "
                            f"{len(obj.data.vertices)} vertices while the job ran; nothing was written")
        if obj.mode != "OBJECT":
            raise UserError(f"'{obj.name}' is in {obj.mode} mode; leave it and run again")
        offsets, _fps = read_offsets(Path(job.outputs["animation"]), target["n_vertices"])
        local = (offsets.reshape(-1, 3) @ target["from_file"].T).astype(np.float32).reshape(offsets.shape)
        return shape_keys.apply_offsets_as_shape_keys(obj, local, start_frame=target["start_frame"])

    def _fail(self, context, message: str):
        state = _job_state(context)
        state.running, state.last_error = False, message
        self.report({"ERROR"}, f"ActionMesh: {message}")
        return {"CANCELLED"}


class ACTIONMESH_OT_cancel_job(bpy.types.Operator):
    """Stop the running ActionMesh job; the scene stays as it was"""

    bl_idname = "actionmesh.cancel_job"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return session.busy()

    def execute(self, context):
        session.current_job.cancel()
        return {"FINISHED"}


class ACTIONMESH_OT_setup_backend(bpy.types.Operator):
    """Create the backend's Python environment in the extension's user folder and install its
    requirements (downloads several hundred MB)"""

    bl_idname = "actionmesh.setup_backend"
    bl_label = "Set Up Backend"

    @classmethod
    def poll(cls, context):
        return not session.busy()

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._begin():
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.5, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, "Setting up the ActionMesh backend; this takes several minutes")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        status = self._step()
        if status is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return status

    def execute(self, context):
        if not self._begin():
            return {"CANCELLED"}
        while (status := self._step()) is None:
            time.sleep(0.5)
        return status

    def _begin(self) -> bool:
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is off (Preferences > System > Network); the backend "
                                   "setup downloads packages")
            return False
        env_dir = default_env_python().parent.parent
        requirements = backend_source_root() / "backend" / "requirements.txt"
        self._steps = [[sys.executable, "-m", "venv", str(env_dir)],
                       [str(default_env_python()), "-m", "pip", "install", "-r", str(requirements)]]
        self._log = user_dir() / "backend-setup.log"
        self._proc = None
        return True

    def _step(self):
        """Advance the install; None while it runs, else the operator's return set."""
        if self._proc is not None:
            code = self._proc.poll()
            if code is None:
                return None
            self._proc = None
            if code != 0:
                tail = self._log.read_text(errors="replace")[-400:] if self._log.exists() else ""
                self.report({"ERROR"}, f"Backend setup failed (log: {self._log}): {tail}")
                return {"CANCELLED"}
        if not self._steps:
            self.report({"INFO"}, f"Backend environment ready: {default_env_python()}")
            return {"FINISHED"}
        with open(self._log, "a") as log:
            self._proc = subprocess.Popen(self._steps.pop(0), stdout=log, stderr=subprocess.STDOUT)
        return None
