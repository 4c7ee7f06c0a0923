"""Video -> animated mesh: ActionMesh's generation pipeline, as one job (`generate`).

This package orchestrates; each step lives in the module that describes it:

    prompt    --prompt: the clip a video model makes first (backend.pipelines.prompt_video), read
              as any clip, published as prompt_video.mp4
    inputs    arguments, the method's choice, the clip, the masks (alpha) and the given mesh:
              frames (video, folder or array) -> alpha: the frames' own where usable, else the
              user's masks (--masks) or RMBG-1.4 -> one crop box for the clip, padded square, on
              white (backend.preprocessing.prepare_frames)
    anchor    Stage 0, the anchor (frame 0): TripoSG, or the user's --mesh; --known keyframes
    (here)    DINOv2-large tokens per frame (backend.models.image_encoder)
    temporal  Stage I (every frame's shape latent, windows of 16 sliding by 15) and Stage II (the
              anchor's vertices moved through them); --stage1-meshes
    fit       --method fit (the --mesh fitted to the frames by backend.fitting.fit_video, no
              models) and --method learned-fit (the learned result refined by the same fit)
    outputs   the hidden output folder published at the end; animation.npz, animated.glb,
              anchor.glb, camera.json (a fit's), report.json (one layout for every method)
    runtime   device, precision, memory: one large model on the device at a time

run_generate lives here and calls the steps through this module's names, so a test or the
benchmark can stand in for one (generate.stage2_positions, generate.StageMeter); every other name
is imported from the step's own module.

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
actionmesh/pipeline.py (stage order, lazy loading; the rest is noted in the modules above).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

from ...errors import BadInput
from ...jobs import JobContext
from .anchor import (FACE_BUDGET, FAST_STAGE0_STEPS, LOW_VRAM_QUERY_CHUNK, QUERY_CHUNK, STAGE0_GUIDANCE,
                     STAGE0_STEPS, SURFACE_POINTS, FLOATER_FRACTION, EXTRACT_RESOLUTION, stage0)
from .fit import refine_by_fitting, run_fit
from .inputs import (METHODS, MODEL_SET_DEFAULTS_KEY, check_int, check_output_folder, frames_with_alpha,
                     load_given_mesh, missing_learned_models, model_set_defaults, parse_known, read_clip)
from .outputs import job_report, job_result, model_revisions, staged_output
from .prompt import check_prompt_inputs, prompt_clip
from .runtime import StageMeter, autocast_dtype, load_flow_transformer, pick_device, release_memory
from .temporal import (FAST_STAGE1_STEPS, RELEASE_MAX_FRAMES, STAGE1_GUIDANCE, STAGE1_STEPS, WINDOW, clip_length_warnings, stage1_latents,
                       stage2_offsets, stage2_positions, write_stage1_meshes)

# A denoiser this wide is the released one (2048; the tiny stand-ins are 64): far too slow for a CPU.
FULL_SIZE_WIDTH = 1024

# run_generate's public face; the steps are imported from their own modules. stage2_positions and
# StageMeter are looked up here when run_generate runs, so a test or the benchmark may stand in for them.
__all__ = ["METHODS", "run_generate"]


def _choose_method(method: str, models_dir, mesh, known, loop, warnings: List[str]) -> tuple:
    """(method, refine): "learned-fit" becomes the learned path refined by fitting when its models
    are all stored, else --method fit with a warning (given a mesh to fit), else the learned path
    (whose error names the models to fetch)."""
    if method not in METHODS:
        raise BadInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method != "learned-fit":
        return method, False
    missing = missing_learned_models(models_dir)
    if not missing:
        return "learned", True
    if mesh is not None and not known and not loop:
        warnings.append(f"the learned models are absent ({', '.join(missing)}; python -m backend models "
                        "download): animated the mesh by video-guided fitting instead (--method fit)")
        return "fit", False
    return "learned", False  # nothing to fit without a mesh: the learned path names what to fetch


def _refinement_camera(camera: Optional[str], mesh: Optional[str], refine: bool, warnings: List[str]):
    """The camera.json the learned result's refinement uses (learned-fit), or None with a warning saying why."""
    if camera is None:
        return None
    if not refine:
        warnings.append("--camera is used by --method fit and learned-fit only; the learned pipeline ignored it")
        return None
    if mesh is None:
        # A generated anchor lives in the model's box, not in the coordinates a camera.json names.
        warnings.append("--camera needs --mesh (its coordinates); the camera was estimated from frame 0 instead")
        return None
    from ...fitting.camera import Camera

    return Camera.load(camera)


def _step_settings(fast: bool, stage0_steps, stage1_steps, resolution, face_budget) -> tuple:
    """(stage 0 steps, stage 1 steps, resolution or None, face budget, where each came from)."""
    s0 = check_int("stage0_steps", stage0_steps, 1) if stage0_steps is not None else (
        FAST_STAGE0_STEPS if fast else STAGE0_STEPS)
    s1 = check_int("stage1_steps", stage1_steps, 1) if stage1_steps is not None else (
        FAST_STAGE1_STEPS if fast else STAGE1_STEPS)
    sources = {"stage0_steps": "argument" if stage0_steps is not None else "release --fast" if fast else "release",
               "stage1_steps": "argument" if stage1_steps is not None else "release --fast" if fast else "release",
               "face_budget": "release" if face_budget == FACE_BUDGET else "argument"}
    if resolution is not None:
        resolution = check_int("resolution", resolution, 16)
        sources["resolution"] = "argument"
    return s0, s1, resolution, check_int("face_budget", face_budget, 4), sources


def _image_tokens(ctx: JobContext, folder, prepared, dev):
    """DINOv2's tokens of every prepared frame; the encoder is freed before Stage I loads."""
    from ...models.image_encoder import ImageEncoder

    ctx.progress("tokens", 0, 1, f"DINOv2 tokens of {len(prepared)} frames")
    encoder = ImageEncoder(folder, device=dev)
    _, tokens = encoder.encode(prepared)
    del encoder
    release_memory(dev)
    ctx.progress("tokens", 1, 1, f"{tuple(tokens.shape)}")
    return tokens


def _warn_full_size_on_cpu(ctx: JobContext, warnings: List[str]) -> None:
    # Said at the start, not only at the end: the user decides now whether to wait or cancel.
    slow = ("the released models are running on the CPU: a 16-frame clip is about 19 PFLOP "
            "(python -m backend plan), a day or more on a desktop CPU. Use a CUDA GPU, or animate "
            "your own mesh without the models (--method fit)")
    warnings.append(slow)
    ctx.progress("prepare", 0, 1, f"warning: {slow}")


def _model_set_resolution(triposg_folder, sources: dict) -> int:
    """The extraction grid when none was asked for: the model set's own default, else the release's."""
    own = model_set_defaults(triposg_folder).get("resolution")
    if own is None:
        sources["resolution"] = "release"
        return EXTRACT_RESOLUTION
    sources["resolution"] = f"model set: TripoSG model_index.json {MODEL_SET_DEFAULTS_KEY}"
    return check_int(f"{MODEL_SET_DEFAULTS_KEY}.resolution of the model set", own, 16)


def _check_keyframes(keyframes: dict, count: int, loop: bool) -> None:
    bad = sorted(k for k in keyframes if not 0 < k < count)
    if bad:
        raise BadInput(f"--known frame(s) {', '.join(map(str, bad))} are outside the clip's frames 1..{count - 1} "
                       "(frame 0 is the anchor: give its mesh with --mesh)")
    if loop and (count - 1) in keyframes:
        raise BadInput(f"--loop sets the last frame ({count - 1}) to the first; it cannot also be a --known frame")


def run_generate(ctx: JobContext, *, out: str, input=None, prompt: Optional[str] = None, view: Optional[str] = None,
                 video_model: Optional[str] = None, mesh: Optional[str] = None, known=(), loop: bool = False,
                 masks: Optional[str] = None, start: int = 0, frames: Optional[int] = None, stride: int = 1,
                 fps: Optional[float] = None, seed: int = 44, device: str = "auto", fast: bool = False,
                 low_vram: bool = False, models_dir: Optional[str] = None, stage1_meshes: bool = False,
                 stage0_steps: Optional[int] = None, stage1_steps: Optional[int] = None,
                 resolution: Optional[int] = None, face_budget: int = FACE_BUDGET,
                 method: str = "learned", camera: Optional[str] = None, refuse_mismatch: bool = False) -> dict:
    """Video (a file, a folder of frames, or an array [T, H, W, 3|4]) -> animated mesh in `out`;
    or `prompt` (with `view`, the first frame, for `mesh`) -> a clip made by a video model
    (`video_model`, default by input; `frames` its length, 16-49) -> the same (see .prompt).

    `method`: "learned" (ActionMesh's models), "fit" (fit `mesh` to the frames' silhouettes and
    optical flow, no weights; `camera` a camera.json, else the camera is estimated), "learned-fit"
    (the learned result refined by fitting when its models are all stored, else fit with a warning
    naming what is missing).

    See the module docstring for the method. `known`: keyframes FRAME=MESH (frame numbers count
    the selected frames, 0-based; frame 0 is the anchor, give it with `mesh`); with `mesh` they
    share its coordinates, without it each is normalised on its own. stage0_steps, stage1_steps,
    resolution (extraction grid) and face_budget override the release's settings (as its
    pipeline's overrides do); resolution None is the model set's own default (MODEL_SET_DEFAULTS_KEY)
    where it has one, else the release's 512; report.json's settings_sources says where each came
    from. `refuse_mismatch` (fit, learned-fit): fail instead of warning when frame 0's silhouette
    agreement after the camera step is under LOW_CAMERA_IOU (motion transfer: a result from the
    wrong object is not written). Returns the output paths and a summary; report.json has the rest.
    """
    started = time.monotonic()
    check_prompt_inputs(input, prompt, view, mesh)
    job = dict(out=out, mesh=mesh, known=known, loop=loop, masks=masks, seed=seed, device=device, fast=fast,
               low_vram=low_vram, models_dir=models_dir, stage1_meshes=stage1_meshes, stage0_steps=stage0_steps,
               stage1_steps=stage1_steps, resolution=resolution, face_budget=face_budget, method=method,
               camera=camera, refuse_mismatch=refuse_mismatch, started=started)
    if prompt is None:
        return _run(ctx, input=input, attach=None, start=start, frames=frames, stride=stride, fps=fps, **job)
    out_dir = Path(out).expanduser()
    check_output_folder(out_dir)
    # What would fail after the clip fails before it: a wrong method, the learned models missing,
    # a mesh that cannot be read or animated.
    if _choose_method(method, models_dir, mesh, known, loop, [])[0] == "learned":
        from ...hub import require

        for name in ("actionmesh", "dinov2", "triposg"):
            require(name, models_dir)
    if mesh is not None:
        load_given_mesh(mesh, [])
    with prompt_clip(ctx, out_dir, prompt=prompt, view=view, frames=frames, seed=check_int("seed", seed, 0),
                     video_model=video_model, models_dir=models_dir, device=device, low_vram=low_vram) as made:
        clip_path, attach = made
        return _run(ctx, input=str(clip_path), attach=attach, start=0, frames=None, stride=1, fps=None, **job)


def _run(ctx: JobContext, *, input, attach, out, mesh, known, loop, masks, start, frames, stride, fps, seed, device,
         fast, low_vram, models_dir, stage1_meshes, stage0_steps, stage1_steps, resolution, face_budget, method,
         camera, refuse_mismatch, started) -> dict:
    """run_generate's job on a clip (`attach`: what --prompt made, published with the result)."""
    from ...hub import require
    from ...io.mesh import load_mesh
    from ...models.dit import TemporalDenoiser
    from ...models.temporal_autoencoder import TemporalAutoencoder
    from ...preprocessing import prepare_frames

    warnings: List[str] = []
    # -- arguments, before anything is read or loaded
    seed = check_int("seed", seed, 0)
    method, refine = _choose_method(method, models_dir, mesh, known, loop, warnings)
    if method == "fit":
        if known or loop:
            raise BadInput("--known and --loop are for the learned method; --method fit follows the frames only")
        out_dir = Path(out).expanduser()
        check_output_folder(out_dir)
        return run_fit(ctx, input=input, out_dir=out_dir, mesh=mesh, camera=camera, masks=masks, start=start,
                       frames=frames, stride=stride, fps=fps, seed=seed, device=device, models_dir=models_dir,
                       warnings=warnings, started=started, refuse_mismatch=refuse_mismatch, attach=attach)
    fit_camera = _refinement_camera(camera, mesh, refine, warnings)
    s0, s1, resolution, face_budget, sources = _step_settings(fast, stage0_steps, stage1_steps, resolution,
                                                              face_budget)
    out_dir = Path(out).expanduser()
    check_output_folder(out_dir)
    keyframes = parse_known(known)
    dev = pick_device(device)
    dtype = autocast_dtype(dev)

    # -- the models: all present and whole, or a MissingModel naming what to fetch
    folders = {"actionmesh": require("actionmesh", models_dir), "dinov2": require("dinov2", models_dir),
               "triposg": require("triposg", models_dir)}
    denoiser_config = TemporalDenoiser.config_from_file(folders["actionmesh"] / "denoiser" / "config.json")
    num_tokens = int(denoiser_config.get("num_tokens_nominal", 2048))
    sources["latent_tokens"] = ("model set: denoiser/config.json num_tokens_nominal"
                                if "num_tokens_nominal" in denoiser_config else "release")
    if dev == "cpu" and int(denoiser_config.get("width", 0)) >= FULL_SIZE_WIDTH:
        _warn_full_size_on_cpu(ctx, warnings)
    if resolution is None:
        resolution = _model_set_resolution(folders["triposg"], sources)

    # -- the clip
    clip = read_clip(ctx, input, start=start, frames=frames, stride=stride, fps=fps, warnings=warnings,
                     max_frames=RELEASE_MAX_FRAMES if frames is None else None)
    count = len(clip)
    warnings += clip_length_warnings(count, clip.more_frames,
                                     size=int(denoiser_config.get("temporal_context_size", WINDOW)))
    _check_keyframes(keyframes, count, loop)
    # mesh mode: the mesh, and its UVs and material for animated.glb
    given, surface = load_given_mesh(mesh, warnings) if mesh is not None else (None, None)
    known_meshes = {k: load_mesh(p, role=f"known frame {k} mesh") for k, p in sorted(keyframes.items())}
    rgba = frames_with_alpha(ctx, clip, masks, models_dir, dev, warnings)
    prepared = prepare_frames(rgba).frames
    ctx.progress("prepare", 1, 1, f"{count} frames, {prepared.shape[2]}x{prepared.shape[1]} after cropping")

    # -- from here on everything goes to a hidden sibling folder, published at the end
    meter = StageMeter(dev)
    with staged_output(ctx, out_dir, attach) as staged:
        # Stage 0: the anchor mesh and its latent, and the keyframes' latents (the VAE is loaded once).
        with meter("stage0"):
            anchor, bank, vae = stage0(
                ctx, folders["triposg"], prepared[0], given=given, mesh=mesh, known_meshes=known_meshes, loop=loop,
                num_frames=count, keep_vae=stage1_meshes, dev=dev, dtype=dtype, steps=s0, num_tokens=num_tokens,
                seed=seed, low_vram=low_vram, resolution=resolution, face_budget=face_budget, warnings=warnings)
            known_frames = list(bank)
        ctx.check_cancel()

        with meter("image_tokens"):
            tokens = _image_tokens(ctx, folders["dinov2"], prepared, dev)

        with meter("stage1"):
            denoiser = load_flow_transformer(TemporalDenoiser, folders["actionmesh"] / "denoiser", dev=dev, dtype=dtype,
                                             low_vram=low_vram)
            if low_vram:
                denoiser.clear_autocast = True  # the release's lowram preset
            latents, windows = stage1_latents(ctx, denoiser, tokens, bank, num_frames=count, steps=s1, seed=seed,
                                              dev=dev, dtype=dtype, low_vram=low_vram)
            del denoiser
            release_memory(dev)

        with meter("stage2"):
            autoencoder = TemporalAutoencoder.from_pretrained(folders["actionmesh"] / "autoencoder", device=dev)
            positions = stage2_positions(ctx, autoencoder, latents, anchor, dev=dev, dtype=dtype, low_vram=low_vram)
            del autoencoder
            release_memory(dev)
            ctx.progress("stage2", 1, 1, "done")

        # Model box -> the output's coordinates and vertices.
        offsets = stage2_offsets(positions, anchor)
        fit = None
        if refine:
            with meter("fit"):
                offsets, fit = refine_by_fitting(ctx, anchor, offsets, rgba, fit_camera, seed, warnings,
                                                 refuse_mismatch=refuse_mismatch)

        if stage1_meshes:
            with meter("stage1_meshes"):
                write_stage1_meshes(ctx, staged.tmp / "stage1", vae, latents, anchor, dev=dev, dtype=dtype,
                                    resolution=resolution, chunk=LOW_VRAM_QUERY_CHUNK if low_vram else QUERY_CHUNK)
                del vae
                release_memory(dev)

        paths = staged.write_animation(anchor.vertices, anchor.faces, offsets, clip.fps,
                                       name=Path(mesh).stem if mesh else "ActionMesh", surface=surface,
                                       camera=None if fit is None else fit["camera_used"])
        result = job_result(paths, method="learned-fit" if refine else None, frames=count, vertices=anchor.vertices,
                            faces=anchor.faces, fps=clip.fps, device=dev, fit=fit, started=started, warnings=warnings)
        settings = {"mesh": mesh, "known": {str(k): v for k, v in keyframes.items()}, "loop": loop,
                    "masks": masks, "start": start, "frames": frames, "stride": stride, "fast": fast,
                    "low_vram": low_vram, "stage0": "mesh" if mesh else "triposg",
                    "stage0_steps": None if mesh else s0, "stage0_guidance": None if mesh else STAGE0_GUIDANCE,
                    "stage1_steps": s1, "stage1_guidance": STAGE1_GUIDANCE, "windows": windows,
                    "known_frames": sorted(int(k) for k in known_frames),
                    "surface_points": SURFACE_POINTS, "latent_tokens": num_tokens, "resolution": resolution,
                    "face_budget": face_budget, "floater_fraction": FLOATER_FRACTION,
                    "stage1_meshes": stage1_meshes}
        staged.publish(job_report(
            clip, result, method=result.get("method"), settings=settings, fit=fit, started=started,
            settings_sources=sources, seed=seed, device=dev,
            autocast=str(dtype).replace("torch.", "") if dtype else None,
            models=model_revisions(models_dir, folders),
            normalization={"center": anchor.center.tolist(), "scale": anchor.scale}, stages=meter.stages))
    result["stages"] = meter.stages
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
