# SPDX-License-Identifier: GPL-3.0-or-later
"""The ActionMesh tab in the 3D View's sidebar (N-panel)."""

import textwrap

import bpy


class VIEW3D_PT_actionmesh(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ActionMesh"
    bl_label = "ActionMesh"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.actionmesh
        state = context.window_manager.actionmesh_job

        box = layout.box()
        box.label(text="Mesh Sequence to Shape Keys", icon="MESH_DATA")
        box.prop(settings, "sequence_dir", text="")
        box.prop(settings, "space", text="")
        prefs = context.preferences.addons.get(__package__)
        if prefs is not None:  # one setting, shared with scripts: the preference
            box.prop(prefs.preferences, "method")
        row = box.row()
        row.scale_y = 1.4
        op = row.operator("actionmesh.animate_from_sequence", text="Generate", icon="PLAY")
        op.directory = settings.sequence_dir
        op.space = settings.space

        if state.running:
            col = layout.column()
            col.progress(factor=state.progress, type="BAR", text=state.status or "Working")
            col.operator("actionmesh.cancel_job", icon="CANCEL")
        elif state.status:
            layout.label(text=state.status, icon="INFO")
        if state.last_error:
            err = layout.box()
            err.alert = True
            lines = textwrap.wrap(state.last_error, 48) or [state.last_error]
            err.label(text=lines[0], icon="ERROR")
            for line in lines[1:8]:
                err.label(text=line)
