"""ActionBench evaluation: CD-3D, CD-4D and CD-M of an animated mesh against tracked ground truth.

CPU-only (numpy, scipy KD-trees, torch for the Adam-based alignment). See ``metrics`` for the
metric definitions and ``alignment`` for the alignment and where it departs from the upstream
script; ``cli.main`` is ``python -m backend eval``.
"""

from .alignment import Alignment, AlignSettings, align, canonical_rotations
from .metrics import (
    chamfer_distance,
    evaluate,
    evaluate_points,
    motion_chamfer_distance,
    sample_barycentric,
    sample_surface,
)

__all__ = [
    "AlignSettings",
    "Alignment",
    "align",
    "canonical_rotations",
    "chamfer_distance",
    "evaluate",
    "evaluate_points",
    "motion_chamfer_distance",
    "sample_barycentric",
    "sample_surface",
]
