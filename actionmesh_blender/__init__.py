# SPDX-License-Identifier: GPL-3.0-or-later
"""ActionMesh for Blender: video or mesh sequence -> animated mesh as shape keys.

The heavy lifting runs in a separate backend process (`python -m backend serve`); this package
imports only bpy, the standard library and numpy.

Layout: props.py (scene settings, job state), preferences.py, operators/ (one module per
family), ui/ (the sidebar panel), session.py + backend_client.py (the backend process and its
job), exchange.py + cameras.py (numpy-only file and camera formats), shape_keys.py,
blender_mesh.py and sources.py (Blender-side data in and out).
"""

import bpy

from . import backend_setup, models_ui, operators, preferences, props, session, ui

# Registration order: property groups first, then preferences, operators, UI. Unregistration runs
# in reverse. Add new classes by extending this tuple (or the family's own `classes`).
classes = (
    props.ActionMeshSettings,
    props.ActionMeshJobState,
    preferences.ActionMeshPreferences,
    *operators.classes,
    *models_ui.classes,
    *backend_setup.classes,
    *ui.classes,
)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register():
    _register_classes()
    bpy.types.Scene.actionmesh = bpy.props.PointerProperty(type=props.ActionMeshSettings)
    bpy.types.WindowManager.actionmesh_job = bpy.props.PointerProperty(type=props.ActionMeshJobState)


def unregister():
    # Stop the backend first: a disabled add-on must leave no process behind.
    session.shutdown()
    del bpy.types.WindowManager.actionmesh_job
    del bpy.types.Scene.actionmesh
    _unregister_classes()
