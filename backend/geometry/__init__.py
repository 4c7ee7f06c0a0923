"""Geometry: surface extraction from a signed field, mesh clean-up, sampling and normalisation.

Pure numpy/scipy/scikit-image; torch is never imported here (a torch-returning sdf_fn works).
"""

from .extract import band_for_lipschitz, dense_extract, extract_mesh
from .postprocess import connected_components, decimate, merge_vertices, postprocess_mesh, remove_floaters
from .sampling import (Normalization, denormalize, face_normals_and_areas, farthest_point_sampling,
                       normalization_for, normalize_mesh, sample_surface)

__all__ = [
    "extract_mesh", "dense_extract", "band_for_lipschitz",
    "merge_vertices", "remove_floaters", "decimate", "postprocess_mesh", "connected_components",
    "sample_surface", "farthest_point_sampling", "face_normals_and_areas",
    "Normalization", "normalization_for", "normalize_mesh", "denormalize",
]
