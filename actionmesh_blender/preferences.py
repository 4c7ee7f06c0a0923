# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences and where the backend's interpreter and job folders live."""


import os
import sys
from pathlib import Path

import bpy

from .backend_client import BackendUnavailable
from .props import METHOD_ITEMS

ENV_PYTHON = "ACTIONMESH_BACKEND_PYTHON"


def user_dir() -> Path:
    """Writable per-user folder: the extension's own folder is cleared on upgrade, so never write there."""
    try:
        return Path(bpy.utils.extension_path_user(__package__, create=True))
    except (ValueError, AttributeError):  # loaded as a legacy add-on, not as an extension
        return Path(bpy.utils.user_resource("SCRIPTS", path="actionmesh", create=True))


def default_env_python() -> Path:
    env = user_dir() / "backend-env"
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def get_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def backend_python(context=None) -> str:
    """ACTIONMESH_BACKEND_PYTHON, else the preference, else the environment 'Set Up Backend' makes."""
    if os.environ.get(ENV_PYTHON):
        return os.environ[ENV_PYTHON]
    prefs = get_prefs(context)
    if prefs is not None and prefs.backend_python:
        return bpy.path.abspath(prefs.backend_python)
    default = default_env_python()
    if not default.exists():
        raise BackendUnavailable("no backend environment yet: click 'Set Up Backend' in the ActionMesh "
                                 f"preferences, or point 'Backend Python' (or {ENV_PYTHON}) at a Python "
                                 "with the backend's requirements")
    return str(default)


class ActionMeshPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend_python: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="Interpreter that runs the backend. Empty: the environment made by 'Set Up Backend'. "
                    f"The environment variable {ENV_PYTHON} overrides both")
    device: bpy.props.EnumProperty(
        name="Device", default="auto",
        items=[("auto", "Automatic", "GPU when the backend sees one, else CPU"),
               ("cpu", "CPU", "Always the CPU"),
               ("cuda", "CUDA GPU", "An NVIDIA GPU through CUDA")])
    method: bpy.props.EnumProperty(
        name="Method", items=METHOD_ITEMS, default="auto",
        description="How a mesh sequence becomes shape keys on the selected object")
    model_dir: bpy.props.StringProperty(
        name="Model Folder", subtype="DIR_PATH", default="",
        description="Folder with the learned weights (vae/ and stage2/ inside, e.g. a training run's or a "
                    "download's). Empty: the tiny weights that come with the backend")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "backend_python")
        if os.environ.get(ENV_PYTHON):
            layout.label(text=f"Overridden by {ENV_PYTHON}={os.environ[ENV_PYTHON]}", icon="INFO")
        row = layout.row()
        row.operator("actionmesh.setup_backend", icon="CONSOLE")
        row.label(text=f"Environment: {default_env_python().parent.parent}")
        layout.prop(self, "device")
        layout.prop(self, "method")
        layout.prop(self, "model_dir")
