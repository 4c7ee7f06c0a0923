"""backend.preprocessing (frame crop/composite) and the DINOv2 encoder's input checks.

Numerical equality with the official code is tests/test_official_parity.py (image_preprocess);
these tests need no shared data: the geometry of the crop on synthetic frames, and clear refusals.
"""

import json

import numpy as np
import pytest

from backend.errors import BadInput
from backend.preprocessing import prepare_frames


def rgba_frames(boxes, size=(64, 80), color=(200, 40, 10)):
    """One opaque rectangle (x, y, w, h) per frame on a transparent canvas of `size` (H, W)."""
    frames = np.zeros((len(boxes), *size, 4), dtype=np.uint8)
    for frame, (x, y, w, h) in zip(frames, boxes):
        frame[y:y + h, x:x + w, :3] = color
        frame[y:y + h, x:x + w, 3] = 255
    return frames


# ---------------------------------------------------------------- the crop


def test_shared_box_is_the_union_and_the_result_is_padded_on_white():
    frames = rgba_frames([(10, 12, 20, 10), (30, 20, 15, 25)])
    bbox, out = prepare_frames(frames)
    assert bbox.dtype == np.int64 and bbox.tolist() == [10, 12, 35, 33]
    # longest side 35: margin int(3.5) = 3; height 33 gets (35 - 33) // 2 = 1 more on each side
    assert out.shape == (2, 33 + 2 * 4, 35 + 2 * 3, 3) and out.dtype == np.uint8
    pad_x, pad_y = 3, 4
    # frame 1's rectangle lands at its offset inside the shared box, unchanged; the rest is white
    inside = out[1, pad_y + 8:pad_y + 8 + 25, pad_x + 20:pad_x + 20 + 15]
    assert (inside == (200, 40, 10)).all()
    white = np.ones(out.shape[1:3], bool)
    white[pad_y + 8:pad_y + 33, pad_x + 20:pad_x + 35] = False
    assert (out[1][white] == 255).all()


def test_soft_alpha_composites_over_white_and_counts_in_the_box():
    frames = rgba_frames([(8, 8, 30, 30)])
    frames[0, 5, 50] = (0, 0, 0, 1)  # a faint fringe pixel far from the subject still widens the box
    frames[0, 20, 20] = (0, 0, 0, 128)
    bbox, out = prepare_frames(frames)
    assert bbox.tolist() == [8, 5, 43, 33]
    pad_x, pad_y = 4, 4 + 5  # margin int(4.3); height 33 gets (43 - 33) // 2 more
    # half-transparent black over white: 255 * (1 - 128/255) = 127 exactly, but the release's float32
    # order (alpha = 128 * (1/255), then 1 - alpha, then * 255) gives 126.99998, truncated to 126
    assert (out[0, pad_y + 15, pad_x + 12] == 126).all()


def test_an_odd_difference_leaves_the_result_one_pixel_off_square():
    # box 20 x 11: margin int(2.0) = 2, height gets (20 - 11) // 2 = 4 more per side -> 23 x 24, as released
    _, out = prepare_frames(rgba_frames([(30, 30, 20, 11)], size=(48, 64)))
    assert out.shape == (1, 11 + 2 * 6, 20 + 2 * 2, 3)


def test_a_sequence_of_frames_equals_the_stacked_array():
    frames = rgba_frames([(5, 5, 20, 30), (12, 3, 10, 10), (0, 40, 9, 9)])
    a_box, a = prepare_frames(frames)
    b_box, b = prepare_frames(list(frames))
    assert a_box.tolist() == b_box.tolist() and np.array_equal(a, b)


# ---------------------------------------------------------------- refusals


def test_no_frames_is_refused():
    with pytest.raises(BadInput, match="no frames"):
        prepare_frames([])


def test_frames_of_different_sizes_are_refused():
    a = rgba_frames([(5, 5, 20, 20)], size=(64, 64))[0]
    b = rgba_frames([(5, 5, 20, 20)], size=(64, 65))[0]
    with pytest.raises(BadInput, match=r"frame 1 is 65x64 pixels but frame 0 is 64x64"):
        prepare_frames([a, b])


def test_all_transparent_frames_are_refused():
    frames = rgba_frames([(5, 5, 20, 20), (0, 0, 0, 0)])
    with pytest.raises(BadInput, match=r"frame\(s\) 1:.*mask"):
        prepare_frames(frames)


def test_fully_opaque_alpha_is_not_a_mask():
    # an RGB picture saved as RGBA: its box would be the whole frame
    frames = rgba_frames([(0, 0, 80, 64)])
    with pytest.raises(BadInput, match="background remover"):
        prepare_frames(frames)


def test_frames_without_alpha_ask_for_a_mask_or_background_remover():
    rgb = rgba_frames([(5, 5, 20, 20)] * 2)[..., :3]
    with pytest.raises(BadInput, match=r"no alpha channel.*mask.*background remover"):
        prepare_frames(rgb)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 8, 8, 4), np.float32), "uint8"),
    (np.zeros((8, 8, 4), np.uint8), r"\[T, H, W, 4\]"),
    (np.zeros((2, 8, 8, 5), np.uint8), "4 channels"),
])
def test_wrong_dtype_or_shape_is_refused(bad, message):
    with pytest.raises(BadInput, match=message):
        prepare_frames(bad)


# ---------------------------------------------------------------- the encoder's folder checks


def test_image_encoder_refuses_pickles_and_other_models(tmp_path):
    from backend.models.image_encoder import ImageEncoder

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "BitImageProcessor"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(BadInput, match="pickle files are refused"):
        ImageEncoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(BadInput, match="not DINOv2"):
        ImageEncoder(tmp_path)
    with pytest.raises(BadInput, match="no config.json in .*image_encoder_dinov2"):
        ImageEncoder.from_triposg(tmp_path)
