# SPDX-License-Identifier: GPL-3.0-or-later
"""Mesh data in and out of Blender for the jobs: a mesh's rest shape as arrays, and a new mesh
object from arrays (bpy + numpy)."""

from __future__ import annotations

import bpy
import numpy as np

# Blender Z-up scene coordinates -> Y-up file coordinates (the glTF convention): x, z, -y.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
Y_UP_TO_Z_UP = Z_UP_TO_Y_UP.T


def reference_geometry(obj) -> tuple[np.ndarray, np.ndarray]:
    """The rest shape the keys are relative to (the reference key if any), and its triangles."""
    mesh = obj.data
    n = len(mesh.vertices)
    co = np.empty(n * 3, dtype=np.float32)
    if mesh.shape_keys is not None and mesh.shape_keys.reference_key is not None:
        mesh.shape_keys.reference_key.points.foreach_get("co", co)
    else:
        mesh.vertices.foreach_get("co", co)
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return co.reshape(n, 3), tris.reshape(-1, 3)


def world_matrix(obj) -> np.ndarray:
    return np.array(obj.matrix_world, dtype=np.float64)


def new_mesh_object(name: str, vertices: np.ndarray, faces: np.ndarray, collection):
    """A new object in `collection` with a mesh of these vertices (Blender coordinates) and
    triangles. The caller removes it again (remove_object) if a later step fails."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(vertices))
        mesh.vertices.foreach_set("co", vertices.ravel())
        mesh.loops.add(faces.size)
        mesh.loops.foreach_set("vertex_index", faces.ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        mesh.update(calc_edges=True)
        mesh.validate(clean_customdata=False)
        obj = bpy.data.objects.new(name, mesh)
        collection.objects.link(obj)
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    return obj


def remove_object(obj) -> None:
    """Remove an object made by new_mesh_object, and its mesh and shape keys."""
    mesh = obj.data
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)
