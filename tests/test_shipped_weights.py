"""The shipped tiny weights still reach the held-out figures recorded when they were trained."""

import json

import pytest
import torch

from blender_harness import REPO

VAE_DIR = REPO / "backend" / "weights" / "tiny" / "vae"


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
    from backend.train.card import mesh_roundtrip_chamfer

    card = json.loads((VAE_DIR / "training.json").read_text())
    recorded = card["real_meshes"]["panda.glb"]
    figures = mesh_roundtrip_chamfer(shared_examples / "panda" / "panda.glb", weights_dir=VAE_DIR,
                                     resolution=recorded["resolution"])
    assert figures["chamfer"] < recorded["chamfer"] * 1.1 + 1e-3, (figures, recorded)


STAGE2_DIR = REPO / "backend" / "weights" / "tiny" / "stage2"


@pytest.fixture(scope="module")
def stage2_card():
    # The tiny Stage II weights ship with the repo (issue 4): missing is a failure, not a skip.
    assert (STAGE2_DIR / "model.safetensors").is_file(), f"the tiny Stage II weights are missing from {STAGE2_DIR}"
    return json.loads((STAGE2_DIR / "training.json").read_text())


def test_tiny_stage2_is_shipped_small_and_made_for_the_shipped_vae(stage2_card):
    from backend.models.configs import file_sha256

    assert (STAGE2_DIR / "model.safetensors").stat().st_size < 16 * 2 ** 20
    assert not [p for p in STAGE2_DIR.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".ckpt")]
    # Stage II reads the VAE's latents: a retrained VAE without a retrained Stage II breaks it.
    assert stage2_card["vae_sha256"] == file_sha256(VAE_DIR / "model.safetensors")


def test_tiny_stage2_heldout_tracking_matches_its_model_card(stage2_card, tmp_path):
    from backend.models.temporal_autoencoder import TemporalAutoencoder
    from backend.models.vae import ShapeVAE
    from backend.synthetic.dataset import CachedShapes, build_cache
    from backend.train.stage2 import evaluate_stage2

    recorded = stage2_card["heldout"]
    first = stage2_card["heldout_seeds"][0]
    count = 3  # a subset of the recorded held-out sequences, regenerated from their seeds
    build_cache(tmp_path / "heldout", "sequence", start_seed=first, count=count, workers=2,
                mesh_resolution=stage2_card["mesh_resolution"])
    vae = ShapeVAE.from_pretrained(VAE_DIR).eval()
    model = TemporalAutoencoder.from_pretrained(STAGE2_DIR).eval()
    figures = evaluate_stage2(model, vae, CachedShapes(tmp_path / "heldout", kind="sequence"),
                              num_latents=stage2_card["num_latents"], surface_points=stage2_card["surface_points"],
                              queries=recorded["queries_per_sequence"], window=model.temporal_context_size,
                              seed=stage2_card["seed"])
    expected = {s["seed"]: s["mean_point_error"] for s in recorded["per_sequence"]}
    for got in figures["per_sequence"]:
        # Same sequences, same seeds: the figure is reproduced up to float round-off.
        assert got["mean_point_error"] <= expected[got["seed"]] * 1.02 + 1e-4, (got, expected[got["seed"]])
    # ... and it tracks: below leaving the points where they were, as the card says.
    assert figures["mean_point_error"] < figures["static_baseline_error"], figures
    assert recorded["mean_point_error"] < recorded["static_baseline_error"], recorded
