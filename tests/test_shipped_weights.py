"""The shipped tiny weights still reach the held-out figures recorded when they were trained."""

import json

import pytest
import torch

from blender_harness import REPO

VAE_DIR = REPO / "backend" / "weights" / "tiny" / "vae"

if not (VAE_DIR / "model.safetensors").is_file():
    # Not a hidden failure: the tiny VAE has not reached its quality target yet (issue 3), so no
    # weights are shipped and `reconstruct` refuses with a message saying so (test_geometry.py).
    pytest.skip(f"no tiny VAE weights shipped yet at {VAE_DIR} (training in progress, issue 3)",
                allow_module_level=True)


def test_tiny_vae_is_shipped_small_and_safetensors_only():
    assert (VAE_DIR / "model.safetensors").stat().st_size < 16 * 2 ** 20
    assert not [p for p in VAE_DIR.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".ckpt")]


def test_tiny_vae_heldout_quality_matches_its_model_card(tmp_path):
    from backend.eval.shape import evaluate_vae
    from backend.models.vae import ShapeVAE
    from backend.synthetic.dataset import CachedShapes, build_cache

    card = json.loads((VAE_DIR / "training.json").read_text())
    recorded = card["heldout"]
    first = card["heldout_seeds"][0]
    # A subset of the recorded held-out shapes, regenerated from their seeds (CI never trains).
    count = 6
    build_cache(tmp_path / "heldout", "shape", start_seed=first, count=count, workers=2)
    model = ShapeVAE.from_pretrained(VAE_DIR).eval()
    torch.manual_seed(0)
    figures = evaluate_vae(model, CachedShapes(tmp_path / "heldout"), resolution=recorded["resolution"])
    # The recorded figures are means over more shapes: allow for the smaller sample.
    assert figures["chamfer_mean"] < max(1.5 * recorded["chamfer_mean"], recorded["chamfer_mean"] + 0.005)
    assert figures["iou_mean"] > recorded["iou_mean"] - 0.03


def test_tiny_vae_roundtrips_the_real_panda_as_recorded(shared_examples):
    from backend.eval.shape import mesh_roundtrip_chamfer

    card = json.loads((VAE_DIR / "training.json").read_text())
    recorded = card["real_meshes"]["panda.glb"]
    figures = mesh_roundtrip_chamfer(shared_examples / "panda" / "panda.glb", weights_dir=VAE_DIR,
                                     resolution=recorded["resolution"])
    assert figures["chamfer"] < recorded["chamfer"] * 1.1 + 1e-3, (figures, recorded)
