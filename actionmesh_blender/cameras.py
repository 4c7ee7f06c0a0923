# SPDX-License-Identifier: GPL-3.0-or-later
"""A Blender camera as the backend's camera.json (OpenCV convention); numpy only, no bpy.

The backend's convention (backend/fitting/camera.py): a point p in the mesh file's coordinates
goes to the camera frame as p_c = R p + t (x right, y down, z forward), then to pixels as
u = fx x / z + cx, v = fy y / z + cy, pixel centres at integers (the image centre is
((W - 1) / 2, (H - 1) / 2)).

Blender's camera looks down its local -Z with +Y up and +X right, so OpenCV's camera frame is
Blender's camera frame turned by diag(1, -1, -1). The intrinsics follow Blender's own rule for
the sensor: which image side the sensor size spans (sensor_fit; AUTO: the longer side, with
sensor_width), the focal length in mm over it, the shift in units of that side, and the pixel
aspect ratio.
"""

from __future__ import annotations

import numpy as np

CV_FROM_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])


def intrinsics(*, lens: float, sensor_width: float, sensor_height: float, sensor_fit: str, width: int,
               height: int, pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0, shift_x: float = 0.0,
               shift_y: float = 0.0) -> dict:
    """fx, fy, cx, cy (pixels) of a perspective Blender camera rendering width x height pixels."""
    if sensor_fit == "AUTO":
        fit = "HORIZONTAL" if pixel_aspect_x * width >= pixel_aspect_y * height else "VERTICAL"
        sensor = sensor_width
    else:
        fit = sensor_fit
        sensor = sensor_width if sensor_fit == "HORIZONTAL" else sensor_height
    ratio = pixel_aspect_y / pixel_aspect_x
    view = width if fit == "HORIZONTAL" else ratio * height  # pixels the sensor spans
    fx = lens / sensor * view
    fy = fx / ratio
    cx = (width - 1) / 2.0 - shift_x * view
    cy = (height - 1) / 2.0 + shift_y * view / ratio
    return {"fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy), "width": int(width),
            "height": int(height)}


def world_to_camera(camera_matrix_world: np.ndarray, file_from_world: np.ndarray) -> np.ndarray:
    """4x4 [R | t] taking the mesh file's coordinates to OpenCV's camera frame.

    `camera_matrix_world`: the camera object's matrix_world (4x4; scale is removed);
    `file_from_world`: the 3x3 linear map from Blender world coordinates to the file's (the mesh
    was written as file = file_from_world @ world, e.g. Z_UP_TO_Y_UP)."""
    m = np.asarray(camera_matrix_world, dtype=np.float64)
    rot = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)  # columns: the camera's axes in the world
    eye = m[:3, 3]
    world_from_file = np.linalg.inv(np.asarray(file_from_world, dtype=np.float64))
    r = CV_FROM_BLENDER_CAMERA @ rot.T @ world_from_file
    t = -(CV_FROM_BLENDER_CAMERA @ rot.T @ eye)
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = r, t
    return out


def camera_json(*, camera_matrix_world, file_from_world, **intrinsic_args) -> dict:
    """The camera.json dictionary backend/fitting/camera.py reads."""
    return {"convention": "opencv: p_cam = R p + t; x right, y down, z forward; u = fx x/z + cx",
            "intrinsics": intrinsics(**intrinsic_args),
            "world_to_camera": world_to_camera(camera_matrix_world, file_from_world).tolist()}


def project(camera: dict, points: np.ndarray) -> np.ndarray:
    """Pixels (u, v) of points [N, 3] in the file's coordinates (for tests and checks)."""
    ext = np.asarray(camera["world_to_camera"], dtype=np.float64)
    k = camera["intrinsics"]
    pc = np.asarray(points, dtype=np.float64) @ ext[:3, :3].T + ext[:3, 3]
    return np.stack([k["fx"] * pc[:, 0] / pc[:, 2] + k["cx"], k["fy"] * pc[:, 1] / pc[:, 2] + k["cy"]], axis=1)


def blender_camera(camera: dict, file_from_world: np.ndarray) -> dict:
    """The inverse of camera_json: a Blender camera (sensor fit AUTO, 36 mm sensor, square pixels)
    that sees the file's coordinates as camera.json says, placed in Blender's world.

    Returns matrix_world (4x4), lens, sensor_width, shift_x, shift_y and the resolution the
    intrinsics were given for. fx and fy are averaged (the backend estimates square pixels)."""
    k = camera["intrinsics"]
    width, height = int(k["width"]), int(k["height"])
    view = float(max(width, height))  # AUTO: the sensor spans the longer side
    sensor = 36.0
    focal = 0.5 * (float(k["fx"]) + float(k["fy"]))
    ext = np.asarray(camera["world_to_camera"], dtype=np.float64)
    r, t = ext[:3, :3], ext[:3, 3]
    d = CV_FROM_BLENDER_CAMERA
    rot = (d @ r @ np.asarray(file_from_world, dtype=np.float64)).T  # camera axes in the world
    eye = -rot @ d @ t
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rot, eye
    return {"matrix_world": matrix, "lens": focal * sensor / view, "sensor_width": sensor,
            "shift_x": ((width - 1) / 2.0 - float(k["cx"])) / view,
            "shift_y": (float(k["cy"]) - (height - 1) / 2.0) / view, "resolution": (width, height)}
