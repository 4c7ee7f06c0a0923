"""Stages I and II of the generate job: every frame's shape, then the anchor's vertices through them.

    Stage I: DINOv2-large tokens per frame; the temporal denoiser fills in every frame's shape
      latent over windows of 16 frames sliding by 15 (30 steps, guidance 7.5; --fast 15), known
      frames given clean: frame 0, --known FRAME=MESH keyframes (encoded like --mesh), and with
      --loop the last frame (= frame 0's latent). Window i's noise is seeded seed + i, as upstream.
    Stage II: the temporal autoencoder moves the anchor's vertices (xyz + normals) through the
      same windows (TemporalAutoencoder.predict_sequence), back to the input's coordinates.
    --stage1-meshes: each frame's Stage I latent decoded and extracted, and latents.npy (stage1/).

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
actionmesh/pipeline.py (per-window seeds, windows from chunk_from(0, T, 16, 15), the latent bank:
frames already made are kept), configs/actionmesh*.yaml (30 steps, 15 fast; guidance 7.5).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np

from ...io.mesh import write_mesh
from ...jobs import JobContext
from .anchor import AnchorMesh, extract_latent
from .runtime import SplitGuidanceBatch, amp, loop_threads

if TYPE_CHECKING:
    import torch

# ------------------------------------------------------------------ the release's settings

STAGE1_STEPS, FAST_STAGE1_STEPS = 30, 15
STAGE1_GUIDANCE = 7.5
WINDOW, SLIDE = 16, 15
# The release's clip length: 16 to 31 frames (one or two windows); its script reads at most 31.
RELEASE_MIN_FRAMES, RELEASE_MAX_FRAMES = 16, 31

# Ours: memory bounds.
STAGE2_QUERY_CHUNK, LOW_VRAM_STAGE2_QUERY_CHUNK = 16_384, 4_096  # vertices per read-out call
# Tokens per Stage II self-attention pass (target frames x window frames x (tokens + 1)).
STAGE2_TOKEN_BUDGET = 32_768


def clip_length_warnings(count: int, more_frames: bool, *, size: int = WINDOW, slide: int = SLIDE) -> List[str]:
    """What a clip's length means for the result, where it is not the release's 16 to 31 frames.

    more_frames: the clip went on past the RELEASE_MAX_FRAMES frames that were read (the default,
    as the release's script); a longer clip is read when asked for (--frames N).
    """
    from ...models.windows import window_plan

    notes = []
    if more_frames:
        notes.append(f"the clip goes on past {count} frames: the first {count} were used, as the release does "
                     "(pass --frames N for a longer clip; README: long clips)")
    if count > RELEASE_MAX_FRAMES:
        windows = len(window_plan(count, size, min(slide, size - 1)))
        notes.append(f"{count} frames run as {windows} windows of {size} sliding by {slide} (the release stops at "
                     f"{RELEASE_MAX_FRAMES} frames, 2 windows): each window starts from a frame the one before made, "
                     "so its errors carry over and can grow window by window; and one crop box covers the whole "
                     "clip, so a subject that travels across the picture is small in every frame. Check the "
                     "later frames")
    elif count < RELEASE_MIN_FRAMES:
        notes.append(f"{count} frames: the release takes {RELEASE_MIN_FRAMES} to {RELEASE_MAX_FRAMES}; a shorter "
                     f"clip runs as one window of {count} frames, fewer than the models' {size}")
    return notes


def stage1_latents(ctx: JobContext, denoiser, tokens, bank: Dict[int, "torch.Tensor"], *, num_frames: int, steps: int,
                   seed: int, dev: str, dtype, low_vram: bool, anchor_frame: int = 0,
                   guidance: float = STAGE1_GUIDANCE, slide: int = SLIDE,
                   noise: Optional[Sequence["torch.Tensor"]] = None):
    """Stage I: every frame's latent, window by window (chunk_from(anchor_frame, T, 16, slide));
    frames in `bank` (index -> [M, C]) are known. Returns (latents [T, M, C] float32, the windows).

    noise: each window's starting noise, in window order ([1, len(window), M, C]; known frames'
    rows are ignored), to replay a run whose draws were recorded (the official pipeline's, in the
    parity cases) or to vary one window's draw. None draws it as the release does: window i's
    generator seeded seed + i (TemporalFlowScheduler.initial_noise), so a seed gives the release's
    noise."""
    import torch

    from ...models.windows import window_plan
    from ...schedulers import TemporalFlowScheduler

    size = int(getattr(denoiser, "temporal_context_size", WINDOW))
    windows = [w.frames for w in window_plan(num_frames, size, min(slide, size - 1), start=anchor_frame)]
    if noise is not None and len(noise) != len(windows):
        raise ValueError(f"noise: {len(noise)} tensors for {len(windows)} windows")
    scheduler = TemporalFlowScheduler(num_inference_steps=steps)
    model = SplitGuidanceBatch(denoiser) if low_vram else denoiser
    shape = next(iter(bank.values())).shape
    total = len(windows) * steps
    for w, frames in enumerate(windows):
        known = [f in bank for f in frames]
        if all(known):
            continue
        cond = torch.stack([bank[f] if f in bank else torch.zeros(shape, device=dev) for f in frames])[None]
        mask = torch.tensor([known], dtype=torch.float32, device=dev)
        if noise is None:
            # Upstream seeds each window's noise with seed + window index.
            generator = torch.Generator(device=dev).manual_seed(seed + w)
            start = scheduler.initial_noise(tuple(shape), len(frames), generator)
        else:
            start = noise[w].to(device=dev, dtype=torch.float32)
            if start.shape != (1, len(frames)) + tuple(shape):
                raise ValueError(f"noise for window {w}: shape {tuple(start.shape)}, expected "
                                 f"{(1, len(frames)) + tuple(shape)}")
        start = cond * mask[..., None, None] + start * (1.0 - mask[..., None, None])
        framestep = torch.tensor([frames], dtype=torch.float32, device=dev)

        def report(i, t, x, w=w):
            ctx.progress("stage1", w * steps + i + 1, total,
                         f"window {w + 1}/{len(windows)} (frames {min(frames)}-{max(frames)}), step {i + 1}/{steps}")

        layer_values = 2 * len(frames) * (shape[0] + 1) * int(denoiser.config["width"])
        with torch.inference_mode(), amp(dev, dtype), loop_threads(dev, layer_values):
            out = scheduler.sample(model, start, tokens[frames][None].float(), mask, framestep,
                                   guidance_scale=guidance, callback=report)
        for f, latent in zip(frames, out[0]):
            bank.setdefault(f, latent.float())  # frames already made (or given) are kept, as upstream
    return torch.stack([bank[f] for f in range(num_frames)]), windows


def stage2_positions(ctx: JobContext, autoencoder, latents, anchor: AnchorMesh, *, dev: str, dtype,
                     low_vram: bool, anchor_frame: int = 0, slide: int = SLIDE):
    """Stage II: the anchor's welded vertices (at frame `anchor_frame`) tracked through every
    frame -> [T, Vw, 3] float64 in the model's box."""
    import torch

    from ...models.temporal_autoencoder import vertex_normals

    xyz = torch.from_numpy(anchor.model_vertices).float().to(dev)
    faces = torch.from_numpy(anchor.model_faces).long().to(dev)
    queries = torch.cat([xyz, vertex_normals(xyz, faces)], dim=-1)
    size = int(autoencoder.temporal_context_size)
    tokens = size * (latents.shape[1] + 1)
    target_chunk = 1 if low_vram else max(1, STAGE2_TOKEN_BUDGET // tokens)
    query_chunk = LOW_VRAM_STAGE2_QUERY_CHUNK if low_vram else STAGE2_QUERY_CHUNK

    def report(i, count):
        ctx.progress("stage2", i, count, f"window {i + 1}/{count}: moving {len(xyz):,} vertices")

    with torch.inference_mode(), amp(dev, dtype):
        positions = autoencoder.predict_sequence(latents.to(dev), queries,
                                                 normals_fn=lambda x: vertex_normals(x, faces),
                                                 window=size, stride=min(slide, size - 1), start=anchor_frame,
                                                 target_chunk=target_chunk, query_chunk=query_chunk, callback=report)
    return positions.float().cpu().numpy().astype(np.float64)


def stage2_offsets(positions: np.ndarray, anchor: AnchorMesh) -> np.ndarray:
    """Stage II's positions in the model's box -> offsets [T, V, 3] on the output's vertices and in
    its coordinates. Offsets are differences, so frame 0 is exactly the anchor and the motion is
    scaled back exactly."""
    per_vertex = positions[:, anchor.vertex_map]
    offsets = (per_vertex - per_vertex[:1]) / anchor.scale
    if not np.isfinite(offsets).all():
        raise RuntimeError("Stage II produced non-finite vertex positions")
    return offsets


def write_stage1_meshes(ctx: JobContext, folder: Path, vae, latents, anchor: AnchorMesh, *, dev: str, dtype,
                        resolution: int, chunk: int) -> int:
    """stage1/latents.npy and stage1/frame_XXXX.glb: each frame's Stage I latent, decoded."""
    from ...geometry import merge_vertices

    folder.mkdir()
    np.save(folder / "latents.npy", latents.float().cpu().numpy())
    count = len(latents)
    for t in range(count):
        ctx.progress("stage1-meshes", t, count, f"decoding frame {t}")
        v, f = extract_latent(vae, latents[t], dev=dev, dtype=dtype, resolution=resolution, chunk=chunk,
                              should_cancel=ctx.should_cancel)
        if len(f):
            v, f = merge_vertices(v, f)
        # In the output's coordinates, like the animation.
        write_mesh(folder / f"frame_{t:04d}.glb", np.asarray(v, np.float64) / anchor.scale + anchor.center, f)
    ctx.progress("stage1-meshes", count, count, "done")
    return count
