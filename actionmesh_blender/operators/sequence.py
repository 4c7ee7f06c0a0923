# SPDX-License-Identifier: GPL-3.0-or-later
"""Animate the active mesh from a folder of per-frame meshes (the backend's `register` job)."""

import os
from pathlib import Path

import bpy
import numpy as np

from .. import shape_keys
from ..backend_client import Job
from ..exchange import read_offsets, write_ply
from ..config import get_prefs
from ..props import OPERATOR_METHOD_ITEMS, SPACE_ITEMS
from .job import JobOperator, UserError, target_mesh
from ..blender_mesh import Z_UP_TO_Y_UP, reference_geometry


def _to_file_space(obj, space: str) -> np.ndarray:
    """3x3 linear map from the object's local coordinates to the sequence files' coordinates."""
    if space == "LOCAL":
        return np.eye(3)
    linear = np.array(obj.matrix_world.to_3x3(), dtype=np.float64)
    return Z_UP_TO_Y_UP @ linear if space == "WORLD_Y_UP" else linear


def _method(choice: str, prefs) -> str:
    if choice != "PREFERENCE":
        return choice
    return prefs.method if prefs is not None else "learned-optimize"


class ACTIONMESH_OT_animate_from_sequence(JobOperator, bpy.types.Operator):
    """Animate the active mesh with shape keys that follow a folder of per-frame meshes"""

    bl_idname = "actionmesh.animate_from_sequence"
    bl_label = "Animate from Mesh Sequence"
    bl_options = {"REGISTER", "UNDO"}
    job_label = "registration job"

    sequence: bpy.props.StringProperty(
        name="Mesh Sequence", subtype="DIR_PATH",
        description="Folder with one mesh per frame (obj, ply, stl, glb), in name order")
    space: bpy.props.EnumProperty(name="Coordinates", items=SPACE_ITEMS, default="LOCAL")
    method: bpy.props.EnumProperty(name="Method", items=OPERATOR_METHOD_ITEMS, default="PREFERENCE")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Select a mesh object to animate")
            return False
        return super().poll(context)

    def _prepare(self, context, job_dir: Path):
        obj = context.active_object
        sequence = bpy.path.abspath(self.sequence or context.scene.actionmesh.sequence)
        if not sequence:
            raise UserError("Choose the folder of per-frame meshes first")
        if not os.path.isdir(sequence):
            raise UserError(f"Sequence folder not found: {sequence}")
        vertices, triangles = reference_geometry(obj)
        if len(vertices) == 0 or len(triangles) == 0:
            raise UserError(f"Mesh '{obj.name}' has no faces to register")
        to_file = _to_file_space(obj, self.space)
        if abs(np.linalg.det(to_file)) < 1e-12:
            raise UserError(f"Object '{obj.name}' has a zero scale; apply or fix its scale first")
        write_ply(job_dir / "reference.ply", vertices @ to_file.T, triangles)
        prefs = get_prefs(context)
        scene = context.scene
        args = {"reference": str(job_dir / "reference.ply"), "sequence": sequence, "out": str(job_dir / "out"),
                "method": _method(self.method, prefs), "device": prefs.device if prefs else "auto",
                "fps": scene.render.fps / scene.render.fps_base}
        if prefs and prefs.weights_dir:
            args["weights_dir"] = bpy.path.abspath(prefs.weights_dir)
        # Kept on the instance: the object is looked up again by name at the end, as the user
        # may have renamed, deleted or edited it while the job ran.
        self._target = {"name": obj.name, "n_vertices": len(vertices), "from_file": np.linalg.inv(to_file),
                        "start_frame": scene.frame_start, "sequence": sequence}
        return "register", args

    def _apply(self, context, job: Job) -> str:
        target = self._target
        obj = target_mesh(target["name"], target["n_vertices"])
        offsets, _fps = read_offsets(Path(job.outputs["animation"]), target["n_vertices"])
        local = (offsets.reshape(-1, 3) @ target["from_file"].T).astype(np.float32).reshape(offsets.shape)
        written = shape_keys.apply_offsets_as_shape_keys(obj, local, start_frame=target["start_frame"])
        return f"{len(written)} shape keys on '{target['name']}'"
