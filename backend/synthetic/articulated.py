"""Random articulated bodies with an exact posed signed distance, smooth motions and tracked points.

A body is a kinematic tree of joints; each joint carries one or more primitive parts (tapered
capsules, ellipsoids, rounded boxes, tori) that are fused with a polynomial smooth-min into one
smooth, watertight surface. The posed shape is evaluated *exactly*: a query point is mapped into
every part's posed frame (inverse root transform, inverse global warp, inverse part transform)
and the part's own distance function is evaluated there. Nothing is deformed as a mesh, so every
frame's surface is an exact implicit surface with its own topology.

Sign convention (the shape VAE's): ``Body.sdf`` is POSITIVE INSIDE, zero on the surface and
negative outside. The value is a signed-distance *bound* rather than a Euclidean distance in a
few places (the ellipsoid, the taper of a capsule, smooth-min fillets and the global warp, whose
Jacobian stretches distances by at most ~20-30 %), but the sign and the zero level set are exact.

Ground-truth correspondences: ``track_points`` carries material points from the rest surface
through a motion. Each point is moved by linear blend skinning of the part transforms, with
weights from the point's rest-pose distance to each part (a softmax over part distances), then
pushed through the global warp and root transform, and finally re-projected onto the posed zero
level set with a few Newton steps along the SDF gradient. Away from joints a point belongs to one
rigid part, skinning is exact and the projection does nothing; near joints the fillet changes
shape with the pose, so the projection moves the point (mostly along the normal) by a small
amount. That normal correction is the approximation: the tracked point is "the surface point
closest to where skinning puts it", which is smooth in time but is not a physically derived
material flow inside the fillet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------- rotations / frames


def rodrigues(vecs):
    """Axis-angle vectors [..., 3] to rotation matrices [..., 3, 3]."""
    v = np.asarray(vecs, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1)[..., None, None]
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = v / safe[..., 0]
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([np.stack([zero, -kz, ky], -1), np.stack([kz, zero, -kx], -1),
                  np.stack([-ky, kx, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), K.shape)
    s, c = np.sin(theta), np.cos(theta)
    R = eye + s * K + (1.0 - c) * (K @ K)
    return np.where(theta > 1e-12, R, eye)


def frame_from_dir(x_dir, z_hint):
    """Rotation whose columns are a frame with local +x along `x_dir` and local +z close to `z_hint`."""
    x = np.asarray(x_dir, float)
    x = x / np.linalg.norm(x)
    zh = np.asarray(z_hint, float)
    y = np.cross(zh, x)
    if np.linalg.norm(y) < 1e-6:  # hint parallel to x: pick any perpendicular
        y = np.cross([0.0, 1.0, 0.0] if abs(x[1]) < 0.9 else [1.0, 0.0, 0.0], x)
    y = y / np.linalg.norm(y)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def _rot_about(axis, angle):
    a = np.asarray(axis, float)
    return rodrigues(a / np.linalg.norm(a) * angle)


# ---------------------------------------------------------------- primitives (negative inside)


def _d_capsule(p, length, r0, r1):
    """Tapered capsule along local +x from 0 to `length` (radius r0 -> r1)."""
    t = np.clip(p[:, 0] / length, 0.0, 1.0)
    dx = p[:, 0] - t * length
    return np.sqrt(dx * dx + p[:, 1] ** 2 + p[:, 2] ** 2) - (r0 + (r1 - r0) * t)


def _d_ellipsoid(p, a, b, c):
    # k0 (k0 - 1) / k1: a much better distance estimate than the scaled sphere, exact on the surface.
    q0 = np.sqrt((p[:, 0] / a) ** 2 + (p[:, 1] / b) ** 2 + (p[:, 2] / c) ** 2)
    q1 = np.sqrt((p[:, 0] / a**2) ** 2 + (p[:, 1] / b**2) ** 2 + (p[:, 2] / c**2) ** 2)
    # The ratio tends to minus the radius along the approach direction at the centre; only the
    # exact centre is 0/0, where -min(radius) is the limit's lower bound.
    return np.where(q1 > 1e-9, q0 * (q0 - 1.0) / np.maximum(q1, 1e-12), -min(a, b, c))


def _d_box(p, a, b, c, r):
    """Box with half-sizes (a, b, c) and edge rounding r (the outer half-size is a + r ...)."""
    q = np.abs(p) - np.array([a, b, c])
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return outside + inside - r


def _d_torus(p, big, small):
    """Torus around local +y with ring radius `big` and tube radius `small`."""
    ring = np.sqrt(p[:, 0] ** 2 + p[:, 2] ** 2) - big
    return np.sqrt(ring * ring + p[:, 1] ** 2) - small


_PRIMS = {
    "capsule": lambda p, a: _d_capsule(p, a[0], a[1], a[2]),
    "ellipsoid": lambda p, a: _d_ellipsoid(p, a[0], a[1], a[2]),
    "box": lambda p, a: _d_box(p, a[0], a[1], a[2], a[3]),
    "torus": lambda p, a: _d_torus(p, a[0], a[1]),
}


def _bound_sphere(kind, a):
    """(centre in part frame, radius) enclosing the primitive."""
    if kind == "capsule":
        return np.array([a[0] / 2, 0, 0]), a[0] / 2 + max(a[1], a[2])
    if kind == "ellipsoid":
        return np.zeros(3), max(a[:3])
    if kind == "box":
        return np.zeros(3), float(np.linalg.norm(a[:3])) + a[3]
    return np.zeros(3), a[0] + a[1]


def smin(a, b, k):
    """Polynomial smooth minimum (fillet of width ~k); equals min(a, b) when |a - b| >= k."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


# ---------------------------------------------------------------- body


@dataclass
class Part:
    kind: str
    params: np.ndarray
    joint: int
    R: np.ndarray  # part frame in its joint's frame
    t: np.ndarray
    blend: float  # smooth-min width used when fusing this part to the parts before it
    color: np.ndarray  # base RGB in [0, 1]


@dataclass
class Body:
    """An articulated body. Joints are in topological order (a parent precedes its children)."""

    archetype: str
    parent: np.ndarray  # [J] parent joint index, -1 for the root
    R_rest: np.ndarray  # [J,3,3] rest rotation in the parent's frame
    t_rest: np.ndarray  # [J,3] joint origin in the parent's frame
    role: list  # [J] motion role names
    axis: np.ndarray  # [J,3] primary rotation axis in the joint frame
    amp: np.ndarray  # [J] primary amplitude (radians)
    phase: np.ndarray  # [J] phase offset of the primary oscillation
    freq: np.ndarray  # [J] frequency multiplier of the primary oscillation
    onesided: np.ndarray  # [J] bool: bends one way only (knees, elbows)
    parts: list = field(default_factory=list)
    warp_frame: np.ndarray = field(default_factory=lambda: np.eye(3))  # rows: main, bend, third axes
    forward_axis: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))

    # ------------------------------------------------ bookkeeping
    @property
    def n_joints(self) -> int:
        return len(self.parent)

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    @property
    def colors(self) -> np.ndarray:
        return np.array([p.color for p in self.parts])

    def rest_pose(self) -> dict:
        return {"joint_rot": np.zeros((self.n_joints, 3)), "root_rot": np.zeros(3),
                "root_trans": np.zeros(3), "warp": np.zeros(3)}

    # ------------------------------------------------ kinematics
    def joint_transforms(self, pose):
        """Posed joint frames in the body frame (before warp and root): R [J,3,3], t [J,3]."""
        Rl = self.R_rest @ rodrigues(pose["joint_rot"])
        R = np.empty_like(Rl)
        t = np.empty((self.n_joints, 3))
        for j, par in enumerate(self.parent):
            if par < 0:
                R[j], t[j] = Rl[j], self.t_rest[j]
            else:
                R[j] = R[par] @ Rl[j]
                t[j] = R[par] @ self.t_rest[j] + t[par]
        return R, t

    def part_transforms(self, pose):
        """Posed part frames in the body frame: R [P,3,3], t [P,3]."""
        RJ, tJ = self.joint_transforms(pose)
        j = np.array([p.joint for p in self.parts])
        Rp = np.stack([p.R for p in self.parts])
        tp = np.stack([p.t for p in self.parts])
        return RJ[j] @ Rp, np.einsum("pij,pj->pi", RJ[j], tp) + tJ[j]

    # ------------------------------------------------ global warp (twist, bend, squash)
    def warp_forward(self, q, warp):
        tw, bd, ls = warp
        W = self.warp_frame
        u = q @ W.T
        if tw:
            a = tw * u[:, 0]
            c, s = np.cos(a), np.sin(a)
            u = np.stack([u[:, 0], c * u[:, 1] - s * u[:, 2], s * u[:, 1] + c * u[:, 2]], 1)
        if bd:
            u = u + np.outer(bd * u[:, 0] ** 2, [0.0, 1.0, 0.0])
        q = u @ W
        if ls:
            q = q * np.array([np.exp(-0.5 * ls), np.exp(ls), np.exp(-0.5 * ls)])
        return q

    def warp_inverse(self, q, warp):
        tw, bd, ls = warp
        if ls:
            q = q / np.array([np.exp(-0.5 * ls), np.exp(ls), np.exp(-0.5 * ls)])
        W = self.warp_frame
        u = q @ W.T
        if bd:
            u = u - np.outer(bd * u[:, 0] ** 2, [0.0, 1.0, 0.0])
        if tw:
            a = -tw * u[:, 0]
            c, s = np.cos(a), np.sin(a)
            u = np.stack([u[:, 0], c * u[:, 1] - s * u[:, 2], s * u[:, 1] + c * u[:, 2]], 1)
        return u @ W

    def to_body(self, points, pose):
        """World points -> body frame (undo root transform, then undo the warp)."""
        Rr = rodrigues(pose["root_rot"])
        q = (np.asarray(points, float) - pose["root_trans"]) @ Rr
        return self.warp_inverse(q, pose["warp"])

    def to_world(self, q, pose):
        Rr = rodrigues(pose["root_rot"])
        return self.warp_forward(q, pose["warp"]) @ Rr.T + pose["root_trans"]

    # ------------------------------------------------ distance
    def part_distances(self, q, transforms):
        """Per-part distances (negative inside) of body-frame points q: [P, N]."""
        R, t = transforms
        out = np.empty((self.n_parts, len(q)))
        for i, part in enumerate(self.parts):
            local = (q - t[i]) @ R[i]
            out[i] = _PRIMS[part.kind](local, part.params)
        return out

    def sdf(self, points, pose, return_part=False, chunk=65536):
        """Signed distance of world points under `pose`: positive inside, 0 on the surface."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        tr = self.part_transforms(pose)
        vals = np.empty(len(points))
        ids = np.empty(len(points), dtype=np.int64) if return_part else None
        for s in range(0, len(points), chunk):
            q = self.to_body(points[s:s + chunk], pose)
            D = self.part_distances(q, tr)
            d = D[0]
            for i in range(1, self.n_parts):
                d = smin(d, D[i], self.parts[i].blend)
            vals[s:s + chunk] = -d
            if return_part:
                ids[s:s + chunk] = D.argmin(axis=0)
        return (vals, ids) if return_part else vals

    def sdf_grad(self, points, pose, eps=1e-4):
        """(sdf, gradient) by central differences."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        n = len(p)
        offs = np.concatenate([p] + [p + e for e in np.eye(3) * eps] + [p - e for e in np.eye(3) * eps])
        v = self.sdf(offs, pose)
        g = np.stack([(v[(1 + i) * n:(2 + i) * n] - v[(4 + i) * n:(5 + i) * n]) / (2 * eps) for i in range(3)], 1)
        return v[:n], g

    def project(self, points, pose, steps=4, eps=1e-4, tol=1e-6, max_steps=16):
        """Newton steps x <- x - f grad / |grad|^2 onto the zero level set; returns (points, outward normals).

        `steps` steps for every point, then further steps (up to `max_steps` in all) only for the
        points still farther than `tol * scale` from the surface.
        """
        x = np.asarray(points, dtype=np.float64).copy()
        lim = 0.1 * self.scale
        active = np.arange(len(x))
        for it in range(max_steps):
            f, g = self.sdf_grad(x[active], pose, eps)
            if it >= steps:
                keep = np.abs(f) > tol * self.scale
                active, f, g = active[keep], f[keep], g[keep]
                if not len(active):
                    break
            g2 = np.maximum((g * g).sum(1), 1e-12)
            step = (f / g2)[:, None] * g
            # Limit a single step so a bad gradient cannot throw a point across the body.
            ln = np.linalg.norm(step, axis=1, keepdims=True)
            step *= np.minimum(1.0, lim / np.maximum(ln, 1e-12))
            x[active] -= step
        _, g = self.sdf_grad(x, pose, eps)
        n = -g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return x, n

    @property
    def scale(self) -> float:
        """A rough size of the body (half the rest bounding-box diagonal)."""
        if getattr(self, "_scale", None) is None:
            lo, hi = self.bounds(self.rest_pose(), pad=0.0)
            self._scale = 0.5 * float(np.linalg.norm(hi - lo))
        return self._scale

    def bounds(self, pose, pad=0.08):
        """A box that contains the posed surface (from each part's bounding sphere, pushed through the warp)."""
        R, t = self.part_transforms(pose)
        dirs = np.concatenate([np.eye(3), -np.eye(3), np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
                               / np.sqrt(3)])
        pts = []
        for i, part in enumerate(self.parts):
            c, r = _bound_sphere(part.kind, part.params)
            r = r + part.blend  # smooth-min can bulge by up to ~k/4; be generous
            pts.append(R[i] @ c + t[i] + r * dirs)
        pts = self.to_world(np.concatenate(pts), pose)
        lo, hi = pts.min(0), pts.max(0)
        ext = (hi - lo).max()
        return lo - pad * ext, hi + pad * ext

    # ------------------------------------------------ skinning / tracking
    def skin_weights(self, rest_points, tau=None):
        """Smooth part weights [N, P] from rest-pose part distances (softmax of -d / tau)."""
        tau = 0.04 * self.scale if tau is None else tau
        q = self.to_body(rest_points, self.rest_pose())
        D = self.part_distances(q, self.part_transforms(self.rest_pose())).T
        w = np.exp(-(D - D.min(1, keepdims=True)) / tau)
        w[w < 1e-4] = 0.0
        return w / w.sum(1, keepdims=True)

    def skin(self, rest_points, weights, pose):
        """Linear blend skinning of rest (world = body, since the rest pose is the identity) points."""
        R0, t0 = self.part_transforms(self.rest_pose())
        R1, t1 = self.part_transforms(pose)
        q = self.to_body(rest_points, self.rest_pose())
        out = np.zeros_like(q)
        for i in range(self.n_parts):
            w = weights[:, i]
            sel = w > 0
            if not sel.any():
                continue
            local = (q[sel] - t0[i]) @ R0[i]
            out[sel] += w[sel, None] * (local @ R1[i].T + t1[i])
        return self.to_world(out, pose)


def pose_at(poses: dict, t: int) -> dict:
    """One frame of a motion (a dict of arrays with a leading time axis)."""
    return {k: v[t] for k, v in poses.items()}


def track_points(body, rest_points, poses, steps=4, return_correction=False):
    """Carry material points on the rest surface through `poses`: [T, N, 3] positions and normals.

    Skinning (part weights from rest distances) then Newton re-projection onto each posed
    surface; see the module docstring for what that approximates.
    """
    w = body.skin_weights(rest_points)
    T = len(poses["joint_rot"])
    xs, ns, cs = [], [], []
    for t in range(T):
        pose = pose_at(poses, t)
        x0 = body.skin(rest_points, w, pose)
        x, n = body.project(x0, pose, steps=steps)
        xs.append(x)
        ns.append(n)
        cs.append(np.linalg.norm(x - x0, axis=1))
    if return_correction:  # how far the projection moved each point off its skinned position
        return np.stack(xs), np.stack(ns), np.stack(cs)
    return np.stack(xs), np.stack(ns)


# ---------------------------------------------------------------- body construction


class _Builder:
    """Authoring helper: joints and parts are given in WORLD rest coordinates and stored locally."""

    def __init__(self, rng, archetype):
        self.rng = rng
        self.archetype = archetype
        self.parent, self.Rl, self.tl, self.Rw, self.tw = [], [], [], [], []
        self.role, self.axis, self.amp, self.phase, self.freq, self.onesided = [], [], [], [], [], []
        self.parts = []
        self.hue = rng.uniform(0, 1)

    def joint(self, parent, pos, R=None, role="fixed", axis=(0, 0, 1), amp=0.0, phase=0.0, freq=1.0, onesided=False):
        R = np.eye(3) if R is None else np.asarray(R, float)
        pos = np.asarray(pos, float)
        if parent < 0:
            Rl, tl = R, pos
        else:
            Rp, tp = self.Rw[parent], self.tw[parent]
            Rl, tl = Rp.T @ R, Rp.T @ (pos - tp)
        self.parent.append(parent)
        self.Rl.append(Rl)
        self.tl.append(tl)
        self.Rw.append(R)
        self.tw.append(pos)
        self.role.append(role)
        a = np.asarray(axis, float)
        self.axis.append(a / np.linalg.norm(a))
        self.amp.append(amp)
        self.phase.append(phase)
        self.freq.append(freq)
        self.onesided.append(onesided)
        return len(self.parent) - 1

    def part(self, joint, kind, params, R=None, pos=None, blend=0.05, color=None):
        """A primitive on `joint`; R/pos are its frame in world rest coordinates (default: the joint's)."""
        Rj, tj = self.Rw[joint], self.tw[joint]
        R = Rj if R is None else np.asarray(R, float)
        pos = tj if pos is None else np.asarray(pos, float)
        if color is None:
            color = self._color(len(self.parts))
        self.parts.append(Part(str(kind), np.asarray(params, float), joint, Rj.T @ R, Rj.T @ (pos - tj), float(blend),
                               np.asarray(color, float)))
        return len(self.parts) - 1

    def _color(self, i):
        h = (self.hue + 0.618034 * i) % 1.0
        s, v = self.rng.uniform(0.45, 0.75), self.rng.uniform(0.75, 0.95)
        k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
        return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)

    def limb(self, parent, start, direction, lengths, radii, z_hint, bends=None, role="limb", amp=0.4, phase=0.0,
             freq=1.0, axis=(0, 0, 1), wave=0.0, knee_onesided=True, blend=None, kind="capsule", flat=None):
        """A chain of segments from `start`; segment i+1 turns by bends[i] about the local z axis.

        radii has len(lengths)+1 entries (taper). Returns the list of joint indices (one per segment)
        and the tip position.
        """
        d = np.asarray(direction, float)
        d = d / np.linalg.norm(d)
        R = frame_from_dir(d, z_hint)
        pos = np.asarray(start, float)
        joints = []
        bends = [0.0] * len(lengths) if bends is None else bends
        for i, L in enumerate(lengths):
            if i > 0:
                R = R @ _rot_about([0, 0, 1], bends[i - 1])
            seg_role = role if i == 0 else (role + "_mid")
            j = self.joint(parent, pos, R, role=seg_role, axis=axis, amp=amp * (1.0 if i == 0 else 0.9),
                           phase=phase + wave * i, freq=freq, onesided=(i > 0 and knee_onesided))
            b = blend if blend is not None else 0.6 * min(radii[i], radii[i + 1])
            if kind == "capsule":
                self.part(j, "capsule", [L, radii[i], radii[i + 1]], blend=b)
            else:  # flattened ellipsoid segment (wings, fins)
                fl = flat if flat is not None else 0.35
                self.part(j, "ellipsoid", [L / 2 + radii[i] * 0.5, radii[i], radii[i] * fl],
                          R=R, pos=pos + R[:, 0] * L / 2, blend=b)
            pos = pos + R[:, 0] * L
            joints.append(j)
            parent = j
        return joints, pos, R

    def build(self, warp_frame=None, forward=(1, 0, 0)) -> Body:
        return Body(self.archetype, np.array(self.parent), np.stack(self.Rl), np.stack(self.tl), self.role,
                    np.stack(self.axis), np.array(self.amp, float), np.array(self.phase, float),
                    np.array(self.freq, float), np.array(self.onesided, bool), self.parts,
                    np.eye(3) if warp_frame is None else np.asarray(warp_frame, float), np.asarray(forward, float))


def _u(rng, a, b):
    return float(rng.uniform(a, b))


def _head(B, rng, parent, pos, forward, size):
    """Head ellipsoid with an optional snout, ears or horns, on its own joint."""
    R = frame_from_dir(forward, (0, 0, 1))
    j = B.joint(parent, pos, R, role="head", axis=(0, 0, 1), amp=_u(rng, 0.15, 0.35), phase=_u(rng, 0, 6.3),
                freq=1.0)
    hx, hy, hz = size * _u(rng, 0.9, 1.4), size * _u(rng, 0.7, 1.0), size * _u(rng, 0.7, 1.0)
    B.part(j, "ellipsoid", [hx, hy, hz], R=R, pos=pos + R[:, 0] * hx * 0.4, blend=0.4 * size)
    extra = rng.integers(0, 4)
    if extra == 1:  # snout
        B.part(j, "capsule", [hx * _u(rng, 0.8, 1.3), hy * 0.55, hy * 0.35], R=R, pos=pos + R[:, 0] * hx * 0.6,
               blend=0.3 * size)
    elif extra in (2, 3):  # ears (2) or horns (3)
        for s in (1, -1):
            d = R[:, 1] * 1.0 + R[:, 2] * s * _u(rng, 0.3, 0.9) - R[:, 0] * _u(rng, 0.0, 0.6)
            Rd = frame_from_dir(d, R[:, 0])
            base = pos + R[:, 0] * hx * 0.2 + R[:, 1] * hy * 0.6 + R[:, 2] * s * hz * 0.5
            if extra == 2:
                B.part(j, "ellipsoid", [size * 0.45, size * 0.22, size * 0.09], R=Rd, pos=base + Rd[:, 0] * size * 0.3,
                       blend=0.12 * size)
            else:
                B.part(j, "capsule", [size * _u(rng, 0.6, 1.1), size * 0.16, size * 0.05], R=Rd, pos=base,
                       blend=0.12 * size)
    return j


def _quadruped(rng):
    B = _Builder(rng, "quadruped")
    L = _u(rng, 0.5, 0.8)  # half body length
    h, w = _u(rng, 0.18, 0.3), _u(rng, 0.15, 0.28)
    root = B.joint(-1, [0, 0, 0], role="spine", axis=(0, 1, 0), amp=_u(rng, 0.05, 0.15))
    B.part(root, "ellipsoid", [L * 0.65, h, w], pos=[-L * 0.35, 0, 0], blend=0.1)
    chest = B.joint(root, [L * 0.1, 0, 0], role="spine", axis=(0, 1, 0), amp=_u(rng, 0.1, 0.25))
    B.part(chest, "ellipsoid", [L * 0.6, h * _u(rng, 1.0, 1.25), w * _u(rng, 0.95, 1.15)], pos=[L * 0.4, 0, 0],
           blend=0.15)
    # neck + head
    nlen = _u(rng, 0.15, 0.5)
    ndir = [_u(rng, 0.4, 1.0), _u(rng, 0.5, 1.2), 0]
    nj, tip, _ = B.limb(chest, [L * 0.75, h * 0.4, 0], ndir, [nlen], [h * 0.55, h * 0.45], (0, 0, 1), role="neck",
                        amp=_u(rng, 0.15, 0.35), phase=_u(rng, 0, 6.3), knee_onesided=False)
    _head(B, rng, nj[-1], tip, [1.0, _u(rng, -0.6, 0.1), 0], _u(rng, 0.16, 0.26))
    # legs
    leg_len = _u(rng, 0.35, 0.75)
    nseg = int(rng.integers(2, 4))
    lr = _u(rng, 0.05, 0.09)
    gait = rng.choice(["trot", "walk", "pace", "bound"])
    base_phase = {"trot": [0, np.pi, np.pi, 0], "walk": [0, np.pi, 1.5 * np.pi, 0.5 * np.pi],
                  "pace": [0, np.pi, 0, np.pi], "bound": [0, 0, np.pi, np.pi]}[gait]
    amp = _u(rng, 0.3, 0.6)
    k = 0
    for sx, par in ((L * 0.75, chest), (-L * 0.75, root)):
        for sz in (w * 0.6, -w * 0.6):
            segs = list(np.full(nseg, leg_len / nseg) * rng.uniform(0.85, 1.15, nseg))
            radii = list(np.linspace(lr * 1.4, lr * 0.8, nseg + 1))
            bends = [(-1) ** i * _u(rng, 0.2, 0.6) * (1 if sx > 0 else -1) for i in range(nseg - 1)]
            _, tip, R = B.limb(par, [sx, -h * 0.4, sz], [0, -1, 0], segs, radii, (0, 0, 1), bends=bends, role="leg",
                               amp=amp, phase=base_phase[k], wave=0.8)
            if rng.random() < 0.6:  # foot
                B.part(B.joint(len(B.parent) - 1, tip, frame_from_dir([1, 0, 0], [0, 0, 1])), "ellipsoid",
                       [lr * 2.0, lr * 0.8, lr * 1.2], pos=tip + np.array([lr, 0, 0]), blend=lr * 0.6)
            k += 1
    # tail
    if rng.random() < 0.85:
        n = int(rng.integers(2, 6))
        tl = _u(rng, 0.3, 0.9)
        tr = _u(rng, 0.03, 0.09)
        B.limb(root, [-L * 0.9, h * 0.2, 0], [-1, _u(rng, -0.8, 0.8), 0], list(np.full(n, tl / n)),
               list(np.linspace(tr, tr * 0.5, n + 1)), (0, 0, 1), bends=list(rng.uniform(-0.3, 0.3, n - 1)),
               role="tail", amp=_u(rng, 0.2, 0.5), axis=(0, 1, 0), phase=_u(rng, 0, 6.3), wave=0.7,
               freq=_u(rng, 1, 2), knee_onesided=False)
    return B.build()


def _biped(rng):
    B = _Builder(rng, "biped")
    th = _u(rng, 0.35, 0.6)  # torso half height
    tw, td = _u(rng, 0.2, 0.35), _u(rng, 0.13, 0.22)
    root = B.joint(-1, [0, 0, 0], role="spine", axis=(0, 0, 1), amp=_u(rng, 0.05, 0.12))
    if rng.random() < 0.5:
        B.part(root, "ellipsoid", [td, th * 0.6, tw], pos=[0, th * 0.3, 0], blend=0.1)
    else:
        B.part(root, "box", [td * 0.6, th * 0.4, tw * 0.7, td * 0.4], pos=[0, th * 0.3, 0], blend=0.1)
    chest = B.joint(root, [0, th * 0.6, 0], role="spine", axis=(1, 0, 0), amp=_u(rng, 0.1, 0.2))
    B.part(chest, "ellipsoid", [td * 1.1, th * 0.55, tw * 1.1], pos=[0, th * 0.5, 0], blend=0.12)
    top = np.array([0, th * 1.1, 0])
    nj, tip, _ = B.limb(chest, top, [0.1, 1, 0], [_u(rng, 0.05, 0.15)], [0.08, 0.07], (0, 0, 1), role="neck",
                        amp=0.2, knee_onesided=False)
    _head(B, rng, nj[-1], tip + np.array([0, _u(rng, 0.08, 0.15), 0]), [1.0, _u(rng, -0.2, 0.3), 0],
          _u(rng, 0.14, 0.22))
    arm_len = _u(rng, 0.4, 0.8)
    ar = _u(rng, 0.04, 0.08)
    amp_arm = _u(rng, 0.3, 0.7)
    for s, ph in ((1, 0.0), (-1, np.pi)):
        segs = [arm_len * 0.5, arm_len * 0.5]
        _, tip, R = B.limb(chest, [0, th * 0.95, s * tw * 1.05], [0, -1, s * _u(rng, 0.2, 0.7)], segs,
                           [ar * 1.2, ar, ar * 0.85], (0, 0, 1), bends=[_u(rng, 0.1, 0.5)], role="arm", amp=amp_arm,
                           phase=ph + np.pi, wave=0.6)
        B.part(len(B.parent) - 1, "ellipsoid", [ar * 1.6, ar * 1.3, ar * 0.9], R=R, pos=tip + R[:, 0] * ar,
               blend=ar * 0.5)
    leg_len = _u(rng, 0.5, 0.9)
    lr = _u(rng, 0.06, 0.1)
    amp_leg = _u(rng, 0.3, 0.6)
    for s, ph in ((1, 0.0), (-1, np.pi)):
        _, tip, R = B.limb(root, [0, -th * 0.1, s * tw * 0.5], [0, -1, 0], [leg_len * 0.5, leg_len * 0.5],
                           [lr * 1.3, lr, lr * 0.8], (0, 0, 1), bends=[-_u(rng, 0.05, 0.3)], role="leg", amp=amp_leg,
                           phase=ph, wave=0.8)
        fj = B.joint(len(B.parent) - 1, tip, frame_from_dir([1, 0, 0], [0, 0, 1]))
        B.part(fj, "box", [lr * 1.3, lr * 0.35, lr * 0.7, lr * 0.35], pos=tip + np.array([lr * 0.8, -lr * 0.4, 0]),
               blend=lr * 0.5)
    if rng.random() < 0.3:
        B.limb(root, [-td * 0.8, 0, 0], [-1, -0.5, 0], [0.25, 0.25, 0.25], [0.06, 0.05, 0.04, 0.02], (0, 0, 1),
               bends=[0.3, 0.3], role="tail", amp=0.3, axis=(0, 1, 0), wave=0.8, knee_onesided=False)
    wf = np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    return B.build(warp_frame=wf)


def _bird(rng):
    B = _Builder(rng, "bird")
    L, h = _u(rng, 0.3, 0.5), _u(rng, 0.18, 0.3)
    root = B.joint(-1, [0, 0, 0], role="spine", axis=(0, 0, 1), amp=0.08)
    B.part(root, "ellipsoid", [L, h, h * _u(rng, 0.8, 1.0)], blend=0.1)
    nj, tip, _ = B.limb(root, [L * 0.7, h * 0.5, 0], [0.5, 1, 0], [_u(rng, 0.1, 0.35)], [h * 0.45, h * 0.35],
                        (0, 0, 1), role="neck", amp=0.25, phase=_u(rng, 0, 6.3), knee_onesided=False)
    hs = _u(rng, 0.12, 0.18)
    hj = _head(B, rng, nj[-1], tip, [1, 0, 0], hs)
    B.part(hj, "capsule", [hs * _u(rng, 1.0, 2.5), hs * 0.35, 0.015], R=frame_from_dir([1, -0.25, 0], [0, 0, 1]),
           pos=tip + np.array([hs * 1.0, 0, 0]), blend=0.03)
    span = _u(rng, 0.6, 1.2)
    amp = _u(rng, 0.35, 0.7)
    for s, ph in ((1, 0.0), (-1, np.pi)):
        B.limb(root, [L * 0.2, h * 0.5, s * h * 0.7], [0, 0.3, s], [span * 0.5, span * 0.5],
               [span * 0.22, span * 0.2, span * 0.12], (1, 0, 0), bends=[_u(rng, -0.3, 0.3)], role="wing", amp=amp,
               phase=ph, wave=0.5, freq=1.5, knee_onesided=False, kind="ellipsoid", flat=_u(rng, 0.15, 0.3))
    for s in (1, -1):
        B.limb(root, [0, -h * 0.7, s * h * 0.4], [0.2, -1, 0], [0.15, 0.15], [0.045, 0.04, 0.035], (0, 0, 1),
               bends=[-0.6], role="leg", amp=0.2, phase=0 if s > 0 else np.pi)
    tj = B.joint(root, [-L * 0.9, h * 0.1, 0], frame_from_dir([-1, 0.2, 0], [0, 0, 1]), role="tail", axis=(0, 0, 1),
                 amp=0.3)
    B.part(tj, "ellipsoid", [_u(rng, 0.2, 0.4), 0.03, _u(rng, 0.1, 0.2)], R=frame_from_dir([-1, 0.2, 0], [0, 0, 1]),
           pos=[-L * 0.9 - 0.2, h * 0.15, 0], blend=0.05)
    return B.build()


def _fish(rng):
    snake = rng.random() < 0.35
    B = _Builder(rng, "snake" if snake else "fish")
    n = int(rng.integers(5, 10)) if snake else int(rng.integers(3, 6))
    seg = _u(rng, 0.2, 0.3) if snake else _u(rng, 0.15, 0.3)
    r0 = _u(rng, 0.07, 0.12) if snake else _u(rng, 0.18, 0.3)
    wave = _u(rng, 0.6, 1.2)
    amp = _u(rng, 0.2, 0.4)
    head = B.joint(-1, [0, 0, 0], frame_from_dir([-1, 0, 0], [0, 0, 1]), role="spine", axis=(0, 1, 0), amp=amp * 0.5)
    B.part(head, "ellipsoid", [seg * 1.2, r0 * 0.9, r0 * (0.9 if snake else 0.6)],
           R=np.eye(3), pos=[seg * 0.3, 0, 0], blend=r0 * 0.3)
    # body segments going backwards: body curls in the horizontal (snake) or vertical-flat (fish) plane
    prof = np.sin(np.linspace(0.3, np.pi - 0.2, n + 1)) if not snake else np.linspace(1.0, 0.4, n + 1)
    radii = list(r0 * (0.3 + 0.7 * prof))
    joints, tip, R = B.limb(head, [0, 0, 0], [-1, 0, 0], [seg] * n, radii, (0, 0, 1),
                            bends=list(rng.uniform(-0.15, 0.15, n - 1)) if snake else None, role="spine", amp=amp,
                            axis=(0, 1, 0), phase=0.0, wave=wave, knee_onesided=False, kind="capsule",
                            blend=r0 * 0.3)
    if not snake:
        # flatten the fish: add a thin vertical ellipsoid on every segment
        for j in joints:
            Rj, tj = B.Rw[j], B.tw[j]
            B.part(j, "ellipsoid", [seg * 0.7, r0 * _u(rng, 0.9, 1.4) * (0.5 + 0.5 * prof[joints.index(j)]), r0 * 0.2],
                   R=Rj, pos=tj + Rj[:, 0] * seg * 0.5, blend=r0 * 0.3)
        tf = B.joint(joints[-1], tip, R, role="tail", axis=(0, 1, 0), amp=amp, phase=wave * n)
        fin = frame_from_dir(R[:, 0], [0, 0, 1])
        for s in (1, -1):
            Rf = frame_from_dir(R[:, 0] + s * np.array([0, 0.9, 0]), [0, 0, 1])
            B.part(tf, "ellipsoid", [r0 * 1.2, r0 * 0.5, 0.025], R=Rf, pos=tip + Rf[:, 0] * r0, blend=0.05)
        del fin
        for s in (1, -1):  # pectoral fins
            B.limb(head, [-seg * 0.3, -r0 * 0.4, s * r0 * 0.4], [-0.5, -0.4, s], [r0 * 1.0], [r0 * 0.5, r0 * 0.3],
                   (1, 0, 0), role="fin", amp=0.4, phase=0 if s > 0 else np.pi, freq=2.0, kind="ellipsoid", flat=0.2)
    return B.build(warp_frame=np.eye(3))


def _insect(rng):
    spider = rng.random() < 0.5
    B = _Builder(rng, "spider" if spider else "insect")
    r = _u(rng, 0.15, 0.25)
    root = B.joint(-1, [0, 0, 0], role="spine", axis=(0, 0, 1), amp=0.05)
    B.part(root, "ellipsoid", [r * 1.2, r * 0.7, r * 0.9], blend=0.05)
    abd = B.joint(root, [-r * 1.0, 0, 0], role="tail", axis=(0, 0, 1), amp=_u(rng, 0.1, 0.25), freq=1.0)
    ar = r * _u(rng, 1.2, 2.0)
    B.part(abd, "ellipsoid", [ar * 1.2, ar * 0.8, ar * 0.9], pos=[-r * 1.0 - ar * 1.0, ar * 0.2, 0], blend=0.06)
    hr = r * _u(rng, 0.5, 0.8)
    hj = B.joint(root, [r * 1.0, 0, 0], role="head", axis=(0, 1, 0), amp=0.2)
    B.part(hj, "ellipsoid", [hr, hr * 0.85, hr * 0.9], pos=[r * 1.0 + hr * 0.8, 0, 0], blend=0.05)
    if not spider and rng.random() < 0.8:
        for s in (1, -1):
            B.limb(hj, [r * 1.0 + hr * 1.4, hr * 0.5, s * hr * 0.4], [1, 0.8, s * 0.6], [0.25, 0.2], [0.025] * 3,
                   (0, 0, 1), bends=[-0.4], role="antenna", amp=0.3, phase=_u(rng, 0, 6.3), knee_onesided=False)
    nlegs = 8 if spider else 6
    leg = _u(rng, 0.6, 1.2)
    lr = _u(rng, 0.03, 0.05)
    for i in range(nlegs // 2):
        fx = (i - (nlegs // 2 - 1) / 2) / (nlegs // 2) * 1.6
        for s in (1, -1):
            ph = (0 if (i + (s > 0)) % 2 == 0 else np.pi)  # alternating tripod / tetrapod
            d = np.array([fx * 0.6, _u(rng, 0.5, 0.9), s * 1.0])
            B.limb(root, [fx * r, 0, s * r * 0.7], d, [leg * 0.35, leg * 0.45, leg * 0.3],
                   [lr * 1.3, lr, lr * 0.8, lr * 0.5],
                   (1, 0, 0), bends=[s * 1.5, s * 0.5],
                   role="leg", amp=_u(rng, 0.25, 0.45), axis=(0, 1, 0), phase=ph, wave=0.9, knee_onesided=False)
    return B.build()


def _octopus(rng):
    B = _Builder(rng, "tentacled")
    hr = _u(rng, 0.3, 0.45)
    root = B.joint(-1, [0, 0, 0], role="spine", axis=(0, 0, 1), amp=0.1)
    B.part(root, "ellipsoid", [hr * _u(rng, 0.8, 1.1), hr * _u(rng, 1.0, 1.6), hr * _u(rng, 0.8, 1.1)],
           pos=[0, hr * 0.5, 0], blend=0.1)
    n = int(rng.integers(4, 9))
    nseg = int(rng.integers(3, 6))
    L = _u(rng, 0.5, 1.0)
    tr = _u(rng, 0.05, 0.1)
    wave, amp = _u(rng, 0.5, 1.2), _u(rng, 0.2, 0.45)
    for i in range(n):
        a = 2 * np.pi * i / n + _u(rng, -0.2, 0.2)
        out = np.array([np.cos(a), 0, np.sin(a)])
        d = out * _u(rng, 0.4, 1.0) + np.array([0, -1, 0])
        B.limb(root, out * hr * 0.6 - np.array([0, hr * 0.2, 0]), d, list(np.full(nseg, L / nseg)),
               list(np.linspace(tr, tr * 0.35, nseg + 1)), np.cross([0, 1, 0], out) + 1e-3,
               bends=list(rng.uniform(-0.4, 0.4, nseg - 1)), role="tentacle", amp=amp, phase=2 * np.pi * i / n,
               wave=wave, knee_onesided=False, blend=tr * 0.6, axis=rng.normal(size=3) * [0.3, 1, 1])
    return B.build(warp_frame=np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 1.0]]))


def _core(kind, a):
    """A point well inside a primitive, in its own frame (a torus's centre is in its hole)."""
    if kind == "capsule":
        return np.array([a[0] / 2, 0.0, 0.0])
    if kind == "torus":
        return np.array([a[0], 0.0, 0.0])
    return np.zeros(3)


def _exit_distance(kind, a, R, pos, start, direction, reach):
    """How far from `start` (inside the primitive) along `direction` its surface is."""
    ts = np.linspace(0.0, reach, 256)
    local = (start + ts[:, None] * direction - pos) @ R
    d = _PRIMS[kind](local, a)
    out = np.nonzero(d > 0)[0]
    return ts[out[0]] if len(out) else reach


def _abstract(rng):
    """A random tree of primitives: blobby sculptures, rings, stacks and lumpy chains.

    Every child is attached at a point that lies inside both its parent primitive and itself
    (found by marching from each primitive's core point), so the union is one connected solid.
    """
    B = _Builder(rng, "abstract")
    kinds = ["ellipsoid", "box", "torus", "capsule"]

    def params(kind, s):
        if kind == "ellipsoid":
            return np.array(s * rng.uniform(0.4, 1.0, 3))
        if kind == "box":
            return np.array(list(s * rng.uniform(0.25, 0.7, 3)) + [s * _u(rng, 0.05, 0.25)])
        if kind == "torus":
            return np.array([s * _u(rng, 0.5, 0.9), s * _u(rng, 0.12, 0.3)])
        return np.array([s * _u(rng, 0.8, 1.6), s * _u(rng, 0.15, 0.35), s * _u(rng, 0.1, 0.3)])

    def rand_rot():
        return rodrigues(rng.normal(size=3) * 1.5)

    def place(joint, kind, a, R, attach, d, s, blend):
        """Put a primitive so that `attach` lies inside it, with its core further along d."""
        core = _core(kind, a)
        # with the core at attach, how far back (along -d) does the primitive reach?
        back = _exit_distance(kind, a, R, attach - R @ core, attach, -d, 4 * s)
        core_w = attach + d * 0.6 * back
        pos = core_w - R @ core
        B.part(joint, kind, a, R=R, pos=pos, blend=blend)
        return core_w

    def attach_point(node, d):
        kind, a, R, pos, core_w, s = node[1:]
        return core_w + d * 0.7 * _exit_distance(kind, a, R, pos, core_w, d, 4 * s)

    s0 = _u(rng, 0.4, 0.6)
    root = B.joint(-1, [0, 0, 0], role="free", axis=rng.normal(size=3), amp=_u(rng, 0.05, 0.2))
    k0 = str(rng.choice(kinds, p=[0.45, 0.3, 0.1, 0.15]))
    a0, R0 = params(k0, s0), rand_rot()
    core0 = _core(k0, a0)
    B.part(root, k0, a0, R=R0, pos=-R0 @ core0, blend=0.1)
    nodes = [(root, k0, a0, R0, -R0 @ core0, np.zeros(3), s0)]
    for _ in range(int(rng.integers(2, 8))):
        node = nodes[int(rng.integers(0, len(nodes)))]
        par, s = node[0], node[-1]
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        pos = attach_point(node, d)
        if rng.random() < 0.4:  # a bendy arm made of a short chain
            n = int(rng.integers(2, 4))
            L = s * _u(rng, 0.8, 1.6)
            r = s * _u(rng, 0.12, 0.3)
            joints, tip, Rt = B.limb(par, pos, d, list(np.full(n, L / n)), list(np.linspace(r, r * 0.5, n + 1)),
                                     rng.normal(size=3), bends=list(rng.uniform(-0.6, 0.6, n - 1)), role="free",
                                     amp=_u(rng, 0.2, 0.6), phase=_u(rng, 0, 6.3), wave=_u(rng, 0.3, 1.0),
                                     freq=float(rng.choice([0.5, 1, 1.5, 2])), knee_onesided=False,
                                     axis=rng.normal(size=3))
            if rng.random() < 0.5:
                k = str(rng.choice(kinds))
                a, R = params(k, s * 0.5), rand_rot()
                core_w = place(joints[-1], k, a, R, tip - Rt[:, 0] * r * 0.25, Rt[:, 0], s * 0.5, 0.06)
                nodes.append((joints[-1], k, a, R, core_w - R @ _core(k, a), core_w, s * 0.5))
        else:
            s1 = s * _u(rng, 0.4, 0.8)
            j = B.joint(par, pos, rand_rot(), role="free", axis=rng.normal(size=3), amp=_u(rng, 0.2, 0.6),
                        phase=_u(rng, 0, 6.3), freq=float(rng.choice([0.5, 1, 1.5, 2])))
            k = str(rng.choice(kinds, p=[0.45, 0.25, 0.15, 0.15]))
            a, R = params(k, s1), B.Rw[j]
            core_w = place(j, k, a, R, pos, d, s1, _u(rng, 0.04, 0.12))
            nodes.append((j, k, a, R, core_w - R @ _core(k, a), core_w, s1))
    return B.build(warp_frame=rand_rot().T)


ARCHETYPES = {"quadruped": _quadruped, "biped": _biped, "bird": _bird, "fish": _fish, "insect": _insect,
              "tentacled": _octopus, "abstract": _abstract}
ARCHETYPE_WEIGHTS = {"quadruped": 0.25, "biped": 0.15, "bird": 0.1, "fish": 0.12, "insect": 0.1, "tentacled": 0.08,
                     "abstract": 0.2}


def sample_body(rng, archetype: str | None = None) -> Body:
    """A random articulated body (a kinematic tree of fused primitives) at roughly unit size."""
    if archetype is None:
        names = list(ARCHETYPE_WEIGHTS)
        p = np.array([ARCHETYPE_WEIGHTS[n] for n in names])
        archetype = names[int(rng.choice(len(names), p=p / p.sum()))]
    return ARCHETYPES[archetype](rng)


# ---------------------------------------------------------------- motion


def _smooth_noise(rng, n_frames, dims, level, base_omega):
    """Sum of a few low-frequency sinusoids per dimension: [T, dims]."""
    t = np.arange(n_frames)[:, None]
    out = np.zeros((n_frames, dims))
    for _ in range(3):
        w = base_omega * rng.uniform(0.3, 1.5, dims)
        out += level * rng.uniform(0.3, 1.0, dims) * np.sin(w * t + rng.uniform(0, 2 * np.pi, dims))
    return out / 2.0


def sample_motion(body: Body, rng, n_frames: int = 16, style: str | None = None) -> dict:
    """A smooth non-rigid motion: per-joint rotations, global warp and root transform per frame.

    Styles: "cycle" (gait/flapping/swimming: periodic, phase-locked joints), "gesture" (a few
    joints move a lot, the rest idle), "wander" (smooth noise everywhere). Returns a dict of
    arrays with a leading time axis: joint_rot [T,J,3] (axis-angle, joint frame), root_rot [T,3],
    root_trans [T,3], warp [T,3] (twist, bend, log-squash).
    """
    if n_frames < 2:
        raise ValueError("n_frames must be >= 2")
    style = style or str(rng.choice(["cycle", "gesture", "wander"], p=[0.55, 0.2, 0.25]))
    T, J = n_frames, body.n_joints
    # About 0.4-1.1 cycles per 16 frames (a stride or a flap per clip), independent of T; joint
    # frequency multipliers are capped so nothing oscillates faster than 2 cycles per 16 frames.
    omega = 2 * np.pi * rng.uniform(0.4, 1.1) / 16.0
    max_omega = 2 * np.pi * 2.0 / 16.0
    t = np.arange(T, dtype=np.float64)
    gain = rng.uniform(0.6, 1.3)
    phase0 = rng.uniform(0, 2 * np.pi)
    rot = np.zeros((T, J, 3))
    for j in range(J):
        a = body.amp[j] * gain
        if style == "gesture":
            a *= rng.choice([0.2, 1.6], p=[0.65, 0.35])
        elif style == "wander":
            a *= 0.6
        arg = min(omega * body.freq[j], max_omega) * t + body.phase[j] + phase0
        wave = 0.5 + 0.5 * np.sin(arg) if body.onesided[j] else np.sin(arg)
        if style == "wander":
            wave = _smooth_noise(rng, T, 1, 1.5, omega)[:, 0]
        rot[:, j] = wave[:, None] * a * body.axis[j]
        rot[:, j] += _smooth_noise(rng, T, 3, 0.25 * a + 0.02, omega)
    # root: a slow turn, a wobble, a drift forwards with a bob
    yaw = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.025, 0.025) * t
    root_rot = np.zeros((T, 3))
    root_rot[:, 1] = yaw
    root_rot += _smooth_noise(rng, T, 3, 0.08, omega)
    speed = rng.uniform(0.0, 0.03) if style == "cycle" else rng.uniform(0.0, 0.01)
    heading = np.stack([np.cos(yaw), np.zeros(T), -np.sin(yaw)], 1)  # body +x after the yaw
    root_trans = np.cumsum(heading * speed, axis=0)
    root_trans[:, 1] += 0.02 * np.sin(2 * omega * t + rng.uniform(0, 6.3))
    root_trans += _smooth_noise(rng, T, 3, 0.02, omega)
    # global warp, each component switched on at random
    warp = np.zeros((T, 3))
    for i, (pr, lim) in enumerate(((0.35, 0.45), (0.35, 0.25), (0.3, 0.15))):
        if rng.random() < pr:
            warp[:, i] = rng.uniform(0.3, 1.0) * lim * np.sin(omega * t * rng.choice([0.5, 1.0])
                                                              + rng.uniform(0, 6.3))
    return {"joint_rot": rot, "root_rot": root_rot, "root_trans": root_trans, "warp": warp}


def sample_pose(body: Body, rng) -> dict:
    """One random pose (a random frame of a random motion, random orientation) for shape data."""
    poses = sample_motion(body, rng, 16)
    pose = pose_at(poses, int(rng.integers(0, 16)))
    pose["root_rot"] = np.array([rng.normal(0, 0.2), rng.uniform(-np.pi, np.pi), rng.normal(0, 0.2)])
    pose["root_trans"] = np.zeros(3)
    return pose
