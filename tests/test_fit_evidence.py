"""The video evidence the fitting reads: flow measured as a correction to a predicted motion, and
the dense prediction made from the fitted points."""

from __future__ import annotations

import numpy as np

H = W = 256


def _frames(shift: int, contrast: float):
    """Two RGBA frames: a textured box, then the same texture and box `shift` pixels to the right."""
    import cv2

    from backend.fitting.evidence import frame_evidence

    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.random((H, W + 80)).astype(np.float32), (0, 0), 4)
    noise = (noise - noise.mean()) / noise.std()
    yy, xx = np.mgrid[:H, :W]
    out = []
    for s in (0, shift):
        img = np.zeros((H, W, 4), np.uint8)
        img[..., :3] = np.clip(128 + contrast * noise[:, 40 - s:40 - s + W], 0, 255)[..., None]
        img[..., 3] = 255 * ((abs(yy - 128) < 70) & (abs(xx - 100 - s) < 60))
        out.append(frame_evidence(img, img[..., 3] > 127, rng))
    return out


def test_guided_flow_adds_the_prediction_and_what_is_left():
    """Whatever the prediction (none, short of the motion, uneven across the image), the flow it
    returns is the true motion where it is trusted."""
    from backend.fitting.evidence import dense_flow, guided_flow

    shift = 20
    a, b = _frames(shift, contrast=12)
    inner = np.zeros((H, W), bool)
    inner[80:176, 60:140] = True
    plain, plain_ok = dense_flow(a, b)
    yy, xx = np.mgrid[:H, :W]
    predictions = {
        "none": np.zeros((H, W, 2), np.float32),
        "short": np.stack([np.full((H, W), 0.7 * shift), np.zeros((H, W))], -1).astype(np.float32),
        "uneven": np.stack([shift * (0.6 + 0.6 * xx / W), 2.0 * np.sin(yy / 30)], -1).astype(np.float32),
    }
    for name, pred in predictions.items():
        flow, ok = guided_flow(a, b, pred)
        sel = inner & ok
        assert sel.sum() > 0.8 * inner.sum(), name
        err = np.linalg.norm(flow[sel] - [shift, 0], axis=1).mean()
        assert err < 0.5, (name, err)
    # No prediction measures what plain flow does.
    flow, ok = guided_flow(a, b, predictions["none"])
    np.testing.assert_allclose(flow[inner & ok & plain_ok], plain[inner & ok & plain_ok], atol=1e-4)


def test_guided_flow_distrusts_where_the_object_is_not():
    """A pixel whose flow lands outside the next frame's mask is not trusted (it left the object)."""
    from backend.fitting.evidence import guided_flow

    a, b = _frames(20, contrast=12)
    wrong = np.zeros((H, W, 2), np.float32)
    wrong[..., 0] = -150  # everything carried off the object
    _, ok = guided_flow(a, b, wrong)
    assert ok.sum() < 0.05 * a.mask.sum()


def test_splat_field_passes_through_its_points_and_fills_between():
    from backend.fitting.evidence import splat_field

    uv = np.array([[10.0, 10.0], [30.0, 10.0]])
    values = np.array([[1.0, 0.0], [3.0, 2.0]])
    field = splat_field(uv, values, 64, 64, sigma=6.0)
    np.testing.assert_allclose(field[10, 10], [1.0, 0.0], atol=0.05)
    np.testing.assert_allclose(field[10, 30], [3.0, 2.0], atol=0.05)
    middle = field[10, 20]
    assert 1.5 < middle[0] < 2.5 and 0.5 < middle[1] < 1.5  # a blend, not zero
    assert np.isfinite(field).all()
