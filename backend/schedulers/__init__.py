"""Samplers (own code, GPL-3.0-or-later), one algorithm a file as in diffusers' `schedulers/`.

- rectified_flow: TripoSG's image-to-3D sampler (one shape latent set).
- actionmesh_flow: ActionMesh's Stage I sampler (a window of frames, some of them known).
- guidance: the classifier-free guidance both use.
Heavy: importing this package imports torch; the add-on never imports it.
"""

from .actionmesh_flow import TemporalFlowScheduler, flow_schedule
from .guidance import apply_guidance
from .rectified_flow import RectifiedFlowScheduler

__all__ = ["RectifiedFlowScheduler", "TemporalFlowScheduler", "apply_guidance", "flow_schedule"]
