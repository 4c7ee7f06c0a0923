# SPDX-License-Identifier: GPL-3.0-or-later
"""The preferences' two boxes: Backend (its environment, Set Up Backend's log, Check's answer) and
Models (the model manager's list, its licences and buttons). They draw what session holds; the
operators they show are in operators/backend.py and operators/models.py."""

import os

import bpy

from .. import session
from ..backend_setup import log_path, log_tail, summary_lines
from ..config import ENV_PYTHON, accepted_licences, default_env_python, get_prefs, models_dir

STATE_ICONS = {"ready": "CHECKMARK", "partial": "ERROR", "missing": "IMPORT"}


def draw_backend_setup(layout, context) -> None:
    """The Backend box of the preferences."""
    prefs = get_prefs(context)
    box = layout.box()
    box.label(text="Backend", icon="CONSOLE")
    if prefs is not None:
        box.prop(prefs, "backend_python")
    if os.environ.get(ENV_PYTHON):
        box.label(text=f"Overridden by {ENV_PYTHON}={os.environ[ENV_PYTHON]}", icon="INFO")
    row = box.row()
    if prefs is not None:
        row.prop(prefs, "torch_build")
    row.operator("actionmesh.setup_backend", icon="CONSOLE")
    box.label(text=f"Environment: {default_env_python().parent.parent}")
    if session.setup_state["running"]:
        box.label(text=f"Running: {session.setup_state['step']}", icon="SORTTIME")
    if session.setup_state["error"]:
        box.label(text=session.setup_state["error"][:160], icon="ERROR")
    elif session.setup_state["done"]:
        box.label(text=session.setup_state["done"], icon="CHECKMARK")
    path = log_path()
    if path.exists():
        col = box.column(align=True)
        col.label(text=f"Log: {path}")
        for line in log_tail(path):  # a long line's end says most (the package, the error)
            col.label(text=line if len(line) <= 150 else "…" + line[-149:])
    row = box.row()
    row.operator("actionmesh.check_backend", icon="VIEWZOOM")
    if session.check_result["busy"]:
        row.label(text=f"{session.check_result['busy']} ({session.check_result['progress']:.0%})")
    if session.check_result["error"]:
        box.label(text=session.check_result["error"][:160], icon="ERROR")
    if session.check_result["outputs"]:
        col = box.column(align=True)
        for line in summary_lines(session.check_result["outputs"]):
            col.label(text=line[:150])


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def draw_model_manager(layout, context) -> None:
    """The Models box of the preferences."""
    prefs = get_prefs(context)
    status = session.models_status
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
    names = accepted_licences(prefs)
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
