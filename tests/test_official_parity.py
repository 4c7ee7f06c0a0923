"""Parity with the official code: our models, samplers and helpers on reference cases that the
official ActionMesh / TripoSG implementations computed (small seeded models, float32, CPU).

The cases live in ../shared/official/parity (or $ACTIONMESH_PARITY_DIR); its README.md documents
each one. Every case directory found there is run: its weights load STRICTLY through our loaders,
our call gets the case's inputs, and every expected array must match within the case's tolerances
(np.allclose with case.json's atol/rtol, per-output `tolerances` overrides; integer arrays exactly).
Nothing about a case's sizes is assumed here: they come from its config files and arrays, so other
sets in the same format (other widths, layers, frames, seeds ...) are checked the same way.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from blender_harness import REPO, missing_data  # noqa: E402
from manifests import assert_matches_manifest, official_manifest  # noqa: E402

from backend.models.configs import ACTIONMESH_DENOISER_CONFIG, TRIPOSG_DIT_CONFIG  # noqa: E402
from backend.models.dit import ShapeDiT, TemporalDenoiser  # noqa: E402
from backend.models.embeddings import FourierEmbedder, timestep_embedding  # noqa: E402
from backend.models.rope import apply_rope, rope_angles, window_positions  # noqa: E402
from backend.models.temporal_autoencoder import TemporalAutoencoder, time_pair_embedding  # noqa: E402
from backend.models.vae import ShapeVAE  # noqa: E402
from backend.models.windows import (  # noqa: E402
    chunk_from,
    chunk_left,
    chunk_right,
    normalised_time,
    subdivided_times,
    window_plan,
    window_scaling,
)
from backend.schedulers import (  # noqa: E402
    RectifiedFlowScheduler,
    TemporalFlowScheduler,
    apply_guidance,
    flow_schedule,
)

PARITY = Path(os.environ.get("ACTIONMESH_PARITY_DIR") or REPO.parent / "shared" / "official" / "parity")
# The clips the cases name (rmbg's source frame); the parity sets share them.
SHARED_EXAMPLES = REPO.parent / "shared" / "examples"


def _case_names():
    if not PARITY.is_dir():
        return []
    return sorted(d.name for d in PARITY.iterdir() if (d / "case.json").is_file())


class Case:
    """One case directory: case.json, inputs.npz, expected.npz, weights/."""

    def __init__(self, path: Path):
        self.path = path
        self.meta = json.loads((path / "case.json").read_text())
        with np.load(path / "inputs.npz") as f:
            self.inputs = {k: f[k] for k in f.files}
        with np.load(path / "expected.npz") as f:
            self.expected = {k: f[k] for k in f.files}

    @property
    def weights(self) -> Path:
        return self.path / "weights"

    def t(self, name: str) -> "torch.Tensor":
        return torch.from_numpy(self.inputs[name])

    def tolerance(self, name: str):
        """(atol, rtol, explicit): case-wide unless `tolerances` names this output."""
        override = self.meta.get("tolerances", {}).get(name)
        if override is not None:
            return override.get("atol", self.meta["atol"]), override.get("rtol", self.meta["rtol"]), True
        return self.meta["atol"], self.meta["rtol"], False

    def describe(self, name: str) -> str:
        return self.meta["outputs"][name]


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_outputs_match(case: Case, got: dict) -> dict:
    """Compares every expected output; returns {name: max |got - expected|}; fails naming all misses."""
    missing = sorted(case.expected.keys() - got.keys())
    assert not missing, f"{case.path.name}: our call produced no {missing}"
    failures, diffs = [], {}
    for name, expected in case.expected.items():
        ours = _numpy(got[name])
        if ours.shape != expected.shape:
            failures.append(f"{name}: shape {ours.shape} != {expected.shape}")
            continue
        atol, rtol, explicit = case.tolerance(name)
        diff = np.abs(ours.astype(np.float64) - expected.astype(np.float64))
        diffs[name] = float(diff.max()) if diff.size else 0.0
        if np.issubdtype(expected.dtype, np.integer) and not explicit:
            ok = np.array_equal(ours, expected)
        else:
            ok = np.allclose(ours.astype(np.float64), expected.astype(np.float64), atol=atol, rtol=rtol)
        if not ok:
            failures.append(f"{name}: max |diff| {diffs[name]:.3g} (atol {atol}, rtol {rtol})")
    assert not failures, f"{case.path.name}: " + "; ".join(failures)
    return diffs


# ---------------------------------------------------------------- runners, one per case kind


def run_actionmesh_denoiser(case: Case) -> dict:
    model = TemporalDenoiser.from_pretrained(case.weights / "denoiser")
    hidden = case.t("hidden_states")
    with torch.no_grad():
        out = model(hidden, case.t("context"), case.t("framestep"), case.t("diffusion_time"), case.t("mask"))
    cos, sin = model.rotary_tables(case.t("framestep"), hidden.shape[2])
    return {"output": out, "freqs_rot_cos": cos, "freqs_rot_sin": sin}


def _schedules(case: Case, prefix_t: str, prefix_s: str, make) -> dict:
    """Outputs `<prefix_t>_<n>` / `<prefix_s>_<n>` for every step count n the case lists."""
    out = {}
    for name in case.expected:
        m = re.fullmatch(rf"({prefix_t}|{prefix_s})_(\d+)", name)
        if m:
            first, second = make(int(m.group(2)))
            out[name] = first if m.group(1) == prefix_t else second
    return out


def run_actionmesh_stage1_sampler(case: Case) -> dict:
    sched, guidance = case.meta["scheduler"], case.meta["guidance"]
    # The release's guidance (image context zeroed vs kept, latent condition in both) and additive
    # flow are what TemporalFlowScheduler implements; a case asking for another variant is not ours.
    assert guidance["guidance_at_inference"] == [[0, 1], [1, 1]] and len(guidance["guidance_scales"]) == 1
    assert sched["is_additive"] is True
    model = TemporalDenoiser.from_pretrained(case.weights / "denoiser")
    scheduler = TemporalFlowScheduler(sched["num_inference_steps"], sched["num_train_timesteps"], sched["shift"])
    steps = []
    latents = scheduler.sample(model, case.t("init_latent"), case.t("context"), case.t("mask"), case.t("framestep"),
                               guidance_scale=guidance["guidance_scales"][0],
                               callback=lambda i, t, x: steps.append(x.clone()))
    timesteps, distances = scheduler.schedule()
    out = {"latents": latents, "latents_per_step": torch.stack(steps), "schedule_timesteps": timesteps,
           "schedule_distances": distances}
    out.update(_schedules(case, "schedule_timesteps", "schedule_distances",
                          lambda n: flow_schedule(n, sched["num_train_timesteps"], sched["shift"])))
    return out


def run_triposg_dit(case: Case) -> dict:
    model = ShapeDiT.from_pretrained(case.weights, subfolder="transformer")
    with torch.no_grad():
        sample = model(case.t("hidden_states"), case.t("timestep"), case.t("encoder_hidden_states"))
    return {"sample": sample}


def run_triposg_sampler(case: Case) -> dict:
    model = ShapeDiT.from_pretrained(case.weights, subfolder="transformer")
    scheduler = RectifiedFlowScheduler.from_pretrained(case.weights, subfolder="scheduler")
    steps = []
    latents = scheduler.sample(model, case.t("latents"), case.t("image_embeds"),
                               num_inference_steps=case.meta["scheduler"]["num_inference_steps"],
                               guidance_scale=case.meta["guidance_scale"],
                               callback=lambda i, t, x: steps.append(x.clone()))
    out = {"latents": latents, "latents_per_step": torch.stack(steps), "timesteps": scheduler.timesteps,
           "sigmas": scheduler.sigmas}

    def schedule(n):
        other = RectifiedFlowScheduler(**scheduler.config)
        other.set_timesteps(n)
        return other.timesteps, other.sigmas

    out.update(_schedules(case, "timesteps", "sigmas", schedule))
    return out


def run_actionmesh_autoencoder(case: Case) -> dict:
    model = TemporalAutoencoder.from_pretrained(case.weights / "autoencoder")
    latent, query, framestep = case.t("latent"), case.t("query"), case.t("framestep")
    source, targets = case.t("source_alpha"), case.t("target_alphas")
    with torch.no_grad():
        # The field itself (upstream forward), then our forward, which applies it to the vertices
        # (upstream apply_displacement).
        memory = model.memory(latent, source, targets, framestep)
        field = model.read(memory, model.query_features(query).repeat_interleave(targets.shape[1], dim=0))
        deformed = model(latent, query, source, targets, frame_index=framestep)
    return {"displacement": field.unflatten(0, targets.shape), "deformed_vertices": deformed}


def run_triposg_vae(case: Case) -> dict:
    model = ShapeVAE.from_pretrained(case.weights, subfolder="vae")
    surface = case.t("surface")
    with torch.no_grad():
        sdf = model.decode(case.t("latents"), case.t("query_points"))
        posterior = model.encode_at(surface, surface[:, case.t("sample_indices")])
    return {"sdf": sdf[..., None], "posterior_parameters": posterior.parameters, "posterior_mean": posterior.mode(),
            "posterior_logvar": posterior.logvar, "posterior_std": posterior.std}


def run_image_preprocess(case: Case) -> dict:
    from backend.models.image_encoder import ImageEncoder
    from backend.preprocessing import prepare_frames

    settings = case.meta["image_preprocessor"]
    # prepare_frames implements the release's defaults: one box for the clip, white background.
    assert settings["independent_cropping"] is False and settings["bg_color"] == [1.0, 1.0, 1.0], settings
    bbox, frames = prepare_frames(case.inputs["frames_rgba"], padding_ratio=settings["padding_ratio"])
    encoder = ImageEncoder(case.weights / "dinov2")
    # Each stage starts from the official output of the one before ("given ..." in case.json), so a
    # pixel one level off cannot pass for an encoder difference or hide one.
    pixel_values = encoder.preprocess(case.expected["processed_frames"])
    context = encoder.encode_pixels(torch.from_numpy(case.expected["pixel_values"]))
    return {"aggregated_bbox": bbox, "processed_frames": frames, "pixel_values": pixel_values, "context": context}


def _args(pattern: str, text: str) -> tuple:
    m = re.search(pattern, text)
    assert m, f"cannot read the call's arguments from {text!r}"
    return tuple(float(g) if "." in g else int(g) for g in m.groups())


def _helper(case: Case, name: str):
    """Our counterpart of one actionmesh_helpers output, its arguments read from case.json."""
    text = case.describe(name)
    m = re.fullmatch(r"chunk_from_total\d+_start\d+(_lengths)?", name)
    if m:
        start, total, size, slide = _args(r"chunk_from\(start=(\d+), total=(\d+), size=(\d+), slide=(\d+)\)",
                                         case.describe(name.removesuffix("_lengths")))
        chunks = chunk_from(start, total, size, slide)
        return np.array([len(c) for c in chunks] if m.group(1) else sum(chunks, []), dtype=np.int64)
    m = re.fullmatch(r"chunk_(right|left)_.*", name)
    if m:
        args = _args(r"\(start=(\d+), end=(\d+), size=(\d+), slide=(\d+)\)", text)
        return np.array(sum((chunk_right if m.group(1) == "right" else chunk_left)(*args), []), dtype=np.int64)
    m = re.fullmatch(r"(window_\w+?)_(t_min|t_range|source_alpha|scale_timestep|interp_level(\d+)|"
                     r"target_alphas_level(\d+))", name)
    if m:
        window = case.t(m.group(1))
        lo, span = window_scaling(window)
        what = m.group(2)
        if what == "t_min":
            return lo
        if what == "t_range":
            return span
        if what == "source_alpha":
            return normalised_time(window[:, 0], lo, span)
        if what == "scale_timestep":
            return window_positions(window)
        level = int(m.group(3) or m.group(4))
        interp_call = case.describe(f"{m.group(1)}_interp_level{level}")
        times = subdivided_times(window, level=level, drop_first="drop_first=True" in interp_call)
        return times if what.startswith("interp") else normalised_time(times, lo, span)
    m = re.fullmatch(r"rope_(cos|sin)_d(\d+)", name)
    if m:
        cos, sin = rope_angles(case.t("rope_positions"), int(m.group(2)))
        return cos if m.group(1) == "cos" else sin
    if name == "rope_applied":
        x = case.t("rope_x")
        return apply_rope(x, *rope_angles(case.t("rope_positions"), x.shape[-1]))
    m = re.fullmatch(r"freq_embed_n(\d+)_pi(\d)", name)
    if m:
        points = case.t("points")
        embedder = FourierEmbedder(num_freqs=int(m.group(1)), input_dim=points.shape[-1], include_pi=m.group(2) == "1")
        return embedder(points)
    if name == "timestep_embedder":
        (dim,) = _args(r"frequency_embedding_size=(\d+)", text)
        return time_pair_embedding(case.t("alpha_source"), case.t("alpha_target"), dim)
    if name == "time_embed":
        (dim,) = _args(r"num_channels=(\d+)", text)
        assert "flip_sin_to_cos=False" in text and "downscale_freq_shift=0" in text
        return timestep_embedding(case.t("diffusion_times"), dim)
    m = re.fullmatch(r"flow_(timesteps|distances)_(\d+)", name)
    if m:
        steps, shift = _args(r"num_inference_steps=(\d+), shift=([\d.]+)", text)
        timesteps, distances = flow_schedule(steps, shift=shift)
        return timesteps if m.group(1) == "timesteps" else distances
    if name == "cfg_aggregate":
        m = re.search(r"ClassifierFreeGuidance\((\[\[.*\]\]), (\[[^\]]*\])\)", text)
        assert m, text
        return apply_guidance(case.t("cfg_batch"), json.loads(m.group(2)))
    raise AssertionError(f"actionmesh_helpers: no counterpart for output {name!r} ({text})")


def run_actionmesh_helpers(case: Case) -> dict:
    with torch.no_grad():
        return {name: _helper(case, name) for name in case.expected}


def _pipeline_settings(case: Case) -> dict:
    """The case's pipeline settings, checked against what our chain implements (a set asking for
    another variant fails here, naming it, rather than deep inside a comparison)."""
    cfg = case.meta["pipeline_config"]
    sched, guidance = cfg["scheduler"], cfg["guidance"]
    assert guidance["guidance_at_inference"] == [[0, 1], [1, 1]] and len(cfg["guidance_scales"]) == 1, guidance
    assert sched["is_additive"] is True and (sched["num_train_timesteps"], sched["shift"]) == (1000, 3.0), sched
    assert cfg["subsampling_level"] == 1, "Stage II between frames (subsampling_level > 1) is not ours"
    timesteps = case.inputs["timesteps"]
    # The release's input always numbers its frames 0..T-1 (ActionMeshInput); ours are frame indices.
    assert np.array_equal(timesteps, np.arange(len(timesteps), dtype=timesteps.dtype)), timesteps
    return cfg


def run_actionmesh_pipeline(case: Case) -> dict:
    """Our Stage I and Stage II as the generate job runs them (stage1_latents, stage2_positions),
    end to end from the case's anchor, context and recorded noise."""
    from backend.jobs import JobContext
    from backend.models.temporal_autoencoder import vertex_normals
    from backend.pipelines.generate.anchor import anchor_in_model_space
    from backend.pipelines.generate.temporal import stage1_latents, stage2_positions
    from backend.schedulers import TemporalFlowScheduler

    cfg = _pipeline_settings(case)
    denoiser = TemporalDenoiser.from_pretrained(case.weights / "denoiser")
    autoencoder = TemporalAutoencoder.from_pretrained(case.weights / "autoencoder")
    assert denoiser.temporal_context_size == cfg["temporal_context_size_stage1"]
    assert autoencoder.temporal_context_size == cfg["temporal_context_size_stage2"]
    count, start = len(case.inputs["timesteps"]), int(cfg["anchor_idx"])
    seed = int(case.inputs["noise_seed"])
    recorded = [case.t(f"noise_window{i}") for i in range(len(case.meta["windows"]["stage1"]))]
    # Our own draws are the release's: the same seed gives the recorded noise, bit for bit.
    for i, noise in enumerate(recorded):
        ours = TemporalFlowScheduler.initial_noise(tuple(noise.shape[2:]), noise.shape[1],
                                                   torch.Generator().manual_seed(seed + i))
        assert torch.equal(ours, noise), f"window {i}: our noise draw for seed {seed + i} is not the release's"
    ctx = JobContext()
    latents, windows1 = stage1_latents(
        ctx, denoiser, case.t("context"), {start: case.t("anchor_latent")[0]}, num_frames=count,
        steps=int(cfg["stage_1_steps"]), seed=seed, dev="cpu", dtype=None, low_vram=False, anchor_frame=start,
        guidance=float(cfg["guidance_scales"][0]), slide=int(cfg["sliding_window_denoiser"]), noise=recorded)
    faces = case.inputs["anchor_faces"]
    anchor = anchor_in_model_space(case.inputs["anchor_vertices"], faces)
    positions = stage2_positions(ctx, autoencoder, latents, anchor, dev="cpu", dtype=None, low_vram=False,
                                 anchor_frame=start, slide=int(cfg["sliding_window_autoencoder"]))
    positions = torch.from_numpy(positions).float()
    # With the anchor inside the clip, upstream's Stage II never produces frame 0 (window_plan) and
    # returns one frame fewer; compare the frames it returns (case.json may list them).
    rows = case.meta.get("vertices_timesteps")
    if rows is None and start != 0 and len(case.expected["vertices"]) == count - 1:
        rows = list(range(1, count))
    out = {"latents": latents, "vertices": positions if rows is None else positions[rows]}
    out.update({f"latents_window{i}": latents[w][None] for i, w in enumerate(windows1)})
    # Each Stage II window as the release runs it, from our chain's own source mesh: the query
    # (our positions + our normals), the window's times, and the field at every target (including
    # frames an earlier window wrote, which predict_sequence skips and the release discards).
    faces_t = torch.from_numpy(faces)
    plan = window_plan(count, autoencoder.temporal_context_size, int(cfg["sliding_window_autoencoder"]), start=start)
    for i, win in enumerate(plan):
        frames = torch.tensor([win.frames])
        src = positions[win.source]
        query = torch.cat([src, vertex_normals(src, faces_t)], -1)[None]
        lo, span = window_scaling(frames.float())
        source_alpha = normalised_time(frames[:, 0].float(), lo, span)
        target_alphas = normalised_time(subdivided_times(frames.float(), level=1, drop_first=True), lo, span)
        with torch.no_grad():
            field = autoencoder(latents[frames[0]][None], query, source_alpha, target_alphas, frame_index=frames)
        out.update({f"query_window{i}": query, f"source_alpha_window{i}": source_alpha,
                    f"target_alphas_window{i}": target_alphas, f"displacement_window{i}": field})
    for stage, windows in (("stage1", windows1), ("stage2", [w.frames for w in plan])):
        out[f"windows_{stage}"] = np.array(sum(windows, []), dtype=np.int64)
        out[f"windows_{stage}_lengths"] = np.array([len(w) for w in windows], dtype=np.int64)
    return out


def run_rmbg(case: Case) -> dict:
    """Background removal (RMBG-1.4 and the release's pre/post-processing), each step given the
    official output of the one before, then end to end: the mask must be the same."""
    from backend.models.rmbg import BriaRMBG
    from backend.preprocessing.background import RMBGRemover, has_usable_alpha, otsu_threshold, refine_mask

    model = BriaRMBG.from_pretrained(case.weights)
    remover = RMBGRemover.from_model(model, input_size=case.meta["model_input_size"])
    rgb = case.inputs["image_rgb"]
    with torch.no_grad():
        sides = model(torch.from_numpy(case.expected["network_input"]))
    soft = remover.postprocess(torch.from_numpy(case.expected["side1"]), rgb.shape[:2])
    given_soft = case.expected["soft_mask"]
    end_to_end = remover.masks(rgb[None])[0]
    assert np.array_equal(end_to_end, case.expected["mask"]), \
        f"end to end, {np.count_nonzero(end_to_end != case.expected['mask'])} mask pixels differ"
    source = np.asarray(Image.open(SHARED_EXAMPLES / case.meta["source_frame"]).convert("RGBA"))
    assert case.meta.get("source_crop") is None and source.shape[:2] == rgb.shape[:2]
    return {"network_input": remover.preprocess(rgb), "side1": sides[0],
            "side_outputs_mean": torch.stack([s.double().mean() for s in sides]).float(),
            "soft_mask": soft, "otsu_threshold": np.int64(otsu_threshold(given_soft)),
            "mask": refine_mask(given_soft), "source_rgba_has_valid_alpha": np.int64(has_usable_alpha(source)),
            "rgb_has_valid_alpha": np.int64(has_usable_alpha(rgb))}


RUNNERS = {
    "actionmesh_denoiser": run_actionmesh_denoiser,
    "actionmesh_stage1_sampler": run_actionmesh_stage1_sampler,
    "actionmesh_autoencoder": run_actionmesh_autoencoder,
    "actionmesh_helpers": run_actionmesh_helpers,
    "triposg_dit": run_triposg_dit,
    "triposg_sampler": run_triposg_sampler,
    "triposg_vae": run_triposg_vae,
    "image_preprocess": run_image_preprocess,
    "actionmesh_pipeline": run_actionmesh_pipeline,
    "rmbg": run_rmbg,
}


@pytest.mark.parametrize("name", _case_names() or ["<none>"])
def test_official_parity_case(name, capsys):
    if not PARITY.is_dir():
        missing_data(f"needs the official parity cases at {PARITY} (shared data, absent in a user's clone; "
                     "or set ACTIONMESH_PARITY_DIR)")
    case = Case(PARITY / name)
    runner = RUNNERS.get(case.meta["kind"])
    assert runner is not None, f"no parity runner for case kind {case.meta['kind']!r}"
    torch.manual_seed(0)  # nothing should depend on it; makes any accidental randomness repeatable
    diffs = assert_outputs_match(case, runner(case))
    with capsys.disabled():
        worst = max(diffs, key=diffs.get)
        print(f"\nparity {name}: {len(diffs)} outputs match, max |diff| {diffs[worst]:.3g} ({worst})")


# ---------------------------------------------------------------- full-size layouts (no memory)


def test_triposg_dit_config_matches_official_manifest():
    official = official_manifest("manifest_triposg.json", "triposg_dit")
    with torch.device("meta"):
        model = ShapeDiT(**TRIPOSG_DIT_CONFIG)
    assert_matches_manifest(model, official)


def test_actionmesh_denoiser_config_matches_official_manifest():
    official = official_manifest("manifest_actionmesh.json", "actionmesh_denoiser")
    with torch.device("meta"):
        model = TemporalDenoiser(**ACTIONMESH_DENOISER_CONFIG)
    assert_matches_manifest(model, official)


def test_rmbg_full_width_layout_is_the_released_file():
    """Our BriaRMBG at the released widths has the official state_dict (names in order, dtypes,
    shapes, as the rmbg case lists them), and saved with safetensors it is exactly as large as the
    released model.safetensors: the released file loads strictly, with nothing missing or extra."""
    from safetensors.torch import save

    from backend.models.rmbg import BriaRMBG

    if not (PARITY / "rmbg").is_dir():
        missing_data(f"needs the rmbg parity case in {PARITY}")
    full = Case(PARITY / "rmbg").meta["full_size"]
    with torch.device("meta"):
        model = BriaRMBG()
    ours = {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in model.state_dict().items()}
    assert list(ours) == list(full["state_dict"]) and ours == full["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == full["parameters"]
    zeros = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}
    assert len(save(zeros, metadata={"format": "pt"})) == full["released_model_safetensors_bytes"]


# ---------------------------------------------------------------- the shared window plan


@pytest.mark.parametrize("total", [1, 2, 7, 15, 16, 17, 20, 31, 46])
def test_window_plan_from_any_anchor_covers_every_frame_once(total):
    for start in sorted({0, 1, total // 2, total - 2, total - 1} & set(range(total))):
        plan = window_plan(total, 16, 15, start=start)
        produced = [start] + [f for w in plan for f in w.targets]
        assert sorted(produced) == list(range(total)), (total, start)
        known = {start}
        for w in plan:
            assert w.source in known and len(w.frames) <= 16
            assert all(0 <= f < total for f in w.frames)
            known.update(w.targets)
