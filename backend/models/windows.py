"""Sliding windows over a clip's frames, shared by Stage I (latents) and Stage II (vertex motion).

Both official stages see at most `temporal_context_size` (16) frames at once. A longer clip is
covered by windows that slide by 15, so that consecutive windows share one frame: each window
starts from frames an earlier window (or the anchor) already produced, and produces the rest.
Frames are expanded from the anchor frame in both directions (ActionMesh's `anchor_idx`, 0 by
default); windows walking left list their frames in descending order, so a window's first frame
is always one that is already known.

Also here: the window's normalised time, as Stage II is conditioned on it (0 at the window's
smallest frame, 1 at its largest).

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
actionmesh/model/utils/timesteps.py (chunk_right, chunk_left, chunk_from: which side goes first,
where the turning window starts), actionmesh/model/utils/embeddings.py (get_scaling, apply_scaling,
interpolate_timesteps: global min/max, 2**(level-1) sub-steps per frame interval, first dropped),
actionmesh/pipeline.py (both stages take chunk_from(anchor_idx, n, 16, 15); frames already made are
kept, storage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch


def chunk_right(start: int, end: int, size: int, slide: int) -> List[List[int]]:
    """Ascending windows over [start, end): the first as long as possible (up to `size`), each next
    one ending `slide` frames later, the last clamped to end at `end` (so it may start earlier
    than a plain slide would put it). chunk_right(0, 10, 4, 2) = [0..3], [2..5], [4..7], [6..9]."""
    if not 0 < slide <= size:
        raise ValueError(f"need 0 < slide <= size, got slide {slide}, size {size}")
    chunks: List[List[int]] = []
    chunk_end = start
    while chunk_end < end:
        chunk_end = min(start + size, end) if not chunks else min(chunk_end + slide, end)
        chunks.append(list(range(max(start, chunk_end - size), chunk_end)))
    return chunks


def chunk_left(start: int, end: int, size: int, slide: int) -> List[List[int]]:
    """chunk_right walked from the other end: the same windows, last first, each in descending order."""
    return [chunk[::-1] for chunk in reversed(chunk_right(start, end, size, slide))]


def chunk_from(start: int, total: int, size: int, slide: int) -> List[List[int]]:
    """Windows covering frames 0..total-1 from the anchor frame `start` outward.

    The side with more frames goes first; the first window of the other side begins just inside
    what the first side already covered, so it starts from a known frame. A clip of exactly `size`
    frames is one window with the anchor first.

    This is upstream's plan, frame for frame, including where it breaks: a clip SHORTER than `size`
    with the anchor at neither end gets frames outside 0..total-1. `window_plan` does not use it
    for such clips.
    """
    if not 0 <= start < total:
        raise ValueError(f"anchor frame {start} is not in a clip of {total} frames")
    context = size - slide
    if total == size:
        return [[start] + [f for f in range(total) if f != start]]
    if start == 0:
        return chunk_right(0, total, size, slide)
    if start == total - 1:
        return chunk_left(0, total, size, slide)
    if start > total - start:  # more frames on the left
        right_start = min(max(0, start - context + 1), total - size)
        return chunk_left(0, start + 1, size, slide) + chunk_right(right_start, total, size, slide)
    left_end = max(min(start + context, total), size)
    return chunk_right(start, total, size, slide) + chunk_left(0, left_end, size, slide)


@dataclass(frozen=True)
class Window:
    frames: List[int]  # the window's frames, in order; frames[0] is the source (already known)
    targets: List[int]  # the frames this window writes (those no earlier window wrote), ascending

    @property
    def source(self) -> int:
        return self.frames[0]


def window_plan(num_frames: int, size: int = 16, stride: int = 15, start: int = 0) -> List[Window]:
    """The windows of `chunk_from(start, num_frames, size, stride)`, each with the frames it
    produces: frame `start` is given, every other frame is the target of exactly one window, and
    every window's first frame is already known when it runs.

    Which window produces a frame is upstream's Stage II rule: a window predicts every frame but
    its smallest, and keeps those no earlier window wrote. Walking right, the smallest is the
    source; walking left (frames descending from an anchor inside the clip) it is the window's
    last frame, which the next window holding it then produces from inside it. Where upstream's
    rule leaves a frame to no window, the window with it as its smallest produces it here: frame
    0 at the end of the last window walking left (upstream's result is one frame short), and a
    frame the next window starts from (upstream stops with an assertion there, e.g. 46 frames
    from anchor 44). (Stage I writes every unknown frame of a window; its plan is the frames.)
    """
    if num_frames < 1:
        raise ValueError("need at least one frame")
    if not 0 < stride < size:
        raise ValueError(f"need 0 < stride < size so consecutive windows share a frame (got {stride}, {size})")
    if num_frames <= size:  # one window, anchor first (chunk_from's own plan can leave short clips)
        plan = [[start] + [f for f in range(num_frames) if f != start]]
    else:
        plan = chunk_from(start, num_frames, size, stride)
    known = {start}
    windows: List[Window] = []
    for i, frames in enumerate(plan):
        if frames[0] not in known:  # guards the invariant the stages rely on
            raise AssertionError(f"window {frames} starts from frame {frames[0]}, which is not known yet")
        smallest = min(frames)
        # Upstream leaves a window's smallest frame to the next window holding it; where that
        # window starts from it (or has it as its own smallest), upstream stops or never writes it.
        nxt = next((later for later in plan[i + 1:] if smallest in later), None)
        produced_later = nxt is not None and smallest != nxt[0] and smallest != min(nxt)
        targets = [f for f in sorted(frames) if f not in known and (f != smallest or not produced_later)]
        known.update(targets)
        windows.append(Window(frames=frames, targets=targets))
    missing = set(range(num_frames)) - known
    if missing:  # guards the invariant the stages rely on
        raise AssertionError(f"the windows {plan} leave frames {sorted(missing)} unproduced")
    return windows


# ---------------------------------------------------------------- normalised window time


def window_scaling(frames: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frame numbers [B, T] (any order) -> (smallest [B], largest - smallest [B])."""
    lo, hi = frames.min(dim=1).values, frames.max(dim=1).values
    return lo, hi - lo


def normalised_time(frames: torch.Tensor, lo: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Frame numbers [B] or [B, K] -> window time in [0, 1] given window_scaling's (lo, span)."""
    if frames.ndim == 1:
        return (frames - lo) / span
    return (frames - lo[:, None]) / span[:, None]


def subdivided_times(frames: torch.Tensor, level: int = 1, drop_first: bool = True) -> torch.Tensor:
    """Evenly spaced frame times from the smallest to the largest of `frames` (over all of it),
    with 2**(level - 1) steps per frame interval (level 1: the integer frames) -> [1, K].

    The release's Stage II predicts these times (level 1) with drop_first: the smallest goes,
    which for a window walking right is its first, already known frame.
    """
    lo, hi = frames.min().item(), frames.max().item()
    count = int(hi - lo + 1)
    for _ in range(1, level):
        count += count - 1
    times = torch.linspace(lo, hi, count, device=frames.device)[None]
    return times[:, 1:] if drop_first else times
