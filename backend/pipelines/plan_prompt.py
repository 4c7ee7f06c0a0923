"""`python -m backend plan --prompt [--image]`: what the prompt path costs at full size, per stage,
with the video model resident and with diffusers' model offload, then ActionMesh's stages.

The video model's three parts (UMT5-XXL's encoder, the Wan transformer, the Wan VAE) are built at
their released sizes without storage and traced as the prompt path runs them
(backend.pipelines.prompt_video): bf16 weights, the VAE in float32, the prompt and the negative
prompt encoded once each at the text encoder's 512 tokens, every denoising step a conditional and
an unconditional pass of batch 1 (diffusers' Wan pipelines run the guidance pair as two calls), one
VAE decode of the whole clip; with a first frame, one VAE encode of it. FLOPs, activation peaks and
the time model are plan's (backend.pipelines.tracing: FlopCounterMode, live storage bytes, H100
peak or bandwidth).

Memory per stage:
  resident   pipe.to("cuda"): all three parts on the GPU through the clip, plus the running
             stage's activations;
  offload    --low-vram (enable_model_cpu_offload): only the running part on the GPU.
The video pipeline is released before ActionMesh loads (prompt_video says why), so the prompt
path's peak is the larger of the clip's and generate's own (plan's configurations).
"""

from __future__ import annotations

import torch

from ..hub.registry import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, VIDEO, get_model
from .prompt_video import clip_length
from .tracing import (CONTEXT_BYTES, H100_BANDWIDTH, H100_PEAK_FLOPS, _empty, _flops, _gib, duration, fake_copy,
                      new_fake_mode, state_bytes, trace)

TEXT_TOKENS = 512


def _latent_grid(name: str, frames: int) -> tuple:
    """(latent frames, latent height, latent width, channels) of a clip of `frames` frames."""
    from ..hub.architectures import VIDEO_ARCHITECTURES

    video = VIDEO[name]
    vae = VIDEO_ARCHITECTURES[name]["vae"]
    spatial = vae.get("scale_factor_spatial", 8)
    return 1 + (frames - 1) // video.frame_step, video.height // spatial, video.width // spatial, vae["z_dim"]


def prompt_stages(name: str, frames: int, image: bool) -> dict:
    """The video model's stages: calls, FLOPs, activation peak of one call, the part it runs."""
    from ..hub.architectures import build_video_on_meta

    video = VIDEO[name]
    made = clip_length(frames, video.frame_step)
    fake = new_fake_mode()
    meta = build_video_on_meta(name)
    parts = {k: fake_copy(m, fake) for k, m in meta.items()}
    weights = {k: state_bytes(m) for k, m in meta.items()}
    t, h, w, z = _latent_grid(name, made)
    text = trace(lambda: parts["text_encoder"](input_ids=torch.zeros(1, TEXT_TOKENS, dtype=torch.long),
                                               attention_mask=torch.ones(1, TEXT_TOKENS, dtype=torch.long)), fake)
    step = trace(lambda: parts["transformer"](_empty(1, z, t, h, w, dtype=torch.bfloat16), torch.full((1,), 500.0),
                                              _empty(1, TEXT_TOKENS, 4096, dtype=torch.bfloat16)), fake)
    decode = trace(lambda: parts["vae"].decode(_empty(1, z, t, h, w)), fake)
    stages = [
        dict(name="text_encoder", part="text_encoder", calls=2, flops=2 * text.flops,
             activation_bytes=text.activation_bytes, bf16=True, detail=f"prompt + negative, {TEXT_TOKENS} tokens"),
        dict(name="denoiser", part="transformer", calls=2 * video.steps, flops=2 * video.steps * step.flops,
             activation_bytes=step.activation_bytes, bf16=True,
             detail=f"{video.steps} steps x guidance pair, {t} x {h // 2} x {w // 2} tokens"),
        dict(name="vae_decode", part="vae", calls=1, flops=decode.flops, activation_bytes=decode.activation_bytes,
             bf16=False, detail=f"{made} frames at {video.width}x{video.height}"),
    ]
    if image:
        encode = trace(lambda: parts["vae"].encode(_empty(1, 3, 1, video.height, video.width)), fake)
        stages.insert(1, dict(name="vae_encode", part="vae", calls=1, flops=encode.flops,
                              activation_bytes=encode.activation_bytes, bf16=False, detail="the first frame"))
    resident = sum(weights.values())
    for stage in stages:
        running = weights[stage["part"]]
        stage["peak_bytes"] = {"resident": resident + stage["activation_bytes"] + CONTEXT_BYTES,
                               "offload": running + stage["activation_bytes"] + CONTEXT_BYTES}
        rate = H100_PEAK_FLOPS["bf16" if stage["bf16"] else "fp32"]
        stage["seconds"] = stage["calls"] * max(stage["flops"] / stage["calls"] / rate, running / H100_BANDWIDTH)
    return dict(model=get_model(name).repo_id, name=name, frames=frames, made_frames=made, height=video.height,
                width=video.width, steps=video.steps, image=image, weight_bytes=weights, stages=stages,
                peak_bytes={mode: max(s["peak_bytes"][mode] for s in stages) for mode in ("resident", "offload")},
                seconds=sum(s["seconds"] for s in stages))


def plan_prompt(frames: int, image: bool, generate_peaks: dict, video_model=None) -> dict:
    """The prompt path: the clip's stages, then generate's (`generate_peaks`: its default and
    --low-vram peaks, from plan's configurations)."""
    name = get_model(video_model).name if video_model else (IMAGE_TO_VIDEO if image else TEXT_TO_VIDEO)
    clip = prompt_stages(name, max(frames, 16), image)
    clip["path_peak_bytes"] = {"resident": max(clip["peak_bytes"]["resident"], generate_peaks["default"]),
                               "offload": max(clip["peak_bytes"]["offload"], generate_peaks["low-vram"])}
    return clip


def print_prompt(clip: dict) -> None:
    print(f"\nthe prompt path: {clip['model']} makes {clip['made_frames']} frames at {clip['width']}x{clip['height']}, "
          f"{clip['steps']} steps{' from a first frame' if clip['image'] else ''}; then the job above")
    print("part                weights")
    for part, n in clip["weight_bytes"].items():
        print(f"{part:<20}{_gib(n):>8}")
    print("stage               calls  FLOPs         activations  peak: resident | offload   time at H100 peak")
    for s in clip["stages"]:
        peaks = f"{_gib(s['peak_bytes']['resident'])} | {_gib(s['peak_bytes']['offload'])}"
        print(f"{s['name']:<20}{s['calls']:>5}  {_flops(s['flops']):<13} {_gib(s['activation_bytes']):>11}  "
              f"{peaks:<22}{duration(s['seconds']):>8}   {s['detail']}")
    r, o = clip["path_peak_bytes"]["resident"], clip["path_peak_bytes"]["offload"]
    print(f"prompt path peak: {_gib(r)} (video model resident, then generate) | {_gib(o)} (--low-vram: offload, "
          f"then generate --low-vram); the clip about {duration(clip['seconds'])} at H100 peak")
