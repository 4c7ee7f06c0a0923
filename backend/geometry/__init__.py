"""Geometry: surface extraction from a signed field, mesh clean-up, normals and areas, sampling and
normalisation.

Pure numpy/scipy/scikit-image; torch is never imported here (a torch-returning sdf_fn works).
"""

from .extract import band_for_lipschitz, dense_extract, extract_mesh
from .normals import face_areas, face_geometry, face_normals_and_areas, smooth_normals, vertex_normals
from .postprocess import connected_components, decimate, merge_vertices, postprocess_mesh, remove_floaters
from .sampling import (Normalization, denormalize, farthest_point_sampling, normalization_for, normalize_mesh,
                       sample_surface)

__all__ = [
    "extract_mesh", "dense_extract", "band_for_lipschitz",
    "merge_vertices", "remove_floaters", "decimate", "postprocess_mesh", "connected_components",
    "face_geometry", "face_areas", "face_normals_and_areas", "vertex_normals", "smooth_normals",
    "sample_surface", "farthest_point_sampling",
    "Normalization", "normalization_for", "normalize_mesh", "denormalize",
]
