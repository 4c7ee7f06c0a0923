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


TORCH_BUILD_ITEMS = [
    ("AUTO", "Automatic", "CUDA build on Linux and Windows, the default build (Metal/MPS) on macOS, CPU elsewhere"),
    ("CUDA", "CUDA", "The CUDA build of torch (NVIDIA GPUs; Linux and Windows)"),
    ("CPU", "CPU", "The CPU-only build of torch (smallest download; no GPU)"),
]


def _models_dir_changed(self, context):
    # The list describes the previous folder: forget it so nothing stale is shown or acted on.
    from . import models_ui

    models_ui.forget_status()


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
        name="Stage II Weights", subtype="DIR_PATH", default="",
        description="Mesh sequences only: a folder with our own learned Stage II weights (vae/ and stage2/ "
                    "inside, e.g. a training run's). Empty: the tiny weights that come with the backend. Not "
                    "the released models: those live in the Models Folder below")
    # The released models (ActionMesh, TripoSG, DINOv2, RMBG): the model manager's folder.
    models_dir: bpy.props.StringProperty(
        name="Models Folder", subtype="DIR_PATH", default="", update=_models_dir_changed,
        description="Where the released models are stored, laid out <org>/<name>/ like the hub repositories. "
                    "Empty: the standard Hugging Face hub cache (HF_HUB_CACHE / HF_HOME), shared with other tools")
    hub_token: bpy.props.StringProperty(
        name="Hub Token", subtype="PASSWORD", default="",
        description="Optional Hugging Face access token, for models that need a login. Sent only to the "
                    "download job, never printed or logged. Empty: HF_TOKEN or the login `hf auth login` stored")
    accepted_licences: bpy.props.StringProperty(
        name="Accepted Licences", default="", options={"HIDDEN"},
        description="Models whose licence the user accepted in the model manager (comma-separated names)")
    torch_build: bpy.props.EnumProperty(
        name="Torch Build", items=TORCH_BUILD_ITEMS, default="AUTO",
        description="Which build of torch 'Set Up Backend' installs")

    def draw(self, context):
        from .backend_setup import draw_backend_setup
        from .models_ui import draw_model_manager

        layout = self.layout
        draw_backend_setup(layout, context)
        col = layout.column()
        col.prop(self, "device")
        col.prop(self, "method")
        col.prop(self, "model_dir")
        draw_model_manager(layout, context)
