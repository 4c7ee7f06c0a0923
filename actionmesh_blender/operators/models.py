# SPDX-License-Identifier: GPL-3.0-or-later
"""The model manager's operators: Refresh, Accept Licence, Download, Verify, Remove (the list
they fill is drawn by ui/preferences.py).

Each button but Accept Licence runs a backend job (backend/pipelines/models.py: models_status,
models_download, models_verify, models_remove), the same functions as `python -m backend models
...`. What the list shows lives in session.models_status, not in the preferences: it describes
disk contents at the last refresh, so it is never saved.

Downloads need Blender's online access (Preferences > System > Network) and the model's licence
ticked here. The hub token (a PASSWORD preference) is passed only in the download job's
arguments, which travel on the backend's stdin and nowhere else: no job folder, no log.
"""

import bpy

from .. import session
from ..config import accepted_licences, get_prefs, models_dir
from .job import JobOperator, PreferencesBoard, UserError, redraw_preferences

status = session.models_status
OFFLINE_MESSAGE = ("Online access is off: turn on 'Allow Online Access' in Preferences > System > Network to "
                   "download models (or copy them into the Models Folder by hand)")


def entry(name: str) -> dict | None:
    return next((m for m in status["models"] if m["name"] == name), None)


def _merge(models: list) -> None:
    """Folds a job's model descriptions into the list (replacing those it describes)."""
    by_name = {m["name"]: m for m in models}
    if not status["models"]:
        status["models"] = list(models)
        return
    status["models"] = [by_name.get(m["name"], m) for m in status["models"]]


class ModelsJob(JobOperator):
    """A model manager job: no job folder, nothing written to the scene, shown in the preferences."""

    command = ""
    uses_job_dir = False
    needs_object_mode = False

    def _board(self, context):
        return PreferencesBoard(status, self.job_label)

    def _prepare(self, context, job_dir):
        return self.command, self._args(context)

    def _args(self, context) -> dict:
        raise NotImplementedError


def _folder_args(context) -> dict:
    folder = models_dir(context)
    return {"models_dir": folder} if folder else {}


class ACTIONMESH_OT_models_refresh(ModelsJob, bpy.types.Operator):
    """Read which released models are stored in the Models Folder (or the hub cache) and whether whole"""

    bl_idname = "actionmesh.models_refresh"
    bl_label = "Refresh"
    command = "models_status"
    job_label = "Checking the models"

    def _args(self, context) -> dict:
        return _folder_args(context)

    def _apply(self, context, job) -> str:
        outputs = job.outputs
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
        names = accepted_licences(prefs)
        if self.accept:
            names.add(self.name)
        else:
            names.discard(self.name)
        prefs.accepted_licences = ",".join(sorted(names))
        redraw_preferences(context)
        return {"FINISHED"}


class ACTIONMESH_OT_models_download(ModelsJob, bpy.types.Operator):
    """Download this model at its pinned revision into the Models Folder (or the hub cache); resumable.
    Needs online access and the model's licence accepted"""

    bl_idname = "actionmesh.models_download"
    bl_label = "Download"
    command = "models_download"
    job_label = "Downloading"

    name: bpy.props.StringProperty(name="Model")

    def _args(self, context) -> dict:
        if not bpy.app.online_access:
            raise UserError(OFFLINE_MESSAGE)
        prefs = get_prefs(context)
        known = entry(self.name)
        label = known["repo_id"] if known else self.name
        if self.name not in accepted_licences(prefs):
            licence = f" ({known['licence_text']}, {known['licence_url']})" if known else ""
            raise UserError(f"Accept the licence of {label}{licence} first: tick it in the model manager")
        self.job_label = f"Downloading {label}"
        args = {"names": [self.name], "accept_licence": True, **_folder_args(context)}
        if prefs is not None and prefs.hub_token:
            args["token"] = prefs.hub_token  # job arguments only: the backend's stdin, never a file
        return args

    def _apply(self, context, job) -> str:
        outputs = job.outputs
        _merge(outputs.get("models", []))
        if outputs.get("already_ready"):
            return f"{', '.join(outputs['already_ready'])} already ready"
        return f"downloaded {', '.join(outputs.get('downloaded', []))}"


class ACTIONMESH_OT_models_verify(ModelsJob, bpy.types.Operator):
    """Check that every file of this model (all models when none is named) is present and whole"""

    bl_idname = "actionmesh.models_verify"
    bl_label = "Verify"
    command = "models_verify"
    job_label = "Verifying"

    name: bpy.props.StringProperty(name="Model", default="")

    def _args(self, context) -> dict:
        return {**({"names": [self.name]} if self.name else {}), **_folder_args(context)}

    def _apply(self, context, job) -> str:
        outputs = job.outputs
        _merge(outputs.get("models", []))
        problems = outputs.get("problems", {})
        if not problems:
            return "verified: " + ", ".join(f"{m['name']} ready" for m in outputs.get("models", []))
        for text in problems.values():
            self.report({"WARNING"}, text)
        return "verified: " + "; ".join(f"{m['name']} {m['state']}" for m in outputs.get("models", []))


class ACTIONMESH_OT_models_remove(ModelsJob, bpy.types.Operator):
    """Delete this model's files from the Models Folder (or its folder in the hub cache); other files stay"""

    bl_idname = "actionmesh.models_remove"
    bl_label = "Remove"
    command = "models_remove"
    job_label = "Removing"

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

    def _apply(self, context, job) -> str:
        outputs = job.outputs
        known = entry(outputs.get("model", self.name))
        if known is not None:
            known.update(state=outputs.get("state", "missing"), problem="")
        return f"removed {len(outputs.get('removed', []))} file(s) of {outputs.get('repo_id', self.name)}"


classes = (
    ACTIONMESH_OT_models_refresh,
    ACTIONMESH_OT_models_accept_licence,
    ACTIONMESH_OT_models_download,
    ACTIONMESH_OT_models_verify,
    ACTIONMESH_OT_models_remove,
)
