"""A pinhole camera in OpenCV's convention, and finding one from a silhouette.

Convention (as camera.json files state it): a point p in the mesh file's coordinates goes to the
camera frame as p_c = R p + t (x right, y down, z forward, away from the camera), then to pixels
as u = fx x / z + cx, v = fy y / z + cy, with the pixel in column i, row j of the image centred
at (u, v) = (i, j) (OpenCV's convention: the image centre is ((W - 1) / 2, (H - 1) / 2)).

Without a camera from the caller, `estimate_camera` searches the object's orientation relative
to the view over a grid of rotations (every up axis of the mesh, every 30 degrees around it,
several elevations), places each candidate so its projected box matches the mask's box, scores
it by silhouette overlap with frame 0's mask (at 64 pixels, coarse); `camera_candidates` gives
the best dozen, which the fitting refines by gradient descent on its own silhouette terms at full
resolution, keeping the one whose rendered silhouette overlaps the mask best. A silhouette cannot
tell a view from its mirror image behind the object; among equals the first found is kept, so an
estimated camera may see a symmetric object from the wrong side: pass the scene camera where one
exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import BadInput

# Field of view assumed when nothing says otherwise: a normal lens (about 40 degrees across).
DEFAULT_FOV_DEGREES = 40.0


@dataclass
class Camera:
    """Intrinsics (pixels) and world-to-camera extrinsics (R [3,3], t [3]) in OpenCV's frame."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    rotation: np.ndarray
    translation: np.ndarray

    def to_dict(self) -> dict:
        ext = np.eye(4)
        ext[:3, :3], ext[:3, 3] = self.rotation, self.translation
        return {"convention": "opencv: p_cam = R p + t; x right, y down, z forward; u = fx x/z + cx",
                "intrinsics": {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                               "width": self.width, "height": self.height},
                "world_to_camera": ext.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Camera":
        try:
            k = data["intrinsics"]
            ext = np.asarray(data["world_to_camera"], dtype=np.float64)
            cam = cls(float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"]), int(k["width"]),
                      int(k["height"]), ext[:3, :3].copy(), ext[:3, 3].copy())
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BadInput(f"camera: expected intrinsics {{fx, fy, cx, cy, width, height}} and a 4x4 "
                           f"world_to_camera matrix ({exc})") from None
        if ext.shape != (4, 4) or not np.isfinite(ext).all() or not (cam.fx > 0 and cam.fy > 0):
            raise BadInput("camera: world_to_camera must be a finite 4x4 matrix and fx, fy positive")
        u, _, vt = np.linalg.svd(cam.rotation)
        if not np.allclose(cam.rotation, u @ vt, atol=1e-3):
            raise BadInput("camera: the world_to_camera rotation part is not a rotation")
        return cam

    @classmethod
    def load(cls, path) -> "Camera":
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"camera file not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise BadInput(f"camera file {path.name} is not JSON: {exc}") from None

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera for images resized to (width, height)."""
        sx, sy = width / self.width, height / self.height
        # Pixel centres sit at integers, so the image's edges (at -0.5 and W - 0.5) scale, not 0 and W.
        return Camera(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height,
                      self.rotation.copy(), self.translation.copy())

    def torch_params(self, dtype=None):
        import torch

        dtype = dtype or torch.float32
        return (torch.tensor([self.fx, self.fy, self.cx, self.cy], dtype=dtype),
                torch.as_tensor(self.rotation, dtype=dtype), torch.as_tensor(self.translation, dtype=dtype))


def project(points, camera_params):
    """Points [..., N, 3] (torch) -> (pixels [..., N, 2], depth [..., N]) with camera_params from
    Camera.torch_params (or the same triple with R, t being optimised)."""
    import torch

    k, rot, trans = camera_params
    pc = points @ rot.T + trans
    z = pc[..., 2].clamp_min(1e-6)
    uv = torch.stack([k[0] * pc[..., 0] / z + k[2], k[1] * pc[..., 1] / z + k[3]], dim=-1)
    return uv, pc[..., 2]


def look_rotation(up_axis: np.ndarray, azimuth: float, elevation: float) -> np.ndarray:
    """World-to-camera rotation viewing the origin with `up_axis` pointing up in the image, from
    `azimuth` around that axis and `elevation` above the horizontal plane (radians)."""
    up = up_axis / np.linalg.norm(up_axis)
    side = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    fwd0 = np.cross(side, up)
    # Camera position direction (from the object toward the camera).
    horiz = math.cos(azimuth) * fwd0 + math.sin(azimuth) * side
    eye = math.cos(elevation) * horiz + math.sin(elevation) * up
    z = -eye  # the camera looks toward the object
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = side
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image down
    return np.stack([x, y, z])


def default_intrinsics(width: int, height: int, fov_degrees: float = DEFAULT_FOV_DEGREES):
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_degrees) / 2)
    return f, f, (width - 1) / 2.0, (height - 1) / 2.0


def place(points: np.ndarray, rotation: np.ndarray, box, fx: float, fy: float, cx: float, cy: float):
    """Translation putting `points` (rotated) so their projection fills the mask box (x0, y0, x1, y1)."""
    pr = points @ rotation.T
    centre = 0.5 * (pr.min(axis=0) + pr.max(axis=0))
    extent_xy = pr.max(axis=0)[:2] - pr.min(axis=0)[:2]
    bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    depth = max(fx * extent_xy[0] / bw, fy * extent_xy[1] / bh)
    bx, by = 0.5 * (box[0] + box[2]) - 0.5, 0.5 * (box[1] + box[3]) - 0.5  # pixel centres at integers
    t = np.array([(bx - cx) * depth / fx, (by - cy) * depth / fy, depth]) - centre
    return t


def splat_iou(uv: np.ndarray, mask: np.ndarray, radius: int = 1) -> float:
    """IoU of a point-splat silhouette (points at pixel coordinates uv, closed by `radius`) with mask."""
    from scipy import ndimage

    h, w = mask.shape
    sil = np.zeros((h, w), bool)
    ij = np.round(uv[:, ::-1]).astype(int)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
    sil[ij[ok, 0], ij[ok, 1]] = True
    if radius:
        sil = ndimage.binary_closing(ndimage.binary_dilation(sil, iterations=radius), iterations=radius)
    union = np.logical_or(sil, mask).sum()
    return float(np.logical_and(sil, mask).sum() / union) if union else 0.0


def mask_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise BadInput("frame 0's mask is empty: the object is not visible, no camera can be estimated")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def estimate_camera(points: np.ndarray, mask: np.ndarray, *, fov_degrees: float = DEFAULT_FOV_DEGREES,
                    elevations=(-20.0, 0.0, 20.0, 40.0), azimuth_step: float = 30.0, search_size: int = 64,
                    check=None) -> tuple[Camera, float]:
    """(camera, silhouette IoU at search resolution) that best shows `points` (dense surface samples
    of the mesh at frame 0) as frame 0's `mask` [H, W] bool. Grid search only; the fitting refines."""
    return camera_candidates(points, mask, fov_degrees=fov_degrees, elevations=elevations,
                             azimuth_step=azimuth_step, search_size=search_size, check=check, keep=1)[0]


def camera_candidates(points: np.ndarray, mask: np.ndarray, *, fov_degrees: float = DEFAULT_FOV_DEGREES,
                      elevations=(-20.0, 0.0, 20.0, 40.0), azimuth_step: float = 30.0, search_size: int = 64,
                      check=None, keep: int = 8) -> list:
    """The `keep` best [(camera, IoU at search resolution)] of the grid search, best first: a
    coarse grid can rank a wrong view first, so the caller refines several and compares them."""
    h, w = mask.shape
    scale = search_size / max(h, w)
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    small = _resize_mask(mask, sw, sh)
    fx, fy, cx, cy = default_intrinsics(sw, sh, fov_degrees)
    box = mask_box(small)
    scored = []
    sub = points[:: max(1, len(points) // 6000)]
    for up in np.concatenate([np.eye(3), -np.eye(3)]):
        for el in elevations:
            for az in np.arange(0.0, 360.0, azimuth_step):
                rot = look_rotation(up, math.radians(az), math.radians(el))
                t = place(sub, rot, box, fx, fy, cx, cy)
                pc = sub @ rot.T + t
                uv = np.stack([fx * pc[:, 0] / pc[:, 2] + cx, fy * pc[:, 1] / pc[:, 2] + cy], axis=1)
                scored.append((splat_iou(uv, small), len(scored), rot, t))
            if check is not None:
                check()
    scored.sort(key=lambda x: (-x[0], x[1]))  # ties: the first found, as before
    k = default_intrinsics(w, h, fov_degrees)
    return [(Camera(*k, w, h, rot, t), iou) for iou, _, rot, t in scored[:max(1, keep)]]


def _resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_AREA) > 0
