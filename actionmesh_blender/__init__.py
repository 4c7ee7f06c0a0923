# SPDX-License-Identifier: GPL-3.0-or-later
"""ActionMesh for Blender: video or mesh sequence -> animated mesh as shape keys.

The heavy lifting runs in a separate backend process (`python -m backend serve`); this package
imports only bpy, the standard library and numpy.
"""

import bpy

from . import operators, panel, preferences, props, session

classes = (
    props.ActionMeshSettings,
    props.ActionMeshJobState,
    preferences.ActionMeshPreferences,
    operators.ACTIONMESH_OT_animate_from_sequence,
    operators.ACTIONMESH_OT_cancel_job,
    operators.ACTIONMESH_OT_setup_backend,
    panel.VIEW3D_PT_actionmesh,
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
