"""Shapes as signed distance fields, POSITIVE INSIDE (the shape VAE's convention), in its box
[-1, 1]^3: thin plates, rods and handles whose thickness is known exactly, and a creature with
thin legs and a free ring. Exact distances (so 1-Lipschitz) joined by a polynomial smooth
minimum: what extraction (backend.geometry.extract) can be checked against, by `bench extract`,
by `python -m backend plan`'s extraction trace and by the tests."""

from __future__ import annotations

import math

import numpy as np

BOX_SIDE = 2.0  # the VAE's box [-1, 1]: the "%" of the thin sizes are of this
PLATE_THICKNESS = 0.005 * BOX_SIDE
ROD_RADIUS = 0.01 * BOX_SIDE
HANDLE_TUBE = 0.005 * BOX_SIDE


def _rotation(axis, angle: float) -> np.ndarray:
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return (np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k).astype(np.float32)


# Thin parts aligned with the grid would sit on grid planes, a best (or worst) case no real shape
# has; these turns put every thin part at an angle to all three axes.
TILT = _rotation((1.0, 2.0, 3.0), 0.7)


def _capsule(p, a, b, r):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ab = b - a
    t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - r


def _torus(p, center, major, minor):
    q = p - np.asarray(center, np.float32)
    ring = np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2) - major
    return np.sqrt(ring ** 2 + q[:, 1] ** 2) - minor


def _box(q, half):
    d = np.abs(q) - np.asarray(half, np.float32)
    outside = np.linalg.norm(np.maximum(d, 0.0), axis=1)
    return outside + np.minimum(d.max(axis=1), 0.0)


def _smooth_min(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _local(points) -> np.ndarray:
    """Points in the tilted frame of the thin shapes (TILT is a rotation: distances are kept)."""
    return np.asarray(points, dtype=np.float32) @ TILT


def plate_sdf(points, thickness: float = PLATE_THICKNESS) -> np.ndarray:
    """A flat plate 1.4 x 1.0 x `thickness`, tilted; exact signed distance, positive inside."""
    return -_box(_local(points), (0.7, 0.5, 0.5 * thickness))


def rod_sdf(points, radius: float = ROD_RADIUS) -> np.ndarray:
    """A straight rod (capsule) of `radius`, 1.7 long between its end centres, tilted."""
    return -_capsule(_local(points), (-0.85, 0.0, 0.0), (0.85, 0.0, 0.0), radius)


def handle_sdf(points, tube: float = HANDLE_TUBE) -> np.ndarray:
    """A torus (major radius 0.4, tube 0.12, centre -0.15 on x, in the xz plane, then tilted) with a
    handle: a ring of radius 0.2 and tube `tube` in the xy plane, centred 0.62 out on x, so about
    60 degrees of it run inside the torus' tube and the rest stands out, joined at two places."""
    p = _local(points)
    body = _torus(p, (-0.15, 0.0, 0.0), 0.4, 0.12)
    q = p - np.asarray((-0.15 + 0.62, 0.0, 0.0), np.float32)
    ring = np.sqrt((np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2) - 0.2) ** 2 + q[:, 2] ** 2) - tube
    return -np.minimum(body, ring)


def creature_sdf(points) -> np.ndarray:
    """A body, a head, four thin legs and a thin ring (tube radius 0.025, under half a 32^3 cell).

    Positive inside, 1-Lipschitz (distance functions joined by a polynomial smooth minimum).
    """
    p = np.asarray(points, dtype=np.float32)
    d = _capsule(p, (-0.45, 0.1, 0.0), (0.35, 0.15, 0.0), 0.22)
    d = _smooth_min(d, _capsule(p, (0.45, 0.35, 0.0), (0.6, 0.45, 0.0), 0.14), 0.08)
    for x in (-0.35, 0.25):
        for z in (-0.12, 0.12):
            d = _smooth_min(d, _capsule(p, (x, 0.0, z), (x + 0.05, -0.8, z * 1.5), 0.045), 0.05)
    d = _smooth_min(d, _capsule(p, (-0.6, 0.2, 0.0), (-0.9, 0.6, 0.0), 0.03), 0.04)
    d = np.minimum(d, _torus(p, (0.0, 0.75, 0.0), 0.35, 0.025))
    return -d
