"""What the video says, prepared once per clip: masks, their distance fields, optical flow.

Silhouette terms need no rasteriser: the distance to the mask, sampled
at projected surface points, pulls points that fall outside back in; the mask's contour matched
to the projected points pulls the surface out to fill the mask. Flow comes from OpenCV's DIS
(dense inverse search) between neighbouring frames, checked forward against backward so that
occluded or unreliable pixels are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from backend.errors import BadInput

# Alpha above this is the object (frames composited by the remover or rendered with alpha).
ALPHA_THRESHOLD = 127
CONTOUR_POINTS = 1500  # contour pixels per frame kept for the coverage term
# Flow vectors whose forward-backward round trip misses by more than this many pixels (plus a
# fraction of their length) are not trusted.
FLOW_CONSISTENCY_PX = 1.0
FLOW_CONSISTENCY_REL = 0.05


@dataclass
class FrameEvidence:
    mask: np.ndarray  # [H, W] bool
    outside_distance: np.ndarray  # [H, W] float32: pixels to the mask (0 inside)
    contour: np.ndarray  # [K, 2] float32 pixel centres (x, y) on the mask's boundary
    gray: np.ndarray  # [H, W] uint8


def masks_from_frames(frames: np.ndarray) -> np.ndarray:
    """RGBA uint8 frames [T, H, W, 4] -> masks [T, H, W] bool, refusing frames that show nothing."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 4:
        raise BadInput(f"fitting needs RGBA frames [T, H, W, 4], got shape {frames.shape}")
    masks = frames[..., 3] > ALPHA_THRESHOLD
    empty = [t for t in range(len(masks)) if not masks[t].any()]
    if empty:
        raise BadInput(f"the object's mask is empty at frame{'s' if len(empty) > 1 else ''} "
                       f"{', '.join(map(str, empty[:10]))}: nothing to fit there (check the alpha or the masks)")
    return masks


def frame_evidence(frame: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> FrameEvidence:
    import cv2

    outside = ndimage.distance_transform_edt(~mask).astype(np.float32)
    boundary = mask & ~ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(boundary)
    if len(xs) > CONTOUR_POINTS:
        pick = rng.choice(len(xs), CONTOUR_POINTS, replace=False)
        ys, xs = ys[pick], xs[pick]
    contour = np.stack([xs, ys], axis=1).astype(np.float32)  # pixel centres sit at integers
    # Flow on the object over a mid grey, so the background cannot drag it.
    rgb = frame[..., :3].astype(np.float32)
    a = mask[..., None].astype(np.float32)
    comp = (rgb * a + 128.0 * (1 - a)).astype(np.uint8)
    gray = cv2.cvtColor(comp, cv2.COLOR_RGB2GRAY)
    return FrameEvidence(mask, outside, contour, gray)


def dense_flow(a: FrameEvidence, b: FrameEvidence) -> tuple[np.ndarray, np.ndarray]:
    """(flow [H, W, 2] from frame a to frame b in pixels, valid [H, W] bool)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    fwd = dis.calc(a.gray, b.gray, None)
    bwd = dis.calc(b.gray, a.gray, None)
    h, w = a.gray.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    back = cv2.remap(bwd, xs + fwd[..., 0], ys + fwd[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(1e4, 1e4))
    miss = np.linalg.norm(fwd + back, axis=-1)
    valid = a.mask & (miss < FLOW_CONSISTENCY_PX + FLOW_CONSISTENCY_REL * np.linalg.norm(fwd, axis=-1))
    return fwd, valid


def visible_points(uv: np.ndarray, depth: np.ndarray, width: int, height: int, cell: int = 4,
                   tolerance: float = 0.02) -> np.ndarray:
    """Which projected points are in front: a point z-buffer at `cell`-pixel resolution.

    A point is visible when it lies within `tolerance` (a fraction of the depth range) of the
    nearest depth in its cell: coarse, but enough to keep flow off the far side of the body.
    """
    gw, gh = max(1, width // cell), max(1, height // cell)
    cx = np.clip(np.floor((uv[:, 0] + 0.5) / cell).astype(int), 0, gw - 1)
    cy = np.clip(np.floor((uv[:, 1] + 0.5) / cell).astype(int), 0, gh - 1)
    inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < height - 0.5)
    key = cy * gw + cx
    zbuf = np.full(gw * gh, np.inf)
    np.minimum.at(zbuf, key[inside], depth[inside])
    span = max(float(np.ptp(depth)), 1e-9)
    return inside & (depth <= zbuf[key] + tolerance * span)


def silhouette(uv: np.ndarray, faces: np.ndarray, width: int, height: int) -> np.ndarray:
    """The projected mesh's silhouette [H, W] bool: every triangle filled (cv2, 1/16-pixel precision)."""
    import cv2

    img = np.zeros((height, width), np.uint8)
    corners = uv[faces]
    ok = np.isfinite(corners).all(axis=(1, 2)) & (np.abs(corners) < 1e5).all(axis=(1, 2))
    tri = np.round(corners[ok] * 16.0).astype(np.int32)  # 4 fractional bits; pixel centres at integers
    # One triangle at a time: cv2.fillPoly's even-odd rule would punch holes where triangles overlap.
    for t in tri:
        cv2.fillConvexPoly(img, t, 1, lineType=cv2.LINE_8, shift=4)
    return img.astype(bool)


def silhouette_iou(uv: np.ndarray, faces: np.ndarray, mask: np.ndarray) -> float:
    """IoU of the projected mesh's silhouette with the mask."""
    sil = silhouette(uv, faces, mask.shape[1], mask.shape[0])
    union = np.logical_or(sil, mask).sum()
    return float(np.logical_and(sil, mask).sum() / union) if union else 0.0


def splat_field(uv: np.ndarray, values: np.ndarray, width: int, height: int, sigma: float) -> np.ndarray:
    """A smooth dense field [H, W, C] from values [N, C] at scattered pixels uv [N, 2]: Gaussian
    splats normalised by their weight (normalised convolution), so sparse points fill the gaps
    between them and the field falls back to its neighbours' values, not to zero."""
    import cv2

    ij = np.round(uv).astype(int)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < width) & (ij[:, 1] >= 0) & (ij[:, 1] < height)
    c = values.shape[1]
    acc = np.zeros((height, width, c + 1), np.float32)
    np.add.at(acc, (ij[ok, 1], ij[ok, 0]), np.concatenate([values[ok], np.ones((ok.sum(), 1))], 1).astype(np.float32))
    k = int(3 * sigma) * 2 + 1
    acc = cv2.GaussianBlur(acc, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
    return acc[..., :c] / np.maximum(acc[..., c:], 1e-6)


def guided_flow(a: FrameEvidence, b: FrameEvidence, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flow from frame a to frame b [H, W, 2] and where it is trusted [H, W], found as a small
    correction to a predicted flow (from the fitted motion): b is warped back by the prediction,
    DIS measures what is left. DIS underestimates large motions over weak texture (15 % on the
    panda's fur, measured); what is left after the prediction is small, so the sum is not."""
    import cv2

    h, w = a.gray.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    px, py = xs + predicted[..., 0], ys + predicted[..., 1]
    warped = cv2.remap(b.gray, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=128)
    residual, valid = dense_flow(a, FrameEvidence(a.mask, a.outside_distance, a.contour, warped))
    # Where a pixel of a lands in b: x + r(x), then on by the prediction at that point.
    rx, ry = xs + residual[..., 0], ys + residual[..., 1]
    pred_at = cv2.remap(predicted.astype(np.float32), rx, ry, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    flow = residual + pred_at
    tx = np.clip(np.round(xs + flow[..., 0]).astype(int), 0, w - 1)
    ty = np.clip(np.round(ys + flow[..., 1]).astype(int), 0, h - 1)
    return flow, valid & b.mask[ty, tx]
