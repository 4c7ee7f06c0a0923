"""Temporal rotary position embedding (RoPE) for attention over several frames' tokens at once.

Every token of a frame gets the same position: the frame's index inside the current window,
counted from the window's first frame (0, 1, ..., T-1). q and k are rotated by that position, so
the score between two tokens depends only on how many frames apart they are, never on where the
window starts; tokens of the same frame see no rotation at all relative to each other, which is
why a single frame (T = 1) is unaffected.

Layout (what the ActionMesh checkpoints were trained with): the rotation acts on ADJACENT pairs of
the head dimension, (d0, d1), (d2, d3), ..., with pair i turning at frequency base^(-2i / dim_head)
(base 10000). The whole head dimension is rotated, in float32.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

ROPE_BASE = 10000.0


def rope_angles(positions: torch.Tensor, dim_head: int, base: float = ROPE_BASE) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [..., S] (any float/int tensor) -> (cos, sin), each [..., S, dim_head] float32.

    Each frequency is repeated twice in a row (f0, f0, f1, f1, ...) to match the adjacent-pair
    layout used by `apply_rope`.
    """
    if dim_head % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {dim_head}")
    inv_freq = base ** (-torch.arange(0, dim_head, 2, dtype=torch.float32, device=positions.device) / dim_head)
    phase = positions.float()[..., None] * inv_freq  # [..., S, dim_head / 2]
    phase = phase.repeat_interleave(2, dim=-1)
    return phase.cos(), phase.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, S, D] by angles cos/sin of shape [S, D] or [B, S, D] (broadcast over heads).

    For each adjacent pair (a, b): (a, b) -> (a cos - b sin, b cos + a sin).
    """
    if cos.ndim == 2:
        cos, sin = cos[None, None], sin[None, None]
    elif cos.ndim == 3:
        cos, sin = cos[:, None], sin[:, None]
    else:
        raise ValueError(f"cos/sin must be [S, D] or [B, S, D], got {tuple(cos.shape)}")
    x32 = x.float()
    pairs = x32.unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (-b, a) per pair
    return (x32 * cos.to(x.device) + turned * sin.to(x.device)).to(x.dtype)


def window_positions(frame_index: torch.Tensor) -> torch.Tensor:
    """Frame indices [B, T] -> positions counted from each window's first (smallest) frame."""
    return frame_index - frame_index.min(dim=1, keepdim=True).values


def frame_token_positions(frame_index: torch.Tensor, tokens_per_frame: int, extra_per_frame: int = 0) -> torch.Tensor:
    """Per-token positions [B, T * tokens_per_frame + T * extra_per_frame] for the token layout

        [frame 0's tokens, frame 1's tokens, ..., frame T-1's tokens, (extra tokens, frame-major)]

    i.e. every frame's `tokens_per_frame` tokens share its position, followed by `extra_per_frame`
    extra tokens per frame (ActionMesh's per-frame time token) that share it too.
    """
    pos = window_positions(frame_index)
    parts = [pos.repeat_interleave(tokens_per_frame, dim=1)]
    if extra_per_frame:
        parts.append(pos.repeat_interleave(extra_per_frame, dim=1))
    return torch.cat(parts, dim=1)


def rotary_fn(cos: torch.Tensor, sin: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A closure for `Attention(..., rotary_fn=...)`: rotates q (and k) [B, H, S, D]."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        return apply_rope(x, cos, sin)

    return fn


def temporal_rotary_fn(frame_index: torch.Tensor, tokens_per_frame: int, dim_head: int, extra_per_frame: int = 0,
                       base: float = ROPE_BASE, repeat: Optional[int] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Everything at once: frame indices [B, T] -> the rotary closure for that token layout.

    `repeat` expands the batch (repeat_interleave) when the attention batch is B * repeat.
    """
    cos, sin = rope_angles(frame_token_positions(frame_index, tokens_per_frame, extra_per_frame), dim_head, base)
    if repeat:
        cos, sin = cos.repeat_interleave(repeat, dim=0), sin.repeat_interleave(repeat, dim=0)
    return rotary_fn(cos, sin)
