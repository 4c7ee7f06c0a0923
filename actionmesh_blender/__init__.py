# SPDX-License-Identifier: GPL-3.0-or-later
"""ActionMesh for Blender: video or mesh sequence -> animated mesh as shape keys.

The heavy lifting runs in a separate backend process (`python -m backend serve`); this package
imports only bpy, the standard library and numpy.

Layout, as Dream Textures' and the glTF add-on's: data, drawing and acting apart, no circle.
    data       props.py (scene settings, job state), preferences.py (the add-on's preferences;
               config.py reads them for everyone else), session.py (the backend process, the
               job, what the preferences' jobs learned; runtime only)
    ui/        draws: panel.py (the sidebar), preferences.py (the preferences' boxes)
    operators/ acts: job.py (the one base of every backend job), video.py, prompt.py (Make
               Clip), sequence.py, models.py (the model manager), backend.py (Set Up Backend, Check)
    exchange   backend_client.py (the protocol), exchange.py + cameras.py (numpy-only file and
               camera formats), backend_setup.py (the setup's commands and log),
               availability.py (cheap checks for the panel)
    Blender    shape_keys.py, blender_mesh.py, sources.py (Blender-side data in and out)
"""

import bpy

from . import operators, preferences, props, session, ui

# Registration order: property groups first, then preferences, operators, UI. Unregistration runs
# in reverse. Add new classes by extending this tuple (or the family's own `classes`).
classes = (
    props.ActionMeshSettings,
    props.ActionMeshJobState,
    preferences.ActionMeshPreferences,
    *operators.classes,
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
