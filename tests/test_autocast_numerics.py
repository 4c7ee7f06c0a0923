"""Reduced precision where the release uses it, and float32 where it keeps float32.

The release runs Stages I and II under bf16 autocast (CUDA) and Stage 0 in float16. Two places
must stay float32 whatever the autocast: the positions a shape VAE is queried at (the 512^3
extraction grid), and Stage II's read-out (query embedding and final cross-attention, which
upstream runs with autocast off), with Stage II's residual stream float32 as upstream's is.
bf16 autocast exists on the CPU, so these bounds are checked here against float32 runs of the
same models. The models are the official architectures at small sizes, seeded.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backend.models.configs import TRIPOSG_VAE_CONFIG  # noqa: E402
from backend.models.temporal_autoencoder import TemporalAutoencoder, vertex_normals  # noqa: E402
from backend.models.temporal_configs import ACTIONMESH_AUTOENCODER_CONFIG  # noqa: E402
from backend.models.vae import ShapeVAE  # noqa: E402
from backend.pipelines.generate.anchor import EXTRACT_BOUNDS, EXTRACT_RESOLUTION, sdf_function  # noqa: E402

BF16 = torch.bfloat16
CELL = 2 * EXTRACT_BOUNDS / EXTRACT_RESOLUTION


def _perturbed(model, seed):
    """Biases and norm scales away from 0 / 1, so each of them changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    config = {**TRIPOSG_VAE_CONFIG, "latent_channels": 8, "width_encoder": 32, "width_decoder": 64,
              "num_layers_encoder": 1, "num_layers_decoder": 3, "num_attention_heads": 4, "num_latents": 32}
    return _perturbed(ShapeVAE(**config), 1)


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    config = {**ACTIONMESH_AUTOENCODER_CONFIG, "latent_channels": 8, "width": 64, "num_layers": 3,
              "num_attention_heads": 4}
    return _perturbed(TemporalAutoencoder(**config), 2)


def _grid_points(count, seed):
    """`count` points of the release's extraction grid (512^3 cells over [-1.005, 1.005]^3)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, EXTRACT_RESOLUTION + 1, (count, 3), generator=g)
    return (-EXTRACT_BOUNDS + index * CELL).float()


def test_extraction_grid_positions_stay_float32_under_bf16_autocast(vae):
    """The positions reaching the VAE's Fourier embedding are the grid's float32 points: cast to
    bf16 they would move by up to 0.72 of a cell (the release's fp16 Stage 0: 0.06)."""
    points = _grid_points(20_000, 3)
    assert (points.bfloat16().float() - points).abs().max() / CELL > 0.5  # what the bound guards
    seen = []
    hook = vae.embedder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        z = torch.randn(1, 32, 8, generator=torch.Generator().manual_seed(4))
        with torch.inference_mode(), torch.autocast("cpu", BF16):
            memory = vae.decode_latents(z)
        seen.clear()
        values = sdf_function(vae, memory, "cpu", BF16)(points.numpy())
    finally:
        hook.remove()
    assert len(seen) == 1 and seen[0].dtype == torch.float32
    error_cells = float((seen[0].reshape(-1, 3) - points).abs().max() / CELL)
    assert error_cells <= 0.1, f"grid positions moved by {error_cells:.2f} of a cell under bf16 autocast"
    with torch.inference_mode():
        reference = sdf_function(vae, vae.decode_latents(z), "cpu", None)(points.numpy())
    # The field itself differs by bf16 matmul rounding only (measured 0.012 of a mean |value| of
    # 0.53; with bf16 positions it was 0.11).
    assert np.abs(values - reference).max() <= 0.05 * np.abs(reference).mean() + 0.01


def test_stage2_vertex_jitter_under_bf16_autocast_is_bounded(autoencoder):
    """31 frames (two windows, normals recomputed on the deformed mesh) under CPU bf16 autocast
    against float32: the read-out in float32 and the float32 residual stream keep the vertices
    within 0.02 of float32 (measured 0.0096; 0.062 with the read-out and stream in bf16)."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(sphere.vertices * 0.8, dtype=torch.float32)
    f = torch.tensor(sphere.faces)
    queries = torch.cat([v, vertex_normals(v, f)], -1)
    latents = torch.randn(31, 32, 8, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        reference = autoencoder.predict_sequence(latents, queries, normals_fn=lambda x: vertex_normals(x, f))
        with torch.autocast("cpu", BF16):
            reduced = autoencoder.predict_sequence(latents, queries, normals_fn=lambda x: vertex_normals(x, f))
    assert reduced.dtype == torch.float32
    motion = float((reference - reference[:1]).abs().mean())
    jitter = float((reduced - reference).abs().max())
    assert motion > 0.1  # the model moves the vertices: the jitter is measured against real motion
    assert jitter <= 0.02, f"Stage II vertices moved by {jitter:.4f} under bf16 autocast"


def test_stage2_readout_runs_in_float32_with_autocast_on(autoencoder):
    """The read-out's layers see float32 inputs even inside a bf16 autocast region."""
    dtypes = []
    hooks = [m.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
             for m in (autoencoder.proj_query, autoencoder.blocks[-1], autoencoder.proj_out)]
    try:
        latents = torch.randn(1, 4, 32, 8)
        queries = torch.cat([torch.rand(1, 10, 3) - 0.5, torch.nn.functional.normalize(torch.randn(1, 10, 3), dim=-1)],
                            -1)
        with torch.inference_mode(), torch.autocast("cpu", BF16):
            autoencoder(latents, queries, 0.0, torch.tensor([[0.5, 1.0]]))
    finally:
        for h in hooks:
            h.remove()
    assert dtypes and set(dtypes) == {torch.float32}
