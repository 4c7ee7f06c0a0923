"""`python -m backend bench generate`: the overhead figures on the tiny set, and a clear
"nothing to measure" (exit 0) without models."""

from __future__ import annotations

import json

from backend_cli import run_backend


def test_bench_on_tiny_set_times_every_stage(tiny_models, shared_examples, tmp_path):
    models, _, _ = tiny_models
    path = tmp_path / "bench.json"
    proc = run_backend("bench", "generate", "--models", models, "--frames", "16", "--json", path, timeout=600)
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
    proc = run_backend("bench", "generate", "--models", empty, "--json", path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(path.read_text())
    assert result["mode"] == "unavailable" and result["runs"] == []
    for repo, name in (("facebook/ActionMesh", "actionmesh"), ("VAST-AI/TripoSG", "triposg"),
                       ("facebook/dinov2-large", "dinov2")):
        assert f"{repo} is missing" in proc.stdout and f"models download {name}" in proc.stdout
    import torch

    assert ("no CUDA GPU" in proc.stdout) == (not torch.cuda.is_available())
