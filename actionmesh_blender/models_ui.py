# SPDX-License-Identifier: GPL-3.0-or-later
"""The model manager in the add-on's preferences: every released model the pipeline reads, with
its licence, size and state (missing / partial / ready), and Refresh, Download, Verify, Remove.

Each button runs a backend job (backend/pipelines/models.py: models_status, models_download,
models_verify, models_remove), the same functions as `python -m backend models ...`. What the
list shows lives in this module (`status`), not in the preferences: it describes disk contents
at the last refresh, so it is never saved.

Downloads need Blender's online access (Preferences > System > Network) and the model's licence
ticked here. The hub token (a PASSWORD preference) is passed only in the download job's
arguments, which travel on the backend's stdin and nowhere else: no job folder, no log.
"""

import time

import bpy

from . import session
from .backend_client import BackendUnavailable, Job
from .operators.job import ModalJob
from .preferences import backend_python, get_prefs, user_dir

# What the manager knows (the last results and the job in flight); reset when the folder changes.
status = {"store": "", "models": [], "message": "", "error": "", "busy": "", "progress": 0.0, "updated": 0.0}

STATE_ICONS = {"ready": "CHECKMARK", "partial": "ERROR", "missing": "IMPORT"}
OFFLINE_MESSAGE = ("Online access is off: turn on 'Allow Online Access' in Preferences > System > Network to "
                   "download models (or copy them into the Models Folder by hand)")


class UserError(Exception):
    """A problem the user can fix; reported as is, nothing is started."""


def forget_status() -> None:
    status.update(store="", models=[], message="", error="")


def models_dir(context=None) -> str:
    """The Models Folder preference as an absolute path; "" for the Hugging Face hub cache."""
    prefs = get_prefs(context)
    folder = prefs.models_dir if prefs is not None else ""
    return bpy.path.abspath(folder) if folder else ""


def accepted(prefs) -> set:
    return {n for n in (prefs.accepted_licences.split(",") if prefs is not None else []) if n}


def entry(name: str) -> dict | None:
    return next((m for m in status["models"] if m["name"] == name), None)


def _merge(models: list) -> None:
    """Folds a job's model descriptions into the list (replacing those it describes)."""
    by_name = {m["name"]: m for m in models}
    if not status["models"]:
        status["models"] = list(models)
        return
    status["models"] = [by_name.get(m["name"], m) for m in status["models"]]


def redraw_preferences(context) -> None:
    wm = getattr(context, "window_manager", None) or bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


class BackendJobOperator(ModalJob):
    """Mixin for an operator that runs one short backend job outside the scene (no undo, nothing
    written to the scene); it waits as every job operator does (ModalJob). Subclasses set
    `command` and implement `_args(context)` and `_done(context, outputs)`."""

    command = ""
    busy_text = "Working"
    timer_interval = 0.2

    @classmethod
    def poll(cls, context):
        if session.busy():
            cls.poll_message_set("An ActionMesh job is already running")
            return False
        return True

    def _start(self, context) -> bool:
        self._clear()
        try:
            args = self._args(context)
            backend = session.get_backend(backend_python(context), cwd=str(user_dir()))
            session.current_job = Job(backend, self.command, args)
        except (UserError, BackendUnavailable, OSError) as exc:
            self._fail(context, str(exc))
            return False
        self._set_busy(self.busy_text, 0.0)
        return True

    def _show(self, context, job: Job, cursor_progress: bool = False) -> None:
        self._set_busy(f"{self.busy_text}: {job.message}" if job.message else self.busy_text, job.fraction)
        if cursor_progress:
            context.window_manager.progress_update(int(job.fraction * 1000))
        session.notify(job)
        redraw_preferences(context)

    def _interrupted(self, context) -> None:
        self._set_busy("", 0.0)

    def _finish(self, context):
        job = session.current_job
        self._set_busy("", 0.0)
        redraw_preferences(context)
        if job.state == "cancelled":
            self._record(message=f"{self.busy_text}: cancelled", error="")
            self.report({"WARNING"}, f"ActionMesh: {self.busy_text.lower()} cancelled")
            return {"CANCELLED"}
        if job.state != "done":
            self._fail(context, f"{job.error} [{job.error_code}]")
            return {"CANCELLED"}
        message = self._done(context, job.outputs)
        self._record(message=message, error="")
        self.report({"INFO"}, f"ActionMesh: {message}")
        return {"FINISHED"}

    def _fail(self, context, message: str):
        self._record(error=message)
        self.report({"ERROR"}, f"ActionMesh: {message}")
        return {"CANCELLED"}

    # Where this job's state is shown; the setup panel's Check keeps its own (backend_setup.py).
    def _clear(self):
        status.update(error="")

    def _set_busy(self, text: str, progress: float) -> None:
        status.update(busy=text, progress=progress)

    def _record(self, **values) -> None:
        status.update(values, updated=time.time())

    def _args(self, context) -> dict:
        raise NotImplementedError

    def _done(self, context, outputs: dict) -> str:
        raise NotImplementedError


def _folder_args(context) -> dict:
    folder = models_dir(context)
    return {"models_dir": folder} if folder else {}


class ACTIONMESH_OT_models_refresh(BackendJobOperator, bpy.types.Operator):
    """Read which released models are stored in the Models Folder (or the hub cache) and whether whole"""

    bl_idname = "actionmesh.models_refresh"
    bl_label = "Refresh"
    command = "models_status"
    busy_text = "Checking the models"

    def _args(self, context) -> dict:
        return _folder_args(context)

    def _done(self, context, outputs: dict) -> str:
        status.update(store=outputs.get("store", ""), models=outputs.get("models", []))
        counts = {}
        for m in status["models"]:
            counts[m["state"]] = counts.get(m["state"], 0) + 1
        return f"{outputs.get('store', '')}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


class ACTIONMESH_OT_models_accept_licence(bpy.types.Operator):
    """Accept (or withdraw acceptance of) this model's licence; a download needs it accepted"""

    bl_idname = "actionmesh.models_accept_licence"
    bl_label = "Accept Licence"
    bl_options = {"INTERNAL"}

    name: bpy.props.StringProperty(name="Model")
    accept: bpy.props.BoolProperty(name="Accept", default=True)

    def execute(self, context):
        prefs = get_prefs(context)
        if prefs is None:
            return {"CANCELLED"}
        names = accepted(prefs)
        if self.accept:
            names.add(self.name)
        else:
            names.discard(self.name)
        prefs.accepted_licences = ",".join(sorted(names))
        redraw_preferences(context)
        return {"FINISHED"}


class ACTIONMESH_OT_models_download(BackendJobOperator, bpy.types.Operator):
    """Download this model at its pinned revision into the Models Folder (or the hub cache); resumable.
    Needs online access and the model's licence accepted"""

    bl_idname = "actionmesh.models_download"
    bl_label = "Download"
    command = "models_download"
    busy_text = "Downloading"

    name: bpy.props.StringProperty(name="Model")

    def _args(self, context) -> dict:
        if not bpy.app.online_access:
            raise UserError(OFFLINE_MESSAGE)
        prefs = get_prefs(context)
        known = entry(self.name)
        label = known["repo_id"] if known else self.name
        if self.name not in accepted(prefs):
            licence = f" ({known['licence_text']}, {known['licence_url']})" if known else ""
            raise UserError(f"Accept the licence of {label}{licence} first: tick it in the model manager")
        self.busy_text = f"Downloading {label}"
        args = {"names": [self.name], "accept_licence": True, **_folder_args(context)}
        if prefs is not None and prefs.hub_token:
            args["token"] = prefs.hub_token  # job arguments only: the backend's stdin, never a file
        return args

    def _done(self, context, outputs: dict) -> str:
        _merge(outputs.get("models", []))
        if outputs.get("already_ready"):
            return f"{', '.join(outputs['already_ready'])} already ready"
        return f"downloaded {', '.join(outputs.get('downloaded', []))}"


class ACTIONMESH_OT_models_verify(BackendJobOperator, bpy.types.Operator):
    """Check that every file of this model (all models when none is named) is present and whole"""

    bl_idname = "actionmesh.models_verify"
    bl_label = "Verify"
    command = "models_verify"
    busy_text = "Verifying"

    name: bpy.props.StringProperty(name="Model", default="")

    def _args(self, context) -> dict:
        return {**({"names": [self.name]} if self.name else {}), **_folder_args(context)}

    def _done(self, context, outputs: dict) -> str:
        _merge(outputs.get("models", []))
        problems = outputs.get("problems", {})
        if not problems:
            return "verified: " + ", ".join(f"{m['name']} ready" for m in outputs.get("models", []))
        for text in problems.values():
            self.report({"WARNING"}, text)
        return "verified: " + "; ".join(f"{m['name']} {m['state']}" for m in outputs.get("models", []))


class ACTIONMESH_OT_models_remove(BackendJobOperator, bpy.types.Operator):
    """Delete this model's files from the Models Folder (or its folder in the hub cache); other files stay"""

    bl_idname = "actionmesh.models_remove"
    bl_label = "Remove"
    command = "models_remove"
    busy_text = "Removing"

    name: bpy.props.StringProperty(name="Model")

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        known = entry(self.name)
        where = known["folder"] if known else (models_dir(context) or "the hub cache")
        label = known["repo_id"] if known else self.name
        return context.window_manager.invoke_confirm(self, event, title=f"Remove {label}?",
                                                     message=f"Deletes its files in {where}", confirm_text="Remove",
                                                     icon="WARNING")

    def _args(self, context) -> dict:
        return {"name": self.name, **_folder_args(context)}

    def _done(self, context, outputs: dict) -> str:
        known = entry(outputs.get("model", self.name))
        if known is not None:
            known.update(state=outputs.get("state", "missing"), problem="")
        return f"removed {len(outputs.get('removed', []))} file(s) of {outputs.get('repo_id', self.name)}"


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def draw_model_manager(layout, context) -> None:
    """The Models box of the preferences."""
    prefs = get_prefs(context)
    box = layout.box()
    box.label(text="Models", icon="FILE_3D")
    if prefs is not None:
        box.prop(prefs, "models_dir")
        box.prop(prefs, "hub_token")
    row = box.row()
    row.operator("actionmesh.models_refresh", icon="FILE_REFRESH")
    row.operator("actionmesh.models_verify", text="Verify All", icon="CHECKMARK").name = ""
    row.label(text=status["store"] or ("Models Folder: " + (models_dir(context) or "Hugging Face hub cache")))
    online = bool(bpy.app.online_access)
    if not online:
        box.label(text="Online access is off (Preferences > System > Network): downloads are disabled", icon="INFO")
    if status["busy"]:
        row = box.row()
        if hasattr(row, "progress"):
            row.progress(factor=status["progress"], type="BAR", text=_short(status["busy"], 90))
        else:
            row.label(text=f"{status['busy']} ({status['progress']:.0%})")
        row.operator("actionmesh.cancel_job", text="", icon="CANCEL")
    if status["error"]:
        box.label(text=_short(status["error"]), icon="ERROR")
    elif status["message"]:
        box.label(text=_short(status["message"]), icon="INFO")
    if not status["models"]:
        box.label(text="Press Refresh to see which models are stored")
        return
    names = accepted(prefs)
    idle = not session.busy()
    for m in status["models"]:
        col = box.box().column(align=True)
        head = col.row()
        optional = "" if m.get("required", True) else " (optional)"
        head.label(text=f"{m['repo_id']}{optional}", icon=STATE_ICONS.get(m["state"], "QUESTION"))
        head.label(text=f"{m['state']}, {m['size_text']}")
        col.label(text=_short(m.get("purpose", "")))
        ok = m["name"] in names
        tick = col.row()
        op = tick.operator("actionmesh.models_accept_licence", text=f"Accept licence: {m['licence_text']}",
                           icon="CHECKBOX_HLT" if ok else "CHECKBOX_DEHLT", emboss=False)
        op.name, op.accept = m["name"], not ok
        if m.get("problem") and m["state"] != "missing":
            col.label(text=_short(m["problem"]), icon="ERROR")
        buttons = col.row(align=True)
        sub = buttons.row(align=True)
        sub.enabled = online and ok and idle and m["state"] != "ready"
        sub.operator("actionmesh.models_download", icon="IMPORT").name = m["name"]
        sub = buttons.row(align=True)
        sub.enabled = idle
        sub.operator("actionmesh.models_verify", icon="CHECKMARK").name = m["name"]
        sub = buttons.row(align=True)
        sub.enabled = idle and m["state"] != "missing"
        sub.operator("actionmesh.models_remove", icon="TRASH").name = m["name"]


classes = (
    ACTIONMESH_OT_models_refresh,
    ACTIONMESH_OT_models_accept_licence,
    ACTIONMESH_OT_models_download,
    ACTIONMESH_OT_models_verify,
    ACTIONMESH_OT_models_remove,
)
