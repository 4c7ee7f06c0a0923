# SPDX-License-Identifier: GPL-3.0-or-later
"""Bake to Armature: the active mesh's AM_ shape-key animation becomes a rig (`rig` job).

A new armature (bones, the mesh's vertex groups and an Armature modifier, an Action with each
bone's keys at the frames of the AM_ keys), or with use_existing_rig the selected armature's own
bones keyed (its weights, the mesh's vertex groups, are kept). The AM_ keys are muted, not
deleted, and their action is parked (kept with a fake user, named on the Key:
shape_keys.PARKED_ACTION), so that FBX and glTF exports carry the armature's motion alone; unmuting them,
assigning the action again and disabling the modifier shows the shape-key result. One undo step
restores everything.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from .. import armature, shape_keys
from ..backend_client import Job
from ..blender_mesh import reference_geometry
from ..exchange import read_rig, write_animation_npz, write_rig_npz
from .job import JobOperator, UserError, target_mesh


def has_generated_keys(obj) -> bool:
    key = getattr(getattr(obj, "data", None), "shape_keys", None) if getattr(obj, "type", None) == "MESH" else None
    return key is not None and any(kb.name.startswith(shape_keys.PREFIX) and kb.name[3:].isdigit()
                                   for kb in key.key_blocks)


def _existing_armature(context, name: str):
    if name:
        arm = bpy.data.objects.get(name)
        if arm is None or arm.type != "ARMATURE":
            raise UserError(f"No armature named '{name}'")
        return arm
    picked = [o for o in context.selected_objects if o.type == "ARMATURE"]
    if len(picked) != 1:
        raise UserError("Select the armature to animate (and the mesh, active), or turn off Use Existing Rig")
    return picked[0]


class ACTIONMESH_OT_bake_to_armature(JobOperator, bpy.types.Operator):
    """Turn the active mesh's ActionMesh shape keys into an armature with skin weights and bone keys
    (or key the selected armature's bones), for game engines and rig-based editing"""

    bl_idname = "actionmesh.bake_to_armature"
    bl_label = "Bake to Armature"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "rig job"

    bones: bpy.props.IntProperty(name="Bones", default=0, min=0, max=128,
                                 description="How many bones; 0: chosen by the error they reach (16, or 32)")
    influences: bpy.props.IntProperty(name="Influences", default=4, min=1, max=8,
                                      description="Bones per vertex at most")
    use_existing_rig: bpy.props.BoolProperty(
        name="Use Existing Rig", default=False,
        description="Key the selected armature's bones instead of making an armature (the mesh's vertex groups "
                    "named after its bones are its weights)")
    armature: bpy.props.StringProperty(name="Armature", default="",
                                       description="With Use Existing Rig: the armature; empty: the selected one")

    @classmethod
    def poll(cls, context):
        if not has_generated_keys(context.active_object):
            cls.poll_message_set("Select a mesh with ActionMesh (AM_) shape keys")
            return False
        return super().poll(context)

    def _prepare(self, context, job_dir: Path):
        obj = context.active_object
        try:
            rest, frames, when, names = shape_keys.read_generated_keys(obj)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if len(frames) < 2:
            raise UserError(f"'{obj.name}' has one {shape_keys.PREFIX} key: a rig follows motion over 2 frames or more")
        _, triangles = reference_geometry(obj)
        if not len(triangles):
            raise UserError(f"Mesh '{obj.name}' has no faces to spread weights over")
        scene = context.scene
        fps = scene.render.fps / scene.render.fps_base
        write_animation_npz(job_dir / "animation.npz", rest, triangles, frames - rest[None], fps)
        args = {"animation": str(job_dir / "animation.npz"), "out": str(job_dir / "out"),
                "bones": self.bones if self.bones else "auto", "influences": self.influences}
        arm_name = ""
        if self.use_existing_rig:
            arm = _existing_armature(context, self.armature)
            try:
                rig = armature.rig_from_armature(obj, arm, rest)
            except armature.RigError as exc:
                raise UserError(str(exc)) from None
            write_rig_npz(job_dir / "rig.npz", rest, triangles, rig)
            args["rig"] = str(job_dir / "rig.npz")
            arm_name = arm.name
        frames_at = [w if w is not None else float(scene.frame_start + t) for t, w in enumerate(when)]
        collection = obj.users_collection[0] if obj.users_collection else scene.collection
        self._target = {"name": obj.name, "n_vertices": len(rest), "keys": names, "frames_at": frames_at,
                        "armature": arm_name, "collection": collection.name}
        return "rig", args

    def _apply(self, context, job: Job) -> str:
        target = self._target
        obj = target_mesh(target["name"], target["n_vertices"])
        rig = read_rig(Path(job.outputs["rig"]), target["n_vertices"])
        if len(rig["local"]) != len(target["frames_at"]):
            raise UserError(f"the rig has {len(rig['local'])} frames for {len(target['frames_at'])} keys")
        if target["armature"]:
            arm = bpy.data.objects.get(target["armature"])
            if arm is None or arm.type != "ARMATURE":
                raise UserError(f"Armature '{target['armature']}' is gone; nothing was written")
            return self._key_existing(context, obj, arm, rig, target)
        return self._make_new(context, obj, rig, target, job)

    def _make_new(self, context, obj, rig, target, job) -> str:
        collection = bpy.data.collections.get(target["collection"]) or context.scene.collection
        bone_names = [f"{armature.BONE_PREFIX}{n}" for n in rig["names"]]
        arm = None
        groups_before = {vg.name for vg in obj.vertex_groups}
        had_modifier = obj.modifiers.get(armature.MODIFIER_NAME) is not None
        try:
            arm = armature.new_armature(obj, collection, f"{obj.name} Rig", rig["bind"], rig["parents"], rig["names"],
                                        context)
            armature.bind_mesh(obj, arm, rig["weights"], bone_names)
            armature.key_action(arm, obj, rig["local"], rig["parents"], bone_names, target["frames_at"],
                                f"{obj.name} Rig Action")
            self._mute_keys(obj, target["keys"])
        except BaseException:
            self._undo_new(obj, arm, bone_names, groups_before, had_modifier)
            raise
        error = job.outputs.get("error_mean")
        return (f"armature '{arm.name}': {len(bone_names)} bones, {len(target['frames_at'])} keys"
                + (f", {100 * error:.2f}% from the shape keys" if error is not None else "")
                + f"; {shape_keys.PREFIX} keys muted")

    def _key_existing(self, context, obj, arm, rig, target) -> str:
        missing = [n for n in rig["names"] if n not in arm.pose.bones]
        if missing:
            raise UserError(f"'{arm.name}' lacks bone(s) {', '.join(missing[:5])}; nothing was written")
        adt = arm.animation_data
        old = adt.action if adt is not None else None
        if old is not None:
            old.use_fake_user = True  # kept in the file, not lost on save
        try:
            armature.key_action(arm, obj, rig["local"], rig["parents"], rig["names"], target["frames_at"],
                                f"{obj.name} Motion")
            if not any(m.type == "ARMATURE" and m.object == arm for m in obj.modifiers):
                mod = obj.modifiers.new(armature.MODIFIER_NAME, "ARMATURE")
                mod.object = arm
            self._mute_keys(obj, target["keys"])
        except BaseException:
            made = arm.animation_data.action if arm.animation_data else None
            if arm.animation_data is not None:
                arm.animation_data.action = old
            if made is not None and made is not old:
                bpy.data.actions.remove(made)
            raise
        return f"'{arm.name}': {len(rig['names'])} bones keyed on {len(target['frames_at'])} frames; " \
               f"{shape_keys.PREFIX} keys muted"

    @staticmethod
    def _mute_keys(obj, names) -> None:
        """Mute the AM_ keys and park their action (kept in the file, fake user): exporters write
        shape keys and their animation whatever the mute, and the armature now does the moving."""
        key = obj.data.shape_keys
        for name in names:
            block = key.key_blocks.get(name)
            if block is not None:
                block.mute = True
        shape_keys.park_generated_action(obj)

    @staticmethod
    def _undo_new(obj, arm, bone_names, groups_before, had_modifier) -> None:
        for name in bone_names:
            group = obj.vertex_groups.get(name)
            if group is not None and name not in groups_before:
                obj.vertex_groups.remove(group)
        mod = obj.modifiers.get(armature.MODIFIER_NAME)
        if mod is not None and not had_modifier:
            obj.modifiers.remove(mod)
        if arm is not None:
            data = arm.data
            action = arm.animation_data.action if arm.animation_data else None
            bpy.data.objects.remove(arm)
            if data.users == 0:
                bpy.data.armatures.remove(data)
            if action is not None and action.users == 0:
                bpy.data.actions.remove(action)


classes = (ACTIONMESH_OT_bake_to_armature,)
__all__ = ["ACTIONMESH_OT_bake_to_armature", "classes", "has_generated_keys"]
