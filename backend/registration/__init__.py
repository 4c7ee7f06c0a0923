"""Non-rigid registration of a reference mesh onto per-frame meshes of any topology."""

from .optimize import register_optimize

__all__ = ["register_optimize"]
