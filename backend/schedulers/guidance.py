"""Classifier-free guidance: extrapolating from less to more conditioned velocity predictions.

Both official samplers stack the conditioning variants along the batch, least conditioned first,
run the model once on the stack, and combine

    v = v_0 + s_1 (v_1 - v_0) + s_2 (v_2 - v_1) + ...

With one scale this is the familiar v_uncond + g (v_cond - v_uncond): TripoSG's [zero image
tokens | image tokens] at g = 7.0 (7.5 in ActionMesh's use of it), and ActionMesh Stage I's
[zeroed image context | image context] (known frames given in both) at 7.5. (Upstream:
triposg/pipelines/pipeline_triposg.py, actionmesh/scheduler/guidance.py aggregate_cfg.)
"""

from __future__ import annotations

from typing import Sequence

import torch


def apply_guidance(stacked: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """Model outputs for len(scales) + 1 conditioning variants stacked on dim 0 (each B rows, least
    conditioned first) -> the guided output, B rows."""
    parts = stacked.chunk(len(scales) + 1, dim=0)
    if len(parts) != len(scales) + 1 or any(p.shape != parts[0].shape for p in parts):
        raise ValueError(f"a batch of {stacked.shape[0]} rows does not split into {len(scales) + 1} equal variants")
    out = parts[0]
    for scale, less, more in zip(scales, parts[:-1], parts[1:]):
        out = out + scale * (more - less)
    return out
