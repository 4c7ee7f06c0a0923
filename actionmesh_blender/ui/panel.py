# SPDX-License-Identifier: GPL-3.0-or-later
"""The ActionMesh tab in the 3D View's sidebar (N-panel): source, target, frames, settings,
Generate, and the running job's progress (stage, message, time left), Cancel, the last error.

Generate calls the operator that fits source + target; every setting the panel shows is copied
into the operator's properties, so what the panel runs, a script can run too."""

import textwrap

import bpy

from .. import session, sources
from ..availability import learned_unavailable_reason
from ..config import get_prefs, models_dir
from ..operators.job import format_seconds
from ..operators.rig import has_generated_keys

VIDEO_SOURCES = {"STRIP", "FILE", "FOLDER"}


def operator_for(settings) -> str:
    if settings.source == "SEQUENCE":
        return "actionmesh.animate_from_sequence"
    if settings.source == "OBJECT":
        return "actionmesh.transfer_motion"
    return "actionmesh.generate_from_video" if settings.target == "NEW" else "actionmesh.animate_from_video"


def _fill_video(op, settings) -> None:
    op.source = settings.source
    op.input = {"FILE": settings.input_file, "FOLDER": settings.input_dir}.get(settings.source, "")
    if settings.source == "STRIP" and settings.use_strip_range:
        op.start, op.frames = -1, 0
    else:
        op.start, op.frames = settings.start, settings.frames
    op.stride = settings.stride
    op.masks = settings.masks if settings.source in ("STRIP", "FILE") else ""


def _draw_source(layout, context, settings) -> None:
    box = layout.box()
    box.prop(settings, "source")
    if settings.source == "STRIP":
        try:
            strip = sources.find_movie_strip(context.scene)
            box.label(text=f"{strip.name}: frames {strip.frame_final_start}-{strip.frame_final_end - 1}",
                      icon="SEQUENCE")
        except sources.SourceError as exc:
            box.label(text=str(exc), icon="INFO")
        box.prop(settings, "use_strip_range")
    elif settings.source == "FILE":
        box.prop(settings, "input_file", text="")
    elif settings.source == "FOLDER":
        box.prop(settings, "input_dir", text="")
    elif settings.source == "SEQUENCE":
        box.prop(settings, "sequence", text="")
        box.prop(settings, "space", text="")
    else:
        box.prop(settings, "motion_object", text="")
        box.prop(settings, "render_camera")
    if settings.source in ("STRIP", "FILE"):
        box.prop(settings, "masks")
    if settings.source in VIDEO_SOURCES:
        box.row().prop(settings, "target", expand=True)
    else:
        box.label(text="Target: the active mesh", icon="MESH_DATA")


def _draw_frames(layout, settings) -> None:
    if settings.source == "SEQUENCE":
        return
    col = layout.column(align=True)
    if not (settings.source == "STRIP" and settings.use_strip_range):
        if settings.source != "OBJECT":
            col.prop(settings, "start")
        col.prop(settings, "frames")
    col.prop(settings, "stride")


class VIEW3D_PT_actionmesh(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ActionMesh"
    bl_label = "ActionMesh"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.actionmesh
        state = context.window_manager.actionmesh_job
        prefs = get_prefs(context)

        _draw_source(layout, context, settings)
        _draw_frames(layout, settings)

        video = settings.source in VIDEO_SOURCES
        new_object = video and settings.target == "NEW"
        col = layout.column()
        reason = ""
        if settings.source == "SEQUENCE":
            if prefs is not None:  # one setting, shared with scripts: the preference
                col.prop(prefs, "method")
        else:
            if not new_object:
                col.prop(settings, "method")
                if video:
                    col.prop(settings, "camera")
            uses_models = new_object or settings.method in ("learned", "learned-fit")
            if uses_models:
                col.prop(settings, "seed")
                col.prop(settings, "quality")
                col.prop(settings, "memory")
            if new_object:
                col.prop(settings, "stage1_meshes")
            if new_object or settings.method == "learned":
                reason = learned_unavailable_reason(models_dir(context))
            elif settings.method == "learned-fit" and learned_unavailable_reason(models_dir(context)):
                col.label(text="Learned models absent: Fit only", icon="INFO")

        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not state.running and not reason
        op = row.operator(operator_for(settings), text="Generate", icon="PLAY")
        if settings.source == "SEQUENCE":
            op.sequence = settings.sequence
            op.space = settings.space
        else:
            _fill_video(op, settings)
            op.seed, op.quality, op.memory = settings.seed, settings.quality, settings.memory
            if new_object:
                op.stage1_meshes = settings.stage1_meshes
            else:
                op.method = settings.method
            if settings.source == "OBJECT":
                op.motion_source = "OBJECT"
                op.source_object = settings.motion_object.name if settings.motion_object else ""
                op.render_camera = settings.render_camera
            elif not new_object:
                op.camera = settings.camera
        if reason:
            _wrapped(layout, reason + " (Preferences > ActionMesh), or animate a mesh with Fit", icon="INFO")
        if video and not new_object:
            show = layout.operator("actionmesh.show_frame0", icon="IMAGE_BACKGROUND")
            _fill_video(show, settings)

        if state.running:
            col = layout.column()
            text = f"{state.stage}: {state.message}" if state.stage else (state.message or "Working")
            if state.seconds_left >= 0:
                text += f" ({format_seconds(state.seconds_left)} left)"
            col.progress(factor=state.progress, type="BAR", text=text)
            col.operator("actionmesh.cancel_job", icon="CANCEL")
        elif state.status:
            _wrapped(layout, state.status, icon="INFO")
        if not state.running and has_generated_keys(context.active_object):
            # After any job that left AM_ keys: the step to a rig for engines and rig-based editing.
            layout.operator("actionmesh.bake_to_armature", icon="ARMATURE_DATA")
        if state.last_error:
            err = layout.box()
            err.alert = True
            _wrapped(err, state.last_error, icon="ERROR")
        if session.busy() and not state.running:
            layout.label(text="A job is running", icon="TIME")


def _wrapped(layout, text: str, icon: str, width: int = 48) -> None:
    lines = textwrap.wrap(text, width) or [text]
    layout.label(text=lines[0], icon=icon)
    for line in lines[1:8]:
        layout.label(text=line)
