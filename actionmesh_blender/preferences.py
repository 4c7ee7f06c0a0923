# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's preferences: the data (read elsewhere through config.py) and its layout (the
boxes are drawn by ui/preferences.py)."""


import bpy

from . import session
from .config import ADDON_ID, ENV_PYTHON
from .props import METHOD_ITEMS
from .ui.preferences import draw_backend_setup, draw_model_manager

TORCH_BUILD_ITEMS = [
    ("AUTO", "Automatic", "CUDA build on Linux and Windows, the default build (Metal/MPS) on macOS, CPU elsewhere"),
    ("CUDA", "CUDA", "The CUDA build of torch (NVIDIA GPUs; Linux and Windows)"),
    ("CPU", "CPU", "The CPU-only build of torch (smallest download; no GPU)"),
]


def _models_dir_changed(self, context):
    # The list describes the previous folder: forget it so nothing stale is shown or acted on.
    session.forget_models()


class ActionMeshPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

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
        name="Method", items=METHOD_ITEMS, default="learned-optimize",
        description="How a mesh sequence becomes shape keys on the selected object")
    weights_dir: bpy.props.StringProperty(
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
        layout = self.layout
        draw_backend_setup(layout, context)
        col = layout.column()
        col.prop(self, "device")
        col.prop(self, "method")
        col.prop(self, "weights_dir")
        draw_model_manager(layout, context)
