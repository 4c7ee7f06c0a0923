# SPDX-License-Identifier: GPL-3.0-or-later
"""What the add-on's preferences say, read for the rest of the add-on: the backend's interpreter,
the per-user folder, the models folder, the accepted licences.

The preferences class (preferences.py) holds the data and draws through ui/; everything else
reads it through here, so no module needs the class itself and nothing imports in a circle.
"""

import os
import sys
from pathlib import Path

import bpy

from .backend_client import BackendUnavailable

ENV_PYTHON = "ACTIONMESH_BACKEND_PYTHON"
ADDON_ID = __package__


def get_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else None


def user_dir() -> Path:
    """Writable per-user folder: the extension's own folder is cleared on upgrade, so never write there."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, create=True))
    except (ValueError, AttributeError):  # loaded as a legacy add-on, not as an extension
        return Path(bpy.utils.user_resource("SCRIPTS", path="actionmesh", create=True))


def default_env_python() -> Path:
    env = user_dir() / "backend-env"
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


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


def models_dir(context=None, explicit: str = "") -> str:
    """The released models' folder as an absolute path: `explicit` (an operator's), else the
    Models Folder preference, else "" (the Hugging Face hub cache)."""
    if explicit:
        return bpy.path.abspath(explicit)
    prefs = get_prefs(context)
    folder = prefs.models_dir if prefs is not None else ""
    return bpy.path.abspath(folder) if folder else ""


def accepted_licences(prefs) -> set:
    """The models whose licence the user accepted in the model manager."""
    return {n for n in (prefs.accepted_licences.split(",") if prefs is not None else []) if n}
