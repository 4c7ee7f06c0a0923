"""A prompt -> a short clip of one subject (`python -m backend prompt-video`, and the first step
of `generate --prompt`): an open video model through diffusers' own pipeline.

Text alone goes to the text-to-video model (Wan2.1-T2V-1.3B by default: 11 GB of GPU with
offload); a first frame (`image`: the add-on's render of the user's mesh) goes to the
image-to-video model (Wan2.2-TI2V-5B, the family's one model that continues an image and fits
24 GB). The registry (backend.hub.registry.VIDEO) holds each model's card settings: size, steps,
guidance, frame rate, token limit.

Our framing wraps the user's prompt (PROMPT_FRAME / IMAGE_FRAME, and NEGATIVE_PROMPT): ActionMesh
wants one whole subject on a plain background from a still camera, which is not what a video
model makes unasked. A prompt longer than the text encoder reads is refused, not cut.

The clip is made on the device, then the video pipeline is dropped and the device's memory
released before anything else loads: the video model and ActionMesh's models never share the
GPU (generate --prompt runs this first). `low_vram` offloads each of its parts to the CPU between
uses (diffusers' model offload), as it does by itself on a GPU with less memory than the model
needs with every part resident (the registry's resident_gib, from `plan --prompt`). On the CPU,
the released models are refused with the time they would take and the GPU they need; small
stand-ins (`models tiny-random --with-video`) run.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInput, Unsupported
from ..hub.registry import IMAGE_TO_VIDEO, MODEL_SET_DEFAULTS_KEY, TEXT_TO_VIDEO, VIDEO, get_model
from ..jobs import JobContext
from .generate.inputs import check_int, model_set_defaults
from .generate.runtime import pick_device, release_memory

MIN_FRAMES, MAX_FRAMES = 16, 49  # one Stage I window at least; about 3 s at the models' 16-24 fps
PROMPT_FRAME = ("{prompt}. A single subject, its whole body in view and centred, on a plain white background; "
                "a still camera, no cuts.")
IMAGE_FRAME = "{prompt}. The camera stays still and the background stays plain."
NEGATIVE_PROMPT = ("camera motion, zoom, pan, cuts, several subjects, busy background, text, watermark, subject cut off "
                   "by the frame, blurry, low quality")
VIDEO_DEFAULT_NAMES = ("height", "width", "steps")
# A transformer this wide is a released model (Wan2.1-1.3B: 1536; the tiny stand-ins: 16).
FULL_SIZE_WIDTH = 1024
CPU_FLOPS = 2e11  # what a desktop CPU sustains on these matmuls in float32, for the refusal's estimate
GiB = 1 << 30


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("the prompt is empty: describe the subject and its motion, e.g. "
                       "\"a red dragon flapping its wings, side view\"")
    return " ".join(prompt.split())


def pick_model(model: Optional[str], image) -> str:
    """The registry name of the video model: the given one, else the default for text or image."""
    name = get_model(model).name if model else (IMAGE_TO_VIDEO if image is not None else TEXT_TO_VIDEO)
    if name not in VIDEO:
        raise BadInput(f"{model!r} is not a video model; choose one of {', '.join(VIDEO)}")
    if image is not None and not VIDEO[name].image_to_video:
        raise BadInput(f"{name} makes video from text only; a first frame needs {IMAGE_TO_VIDEO}")
    return name


def clip_length(frames: int, step: int) -> int:
    """The frames the model makes for `frames` wanted: 1 + k * step (its VAE's temporal stride)."""
    return 1 + step * math.ceil((frames - 1) / step)


def _transformer_config(folder: Path) -> dict:
    import json

    return json.loads((folder / "transformer" / "config.json").read_text())


def _transformer_parameters(config: dict) -> int:
    """Parameters of the transformer `config` describes (built on the meta device: no memory)."""
    import torch
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def cpu_refusal(name: str, folder: Path, frames: int, height: int, width: int, steps: int) -> Optional[str]:
    """Why the released model is not run on the CPU (the estimate and the GPU it needs); None
    for a small stand-in."""
    config = _transformer_config(folder)
    model_width = int(config.get("num_attention_heads", 0)) * int(config.get("attention_head_dim", 0))
    if model_width < FULL_SIZE_WIDTH:
        return None
    spec, video = get_model(name), VIDEO[name]
    spatial = 16 if video.image_to_video else 8  # the VAE's compression, then 2 x 2 patches
    tokens = (1 + (frames - 1) // video.frame_step) * (height // (spatial * 2)) * (width // (spatial * 2))
    layers = int(config.get("num_layers", 30))
    per_pass = 2 * _transformer_parameters(config) * tokens + 4 * tokens ** 2 * model_width * layers
    flops = per_pass * 2 * steps  # the guidance pair
    hours = flops / CPU_FLOPS / 3600
    return (f"{spec.repo_id} is a released video model: a {frames}-frame clip at {width}x{height} is about "
            f"{flops / 1e15:.1f} PFLOP, some {hours:.0f} hours on a desktop CPU. It needs a CUDA GPU with at least "
            f"{video.gpu_gib:g} GB (run on a machine with one; --low-vram offloads between its parts)")


def _quiet_libraries() -> None:
    """The job reports its own progress: the libraries' loading bars and notices would only
    interleave with it (and a diffusers module's import-time warning about CUDA on a CPU machine)."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="CUDA is not available", category=UserWarning)
        importlib.import_module("diffusers.models.transformers")  # where they warn, once, on first import
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()


def _load(name: str, folder: Path, dev: str, image: bool, low_vram: bool):
    _quiet_libraries()
    import torch
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline

    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    # The model cards keep the VAE in float32 (its decoder's colours band in bf16).
    vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32, use_safetensors=True)
    cls = WanImageToVideoPipeline if image else WanPipeline
    pipe = cls.from_pretrained(folder, vae=vae, torch_dtype=dtype, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    if dev == "cuda" and (low_vram or torch.cuda.get_device_properties(0).total_memory < VIDEO[name].resident_gib * GiB):
        pipe.enable_model_cpu_offload()  # one part on the GPU at a time: the text encoder alone is 10.6 GiB
    else:
        pipe.to(dev)
    return pipe


def _first_frame(image) -> "object":
    from PIL import Image

    path = Path(image).expanduser()
    if not path.is_file():
        raise BadInput(f"first frame not found: {path}")
    try:
        picture = Image.open(path)
        picture.load()
    except Exception as exc:  # Pillow raises several kinds for what it cannot read
        raise BadInput(f"cannot read the first frame {path.name}: {exc}") from None
    if picture.mode in ("RGBA", "LA", "P"):  # transparency -> the plain white background we ask for
        picture = picture.convert("RGBA")
        white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, picture)
    return picture.convert("RGB")


def make_clip(ctx: JobContext, *, prompt: str, out: str, image: Optional[str] = None, frames: int = MIN_FRAMES,
              seed: int = 0, video_model: Optional[str] = None, models_dir: Optional[str] = None,
              device: str = "auto", low_vram: bool = False) -> dict:
    """A clip for `prompt` (continuing `image` when given) written to `out` (an .mp4). Returns
    the path and what made it: model, revision, seed, the prompt as sent, size, rate, seconds."""
    import torch

    from ..hub import require
    from ..hub.store import open_store
    from ..io import write_video

    started = time.monotonic()
    prompt = check_prompt(prompt)
    frames = check_int("frames", frames, MIN_FRAMES)
    if frames > MAX_FRAMES:
        raise BadInput(f"frames must be at most {MAX_FRAMES} for a prompt's clip, got {frames}")
    seed = check_int("seed", seed, 0)
    out_path = Path(out).expanduser()
    if out_path.suffix.lower() != ".mp4":
        raise BadInput(f"the clip is written as MPEG-4: give an .mp4 path, got {out_path.name}")
    first = _first_frame(image) if image is not None else None
    name = pick_model(video_model, image)
    video = VIDEO[name]
    folder = require(name, models_dir)
    own = model_set_defaults(folder, VIDEO_DEFAULT_NAMES)
    height, width, steps = (check_int(f"{MODEL_SET_DEFAULTS_KEY}.{k}", own.get(k, getattr(video, k)), 1)
                            for k in VIDEO_DEFAULT_NAMES)
    made = clip_length(frames, video.frame_step)
    dev = pick_device(device)
    if dev == "cpu":
        refusal = cpu_refusal(name, folder, made, height, width, steps)
        if refusal:
            raise Unsupported(refusal)

    ctx.progress("video", 0, steps, f"loading {get_model(name).repo_id}")
    pipe = _load(name, folder, dev, first is not None, low_vram)
    try:
        wrapped = (IMAGE_FRAME if first is not None else PROMPT_FRAME).format(prompt=prompt)
        tokens = len(pipe.tokenizer(wrapped).input_ids)
        if tokens > video.max_tokens:
            own_tokens = len(pipe.tokenizer(prompt).input_ids)
            raise BadInput(f"the prompt is {own_tokens} tokens ({tokens} with our framing); {name} reads at most "
                           f"{video.max_tokens}: shorten it")

        def on_step(pipeline, step, timestep, kwargs):
            ctx.check_cancel()
            then = "; decoding the frames" if step + 1 == steps else ""
            ctx.progress("video", step + 1, steps, f"denoising step {step + 1}/{steps}{then}")
            return kwargs

        generator = torch.Generator(device="cpu").manual_seed(seed)
        extra = {"image": first} if first is not None else {}
        result = pipe(prompt=wrapped, negative_prompt=NEGATIVE_PROMPT, height=height, width=width, num_frames=made,
                      num_inference_steps=steps, guidance_scale=video.guidance, generator=generator,
                      output_type="np", callback_on_step_end=on_step, max_sequence_length=video.max_tokens, **extra)
        clip = np.clip(np.asarray(result.frames[0])[:frames] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    finally:
        del pipe
        release_memory(dev)
    ctx.check_cancel()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.stem}.partial.mp4")
    write_video(partial, clip, video.fps)
    os.replace(partial, out_path)
    status = open_store(models_dir).status(get_model(name))
    ctx.progress("video", steps, steps, f"{frames} frames written to {out_path.name}")
    return {"video": str(out_path), "prompt": prompt, "sent_prompt": wrapped, "negative_prompt": NEGATIVE_PROMPT,
            "image": None if image is None else str(image), "model": get_model(name).repo_id,
            "pinned_revision": get_model(name).revision, "found_revision": status.revision, "seed": seed,
            "frames": frames, "made_frames": made, "height": height, "width": width, "steps": steps,
            "guidance": video.guidance, "fps": video.fps, "device": dev,
            "seconds": round(time.monotonic() - started, 3)}
