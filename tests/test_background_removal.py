"""Background removal: our BriaRMBG (RMBG-1.4's layout), the release's pre/post-processing, user masks.

The released weights cannot be downloaded here, so the network is checked against what is public
about the release: its module names and widths (the public copies of `briarmbg.py`, restated
below as a table, not imported), the weight count implied by the sizes of its ONNX exports, and
the U^2-Net block equations written out level by level. Random weights then exercise the full
remover path; the panda frames (RGBA) become "videos without alpha" by dropping the alpha.
"""

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from backend.errors import BadInput
from backend.models.configs import IncompatibleWeights
from backend.models.rmbg import RSU, RSU4F, BriaRMBG
from backend.preprocessing import (BackgroundRemover, FolderMasks, RMBGRemover, apply_masks, ensure_alpha,
                                   otsu_threshold, prepare_frames, refine_mask, remove_small_components)
from backend.preprocessing.background import NO_REMOVER

# ---------------------------------------------------------------- the released layout, as read

# The released BriaRMBG (github:xyMicro/RMBG-1.4 briarmbg.py, the Hugging Face repository's code;
# the same widths as ISNetDIS in xuebinqin/DIS): stage -> (block, in_ch, mid_ch, out_ch), in
# registration order.
RELEASED_STAGES = {
    "stage1": ("RSU7", 64, 32, 64),
    "stage2": ("RSU6", 64, 32, 128),
    "stage3": ("RSU5", 128, 64, 256),
    "stage4": ("RSU4", 256, 128, 512),
    "stage5": ("RSU4F", 512, 256, 512),
    "stage6": ("RSU4F", 512, 256, 512),
    "stage5d": ("RSU4F", 1024, 256, 512),
    "stage4d": ("RSU4", 1024, 128, 256),
    "stage3d": ("RSU5", 512, 64, 128),
    "stage2d": ("RSU6", 256, 32, 64),
    "stage1d": ("RSU7", 128, 16, 64),
}
RELEASED_SIDES = {"side1": 64, "side2": 64, "side3": 128, "side4": 256, "side5": 512, "side6": 512}

# Git LFS pointer sizes of the release's ONNX exports (github:xyMicro/RMBG-1.4 onnx/, a mirror of
# the Hugging Face repository): the same graph stored in float32 and in float16.
ONNX_FP32_BYTES = 176_451_017
ONNX_FP16_BYTES = 88_417_014


def released_rsu_layers(block, in_ch, mid_ch, out_ch):
    """[(name, conv in, conv out)] of one released RSU block, in its registration order."""
    height = 4 if block == "RSU4F" else int(block[3:])
    layers = [("rebnconvin", in_ch, out_ch), ("rebnconv1", out_ch, mid_ch)]
    layers += [(f"rebnconv{i}", mid_ch, mid_ch) for i in range(2, height + 1)]
    layers += [(f"rebnconv{i}d", 2 * mid_ch, mid_ch) for i in range(height - 1, 1, -1)]
    layers.append(("rebnconv1d", 2 * mid_ch, out_ch))
    return layers


def released_state_dict_shapes(in_ch=3, out_ch=1):
    shapes = {"conv_in.weight": [64, in_ch, 3, 3], "conv_in.bias": [64]}
    for stage, spec in RELEASED_STAGES.items():
        for layer, cin, cout in released_rsu_layers(*spec):
            p = f"{stage}.{layer}"
            shapes.update({f"{p}.conv_s1.weight": [cout, cin, 3, 3], f"{p}.conv_s1.bias": [cout],
                           f"{p}.bn_s1.weight": [cout], f"{p}.bn_s1.bias": [cout],
                           f"{p}.bn_s1.running_mean": [cout], f"{p}.bn_s1.running_var": [cout],
                           f"{p}.bn_s1.num_batches_tracked": []})
    for side, cin in RELEASED_SIDES.items():
        shapes.update({f"{side}.weight": [out_ch, cin, 3, 3], f"{side}.bias": [out_ch]})
    return shapes


def randomize_batchnorm(model, seed=0):
    """Random running statistics, so eval-mode batch norm is not the identity in the tests."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
            module.num_batches_tracked.fill_(7)
    return model


@pytest.fixture(scope="module")
def rmbg():
    """The full-size network with random weights (built in ~0.3 s on CPU)."""
    torch.manual_seed(0)
    return randomize_batchnorm(BriaRMBG()).eval()


@pytest.fixture(scope="module")
def rmbg_folder(rmbg, tmp_path_factory):
    """rmbg saved as the released folder looks: its config.json keys plus our weights."""
    folder = rmbg.save_pretrained(tmp_path_factory.mktemp("rmbg"))
    released_config = {"architectures": ["BriaRMBG"],
                       "auto_map": {"AutoConfig": "MyConfig.RMBGConfig",
                                    "AutoModelForImageSegmentation": "briarmbg.BriaRMBG"},
                       "in_ch": 3, "model_type": "SegformerForSemanticSegmentation", "out_ch": 1,
                       "torch_dtype": "float32", "transformers_version": "4.35.2"}
    (folder / "config.json").write_text(json.dumps(released_config))
    return folder


# ---------------------------------------------------------------- the network's layout


def test_state_dict_names_shapes_and_order_equal_the_released_layout(rmbg):
    ours = {k: list(v.shape) for k, v in rmbg.state_dict().items()}
    released = released_state_dict_shapes()
    assert sorted(ours.keys() - released.keys()) == []
    assert sorted(released.keys() - ours.keys()) == []
    assert ours == released
    assert list(ours) == list(released)
    assert len(ours) == 798 and sum(k.endswith("num_batches_tracked") for k in ours) == 112
    # ~44M parameters, as the release's files (176 MB of float32) say
    assert 43.5e6 < sum(p.numel() for p in rmbg.parameters()) < 44.5e6


def test_weight_count_agrees_with_the_released_onnx_exports(rmbg):
    """Exported for inference, each batch norm is folded into its conv: the graph's weights are
    the conv kernels and biases. fp32 - fp16 file sizes = 2 bytes per weight (+ the small
    difference of the two graphs' other bytes), so the count is pinned to about a thousand."""
    folded = sum(m.weight.numel() + m.out_channels for m in rmbg.modules() if isinstance(m, torch.nn.Conv2d))
    implied = (ONNX_FP32_BYTES - ONNX_FP16_BYTES) / 2
    assert abs(folded - implied) < 2_000, (folded, implied)
    # and the batch-norm parameters are not in those files (else ~58k more values)
    unfolded = sum(v.numel() for v in rmbg.state_dict().values() if v.is_floating_point())
    assert abs(unfolded - implied) > 50_000


def test_dilations_follow_the_released_blocks(rmbg):
    def dilation(block, layer):
        return getattr(block, layer).conv_s1.dilation[0]

    assert [dilation(rmbg.stage5, n) for n in ("rebnconv1", "rebnconv2", "rebnconv3", "rebnconv4",
                                                "rebnconv3d", "rebnconv2d", "rebnconv1d")] == [1, 2, 4, 8, 4, 2, 1]
    assert dilation(rmbg.stage1, "rebnconv7") == 2 and dilation(rmbg.stage4, "rebnconv4") == 2
    undilated = ("rebnconvin", "rebnconv1", "rebnconv6", "rebnconv6d", "rebnconv1d")
    assert {dilation(rmbg.stage1, n) for n in undilated} == {1}
    assert rmbg.conv_in.stride == (2, 2) and rmbg.side1.padding == (1, 1)


# ---------------------------------------------------------------- the network's equations


def _c(layer, x):
    return F.relu(layer.bn_s1(layer.conv_s1(x)))


def _up(x, like):
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


def _pool(x):
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


def test_rsu_blocks_compute_the_u2net_equations():
    torch.manual_seed(1)
    block = randomize_batchnorm(RSU(5, 6, 4, 8)).eval()
    x = torch.randn(2, 6, 27, 19)  # odd sizes: the ceil-mode pools and the resizes must line up
    hxin = _c(block.rebnconvin, x)
    hx1 = _c(block.rebnconv1, hxin)
    hx2 = _c(block.rebnconv2, _pool(hx1))
    hx3 = _c(block.rebnconv3, _pool(hx2))
    hx4 = _c(block.rebnconv4, _pool(hx3))
    hx5 = _c(block.rebnconv5, hx4)
    hx4d = _c(block.rebnconv4d, torch.cat((hx5, hx4), 1))
    hx3d = _c(block.rebnconv3d, torch.cat((_up(hx4d, hx3), hx3), 1))
    hx2d = _c(block.rebnconv2d, torch.cat((_up(hx3d, hx2), hx2), 1))
    hx1d = _c(block.rebnconv1d, torch.cat((_up(hx2d, hx1), hx1), 1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), hx1d + hxin, rtol=0, atol=0)

    block = randomize_batchnorm(RSU4F(6, 4, 8), seed=2).eval()
    hxin = _c(block.rebnconvin, x)
    hx1 = _c(block.rebnconv1, hxin)
    hx2 = _c(block.rebnconv2, hx1)
    hx3 = _c(block.rebnconv3, hx2)
    hx4 = _c(block.rebnconv4, hx3)
    hx3d = _c(block.rebnconv3d, torch.cat((hx4, hx3), 1))
    hx2d = _c(block.rebnconv2d, torch.cat((hx3d, hx2), 1))
    hx1d = _c(block.rebnconv1d, torch.cat((hx2d, hx1), 1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), hx1d + hxin, rtol=0, atol=0)


def test_network_is_the_isnet_encoder_decoder_with_side_outputs(rmbg):
    x = torch.randn(1, 3, 70, 54)
    with torch.no_grad():
        hx1 = rmbg.stage1(rmbg.conv_in(x))
        hx2 = rmbg.stage2(_pool(hx1))
        hx3 = rmbg.stage3(_pool(hx2))
        hx4 = rmbg.stage4(_pool(hx3))
        hx5 = rmbg.stage5(_pool(hx4))
        hx6 = rmbg.stage6(_pool(hx5))
        hx5d = rmbg.stage5d(torch.cat((_up(hx6, hx5), hx5), 1))
        hx4d = rmbg.stage4d(torch.cat((_up(hx5d, hx4), hx4), 1))
        hx3d = rmbg.stage3d(torch.cat((_up(hx4d, hx3), hx3), 1))
        hx2d = rmbg.stage2d(torch.cat((_up(hx3d, hx2), hx2), 1))
        hx1d = rmbg.stage1d(torch.cat((_up(hx2d, hx1), hx1), 1))
        expected = [torch.sigmoid(_up(side(f), x)) for side, f in zip(
            (rmbg.side1, rmbg.side2, rmbg.side3, rmbg.side4, rmbg.side5, rmbg.side6),
            (hx1d, hx2d, hx3d, hx4d, hx5d, hx6))]
        outputs = rmbg(x)
        first = rmbg.first_side_output(x)
    assert len(outputs) == 6 and all(o.shape == (1, 1, 70, 54) for o in outputs)
    for ours, theirs in zip(outputs, expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(first, outputs[0], rtol=0, atol=0)


# ---------------------------------------------------------------- weights in and out


def test_released_folder_round_trip_is_strict_and_exact(rmbg, rmbg_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' config keys are expected, not warned about
        loaded = BriaRMBG.from_pretrained(rmbg_folder)
    assert loaded.config == {"in_ch": 3, "out_ch": 1, "width_scale": 1.0}  # our key's default: the released widths
    for (name, ours), (_, theirs) in zip(rmbg.state_dict().items(), loaded.state_dict().items()):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), name
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.first_side_output(x), rmbg.first_side_output(x), rtol=0, atol=0)


def test_dtype_converts_weights_but_keeps_batchnorm_counters_integers(rmbg_folder):
    loaded = BriaRMBG.from_pretrained(rmbg_folder, dtype=torch.bfloat16)
    assert loaded.conv_in.weight.dtype == torch.bfloat16
    assert loaded.stage1.rebnconvin.bn_s1.running_var.dtype == torch.bfloat16
    counter = loaded.stage1.rebnconvin.bn_s1.num_batches_tracked
    assert counter.dtype == torch.int64 and int(counter) == 7


def test_mismatched_or_pickled_weights_are_refused(rmbg, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    rmbg.save_pretrained(bad)
    tensors = {k: v.contiguous() for k, v in rmbg.state_dict().items() if not k.startswith("side6.")}
    tensors["stage1.rebnconvin.conv_s1.weight"] = torch.zeros(32, 64, 3, 3)
    save_file(tensors, str(bad / "model.safetensors"))
    with pytest.raises(IncompatibleWeights, match="side6.weight.*wrong shape 1: stage1.rebnconvin.conv_s1.weight"):
        BriaRMBG.from_pretrained(bad)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"in_ch": 3, "out_ch": 1}))
    (pickled / "model.pth").write_bytes(b"not read")
    with pytest.raises(BadInput, match="pickle files are refused"):
        BriaRMBG.from_pretrained(pickled)


# ---------------------------------------------------------------- the release's post-processing


def brute_force_otsu(gray):
    """Reference: for every level t, the between-class variance of pixels <= t and > t."""
    values = gray.ravel().astype(np.float64)
    best, best_t = 0.0, 0
    for t in range(256):
        low, high = values[values <= t], values[values > t]
        if len(low) == 0 or len(high) == 0:
            continue
        w0, w1 = len(low) / len(values), len(high) / len(values)
        sigma = w0 * w1 * (low.mean() - high.mean()) ** 2
        if sigma > best * (1 + 1e-12):
            best, best_t = sigma, t
    return best_t


def test_otsu_threshold_is_the_between_class_variance_maximum():
    rng = np.random.default_rng(0)
    for i in range(30):
        if i % 2:
            gray = rng.integers(0, 256, size=(23, 31)).astype(np.uint8)
        else:  # two clusters, as a probability map has
            gray = np.where(rng.random((23, 31)) < 0.3, rng.normal(200, 15, (23, 31)),
                            rng.normal(60, 25, (23, 31))).clip(0, 255).astype(np.uint8)
        t = otsu_threshold(gray)
        assert np.count_nonzero(gray > t) == np.count_nonzero(gray > brute_force_otsu(gray)), i
    assert otsu_threshold(np.full((5, 5), 77, np.uint8)) == 0  # one level: nothing to split
    with pytest.raises(BadInput):
        otsu_threshold(np.zeros((4, 4), np.float32))


def test_small_components_are_dropped_with_8_connectivity():
    from skimage.measure import label, regionprops

    rng = np.random.default_rng(1)
    for _ in range(5):
        foreground = rng.random((80, 70)) < 0.45
        labels = label(foreground, connectivity=2)
        expected = np.isin(labels, [r.label for r in regionprops(labels) if r.area >= 25])
        np.testing.assert_array_equal(remove_small_components(foreground, 25), expected)
    # a diagonal chain of 5 pixels is one component under 8-connectivity
    diagonal = np.eye(5, dtype=bool)
    assert remove_small_components(diagonal, 5).sum() == 5 and remove_small_components(diagonal, 6).sum() == 0
    assert not remove_small_components(np.zeros((3, 3), bool), 1).any()


def test_refine_mask_thresholds_and_cleans_a_probability_map():
    rng = np.random.default_rng(2)
    soft = rng.integers(0, 40, size=(120, 160)).astype(np.uint8)   # background with noise
    soft[20:80, 30:100] = rng.integers(200, 256, size=(60, 70))    # the subject: 4200 px
    soft[100:110, 130:140] = 230                                   # a 100 px speck: dropped
    soft[95:110, 5:20] = 220                                       # a 225 px blob: kept (>= 200)
    refined = refine_mask(soft)
    assert refined.dtype == np.uint8 and set(np.unique(refined)) == {0, 255}
    assert (refined[20:80, 30:100] == 255).all() and (refined[95:110, 5:20] == 255).all()
    assert (refined[100:110, 130:140] == 0).all()
    assert np.count_nonzero(refined) == 60 * 70 + 15 * 15


def test_postprocess_resizes_back_and_stretches_to_0_255():
    probability = torch.tensor([[[[0.2, 0.4], [0.6, 0.7]]]])
    mask = RMBGRemover.postprocess(probability, (4, 6))
    assert mask.shape == (4, 6) and mask.dtype == np.uint8
    assert mask.min() == 0 and mask.max() == 255
    # bilinear, half-pixel centres: the corners keep the corner values, min-max then maps 0.2 -> 0, 0.7 -> 255
    assert mask[0, 0] == 0 and mask[-1, -1] == 255
    expected = (F.interpolate(probability, size=(4, 6), mode="bilinear", align_corners=False)[0, 0] - 0.2) / 0.5 * 255
    np.testing.assert_array_equal(mask, expected.numpy().astype(np.uint8))  # truncated, not rounded
    assert not RMBGRemover.postprocess(torch.full((1, 1, 8, 8), 0.5), (5, 5)).any()


def test_preprocess_is_bilinear_resize_then_scale_and_normalise(rmbg):
    remover = RMBGRemover.from_model(rmbg, input_size=(32, 48))
    frame = np.zeros((10, 20, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 255, 0, 51
    x = remover.preprocess(frame)
    assert x.shape == (1, 3, 32, 48) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 5, 7], torch.tensor([0.5, -0.5, 0.2 - 0.5]))
    assert RMBGRemover.from_model(rmbg).input_size == (1024, 1024)  # the release's default


# ---------------------------------------------------------------- removers on real frames


def panda_rgba(shared_examples, count=3):
    paths = sorted((shared_examples / "panda").glob("*.png"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGBA")) for p in paths]), [p.name for p in paths]


def test_rmbg_remover_gives_binary_masks_for_rgb_frames(rmbg_folder, shared_examples):
    rgba, _ = panda_rgba(shared_examples, count=2)
    calls = []
    # A small network input keeps the test fast; the release's is 1024 (the default).
    remover = RMBGRemover(rmbg_folder, input_size=(96, 96), progress=lambda done, total: calls.append((done, total)))
    masks = remover.masks(rgba[..., :3])
    assert masks.shape == (2, 512, 512) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}
    assert calls == [(1, 2), (2, 2)]
    soft = RMBGRemover.from_model(remover.model, input_size=(96, 96), refine=False).masks(rgba[:1, ..., :3])
    assert soft.min() == 0 and soft.max() == 255  # min-max stretched
    np.testing.assert_array_equal(masks[0], refine_mask(soft[0]))


def test_rmbg_remover_without_a_model_folder_says_how_to_get_one(tmp_path):
    with pytest.raises(BadInput, match="models download rmbg"):
        RMBGRemover(tmp_path)


def write_masks(folder, alphas, names):
    folder.mkdir(exist_ok=True)
    for alpha, name in zip(alphas, names):
        Image.fromarray(alpha).save(folder / name)
    return folder


def test_folder_masks_in_natural_order(tmp_path, shared_examples):
    rgba, _ = panda_rgba(shared_examples)
    alphas = rgba[..., 3]
    # mask_2 must come before mask_10 although "10" < "2" as text
    folder = write_masks(tmp_path / "masks", alphas, ["mask_1.png", "mask_2.png", "mask_10.png"])
    np.testing.assert_array_equal(FolderMasks(folder).masks(rgba[..., :3]), alphas)


def test_folder_masks_by_frame_name_and_from_cutouts(tmp_path, shared_examples):
    rgba, names = panda_rgba(shared_examples)
    folder = tmp_path / "masks"
    folder.mkdir()
    # reversed write order and other suffixes do not matter: the stem does
    for frame, name in reversed(list(zip(rgba, names))):
        Image.fromarray(frame).save(folder / name)  # an RGBA cut-out: its alpha is the mask
    masks = FolderMasks(folder, frame_names=[n.replace(".png", ".jpg") for n in names]).masks(rgba[..., :3])
    np.testing.assert_array_equal(masks, rgba[..., 3])


def test_folder_masks_refuse_wrong_counts_sizes_and_names(tmp_path, shared_examples):
    rgba, names = panda_rgba(shared_examples)
    rgb, alphas = rgba[..., :3], rgba[..., 3]
    two = write_masks(tmp_path / "two", alphas[:2], names[:2])
    with pytest.raises(BadInput, match="2 mask images .* but 3 frames"):
        FolderMasks(two).masks(rgb)
    with pytest.raises(BadInput, match=f"no mask .* for frame\\(s\\) {names[2]}"):
        FolderMasks(two, frame_names=names).masks(rgb)
    small = write_masks(tmp_path / "small", alphas[:, ::2, ::2], names)
    with pytest.raises(BadInput, match="256x256 pixels but the frames are 512x512"):
        FolderMasks(small).masks(rgb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="holds no"):
        FolderMasks(tmp_path / "empty")
    with pytest.raises(BadInput, match="does not exist"):
        FolderMasks(tmp_path / "nowhere")
    broken = write_masks(tmp_path / "broken", alphas[:2], names[:2])
    (broken / "zz.png").write_bytes(b"not a png")
    with pytest.raises(BadInput, match="cannot read mask"):
        FolderMasks(broken).masks(rgb)


# ---------------------------------------------------------------- ensure_alpha


class CountingRemover(BackgroundRemover):
    """A plug-in remover: a fixed box, recording which frames it was given."""

    def __init__(self):
        self.seen = []

    def masks(self, frames_rgb):
        self.seen.append(frames_rgb.copy())
        alpha = np.zeros(frames_rgb.shape[:3], np.uint8)
        alpha[:, 100:300, 150:350] = 255
        return alpha


def test_frames_with_usable_alpha_pass_through(shared_examples):
    rgba, _ = panda_rgba(shared_examples)
    remover = CountingRemover()
    out = ensure_alpha(rgba, remover)
    assert out is rgba and remover.seen == []
    np.testing.assert_array_equal(ensure_alpha(list(rgba)), rgba)  # a list of frames: no remover needed


def test_rgb_frames_without_a_remover_are_refused_clearly(shared_examples):
    rgba, _ = panda_rgba(shared_examples)
    with pytest.raises(BadInput) as info:
        ensure_alpha(rgba[..., :3])
    assert info.value.message == NO_REMOVER
    assert "python -m backend models download rmbg" in NO_REMOVER and "--masks DIR" in NO_REMOVER


def test_rgb_frames_with_the_users_masks_crop_like_the_original(tmp_path, shared_examples):
    rgba, names = panda_rgba(shared_examples)
    folder = write_masks(tmp_path / "masks", rgba[..., 3], names)
    out = ensure_alpha(rgba[..., :3], FolderMasks(folder))
    np.testing.assert_array_equal(out, rgba)
    bbox, crops = prepare_frames(out)
    expected_bbox, expected_crops = prepare_frames(rgba)
    np.testing.assert_array_equal(bbox, expected_bbox)
    np.testing.assert_array_equal(crops, expected_crops)


def test_only_frames_without_a_usable_alpha_take_the_removers_mask(tmp_path, shared_examples):
    rgba, names = panda_rgba(shared_examples)
    mixed = rgba.copy()
    mixed[1, ..., 3] = 255  # an RGB picture saved as RGBA: fully opaque, not a mask
    remover = CountingRemover()
    out = ensure_alpha(mixed, remover)
    assert len(remover.seen) == 1 and len(remover.seen[0]) == 1  # a pixel remover gets frame 1 only
    np.testing.assert_array_equal(remover.seen[0][0], rgba[1, ..., :3])
    np.testing.assert_array_equal(out[[0, 2]], rgba[[0, 2]])
    assert out[1, 200, 200, 3] == 255 and out[1, 50, 50, 3] == 0
    np.testing.assert_array_equal(out[..., :3], rgba[..., :3])

    # a mask folder holds one mask per clip frame: it is read whole, frame 1's mask is used
    user = rgba[..., 3].copy()
    user[1] = np.flipud(user[1])
    folder = write_masks(tmp_path / "masks", user, names)
    out = ensure_alpha(mixed, FolderMasks(folder))
    np.testing.assert_array_equal(out[..., 3], np.stack([rgba[0, ..., 3], user[1], rgba[2, ..., 3]]))


def test_apply_masks_and_a_misbehaving_remover_are_checked(shared_examples):
    rgba, _ = panda_rgba(shared_examples, count=2)
    np.testing.assert_array_equal(apply_masks(rgba[..., :3], rgba[..., 3]), rgba)
    with pytest.raises(BadInput, match="masks must be uint8"):
        apply_masks(rgba[..., :3], rgba[:1, ..., 3])

    class WrongSize(BackgroundRemover):
        def masks(self, frames_rgb):
            return np.zeros((len(frames_rgb), 8, 8), np.uint8)

    with pytest.raises(BadInput, match="remover returned"):
        ensure_alpha(rgba[..., :3], WrongSize())
    with pytest.raises(BadInput, match="no frames"):
        ensure_alpha([])
    with pytest.raises(BadInput, match="same size"):
        ensure_alpha([rgba[0], rgba[1, :100]])


# ---------------------------------------------------------------- a width-scaled stand-in, and RMBG inside `generate`


def test_width_scale_keeps_the_released_layout_and_the_release_loads_at_full_width(rmbg, rmbg_folder):
    """`width_scale` (ours) narrows every tensor and nothing else; the release's config.json has
    no such key, so it loads at the released widths."""
    small = BriaRMBG(width_scale=0.125)
    ours, full = small.state_dict(), rmbg.state_dict()
    assert list(ours) == list(full)
    assert ours["conv_in.weight"].shape == (8, 3, 3, 3) and ours["side6.weight"].shape == (1, 64, 3, 3)
    assert all(a.ndim == b.ndim for a, b in zip(ours.values(), full.values()))
    assert sum(p.numel() for p in small.parameters()) < 1e6
    assert "width_scale" not in json.loads((rmbg_folder / "config.json").read_text())
    assert BriaRMBG.from_pretrained(rmbg_folder).config["width_scale"] == 1.0
    with pytest.raises(ValueError, match="width_scale"):
        BriaRMBG(width_scale=0)


def _video_without_alpha(shared_examples, path, size=256, background=(40.0, 160.0, 90.0)):
    """The kangaroo's RGBA frames composited on a plain background, alpha dropped, as an mp4."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (size, size))
    assert writer.isOpened()
    for frame in sorted((shared_examples / "kangaroo").glob("*.png")):
        rgba = np.asarray(Image.open(frame).convert("RGBA").resize((size, size), Image.BILINEAR)).astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + np.array(background) * (1.0 - alpha)
        writer.write(cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def models_with_rmbg(tiny_models, tmp_path_factory):
    """The tiny random set plus a tiny RMBG-1.4 in the released layout (briaai/RMBG-1.4/)."""
    import shutil

    from backend.hub.tiny import write_tiny_rmbg

    models = tmp_path_factory.mktemp("with_rmbg") / "models"
    shutil.copytree(tiny_models[0], models)
    write_tiny_rmbg(models)
    return models


def test_tiny_rmbg_is_the_released_layout_and_gives_usable_masks(models_with_rmbg, shared_examples, tmp_path):
    from backend.hub import READY, get_model, open_store

    status = open_store(str(models_with_rmbg)).status(get_model("rmbg"))
    assert status.state == READY
    assert sorted(p.name for p in status.folder.iterdir()) == ["config.json", "model.safetensors"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the release's keys plus ours: nothing unknown
        model = BriaRMBG.from_pretrained(status.folder)
    assert model.config == {"in_ch": 3, "out_ch": 1, "width_scale": 0.125}
    assert model.stage1.rebnconv1.bn_s1.num_batches_tracked.dtype == torch.int64
    # Random weights know nothing about objects, but every frame gets a mask that is neither empty
    # nor the whole frame, so a clip without alpha goes through the whole pipeline.
    frames = np.stack([np.asarray(Image.open(p).convert("RGB"))
                       for p in sorted((shared_examples / "kangaroo").glob("*.png"))[::5]])
    masks = RMBGRemover(status.folder).masks(frames)
    covered = (masks > 0).mean(axis=(1, 2))
    assert ((covered > 0.01) & (covered < 0.99)).all(), covered


def test_generate_without_alpha_uses_rmbg_and_without_it_fails_clearly(models_with_rmbg, tiny_models,
                                                                       shared_examples, tmp_path):
    """An mp4 without alpha (the kangaroo on a plain background) through `generate` with default
    settings: with the RMBG model stored, its masks are used (the report says so) and the outputs are
    written; without it, exit 2 with the named error and nothing written."""
    from backend_cli import run_backend

    video = _video_without_alpha(shared_examples, tmp_path / "kangaroo.mp4")
    out = tmp_path / "out"
    # 8 of the 16 frames: RMBG runs at the release's 1024 x 1024 input, ~1.4 s a frame here.
    proc = run_backend("generate", "--input", video, "--out", out, "--models-dir", models_with_rmbg, "--frames", "8",
                       "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "background removal 8/8" in proc.stderr  # RMBG ran on every frame
    report = json.loads((out / "report.json").read_text())
    assert any("RMBG-1.4" in w for w in report["warnings"])
    assert report["frames"] == 8 and report["settings"]["stage0"] == "triposg"
    for name in ("animation.npz", "animated.glb", "anchor.glb"):
        assert (out / name).stat().st_size > 0
    with np.load(out / "animation.npz") as data:
        assert data["offsets"].shape == (8, len(data["vertices"]), 3) and np.isfinite(data["offsets"]).all()

    bare = tmp_path / "bare"
    proc = run_backend("generate", "--input", video, "--out", bare, "--models-dir", tiny_models[0], "--device", "cpu")
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert "no alpha and no background remover" in proc.stderr and "models download rmbg" in proc.stderr
    assert not bare.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bare.")]
