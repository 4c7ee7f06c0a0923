"""The Stage II training script end to end on a tiny budget: latent cache, resume, ship."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
VAE = REPO / "backend" / "weights" / "tiny" / "vae"


def _train(out, data, steps, ship=None):
    cmd = [sys.executable, "-m", "backend.train.stage2", "--out", str(out), "--data", str(data),
           "--vae", str(VAE), "--train-sequences", "2", "--heldout-sequences", "1", "--mesh-resolution", "40",
           "--cache-workers", "1", "--steps", str(steps), "--batch", "2", "--encodings", "2",
           "--surface-points", "256", "--queries", "32", "--eval-queries", "64", "--log-every", "1",
           "--ckpt-every", "2", "--threads", "1", "--set", "anchor_positions=true", "--set", "readout_locality=true"]
    if ship:
        cmd += ["--ship", str(ship)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.skipif(not (VAE / "model.safetensors").is_file(), reason="the tiny shape VAE is not in this checkout")
def test_stage2_training_caches_latents_resumes_and_ships(tmp_path):
    out, data, ship = tmp_path / "run", tmp_path / "data", tmp_path / "ship"
    first = _train(out, data, 2)
    assert "resumed" not in first
    cache = out / "latents.npz"
    with np.load(cache) as z:
        latents, tracked = z["latents"], z["tracked"]
    # 2 sequences x 16 frames x 2 encodings x 32 tokens x 32 channels; encodings differ.
    assert latents.shape == (2, 16, 2, 32, 32) and tracked.shape[:2] == (2, 16)
    assert np.abs(latents[:, :, 0] - latents[:, :, 1]).max() > 1e-3
    stamp = cache.stat().st_mtime_ns

    second = _train(out, data, 4, ship=ship)
    assert "resumed at step 2" in second
    assert cache.stat().st_mtime_ns == stamp  # same VAE and settings: the cache is reused
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["static_error"] > 0 for r in log)
    card = json.loads((ship / "training.json").read_text())
    assert card["steps"] == 4 and card["encodings"] == 2 and card["heldout"]["sequences"] == 1
    assert card["heldout"]["mean_point_error"] > 0 and (ship / "model.safetensors").is_file()
    assert card["train_seconds"] >= max(r["elapsed"] for r in log)  # both runs counted
    assert f"{card['heldout']['mean_point_error']:.4f}" in (ship / "README.md").read_text()
    config = json.loads((ship / "config.json").read_text())
    assert config["anchor_positions"] is True and config["readout_locality"] is True  # --set


def test_stage2_training_refuses_unknown_settings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend.train.stage2", "--out", str(tmp_path / "run"),
                           "--set", "widht=64"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'widht' is not a TemporalAutoencoder setting" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()
