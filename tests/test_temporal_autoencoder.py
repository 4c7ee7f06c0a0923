"""TemporalAutoencoder (Stage II): official parameter layout, forward contract, temporal RoPE,
serialisation and sliding-window decoding of sequences of any length."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from manifests import assert_matches_manifest, official_manifest  # noqa: E402

from backend.models.rope import apply_rope, frame_token_positions, rope_angles  # noqa: E402
from backend.models.temporal_autoencoder import (  # noqa: E402
    TemporalAutoencoder,
    count_parameters,
    time_pair_embedding,
    window_plan,
)
from backend.models.temporal_configs import ACTIONMESH_AUTOENCODER_CONFIG, TINY_AUTOENCODER_CONFIG  # noqa: E402



@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TemporalAutoencoder(**TINY_AUTOENCODER_CONFIG).eval()


def _anch(latents):
    """Token anchors (points in the box) for latents [..., M, C]: the tiny config needs them."""
    g = torch.Generator().manual_seed(latents.numel())
    return torch.rand(*latents.shape[:-1], 3, generator=g) * 1.6 - 0.8


def _inputs(b=2, t=4, m=8, q=50, c=32, n_targets=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(b, t, m, c, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(b, q, 3, generator=g), dim=-1)
    queries = torch.cat([0.7 * normals, normals], dim=-1)
    source = torch.zeros(b)
    targets = torch.rand(b, n_targets, generator=g)
    return latents, queries, source, targets


# ---------------------------------------------------------------- (a) official layout


def test_actionmesh_config_matches_official_manifest(capsys):
    official = official_manifest("manifest_actionmesh.json", "actionmesh_autoencoder")
    with torch.device("meta"):  # shapes only, no memory
        model = TemporalAutoencoder(**ACTIONMESH_AUTOENCODER_CONFIG)
    assert_matches_manifest(model, official)
    n = count_parameters(model)
    with capsys.disabled():
        print(f"\nactionmesh autoencoder: {n:,} parameters")
    assert n == sum(torch.Size(s).numel() for s in official.values())


def test_tiny_config_is_small():
    model = TemporalAutoencoder(**TINY_AUTOENCODER_CONFIG)
    assert count_parameters(model) * 4 < 16 * 2**20
    assert model.config["latent_channels"] == 32  # the tiny shape VAE's latent size


# ---------------------------------------------------------------- (b) forward contract


def test_tiny_forward_shapes_range_and_determinism(tiny):
    latents, queries, source, targets = _inputs()
    with torch.no_grad():
        a = tiny(latents, queries, source, targets, anchors=_anch(latents))
        b = tiny(latents, queries, source, targets, anchors=_anch(latents))
        chunked = tiny(latents, queries, source, targets, target_chunk=1, query_chunk=7,
                       anchors=_anch(latents))
    assert a.shape == (2, 3, 50, 3)
    assert a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.abs().max() <= 1.0
    assert torch.equal(a, b)
    torch.testing.assert_close(chunked, a, atol=1e-5, rtol=1e-5)


def test_each_target_is_independent_of_the_others(tiny):
    latents, queries, source, targets = _inputs(b=1, n_targets=3)
    with torch.no_grad():
        all3 = tiny(latents, queries, source, targets, anchors=_anch(latents))
        one = tiny(latents, queries, source, targets[:, 1:2], anchors=_anch(latents))
    torch.testing.assert_close(one[:, 0], all3[:, 1], atol=1e-5, rtol=1e-5)


def test_time_embedding_layout():
    e = time_pair_embedding(torch.tensor([0.0]), torch.tensor([1.0]), dim=8)
    assert e.shape == (1, 16)
    # source block: cos(0) = 1 for the first half, sin(0) = 0 for the second
    torch.testing.assert_close(e[0, :8], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(e[0, 8:], torch.cat([freqs.cos(), freqs.sin()]))


def test_residual_mode_adds_the_source_position():
    torch.manual_seed(0)
    direct = TemporalAutoencoder(**{**TINY_AUTOENCODER_CONFIG, "prediction_mode": "direct"}).eval()
    residual = TemporalAutoencoder(**{**TINY_AUTOENCODER_CONFIG, "prediction_mode": "residual"}).eval()
    residual.load_state_dict(direct.state_dict())
    latents, queries, source, targets = _inputs(b=1)
    with torch.no_grad():
        field = direct(latents, queries, source, targets, anchors=_anch(latents))  # the field itself, in [-1, 1]
        pos = residual(latents, queries, source, targets, anchors=_anch(latents))
    torch.testing.assert_close(pos, (queries[:, None, :, :3] + field).clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_time_options_leave_the_official_layout_alone_and_change_the_answer():
    official = TemporalAutoencoder(**{**TINY_AUTOENCODER_CONFIG, "time_tokens": "shared", "time_scale": 1.0,
                                      "query_time": False, "anchor_positions": False, "readout_locality": False})
    ours = TemporalAutoencoder(**TINY_AUTOENCODER_CONFIG)
    extra = set(ours.state_dict()) - set(official.state_dict())
    assert extra == {"proj_time.weight", "proj_time.bias", "proj_anchor.weight", "proj_anchor.bias",
                     "locality_log_beta", "locality_log_gamma"}
    assert list(official.state_dict()) == [k for k in ours.state_dict() if k not in extra]
    torch.manual_seed(0)
    model = TemporalAutoencoder(**TINY_AUTOENCODER_CONFIG).eval()
    latents, queries, source, _ = _inputs(b=1)
    with torch.no_grad():
        a = model(latents, queries, source, torch.tensor([[0.25]]), anchors=_anch(latents))
        b = model(latents, queries, source, torch.tensor([[0.75]]), anchors=_anch(latents))
    assert (a - b).abs().max() > 1e-4, "the target time must reach the prediction"
    with pytest.raises(ValueError, match="time_tokens"):
        TemporalAutoencoder(**{**TINY_AUTOENCODER_CONFIG, "time_tokens": "nope"})


def test_bad_inputs_are_refused(tiny):
    latents, queries, source, targets = _inputs()
    with pytest.raises(ValueError):
        tiny(latents[0], queries, source, targets)
    with pytest.raises(ValueError):
        tiny(latents, queries[..., :3], source, targets)
    with pytest.raises(ValueError):
        TemporalAutoencoder(**{**TINY_AUTOENCODER_CONFIG, "prediction_mode": "nope"})


# ---------------------------------------------------------------- (c) temporal RoPE


def test_rope_matches_complex_rotation():
    x = torch.randn(1, 2, 5, 8)
    pos = torch.arange(5).float()
    cos, sin = rope_angles(pos, 8)
    ours = apply_rope(x, cos, sin)
    # reference: adjacent pairs as complex numbers times exp(i * pos * base^(-2j/D))
    z = torch.view_as_complex(x.reshape(1, 2, 5, 4, 2).contiguous())
    theta = pos[:, None] * 10000.0 ** (-torch.arange(0, 8, 2).float() / 8)
    ref = torch.view_as_real(z * torch.polar(torch.ones_like(theta), theta)).flatten(-2)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_rope_is_a_no_op_in_effect_when_all_positions_are_equal():
    q, k = torch.randn(2, 4, 12, 16), torch.randn(2, 4, 12, 16)
    plain = q @ k.transpose(-1, -2)
    for p in (0.0, 7.0):
        cos, sin = rope_angles(torch.full((12,), p), 16)
        rotated = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)
        torch.testing.assert_close(rotated, plain, atol=1e-4, rtol=1e-4)


def test_rope_scores_depend_only_on_frame_offsets():
    q, k = torch.randn(1, 2, 4 * 3 + 4, 16), torch.randn(1, 2, 4 * 3 + 4, 16)
    scores = []
    for first in (0, 9):
        frames = torch.arange(first, first + 4)[None]
        # absolute positions (no window centring) to exercise shift invariance of RoPE itself
        pos = torch.cat([frames.repeat_interleave(3, 1), frames], 1).float()
        cos, sin = rope_angles(pos, 16)
        scores.append(apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2))
    torch.testing.assert_close(scores[0], scores[1], atol=1e-4, rtol=1e-4)
    # and the positions themselves are window-relative: frames 9..12 -> 0..3
    assert frame_token_positions(torch.arange(9, 13)[None], 3, 1).tolist() == \
        [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 1, 2, 3]]


def test_model_single_frame_and_window_offset_invariance(tiny):
    latents, queries, source, targets = _inputs(b=1, t=1)
    with torch.no_grad():
        a = tiny(latents, queries, source, targets, frame_index=torch.tensor([[0]]), anchors=_anch(latents))
        b = tiny(latents, queries, source, targets, frame_index=torch.tensor([[11]]), anchors=_anch(latents))
    torch.testing.assert_close(a, b)
    latents, queries, source, targets = _inputs(b=1, t=4)
    with torch.no_grad():
        anchors = _anch(latents)
        a = tiny(latents, queries, source, targets, frame_index=torch.arange(4)[None], anchors=anchors)
        b = tiny(latents, queries, source, targets, frame_index=torch.arange(15, 19)[None], anchors=anchors)
        c = tiny(latents, queries, source, targets, frame_index=torch.tensor([[0, 2, 4, 6]]), anchors=anchors)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # frame spacing does matter


# ---------------------------------------------------------------- (d) serialisation


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "ae")
    config = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert config["_class_name"] == "TemporalAutoencoder" and config["width"] == TINY_AUTOENCODER_CONFIG["width"]
    loaded = TemporalAutoencoder.from_pretrained(tmp_path / "ae")
    assert loaded.config == tiny.config
    latents, queries, source, targets = _inputs()
    with torch.no_grad():
        anchors = _anch(latents)
        torch.testing.assert_close(loaded(latents, queries, source, targets, anchors=anchors),
                                   tiny(latents, queries, source, targets, anchors=anchors))


# ---------------------------------------------------------------- (e) sliding windows


def test_window_plan_31_frames():
    plan = window_plan(31, 16, 15)
    assert [w.frames for w in plan] == [list(range(0, 16)), list(range(15, 31))]
    assert [w.source for w in plan] == [0, 15]
    written = [0] + [f for w in plan for f in w.targets]
    assert sorted(written) == list(range(31)) and len(written) == len(set(written))


@pytest.mark.parametrize("n", [1, 2, 7, 15, 16, 17, 20, 46, 50])
def test_window_plan_covers_every_frame_once(n):
    plan = window_plan(n, 16, 15)
    written = [0] + [f for w in plan for f in w.targets]
    assert sorted(written) == list(range(n)) and len(written) == len(set(written))
    known = {0}
    for w in plan:
        assert len(w.frames) == min(16, n) and w.frames == list(range(w.frames[0], w.frames[-1] + 1))
        assert w.source in known  # each window starts from a frame already produced
        known.update(w.targets)
    if n == 20:  # last window clamped to end at the final frame, as upstream
        assert plan[1].frames == list(range(4, 20)) and plan[1].targets == [16, 17, 18, 19]


def test_predict_sequence_31_frames_is_stitched_consistently(tiny):
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(31, 4, 32, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(20, 3, generator=g), dim=-1)
    queries = torch.cat([0.5 * normals, normals], -1)
    calls = []
    anchors = _anch(latents)
    out = tiny.predict_sequence(latents, queries, target_chunk=8, callback=lambda i, n: calls.append((i, n)),
                                anchors=anchors)
    assert out.shape == (31, 20, 3) and calls == [(0, 2), (1, 2)]
    assert torch.equal(out[0], queries[:, :3]) and out.abs().max() <= 1.0
    with torch.no_grad():
        # window 2 = frames 15..30, source = the predicted frame 15, normalised times (f - 15) / 15
        second = tiny(latents[15:][None], torch.cat([out[15], normals], -1)[None], torch.zeros(1),
                      (torch.arange(16, 31).float()[None] - 15) / 15, frame_index=torch.arange(15, 31)[None],
                      anchors=anchors[15:][None])
        first = tiny(latents[:16][None], queries[None], torch.zeros(1), torch.arange(1, 16).float()[None] / 15,
                     anchors=anchors[:16][None])
    torch.testing.assert_close(out[16:], second[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:16], first[0], atol=1e-5, rtol=1e-5)


def test_predict_sequence_short_and_with_moving_normals(tiny):
    g = torch.Generator().manual_seed(2)
    # a tetrahedron: later windows recompute normals on the deformed mesh, as upstream does
    verts = torch.tensor([[0.5, 0.5, 0.5], [-0.5, -0.5, 0.5], [-0.5, 0.5, -0.5], [0.5, -0.5, -0.5]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    from backend.models.temporal_autoencoder import vertex_normals, window_plan

    normals = vertex_normals(verts, faces)
    assert (torch.einsum("vc,vc->v", normals, verts) > 0).all()  # outward
    queries = torch.cat([verts, normals], -1)
    seen = []

    def normals_fn(x):
        seen.append(x.clone())
        return vertex_normals(x, faces)

    for t in (1, 5):
        out = tiny.predict_sequence(torch.randn(t, 4, 32, generator=g), queries, normals_fn=normals_fn,
                                    anchors=_anch(torch.empty(t, 4, 32)))
        assert out.shape == (t, 4, 3) and torch.equal(out[0], verts)
    assert not seen  # one window: its source is frame 0, whose normals are given
    out = tiny.predict_sequence(torch.randn(18, 4, 32, generator=g), queries, normals_fn=normals_fn, window=4, stride=3,
                                anchors=_anch(torch.empty(18, 4, 32)))
    assert out.shape == (18, 4, 3) and torch.isfinite(out).all()
    sources = [w.source for w in window_plan(18, 4, 3) if w.source != 0]
    assert len(seen) == len(sources) and all(torch.equal(x, out[s]) for x, s in zip(seen, sources))


def test_readout_locality_looks_at_the_source_frame_near_the_query():
    config = {**TINY_AUTOENCODER_CONFIG, "anchor_positions": True, "readout_locality": True}
    torch.manual_seed(0)
    model = TemporalAutoencoder(**config).eval()
    assert model.needs_anchors
    extra = set(model.state_dict()) - set(TemporalAutoencoder(**{**config, "anchor_positions": False,
                                                                     "readout_locality": False}).state_dict())
    assert extra == {"proj_anchor.weight", "proj_anchor.bias", "locality_log_beta", "locality_log_gamma"}
    latents, queries, source, targets = _inputs(b=1, t=4, m=8, q=5)
    anchors = torch.rand(1, 4, 8, 3) * 2 - 1
    xyz = anchors[:, 1, 3:4]  # a query exactly on frame 1's token 3
    offset = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat_interleave(8, dim=1) / 3 - 1 / 3  # source = frame 1
    qe, ke = model.locality_qk(xyz, anchors.flatten(1, 2), offset, n_time_tokens=4)
    heads = config["num_attention_heads"]
    assert qe.shape == (1, heads, 1, 8) and ke.shape == (1, heads, 4 * 8 + 4, 8)
    bias = torch.einsum("bhqe,bhse->bhqs", qe, ke) / model.dim_head ** 0.5  # what the attention adds
    assert (bias[..., -4:] == 0).all()  # time tokens have no position
    beta = model.locality_log_beta.exp()[None, :, None, None]
    gamma = model.locality_log_gamma.exp()[None, :, None, None]
    d2 = (xyz[:, :, None] - anchors.flatten(1, 2)[:, None]).pow(2).sum(-1)[:, None]
    expected = -beta * d2 + beta * xyz.pow(2).sum(-1)[:, None, :, None] - gamma * (16 * offset).pow(2)[:, None, None]
    torch.testing.assert_close(bias[..., :32], expected, atol=1e-4, rtol=1e-4)
    assert (bias[..., :32].argmax(-1) == 8 + 3).all()
    # Farther in space or in time: lower.
    assert (bias[..., 8:16].max(-1).values > bias[..., 0:8].max(-1).values).all()
    with torch.no_grad():
        out = model(latents, queries, source, targets, anchors=anchors)
        moved = model(latents, queries, source, targets, anchors=anchors + 0.3)
    assert out.shape == (1, 3, 5, 3) and torch.isfinite(out).all()
    assert (out - moved).abs().max() > 1e-4, "the anchors must reach the prediction"
    with pytest.raises(ValueError, match="anchors"):
        model(latents, queries, source, targets)


def test_attention_extra_query_key_channels_equal_an_additive_bias():
    from backend.models.attention import Attention

    torch.manual_seed(0)
    att = Attention(16, heads=2, cross_attention_dim=16, interleaved_heads=True)
    x, ctx = torch.randn(1, 5, 16), torch.randn(1, 7, 16)
    qe, ke = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 7, 8)
    bias = torch.einsum("bhqe,bhse->bhqs", qe, ke) / 8 ** 0.5  # dim_head = 8
    with torch.no_grad():
        torch.testing.assert_close(att(x, ctx, qk_extra=(qe, ke)), att(x, ctx, attention_mask=bias),
                                   atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- (f) the release's normals and windows


def test_vertex_normals_are_trimeshs_including_degenerate_faces():
    """Stage II was trained on trimesh's vertex normals (angle-weighted): ours equal them, on a
    lumpy sphere with a zero-area face, a sliver and a vertex no face uses."""
    import numpy as np
    import trimesh

    from backend.models.temporal_autoencoder import vertex_normals

    sphere = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    v = (sphere.vertices * (1 + 0.2 * rng.random((len(sphere.vertices), 1)))).astype(np.float32)
    v = np.concatenate([v, [[0.0, 0.0, 0.0]]]).astype(np.float32)  # unreferenced
    f = np.concatenate([sphere.faces, [[0, 0, 1], [0, 1, 1]]])  # degenerate: repeated vertices
    f[5] = [f[5][0], f[5][1], f[5][1]]
    expected = torch.nn.functional.normalize(
        torch.from_numpy(trimesh.Trimesh(v, f, process=False).vertex_normals.copy()).float(), dim=-1)
    ours = vertex_normals(torch.from_numpy(v), torch.from_numpy(f))
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    assert ours[-1].abs().max() == 0
    # Area weighting (what we had) is not this: the test can tell them apart.
    a, b, c = (torch.from_numpy(v)[torch.from_numpy(f)[:, i]] for i in range(3))
    area = torch.zeros(len(v), 3).index_add_(0, torch.from_numpy(f).flatten(),
                                             torch.cross(b - a, c - a, dim=-1).repeat_interleave(3, 0))
    assert (torch.nn.functional.normalize(area, dim=-1) - expected).abs().max() > 1e-3


def test_predict_sequence_from_an_anchor_inside_the_clip_runs_the_releases_windows(tiny):
    """Anchor frame 9 of 24 (windows of 6 sliding by 5): windows left of it walk backwards, with the
    source at normalised time 1, latents and RoPE in window order. Upstream's rule decides which
    window produces a frame: each predicts every frame but its smallest and keeps the new ones;
    frame 0, which upstream never produces, comes from the last window that holds it."""
    from backend.models.windows import window_plan

    g = torch.Generator().manual_seed(3)
    n, start = 24, 9
    latents = torch.randn(n, 4, 32, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(10, 3, generator=g), dim=-1)
    queries = torch.cat([0.5 * normals, normals], -1)
    anchors = _anch(latents)
    out = tiny.predict_sequence(latents, queries, window=6, stride=5, start=start, anchors=anchors)
    assert torch.equal(out[start], queries[:, :3])
    plan = window_plan(n, 6, 5, start=start)
    assert any(w.frames[0] > w.frames[-1] for w in plan)  # some window walks left
    last_with_0 = max(i for i, w in enumerate(plan) if 0 in w.frames)
    expected = {start: queries[:, :3]}
    for i, win in enumerate(plan):
        frames = torch.tensor([win.frames])
        lo, hi = min(win.frames), max(win.frames)
        src_time = torch.tensor([(win.frames[0] - lo) / (hi - lo)])
        targets = list(range(lo + 1, hi + 1)) + ([0] if i == last_with_0 else [])
        times = torch.tensor([[(t - lo) / (hi - lo) for t in targets]])
        with torch.no_grad():
            field = tiny(latents[frames[0]][None], torch.cat([expected[win.frames[0]], normals], -1)[None],
                         src_time, times, frame_index=frames, anchors=anchors[frames[0]][None])[0]
        for t, x in zip(targets, field):
            expected.setdefault(t, x)
    assert sorted(expected) == list(range(n))
    torch.testing.assert_close(out, torch.stack([expected[t] for t in range(n)]), atol=1e-5, rtol=1e-5)
