"""`python -m backend bench generate`: the overhead figures on the tiny set, and a clear
"nothing to measure" (exit 0) without models."""

from __future__ import annotations

import json

import pytest

from backend_cli import run_backend


def test_bench_on_tiny_set_times_every_stage(tiny_models, shared_examples, tmp_path):
    models, _, _ = tiny_models
    path = tmp_path / "bench.json"
    proc = run_backend("bench", "generate", "--models-dir", models, "--frames", "16", "--json", path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(path.read_text())
    assert result["mode"] == "overhead" and all(m["small"] for m in result["models"].values())
    (run,) = result["runs"]
    assert run["frames"] == 16 and run["baseline_seconds"] > 0
    assert {"prepare", "stage0", "image_tokens", "stage1", "stage2", "write"} <= set(run["stages"])
    for name, stage in run["stages"].items():
        assert stage["seconds"] > 0, name
        assert 0 <= stage["overhead_seconds"] <= stage["seconds"], name
    assert "baseline" in proc.stdout and "overhead" in proc.stdout


def test_bench_without_models_names_what_is_missing(tmp_path):
    empty = tmp_path / "no_models"
    empty.mkdir()
    path = tmp_path / "bench.json"
    proc = run_backend("bench", "generate", "--models-dir", empty, "--json", path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(path.read_text())
    assert result["mode"] == "unavailable" and result["runs"] == []
    for repo, name in (("facebook/ActionMesh", "actionmesh"), ("VAST-AI/TripoSG", "triposg"),
                       ("facebook/dinov2-large", "dinov2")):
        assert f"{repo} is missing" in proc.stdout and f"models download {name}" in proc.stdout
    import torch

    assert ("no CUDA GPU" in proc.stdout) == (not torch.cuda.is_available())


# ---------------------------------------------------------------- --random-full

OFFICIAL_MANIFESTS = {"triposg_vae": "manifest_triposg.json", "triposg_dit": "manifest_triposg.json",
                      "actionmesh_denoiser": "manifest_actionmesh.json",
                      "actionmesh_autoencoder": "manifest_actionmesh.json"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_random_full_builds_the_released_layouts_on_meta():
    """What --random-full writes has the official checkpoints' names and shapes (built on the meta
    device: no memory), DINOv2-large and RMBG-1.4 their released sizes."""
    from manifests import assert_matches_manifest, official_manifest

    from backend.bench.generate import build_random_full
    from backend.hub.architectures import build_dinov2_on_meta

    for name, filename in OFFICIAL_MANIFESTS.items():
        model = build_random_full(name)  # closed_field too, for the VAE: it only sets values
        assert all(t.device.type == "meta" for t in model.state_dict().values()), name
        assert_matches_manifest(model, official_manifest(filename, name))
    dinov2 = build_random_full("dinov2_large")
    reference = {k: tuple(v.shape) for k, v in build_dinov2_on_meta().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in dinov2.state_dict().items()} == reference
    assert 300e6 < sum(p.numel() for p in dinov2.parameters()) < 310e6
    assert 43e6 < sum(p.numel() for p in build_random_full("rmbg").parameters()) < 45e6


def test_closed_field_makes_one_ball_whatever_the_latents():
    """A random VAE's field has no shape; closed_field's has one closed surface of a real shape's
    size, in float32 and under bf16 autocast (how a GPU runs it)."""
    import numpy as np
    import torch

    from backend.bench.generate import closed_field
    from backend.geometry.extract import extract_mesh
    from backend.models.configs import TINY_VAE_CONFIG
    from backend.models.vae import ShapeVAE

    torch.manual_seed(0)
    vae = ShapeVAE(**TINY_VAE_CONFIG).eval()  # the same architecture and names, smaller
    closed_field(vae)
    for autocast in (False, True):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            memory = vae.decode_latents(torch.randn(1, 64, TINY_VAE_CONFIG["latent_channels"]))

            def sdf(points):
                return vae.query(memory, torch.as_tensor(points, dtype=torch.float32)[None])[0].float().numpy()

            vertices, faces, _ = extract_mesh(sdf, resolution=32)
        radius = np.linalg.norm(vertices, axis=1)
        assert 0.68 < radius.min() and radius.max() < 0.8, (autocast, radius.min(), radius.max())
        edges = {tuple(sorted(e)) for f in faces for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
        assert len(vertices) - len(edges) + len(faces) == 2  # one closed surface of genus 0


def test_random_full_writer_makes_a_set_the_pipeline_loads(tmp_path):
    """write_random_full's folders (here at the tiny set's sizes): every model the store checks is
    ready, and each loads through the pipeline's own loaders."""
    import torch

    from backend.bench.generate import inspect_models, write_random_full
    from backend.hub import READY, get_model, open_store
    from backend.hub.tiny import TINY_DINOV2_CONFIG, TINY_RMBG_WIDTH_SCALE, tiny_configs
    from backend.models.configs import TINY_VAE_CONFIG
    from backend.models.dit import ShapeDiT, TemporalDenoiser
    from backend.models.image_encoder import ImageEncoder
    from backend.models.temporal_autoencoder import TemporalAutoencoder
    from backend.models.vae import ShapeVAE
    from backend.pipelines.generate.runtime import load_flow_transformer

    small = tiny_configs(TINY_VAE_CONFIG)
    configs = {"triposg_dit": small["transformer"], "triposg_vae": TINY_VAE_CONFIG,
               "actionmesh_denoiser": small["denoiser"], "actionmesh_autoencoder": small["autoencoder"],
               "dinov2_large": TINY_DINOV2_CONFIG, "rmbg": {"width_scale": TINY_RMBG_WIDTH_SCALE}}
    root = tmp_path / "models"
    written = write_random_full(root, configs=configs)
    assert written["bytes"] > 0
    found = inspect_models(str(root))
    assert found["missing"] == [] and set(found["models"]) == {"actionmesh", "dinov2", "triposg"}
    assert open_store(str(root)).status(get_model("rmbg")).state == READY
    triposg, actionmesh = root / "VAST-AI" / "TripoSG", root / "facebook" / "ActionMesh"
    denoiser = load_flow_transformer(TemporalDenoiser, actionmesh / "denoiser", dev="cpu", dtype=torch.bfloat16,
                                     low_vram=True)
    assert denoiser.proj_in.weight.dtype == torch.bfloat16 and denoiser.norm_out.weight.dtype == torch.float32
    ShapeDiT.from_pretrained(triposg / "transformer")
    TemporalAutoencoder.from_pretrained(actionmesh / "autoencoder")
    ImageEncoder.from_triposg(triposg)
    ImageEncoder(root / "facebook" / "dinov2-large")
    vae = ShapeVAE.from_pretrained(triposg / "vae")
    with torch.inference_mode():  # the loaded VAE keeps closed_field's ball: inside positive
        memory = vae.decode_latents(torch.randn(1, 16, TINY_VAE_CONFIG["latent_channels"]))
        values = vae.query(memory, torch.tensor([[[0.0, 0.0, 0.0], [0.95, 0.95, 0.95]]]))[0]
    assert values[0] > 0 > values[1]


@pytest.mark.skipif(_cuda(), reason="on a CUDA machine --random-full runs instead of refusing")
def test_random_full_refuses_on_the_cpu_with_the_time_it_would_take(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    path = tmp_path / "bench.json"
    proc = run_backend("bench", "generate", "--random-full", "--scratch", scratch, "--json", path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(path.read_text())
    assert result["mode"] == "unavailable" and result["runs"] == [] and result["frames"] == [16]
    (estimate,) = result["cpu_estimates"]
    # plan's FLOPs at this machine's measured rate: hours, however fast the CPU.
    assert estimate["seconds"] == pytest.approx(estimate["flops"] / estimate["cpu_flops_per_second"], rel=0.02)
    assert estimate["flops"] > 1e16 and estimate["seconds"] > 3600
    assert "nothing to measure" in proc.stdout and "no CUDA GPU" in proc.stdout
    assert "16 frames, default preset: about" in proc.stdout and " h (" in proc.stdout
    # ... and what plan expects on a GPU, low-vram under 8 GiB with its context allowance.
    expected = result["plan"]["16"]
    assert expected["low-vram"]["peak_gpu_mb"] < expected["default"]["peak_gpu_mb"]
    assert expected["low-vram"]["peak_gpu_mb"] + 1024 <= 8 * 1024
    assert "what python -m backend plan expects on a GPU" in proc.stdout
    assert list(scratch.iterdir()) == []  # nothing written, nothing left


def test_random_full_table_prints_each_stage_beside_the_plan():
    """The GPU report's layout (a GPU run's figures are not available here: these are made up)."""
    from backend.bench.generate import table

    plan = {"label": "cuda bf16-autocast, low-vram", "seconds": 19.3, "peak_gpu_mb": 6388.2,
            "stages": {"stage0": {"seconds": 1.4, "peak_gpu_mb": 2923.9}, "stage1": {"seconds": 16.6,
                                                                                     "peak_gpu_mb": 6388.2}}}
    run = {"frames": 16, "preset": "low-vram", "vertices": 20_012, "seconds": 80.5, "peak_gpu_mb": 6000.0,
           "stages": {"prepare": {"seconds": 0.5}, "stage0": {"seconds": 30.0, "peak_gpu_mb": 2800.0},
                      "stage1": {"seconds": 40.0, "peak_gpu_mb": 6000.0}}, "plan": plan}
    results = {"mode": "random-full", "release": {}, "seed": 0, "written": {"bytes": 16e9, "seconds": 40.0},
               "gpu": "NVIDIA H200", "runs": [run]}
    lines = table(results).splitlines()
    assert "NVIDIA H200" in lines[0] and "16.0 GB" in lines[0]
    assert any(line.startswith("16 frames, low-vram (20,012 vertices): 80.5 s, peak 5.9 GiB; plan") for line in lines)
    stage1 = next(line.split() for line in lines if line.strip().startswith("stage1"))
    assert stage1 == ["stage1", "40.0", "16.6", "5.86", "6.24"]
    prepare = next(line.split() for line in lines if line.strip().startswith("prepare"))
    assert prepare == ["prepare", "0.5"]  # nothing metered or planned beside it


def test_random_full_refuses_models_of_its_own(tmp_path):
    proc = run_backend("bench", "generate", "--random-full", "--tiny")
    assert proc.returncode == 2 and "takes neither --models-dir nor --tiny" in proc.stderr
    proc = run_backend("bench", "generate", "--random-full", "--presets", "default,turbo")
    assert proc.returncode == 2 and "unknown: turbo" in proc.stderr
