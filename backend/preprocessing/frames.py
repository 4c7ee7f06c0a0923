"""Frame preparation for image conditioning: the release's crop, pad and white composite.

RGBA uint8 frames [T, H, W, 4]
  -> one crop box for the whole clip: the union of every frame's alpha > 0 box, so the subject
     keeps one scale and position across frames (the models saw clips framed that way)
  -> composite on white, crop, pad every side by 10 % of the box's longer side plus half of what
     makes it square -> RGB uint8 frames [T, S_h, S_w, 3].

The arithmetic follows the official ActionMesh preprocessing step for step (float32 composite,
float32 scale to 0..255, truncating uint8 cast), so the pixels equal the official ones; the parity
test checks that against frames the official code processed.

Pure numpy. Frames without a usable alpha mask are refused: the release would send them through a
background remover first, which this module does not contain.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import numpy as np

from ..errors import BadInput
from ..io.frames import frame_list

#: Margin around the shared box, as a fraction of its longer side (the release's default).
PADDING_RATIO = 0.1
#: An alpha mask is usable when at least this fraction of the pixels is foreground AND at least
#: this fraction is background, foreground meaning alpha > ALPHA_THRESHOLD. The release applies
#: the same test to decide whether a frame needs background removal.
MIN_MASK_FRACTION = 0.01
ALPHA_THRESHOLD = 127

_NEEDS_MASK = "a mask (alpha channel) or a background remover is needed before image conditioning"

Frames = Union[np.ndarray, Sequence[np.ndarray]]


class PreparedFrames(NamedTuple):
    """What `prepare_frames` returns; unpacks as `(bbox, frames)`."""

    bbox: np.ndarray
    """int64 (x, y, w, h): the union of the per-frame alpha > 0 boxes, in input pixels."""
    frames: np.ndarray
    """uint8 [T, H', W', 3]: composited on white, cropped to `bbox`, padded to (about) square."""


def alpha_is_usable(alpha: np.ndarray) -> bool:
    """True when an alpha channel separates a subject from a background.

    Fully transparent, fully opaque (an RGB picture saved as RGBA) or near-empty masks fail: the
    crop box would be meaningless or the subject a few pixels.
    """
    min_count = int(alpha.size * MIN_MASK_FRACTION)
    foreground = int(np.count_nonzero(alpha > ALPHA_THRESHOLD))
    return foreground >= min_count and alpha.size - foreground >= min_count


def _as_frame_list(frames: Frames) -> list:
    """Validates dtype/shape and returns the frames as a list of [H, W, 4] uint8 arrays."""
    frames = frame_list(frames, "[T, H, W, 4]", "prepare")
    for i, frame in enumerate(frames):
        if frame.dtype != np.uint8:
            raise BadInput(f"frame {i}: pixels must be uint8 (0..255), got {frame.dtype}")
        if frame.ndim != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
            raise BadInput(f"frame {i}: expected an image [H, W, 4], got shape {frame.shape}")
        if frame.shape[2] in (1, 3):
            raise BadInput(f"frame {i} has no alpha channel (shape {frame.shape}): {_NEEDS_MASK}")
        if frame.shape[2] != 4:
            raise BadInput(f"frame {i}: expected 4 channels (RGBA), got shape {frame.shape}")
    size = frames[0].shape[:2]
    for i, frame in enumerate(frames[1:], start=1):
        if frame.shape[:2] != size:
            raise BadInput(f"frame {i} is {frame.shape[1]}x{frame.shape[0]} pixels but frame 0 is "
                           f"{size[1]}x{size[0]}: all frames must have the same size")
    return frames


def alpha_box(alpha: np.ndarray) -> tuple:
    """(x, y, w, h) of the pixels with alpha > 0; any non-zero alpha counts, soft edges included."""
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def union_box(boxes: Sequence[tuple]) -> tuple:
    """The (x, y, w, h) box that contains every given box."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def square_padding(width: int, height: int, padding_ratio: float = PADDING_RATIO) -> tuple:
    """(pad_x, pad_y) added on EACH side: the margin plus half of the missing width/height.

    The halves are floored, so an odd difference leaves the result one pixel off square, exactly
    as in the release (whose frames the models were trained and evaluated on).
    """
    longest = max(width, height)
    margin = int(longest * padding_ratio)
    return margin + (longest - width) // 2, margin + (longest - height) // 2


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 -> RGB float32 in 0..1 over a white background.

    Written in the release's float32 operation order: the truncating uint8 cast that follows turns
    any other rounding into one-level differences.
    """
    scale = np.float32(1.0 / 255.0)
    alpha = rgba[..., 3:4].astype(np.float32) * scale
    white = np.ones(3, dtype=np.float32)
    return rgba[..., :3].astype(np.float32) * scale * alpha + white * (np.float32(1.0) - alpha)


def prepare_frames(frames: Frames, padding_ratio: float = PADDING_RATIO) -> PreparedFrames:
    """Crops every frame to the clip's shared alpha box, on white, padded to square (see module doc).

    frames: RGBA uint8, an array [T, H, W, 4] or a sequence of [H, W, 4] arrays of one size.
    Raises BadInput for no frames, mixed sizes, a wrong dtype or shape, and for any frame whose
    alpha is missing or not a usable mask (see `alpha_is_usable`).
    """
    frames = _as_frame_list(frames)
    unusable = [i for i, f in enumerate(frames) if not alpha_is_usable(f[..., 3])]
    if unusable:
        raise BadInput(f"frame(s) {', '.join(map(str, unusable))}: the alpha channel does not separate a "
                       f"subject from the background (fully transparent, fully opaque, or under "
                       f"{MIN_MASK_FRACTION:.0%} foreground or background); {_NEEDS_MASK}")

    x, y, w, h = union_box([alpha_box(f[..., 3]) for f in frames])
    pad_x, pad_y = square_padding(w, h, padding_ratio)
    out = np.full((len(frames), h + 2 * pad_y, w + 2 * pad_x, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        # Compositing only the crop gives the same pixels (the operation is per pixel) for less work;
        # the padding is pure white, i.e. 1.0 * 255 = 255 exactly.
        rgb = composite_on_white(frame[y:y + h, x:x + w])
        out[i, pad_y:pad_y + h, pad_x:pad_x + w] = (rgb * np.float32(255.0)).astype(np.uint8)
    return PreparedFrames(np.array([x, y, w, h], dtype=np.int64), out)
