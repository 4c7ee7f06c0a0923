# SPDX-License-Identifier: GPL-3.0-or-later
"""The one base of every operator that runs a backend job: start, watch (modal or blocking),
cancel, finish, fail.

Scene jobs (generate, animate, transfer, sequences) show their progress in the sidebar panel (the
WindowManager's job state, SceneBoard); the preferences' jobs (the model manager, Check) in the
preferences (a dict in session, PreferencesBoard). Only where they show differs.

A job touches the scene only once, at the very end, after the backend's result has been read
and checked; everything before that happens in a job folder. So a failure, a cancel or a dead
backend leaves the scene exactly as it was, and one undo step removes a finished result (the
operators using this base declare UNDO).

A subclass implements two methods:

* ``_prepare(context, job_dir) -> (command, args)``: check the input (raise UserError for
  anything the user can fix), write what the backend reads into `job_dir` (None for a job that
  exchanges no files: `uses_job_dir = False`), keep on ``self`` what ``_apply`` needs (names, not
  Blender references: the user may edit the scene while the job runs);
* ``_apply(context, job) -> str``: write the checked result into the scene (or the preferences'
  state) and return the status line. It must either succeed or leave the scene as it found it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import bpy

from .. import session
from ..backend_client import BackendUnavailable, Job
from ..config import backend_python, user_dir
from ..exchange import ResultError, fit_summary, warnings_summary

KEEP_JOB_DIRS = 5


class UserError(Exception):
    """A problem the user can fix; reported as is, with nothing changed."""


def jobs_root() -> Path:
    root = user_dir() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_job_dir() -> Path:
    root = jobs_root()
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - KEEP_JOB_DIRS + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


def target_mesh(name: str, n_vertices: int):
    """The mesh object a job's result goes onto, looked up again by name at the end (the user may
    have renamed, deleted or edited it while the job ran); UserError if it cannot take the result."""
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "MESH":
        raise UserError(f"Object '{name}' is gone; nothing was written")
    if len(obj.data.vertices) != n_vertices:
        raise UserError(f"Mesh '{obj.name}' changed from {n_vertices} to {len(obj.data.vertices)} vertices "
                        "while the job ran; nothing was written")
    if obj.mode != "OBJECT":
        raise UserError(f"'{obj.name}' is in {obj.mode} mode; leave it and run again")
    return obj


def job_state(context):
    return context.window_manager.actionmesh_job


def redraw(context) -> None:
    screen = getattr(context, "screen", None)
    for area in (screen.areas if screen else []):
        if area.type in ("VIEW_3D", "SEQUENCE_EDITOR"):
            area.tag_redraw()


def redraw_preferences(context) -> None:
    wm = getattr(context, "window_manager", None) or bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


class SceneBoard:
    """Where a scene job shows: the WindowManager's job state, drawn by the sidebar panel."""

    def __init__(self, context):
        self.state = job_state(context)

    def begin(self, text: str) -> None:
        state = self.state
        state.last_error = ""
        state.running, state.progress, state.status = True, 0.0, text
        state.stage, state.message, state.seconds_left = "", "starting", -1.0

    def show(self, job: Job, seconds_left) -> None:
        state = self.state
        state.progress = job.fraction
        state.stage, state.message = job.stage, job.message
        state.seconds_left = -1.0 if seconds_left is None else seconds_left
        state.status = f"{job.stage}: {job.message}" if job.stage else job.message

    def stop(self) -> None:
        self.state.running = False

    def outcome(self, text: str) -> None:
        self.state.status = text

    def error(self, message: str) -> None:
        self.state.running, self.state.last_error = False, message

    def redraw(self, context) -> None:
        redraw(context)


class PreferencesBoard:
    """Where a preferences job shows: one of session's dicts (busy, progress, message, error),
    drawn by ui/preferences.py."""

    def __init__(self, values: dict, label: str):
        self.values, self.label = values, label

    def begin(self, text: str) -> None:
        self.values.update(error="", busy=self.label, progress=0.0)

    def show(self, job: Job, seconds_left) -> None:
        self.values.update(busy=f"{self.label}: {job.message}" if job.message else self.label, progress=job.fraction)

    def stop(self) -> None:
        self.values.update(busy="", progress=0.0)

    def outcome(self, text: str) -> None:
        self.values.update(message=text, error="", updated=time.time())

    def error(self, message: str) -> None:
        self.values.update(error=message, busy="", progress=0.0, updated=time.time())

    def redraw(self, context) -> None:
        redraw_preferences(context)


class ProgressClock:
    """Time left from the rate of progress within the current stage (stages differ too much in
    speed for one rate over the whole job): elapsed * (1 - f) / f, once f is big enough to mean
    something. None while unknown."""

    def __init__(self):
        self.stage = None
        self.since = time.monotonic()

    def seconds_left(self, job: Job) -> float | None:
        now = time.monotonic()
        if job.stage != self.stage:
            self.stage, self.since = job.stage, now
            return None
        f = job.fraction
        elapsed = now - self.since
        if f < 0.02 or f >= 1.0 or elapsed < 0.5:
            return None
        return elapsed * (1.0 - f) / f


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {(seconds % 3600) // 60:02.0f} min"


class ModalJob:
    """How an operator that runs one backend job waits for it: modal with a timer in the UI (Esc
    cancels), blocking in scripts and `blender -b` (where timers and modal handlers never run).
    A subclass implements `_start(context) -> bool`, `_show(context, job, cursor_progress)` and
    `_finish(context)`, and may override `_interrupted(context)`."""

    timer_interval = 0.1

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(self.timer_interval, window=context.window)
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
        """Blocking path: scripts and `blender -b`."""
        if not self._start(context):
            return {"CANCELLED"}
        interactive = not bpy.app.background
        if interactive:
            context.window_manager.progress_begin(0, 1000)
        try:
            session.current_job.wait(on_update=lambda job: self._show(context, job, interactive))
        except BaseException:
            # Interrupted (Ctrl+C in a script, a failing progress listener): stop the job too.
            session.current_job.cancel()
            self._interrupted(context)
            raise
        finally:
            if interactive:
                context.window_manager.progress_end()
        return self._finish(context)

    def _interrupted(self, context) -> None:
        """The blocking wait was interrupted and the job cancelled: clear what shows it running."""


class JobOperator(ModalJob):
    """Mixin for `bpy.types.Operator` subclasses that run one backend job (see the module doc)."""

    # Shown while nothing else is known, and in the cancel message.
    job_label = "ActionMesh job"
    # Scene jobs exchange files with the backend through a job folder; the preferences' jobs pass
    # only arguments and read only the result.
    uses_job_dir = True
    needs_object_mode = True

    @classmethod
    def poll(cls, context):
        if cls.needs_object_mode and context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode")
            return False
        if session.busy():
            cls.poll_message_set("An ActionMesh job is already running")
            return False
        return True

    def _board(self, context):
        """Where this job shows its progress and outcome."""
        return SceneBoard(context)

    def _interrupted(self, context) -> None:
        self._board(context).stop()

    # -- the steps

    def _start(self, context) -> bool:
        board = self._board(context)
        self._started = time.monotonic()
        self._clock = ProgressClock()
        try:
            job_dir = new_job_dir() if self.uses_job_dir else None
            command, args = self._prepare(context, job_dir)
            backend = session.get_backend(backend_python(context), cwd=str(jobs_root()))
            session.current_job = Job(backend, command, args)
        except (UserError, BackendUnavailable, OSError) as exc:
            self._fail(context, str(exc))
            return False
        board.begin(f"Starting the {self.job_label}")
        return True

    def _show(self, context, job: Job, cursor_progress: bool = False) -> None:
        board = self._board(context)
        board.show(job, self._clock.seconds_left(job))
        if cursor_progress:
            context.window_manager.progress_update(int(job.fraction * 1000))
        session.notify(job)
        board.redraw(context)

    def _finish(self, context):
        job = session.current_job
        board = self._board(context)
        board.stop()
        board.redraw(context)
        if job.state == "cancelled":
            board.outcome(f"{self.job_label[:1].upper()}{self.job_label[1:]} cancelled; nothing was changed")
            self.report({"WARNING"}, f"ActionMesh: {self.job_label} cancelled; nothing was changed")
            return {"CANCELLED"}
        if job.state != "done":
            return self._fail(context, f"{job.error} [{job.error_code}]")
        try:
            summary = self._apply(context, job)
        except (UserError, ResultError, ValueError, OSError) as exc:
            return self._fail(context, str(exc))
        for warning in job.outputs.get("warnings", []):
            self.report({"WARNING"}, warning)
        line = f"{summary} in {time.monotonic() - self._started:.1f} s"
        for part in (fit_summary(job.outputs.get("fit")), warnings_summary(job.outputs.get("warnings"))):
            if part:
                line += f"; {part}"
        board.outcome(line)
        self.report({"INFO"}, f"ActionMesh: {line}")
        return {"FINISHED"}

    def _fail(self, context, message: str):
        self._board(context).error(message)
        self.report({"ERROR"}, f"ActionMesh: {message}")
        return {"CANCELLED"}

    # -- for subclasses

    def _prepare(self, context, job_dir: Path | None) -> tuple[str, dict]:
        raise NotImplementedError

    def _apply(self, context, job: Job) -> str:
        raise NotImplementedError


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
