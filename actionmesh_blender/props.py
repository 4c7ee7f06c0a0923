# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene settings (saved with the .blend) and transient job state (on the WindowManager)."""

import bpy

SPACE_ITEMS = [
    ("LOCAL", "Object's Own Coordinates",
     "The sequence files share the mesh data's coordinates (e.g. frames exported like the reference, or "
     "imported with the OBJ importer, which keeps file coordinates and rotates the object)"),
    ("WORLD_Y_UP", "Scene, Y Up Files",
     "The files are Y-up (glTF, most OBJ/PLY) and match the object as placed in the scene"),
    ("WORLD_Z_UP", "Scene, Z Up Files", "The files are in Blender's scene coordinates (Z up)"),
]

METHOD_ITEMS = [
    ("auto", "Learned + Optimise", "The learned Stage II model's prediction, refined by optimisation where that "
     "fits better (optimisation alone when the Stage II weights are not installed)"),
    ("learned", "Learned", "One forward pass of the learned Stage II model: fastest (needs the Stage II weights)"),
    ("optimize", "Optimise", "Non-rigid registration, frame to frame, as rigid as possible (no weights needed)"),
]
# The operator's default: whatever the add-on preference says, so scripts and the panel agree.
OPERATOR_METHOD_ITEMS = [("PREFERENCE", "From Preferences", "The method chosen in the add-on's preferences")] \
    + METHOD_ITEMS


class ActionMeshSettings(bpy.types.PropertyGroup):
    sequence_dir: bpy.props.StringProperty(
        name="Mesh Sequence", subtype="DIR_PATH",
        description="Folder with one mesh per frame (obj, ply, stl, glb), in name order")
    space: bpy.props.EnumProperty(name="Coordinates", items=SPACE_ITEMS, default="LOCAL",
                                  description="Which coordinates the sequence files are in")


class ActionMeshJobState(bpy.types.PropertyGroup):
    running: bpy.props.BoolProperty(default=False)
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0)
    status: bpy.props.StringProperty(default="")
    last_error: bpy.props.StringProperty(default="")
