"""ShapeVAE: official parameter layout, encode/decode contract, serialisation, chunked queries."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from manifests import assert_matches_manifest, official_manifest  # noqa: E402

from backend.models import TINY_VAE_CONFIG, TRIPOSG_VAE_CONFIG, IncompatibleWeights, ShapeVAE  # noqa: E402
from backend.models.vae import farthest_point_sampling  # noqa: E402



def _surface(batch=2, n=1024, seed=0):
    """Points on a unit-ish sphere with their normals: [B, N, 6]."""
    g = torch.Generator().manual_seed(seed)
    normals = torch.nn.functional.normalize(torch.randn(batch, n, 3, generator=g), dim=-1)
    return torch.cat([0.8 * normals, normals], dim=-1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ShapeVAE(**TINY_VAE_CONFIG).eval()


def test_triposg_config_matches_official_manifest():
    official = official_manifest("manifest_triposg.json", "triposg_vae")
    with torch.device("meta"):  # shapes only, no memory
        model = ShapeVAE(**TRIPOSG_VAE_CONFIG)
    assert_matches_manifest(model, official)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / 1e6 - 242.7) < 0.05, count  # the README's 242.7M


def test_tiny_config_is_small(tiny):
    count = sum(p.numel() for p in tiny.parameters())
    assert count * 4 < 16e6  # fp32 bytes


def test_fps_spreads_points():
    line = torch.linspace(0, 1, 11)[None, :, None].expand(1, 11, 3).contiguous()
    idx = farthest_point_sampling(line, 3)
    assert idx.tolist() == [[0, 10, 5]]


def test_encode_decode_query_shapes(tiny):
    x = _surface()
    cfg = TINY_VAE_CONFIG
    with torch.no_grad():
        posterior = tiny.encode(x, generator=torch.Generator().manual_seed(0), num_latents=128)
        assert posterior.mean.shape == (2, 128, cfg["latent_channels"])
        kl = posterior.kl()
        assert kl.shape == (2,) and torch.isfinite(kl).all()
        z = posterior.sample(torch.Generator().manual_seed(1))
        memory = tiny.decode_latents(z)
        assert memory.shape == (2, 128, cfg["width_decoder"])
        sdf = tiny.query(memory, torch.rand(2, 300, 3) * 2 - 1)
        assert sdf.shape == (2, 300) and torch.isfinite(sdf).all()
        out = tiny(x[:, :600], torch.zeros(2, 5, 3), generator=torch.Generator().manual_seed(0))
        assert out.sdf.shape == (2, 5) and out.latents.shape == (2, cfg["num_latents"], cfg["latent_channels"])


def test_encode_is_deterministic_with_generator(tiny):
    x = _surface()
    with torch.no_grad():
        a = tiny.encode(x, generator=torch.Generator().manual_seed(7), num_latents=64).mean
        b = tiny.encode(x, generator=torch.Generator().manual_seed(7), num_latents=64).mean
        c = tiny.encode(x, generator=torch.Generator().manual_seed(8), num_latents=64).mean
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # a different subset gives different query tokens


def test_query_in_chunks_equals_query_at_once(tiny):
    z = torch.randn(1, 96, TINY_VAE_CONFIG["latent_channels"], generator=torch.Generator().manual_seed(3))
    xyz = torch.rand(1, 1000, 3, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        memory = tiny.decode_latents(z)
        whole = tiny.query(memory, xyz)
        parts = torch.cat([tiny.query(memory, xyz[:, :377]), tiny.query(memory, xyz[:, 377:])], dim=1)
        chunked = tiny.decode(z, xyz, chunk_size=250)
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["_class_name"] == "ShapeVAE" and config["width_decoder"] == TINY_VAE_CONFIG["width_decoder"]
    loaded = ShapeVAE.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny.config and not loaded.training
    x, xyz = _surface(batch=1, n=512), torch.rand(1, 64, 3) * 2 - 1
    with torch.no_grad():
        expected = tiny.decode(tiny.encode(x, generator=torch.Generator().manual_seed(0), num_latents=64).mode(), xyz)
        got = loaded.decode(loaded.encode(x, generator=torch.Generator().manual_seed(0), num_latents=64).mode(), xyz)
    assert torch.equal(expected, got)


def test_loads_diffusers_file_name_and_dtype(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "vae", weights_name="diffusion_pytorch_model.safetensors")
    # Rewrite config.json as the official diffusers folder has it: their class name and version
    # tags, no `num_latents` (ours, so it falls back to its default).
    official = {k: v for k, v in tiny.config.items() if k != "num_latents"}
    official.update(_class_name="TripoSGVAEModel", _diffusers_version="0.32.2")
    (tmp_path / "vae" / "config.json").write_text(json.dumps(official))
    loaded = ShapeVAE.from_pretrained(tmp_path, subfolder="vae", dtype=torch.float16)
    assert {p.dtype for p in loaded.parameters()} == {torch.float16}
    assert loaded.config["num_latents"] == 2048


def test_refuses_mismatched_weights(tiny, tmp_path):
    from safetensors.torch import save_file

    tiny.save_pretrained(tmp_path / "m")
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    state["decoder.proj_out.weight_renamed"] = state.pop("decoder.proj_out.weight")
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(IncompatibleWeights, match=r"missing 1: decoder\.proj_out\.weight;.*unexpected 1: "
                                                   r"decoder\.proj_out\.weight_renamed"):
        ShapeVAE.from_pretrained(tmp_path / "m")

    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    state["quant.bias"] = torch.zeros(3)
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(IncompatibleWeights, match=r"wrong shape 1: quant\.bias \(3,\)"):
        ShapeVAE.from_pretrained(tmp_path / "m")


def test_refuses_pickle_weights(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(Exception, match="pickle files are refused"):
        ShapeVAE.from_pretrained(tmp_path / "m")
