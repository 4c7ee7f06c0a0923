# SPDX-License-Identifier: GPL-3.0-or-later
"""A rig (backend/io/rig.py's arrays) in and out of Blender: an armature with its bones, the
mesh's vertex groups and Armature modifier, and an Action of bone keys; or an existing armature
and its vertex groups written out as a rig for the backend to animate.

Coordinates: the rig lives in the mesh's own (object-local) coordinates. A new armature object
takes the mesh's world matrix, so its armature space is the mesh's space; an existing one is
mapped through C = armature.matrix_world^-1 @ mesh.matrix_world.

Posing: Blender places a bone at M_b = M_parent R_parent^-1 R_b basis_b (R its rest matrix,
armature space); the rig gives every joint's transform relative to its parent, L_b = G_parent^-1
G_b, so basis_b = R_b^-1 R_parent L_b, and for a root basis_b = R_b^-1 C G_b.
"""

from __future__ import annotations

import numpy as np
import bpy
from mathutils import Matrix

BONE_PREFIX = "AM_"
MODIFIER_NAME = "AM_Armature"


class RigError(Exception):
    """The scene cannot give or take this rig; the message says why."""


def rig_from_armature(mesh_obj, arm_obj, rest: np.ndarray) -> dict:
    """The rig arrays of an existing armature for `mesh_obj`: its bones that weigh the mesh (a
    vertex group of the bone's name), their rest matrices in the mesh's coordinates, parents
    (the nearest ancestor that weighs the mesh), the weights."""
    groups = {vg.name: vg.index for vg in mesh_obj.vertex_groups}
    bones = [b for b in arm_obj.data.bones if b.name in groups]
    if not bones:
        raise RigError(f"none of '{arm_obj.name}''s bones has a vertex group on '{mesh_obj.name}': bind the mesh "
                       "to the armature (Ctrl+P > With Automatic Weights) or name its groups after the bones")
    index = {b.name: i for i, b in enumerate(bones)}
    weights = np.zeros((len(rest), len(bones)))
    by_group = {groups[b.name]: i for i, b in enumerate(bones)}
    for v in mesh_obj.data.vertices:
        for g in v.groups:
            column = by_group.get(g.group)
            if column is not None:
                weights[v.index, column] = g.weight
    empty = np.flatnonzero(weights.sum(axis=1) <= 0)
    if len(empty):
        raise RigError(f"{len(empty)} of '{mesh_obj.name}''s vertices (e.g. vertex {empty[0]}) have no weight on "
                       f"'{arm_obj.name}''s bones: every vertex must follow some bone")
    to_mesh = np.linalg.inv(np.array(mesh_obj.matrix_world)) @ np.array(arm_obj.matrix_world)
    bind = np.stack([to_mesh @ np.array(b.matrix_local) for b in bones])
    parents = []
    for b in bones:
        up = b.parent
        while up is not None and up.name not in index:
            up = up.parent
        parents.append(-1 if up is None else index[up.name])
    # A connected bone whose parent is the bone it hangs from here keeps its head there (Blender
    # ignores its location key); one whose real parent was left out may move freely.
    connected = [bool(b.use_connect and b.parent is not None and b.parent.name in index) for b in bones]
    return {"weights": weights, "bind": bind, "parents": np.array(parents), "names": [b.name for b in bones],
            "connected": np.array(connected)}


def new_armature(mesh_obj, collection, name: str, bind: np.ndarray, parents: np.ndarray, names: list,
                 context) -> object:
    """An armature object with one bone per joint (head at the joint, pointing along the mesh's +Y,
    so each bone's rest rotation is the joint's: none), at the mesh's world matrix."""
    data = bpy.data.armatures.new(name)
    arm = bpy.data.objects.new(name, data)
    collection.objects.link(arm)
    arm.matrix_world = mesh_obj.matrix_world.copy()
    size = _mesh_size(mesh_obj)
    view_layer = context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode='EDIT')
    try:
        edit = [data.edit_bones.new(f"{BONE_PREFIX}{n}") for n in names]
        for b, bone in enumerate(edit):
            head = bind[b, :3, 3]
            bone.head = head.tolist()
            bone.tail = (head + (0.0, 0.05 * size, 0.0)).tolist()
            bone.roll = 0.0
            if parents[b] >= 0:
                bone.parent = edit[parents[b]]
    finally:
        bpy.ops.object.mode_set(mode='OBJECT')
        view_layer.objects.active = previous
    return arm


def bind_mesh(mesh_obj, arm_obj, weights: np.ndarray, bone_names: list) -> None:
    """Vertex groups (the bones' names) with the weights, and an Armature modifier."""
    for name in bone_names:
        old = mesh_obj.vertex_groups.get(name)
        if old is not None:
            mesh_obj.vertex_groups.remove(old)
    for b, name in enumerate(bone_names):
        group = mesh_obj.vertex_groups.new(name=name)
        column = weights[:, b]
        for v in np.flatnonzero(column > 0):
            group.add([int(v)], float(column[v]), 'REPLACE')
    mod = mesh_obj.modifiers.get(MODIFIER_NAME) or mesh_obj.modifiers.new(MODIFIER_NAME, 'ARMATURE')
    mod.object = arm_obj
    mod.use_vertex_groups = True


def key_action(arm_obj, mesh_obj, local: np.ndarray, parents: np.ndarray, bone_names: list, frames: list,
               action_name: str) -> object:
    """An Action on `arm_obj` keying each bone's location and rotation at `frames` from the rig's
    local transforms [T, B, 4, 4] (see the module docstring for the conversion)."""
    to_arm = np.linalg.inv(np.array(arm_obj.matrix_world)) @ np.array(mesh_obj.matrix_world)
    rest = {name: np.array(arm_obj.data.bones[name].matrix_local) for name in bone_names}
    adt = arm_obj.animation_data or arm_obj.animation_data_create()
    action = bpy.data.actions.new(action_name)
    adt.action = action
    previous = [None] * len(bone_names)
    for t, frame in enumerate(frames):
        for b, name in enumerate(bone_names):
            r_b = rest[name]
            if parents[b] >= 0:
                basis = np.linalg.inv(r_b) @ rest[bone_names[parents[b]]] @ local[t, b]
            else:
                basis = np.linalg.inv(r_b) @ to_arm @ local[t, b]
            pose = arm_obj.pose.bones[name]
            pose.rotation_mode = 'QUATERNION'
            quat = Matrix(basis[:3, :3].tolist()).to_quaternion()
            if previous[b] is not None and previous[b].dot(quat) < 0:
                quat.negate()  # the shorter way round between keys
            previous[b] = quat
            pose.location = basis[:3, 3].tolist()
            pose.rotation_quaternion = quat
            pose.keyframe_insert("location", frame=frame)
            pose.keyframe_insert("rotation_quaternion", frame=frame)
    return action


def _mesh_size(mesh_obj) -> float:
    n = len(mesh_obj.data.vertices)
    co = np.empty(n * 3, dtype=np.float32)
    mesh_obj.data.vertices.foreach_get("co", co)
    co = co.reshape(n, 3)
    return float(np.linalg.norm(co.max(axis=0) - co.min(axis=0))) or 1.0 if n else 1.0
