import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend_cli import run_backend  # noqa: E402
from blender_harness import BPY_VERSIONS, REPO, SHARED, missing_data  # noqa: E402


@pytest.fixture(params=sorted(BPY_VERSIONS), ids=lambda v: f"blender{v}")
def bpy_version(request):
    return request.param


@pytest.fixture(scope="session")  # a path only: module- and session-scoped fixtures use it too
def shared_examples():
    path = SHARED / "examples"
    if not path.is_dir():
        missing_data(f"needs the shared example data at {path} (present in CI, absent in a user's clone)")
    return path


@pytest.fixture(scope="session")
def learned_weights(tmp_path_factory):
    """A weights folder (vae/ + stage2/) for the learned methods: the shipped tiny weights when the
    Stage II ones have shipped, else the shipped VAE + an untrained Stage II model of the shipped
    configuration, enough to run every code path of "learned" and "learned-fit" (whose refinement must
    then fit well anyway)."""
    import json
    import shutil

    import torch

    from backend.models.temporal_autoencoder import TemporalAutoencoder
    from backend.models.temporal_configs import AUTOENCODER_CONFIGS

    shipped = Path(__file__).resolve().parents[1] / "backend" / "weights" / "tiny"
    if (shipped / "stage2" / "model.safetensors").is_file():
        return shipped
    root = tmp_path_factory.mktemp("learned_weights")
    shutil.copytree(shipped / "vae", root / "vae")
    torch.manual_seed(0)
    TemporalAutoencoder(**AUTOENCODER_CONFIGS["tiny"]).save_pretrained(root / "stage2")
    (root / "stage2" / "training.json").write_text(json.dumps({"num_latents": 32, "surface_points": 512}))
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(models folder, hub cache, summary) of `models tiny-random`: the small random set in the
    released layouts, also laid out as a hub cache; read-only for the tests."""
    import json

    root = tmp_path_factory.mktemp("tiny_models")
    models, cache = root / "models", root / "hub"
    proc = run_backend("models", "tiny-random", models, "--hub-cache", cache, env={"HF_HUB_CACHE": str(root / "unused")})
    assert proc.returncode == 0, proc.stderr
    return models, cache, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def tiny_video_models(tmp_path_factory):
    """A models folder of `models tiny-random --with-video`: the tiny set and, beside it, small
    random Wan video models (text-to-video and image-to-video: 64x64 clips in seconds on the CPU);
    read-only for the tests."""
    root = tmp_path_factory.mktemp("tiny_video_models")
    proc = run_backend("models", "tiny-random", root / "models", "--with-video",
                       env={"HF_HUB_CACHE": str(root / "unused")})
    assert proc.returncode == 0, proc.stderr
    return root / "models"


@pytest.fixture(scope="session")
def disc_masks(tmp_path_factory):
    """16 masks of a disc in the middle of 64 x 64 frames: a subject for the tiny video models'
    clips, which are noise (read-only for the tests)."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("disc_masks")
    yy, xx = np.mgrid[:64, :64]
    disc = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2 < 19.2 ** 2).astype(np.uint8) * 255
    for i in range(16):
        Image.fromarray(disc).save(folder / f"mask_{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def extension_zip():
    """The extension built once per session with Blender's own builder (`build.py extension`)."""
    proc = subprocess.run([sys.executable, str(REPO / "build.py"), "extension"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(next((REPO / "dist").glob("actionmesh-*.zip")))
