# SPDX-License-Identifier: GPL-3.0-or-later
"""The ActionMesh tab in the 3D View's sidebar (N-panel): source, target, frames, settings,
Generate, and the running job's progress (stage, message, time left), Cancel, the last error.

Generate calls the operator that fits source + target; every setting the panel shows is copied
into the operator's properties, so what the panel runs, a script can run too. Source Prompt has
two steps: Make Clip (and Regenerate) put a clip in the Sequencer to judge; Generate then runs the
video operators on that clip as a movie file."""

import os
import textwrap

import bpy

from .. import session, sources
from ..availability import learned_unavailable_reason
from ..config import get_prefs, models_dir
from ..operators.job import format_seconds
from ..operators.rig import has_generated_keys

VIDEO_SOURCES = {"STRIP", "FILE", "FOLDER"}
# Sources whose result is a new object or the active mesh, as the user picks.
TARGETED_SOURCES = VIDEO_SOURCES | {"PROMPT"}


def operator_for(settings) -> str:
    if settings.source == "SEQUENCE":
        return "actionmesh.animate_from_sequence"
    if settings.source == "OBJECT":
        return "actionmesh.transfer_motion"
    return "actionmesh.generate_from_video" if settings.target == "NEW" else "actionmesh.animate_from_video"


def prompt_clip(settings) -> str:
    """The clip Make Clip last made, when it is still on disk; else ""."""
    path = bpy.path.abspath(settings.prompt_clip) if settings.prompt_clip else ""
    return path if path and os.path.isfile(path) else ""


def _fill_prompt_clip(op, settings) -> None:
    """Generate on the prompt's clip: the whole clip, as a movie file, with its render's camera."""
    op.source, op.input = "FILE", settings.prompt_clip
    op.start, op.frames, op.stride = 0, 0, settings.stride
    op.masks = settings.masks
    if settings.target == "ACTIVE" and settings.prompt_camera:
        op.camera, op.camera_file = "FILE", settings.prompt_camera


def _draw_prompt(layout, settings, running: bool) -> bool:
    """Step 1 of Source Prompt: the clip (Make Clip; once made, its name and Regenerate). True
    when a clip is there for Generate."""
    clip = prompt_clip(settings)
    box = layout.box()
    box.label(text="1. Clip: judge it in the Sequencer", icon="SEQUENCE")
    row = box.row(align=True)
    row.prop(settings, "prompt_seed")
    row.prop(settings, "memory", text="")
    row = box.row(align=True)
    row.scale_y = 1.2
    row.enabled = not running
    for text, icon, again in (("Make Clip", "RENDER_ANIMATION", False), ("Regenerate", "FILE_REFRESH", True)):
        if again and not clip:
            continue
        op = row.operator("actionmesh.make_clip", text=text, icon=icon)
        op.prompt, op.target, op.seed, op.regenerate = settings.prompt, settings.target, settings.prompt_seed, again
        op.frames, op.memory = settings.frames, settings.memory
    if not clip:
        _wrapped(box, "The clip comes first: Make Clip puts it in the Sequencer; judge it, then Generate the "
                      "animation from it", icon="INFO")
        return False
    box.label(text=os.path.basename(clip), icon="FILE_MOVIE")
    if settings.prompt_object:
        box.label(text=f"Starts from a render of '{settings.prompt_object}'", icon="MESH_DATA")
    if settings.target == "ACTIVE" and not settings.prompt_object:
        box.label(text="Made from the prompt alone: Make Clip again to start from the mesh", icon="INFO")
    return True


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
    if settings.source == "PROMPT":
        box.prop(settings, "prompt", text="")
    elif settings.source == "STRIP":
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
    if settings.source in ("STRIP", "FILE", "PROMPT"):
        box.prop(settings, "masks")
    if settings.source in TARGETED_SOURCES:
        box.row().prop(settings, "target", expand=True)
    else:
        box.label(text="Target: the active mesh", icon="MESH_DATA")


def _draw_frames(layout, settings) -> None:
    if settings.source == "SEQUENCE":
        return
    col = layout.column(align=True)
    if settings.source == "PROMPT":  # the clip's length, then the whole clip is used
        col.prop(settings, "frames", text="Clip Frames (0: 16)")
    elif not (settings.source == "STRIP" and settings.use_strip_range):
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
        prompt = settings.source == "PROMPT"
        clip = _draw_prompt(layout, settings, state.running) if prompt else False
        if prompt:
            layout.label(text="2. Animation from the clip", icon="PLAY")

        video = settings.source in TARGETED_SOURCES
        new_object = video and settings.target == "NEW"
        col = layout.column()
        reason = ""
        if settings.source == "SEQUENCE":
            if prefs is not None:  # one setting, shared with scripts: the preference
                col.prop(prefs, "method")
        else:
            if not new_object:
                col.prop(settings, "method")
                if prompt and settings.prompt_camera:
                    col.label(text="Camera: the clip's render camera", icon="CAMERA_DATA")
                elif video:
                    col.prop(settings, "camera")
            uses_models = new_object or settings.method in ("learned", "learned-fit")
            if uses_models:
                col.prop(settings, "seed")
                col.prop(settings, "quality")
                if not prompt:  # the clip's box has it: the video model uses it too
                    col.prop(settings, "memory")
            if new_object:
                col.prop(settings, "stage1_meshes")
            if new_object or settings.method == "learned":
                reason = learned_unavailable_reason(models_dir(context))
            elif settings.method == "learned-fit" and learned_unavailable_reason(models_dir(context)):
                col.label(text="Learned models absent: Fit only", icon="INFO")

        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not state.running and not reason and (bool(clip) or not prompt)
        _fill_generate(row.operator(operator_for(settings), text="Generate", icon="PLAY"), settings, new_object)
        if reason:
            _wrapped(layout, reason + " (Preferences > ActionMesh), or animate a mesh with Fit", icon="INFO")
        if settings.source in VIDEO_SOURCES and not new_object:
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


def _fill_generate(op, settings, new_object: bool) -> None:
    """Generate's operator properties from the panel's settings."""
    if settings.source == "SEQUENCE":
        op.sequence = settings.sequence
        op.space = settings.space
        return
    op.seed, op.quality, op.memory = settings.seed, settings.quality, settings.memory
    if new_object:
        op.stage1_meshes = settings.stage1_meshes
    else:
        op.method = settings.method
    if settings.source == "PROMPT":
        if not new_object:
            op.camera = settings.camera
        _fill_prompt_clip(op, settings)
        return
    _fill_video(op, settings)
    if settings.source == "OBJECT":
        op.motion_source = "OBJECT"
        op.source_object = settings.motion_object.name if settings.motion_object else ""
        op.render_camera = settings.render_camera
    elif not new_object:
        op.camera = settings.camera


def _wrapped(layout, text: str, icon: str, width: int = 48) -> None:
    lines = textwrap.wrap(text, width) or [text]
    layout.label(text=lines[0], icon=icon)
    for line in lines[1:8]:
        layout.label(text=line)
