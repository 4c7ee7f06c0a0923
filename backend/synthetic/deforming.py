"""A walking "creature" and a generic bend/twist/sway deformation, both with ground truth.

The reference and the frames are meshed from the same implicit surface at two resolutions, so
they share a shape but not a topology - the situation registration has to cope with. Because
the motion is an explicit map of space, the true position of every reference vertex is known,
which lets tests and benchmarks measure vertex error rather than a surface distance that would
hide tangential sliding.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import marching_cubes

# ---------------------------------------------------------------- shape (signed distance)


def _capsule(p, a, b, r):
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - r


def _ellipsoid(p, c, radii):
    # Scaled-sphere bound: not an exact distance, but smooth and correctly signed, which is
    # all marching cubes and the blending need.
    q = (p - c) / radii
    return (np.linalg.norm(q, axis=1) - 1.0) * radii.min()


def _smin(a, b, k):
    # Polynomial smooth minimum: fuses parts with a fillet instead of a crease, so the surface
    # stays smooth where limbs join the body.
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _creature_parts(rng):
    """Part dimensions, jittered by the seed so different seeds give different animals."""
    j = lambda s: 1.0 + s * rng.uniform(-1.0, 1.0)  # noqa: E731
    leg_top_y, foot_y = -0.02, -0.62 * j(0.05)
    parts = {
        "body_r": np.array([0.55 * j(0.05), 0.22 * j(0.05), 0.19 * j(0.05)]),
        "neck": (np.array([0.42, 0.06, 0.0]), np.array([0.62, 0.22, 0.0]), 0.09 * j(0.08)),
        "head_c": np.array([0.74, 0.27, 0.0]),
        "head_r": np.array([0.17, 0.12, 0.11]) * j(0.05),
        "tail": (np.array([-0.48, 0.04, 0.0]), np.array([-0.95, 0.22, 0.0]), 0.045 * j(0.1)),
        "leg_r": 0.065 * j(0.08),
        "hips": [],
    }
    for sx in (0.34, -0.34):
        for sz in (0.11, -0.11):
            top = np.array([sx, leg_top_y, sz])
            foot = np.array([sx + 0.03, foot_y, sz * 1.15])
            parts["hips"].append((top, foot))
    return parts


def _creature_sdf(p, parts):
    d = _ellipsoid(p, np.zeros(3), parts["body_r"])
    d = _smin(d, _capsule(p, *parts["neck"]), 0.08)
    d = _smin(d, _ellipsoid(p, parts["head_c"], parts["head_r"]), 0.06)
    d = _smin(d, _capsule(p, *parts["tail"]), 0.06)
    for top, foot in parts["hips"]:
        d = _smin(d, _capsule(p, top, foot, parts["leg_r"]), 0.07)
    return d


def _mesh_sdf(parts, spacing, lo=(-1.05, -0.72, -0.32), hi=(1.0, 0.48, 0.32)):
    lo, hi = np.asarray(lo), np.asarray(hi)
    axes = [np.arange(lo[i], hi[i] + spacing, spacing) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    d = _creature_sdf(grid.reshape(-1, 3), parts).reshape(grid.shape[:3])
    v, f, _, _ = marching_cubes(d, level=0.0, spacing=(spacing,) * 3)
    return v + lo, f.astype(np.int64)


def _mesh_with_vertex_count(parts, target, spacing_guess=0.03):
    # Marching-cubes vertex count scales as 1/spacing^2 (it is a surface), so one trial run
    # calibrates the spacing for the requested count.
    v, _ = _mesh_sdf(parts, spacing_guess)
    spacing = spacing_guess * np.sqrt(len(v) / float(target))
    return _mesh_sdf(parts, spacing)


# ---------------------------------------------------------------- motion


def _rotate(p, axis, centre, angle):
    """Rotate points about a fixed axis through `centre` by a per-point angle (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    v = p - centre
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return centre + c * v + s * np.cross(k, v) + (1.0 - c) * (v @ k)[:, None] * k


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _creature_motion(rng, n_frames, parts):
    """Per-frame motion parameters: a walk cycle plus body bend/twist, tail sway, head nod."""
    # Start the stride near the rest pose, as when the reference was made from the first
    # frame; otherwise frame 0 alone can ask for legs to swing past each other.
    phase0 = rng.uniform(-0.3, 0.3)
    # About one stride over 16 frames; short sequences show part of it rather than moving
    # faster, since real clips do not speed up when they are cut short.
    cycle = max(n_frames, 16) * rng.uniform(0.8, 1.1)
    legs_phase = np.array([0.0, np.pi, np.pi, 0.0]) + rng.uniform(-0.3, 0.3, 4)
    return {
        "phase0": phase0, "cycle": cycle, "legs_phase": legs_phase,
        "leg_amp": 0.5 * rng.uniform(0.9, 1.1), "knee_amp": 0.55 * rng.uniform(0.9, 1.1),
        "tail_amp": 0.7 * rng.uniform(0.9, 1.1), "bend_amp": 0.35 * rng.uniform(0.9, 1.1),
        "twist_amp": 0.25 * rng.uniform(0.9, 1.1), "nod_amp": 0.3 * rng.uniform(0.9, 1.1),
        "stride": 0.006 * rng.uniform(0.8, 1.2), "parts": parts,
    }


def _creature_phi(p, t, m):
    """The deformation at frame t, a smooth map of space applied to rest-pose points."""
    parts = m["parts"]
    w = 2 * np.pi * t / m["cycle"] + m["phase0"]
    out = p.copy()
    # Legs: hip swing about the lateral (z) axis, plus a knee that only bends one way. The
    # swing angle fades in below the hip and is confined to each leg's column, so the body
    # and the neighbouring leg stay put.
    for (top, foot), ph in zip(parts["hips"], m["legs_phase"]):
        dxz = np.hypot(p[:, 0] - top[0], p[:, 2] - top[2])
        column = _smoothstep(0.17, 0.10, dxz)
        hip_w = column * _smoothstep(top[1] + 0.02, top[1] - 0.12, p[:, 1])
        knee = 0.5 * (top + foot)
        knee_w = column * _smoothstep(knee[1] + 0.04, knee[1] - 0.06, p[:, 1])
        knee_angle = m["knee_amp"] * max(0.0, np.sin(w + ph + 0.8))
        sel = knee_w > 0
        out[sel] = _rotate(out[sel], (0, 0, 1), knee, knee_w[sel] * knee_angle)
        sel = hip_w > 0
        out[sel] = _rotate(out[sel], (0, 0, 1), top, hip_w[sel] * m["leg_amp"] * np.sin(w + ph))
    # Tail: sideways sway whose angle grows along the tail, i.e. a bend rather than a hinge.
    base, tip = parts["tail"][0], parts["tail"][1]
    along = _smoothstep(base[0] + 0.05, tip[0], p[:, 0])
    out = _rotate(out, (0, 1, 0), base, along * m["tail_amp"] * np.sin(1.5 * w + 0.5))
    # Head nod about the neck root.
    neck = parts["neck"][0]
    nod_w = _smoothstep(neck[0] - 0.02, neck[0] + 0.2, p[:, 0])
    out = _rotate(out, (0, 0, 1), neck, nod_w * m["nod_amp"] * np.sin(w + 1.3))
    # Whole body: lateral bend (angle proportional to x) and a twist about the spine.
    out = _rotate(out, (0, 1, 0), np.zeros(3), m["bend_amp"] * np.sin(0.5 * w + 0.2) * p[:, 0])
    out = _rotate(out, (1, 0, 0), np.zeros(3), m["twist_amp"] * np.sin(w + 2.0) * p[:, 0])
    # Walking forward with a little bob, so frames also differ by a rigid motion.
    out = out + np.array([m["stride"] * t, 0.02 * np.sin(2 * w), 0.0])
    return out


def make_creature_sequence(n_frames=16, ref_vertices_target=5000, frame_vertices_target=20000, seed=0):
    """A walking creature: coarse reference mesh, fine per-frame meshes, true reference motion.

    Returns a dict with "ref_vertices" [V,3], "ref_faces" [F,3], "frames" [(v, f)] (fine
    topology, shared by all frames), "gt_vertices" [T,V,3] (where each reference vertex truly
    is at each frame) and "fps".
    """
    rng = np.random.default_rng(seed)
    parts = _creature_parts(rng)
    ref_v, ref_f = _mesh_with_vertex_count(parts, ref_vertices_target)
    fine_v, fine_f = _mesh_with_vertex_count(parts, frame_vertices_target, spacing_guess=0.02)
    motion = _creature_motion(rng, n_frames, parts)
    frames, gt = [], []
    for t in range(n_frames):
        frames.append((_creature_phi(fine_v, t, motion), fine_f))
        gt.append(_creature_phi(ref_v, t, motion))
    return {
        "ref_vertices": ref_v.astype(np.float64),
        "ref_faces": ref_f,
        "frames": frames,
        "gt_vertices": np.stack(gt),
        "fps": 24,
    }


def deform_mesh_sequence(vertices, faces, n_frames, seed=0):
    """Animate any mesh with a smooth bend + twist + sway relative to its bounding box.

    Returns [T,V,3] deformed vertex positions (ground truth for that mesh's own vertices).
    `faces` is accepted so callers can pass a mesh as a pair; the motion is a map of space
    and does not need it.
    """
    v = np.asarray(vertices, dtype=np.float64)
    del faces
    rng = np.random.default_rng(seed)
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre, extent = 0.5 * (lo + hi), np.maximum(hi - lo, 1e-12)
    order = np.argsort(extent)[::-1]
    main, side, third = order  # bend across the longest axis, about the shortest
    axis_of = np.eye(3)
    u = (v[:, main] - centre[main]) / (0.5 * extent[main])  # -1..1 along the mesh
    half = 0.5 * extent[main]
    # Start near the rest pose and move at most 1/16 of a cycle per frame, like a real clip
    # whose reference was made from its first frame.
    phase = rng.uniform(-0.3, 0.3, 3)
    cycle = max(n_frames, 16) * rng.uniform(0.9, 1.1)
    amps = np.array([0.5, 0.6, 0.08]) * rng.uniform(0.85, 1.15, 3)
    out = []
    for t in range(n_frames):
        s = np.sin(2 * np.pi * t / cycle + phase)
        p = _rotate(v, axis_of[third], centre, amps[0] * s[0] * u)  # bend
        p = _rotate(p, axis_of[main], centre, amps[1] * s[1] * u)  # twist
        p = p + (amps[2] * s[2] * half * u**2)[:, None] * axis_of[side]  # sway
        out.append(p)
    return np.stack(out)


def bend_hinge_squash(vertices, n_frames, seed=0):
    """A smooth bend, a hinge and a squash of any mesh, relative to its bounding box: [T,V,3].

    Bend: about the shortest axis, growing along the longest. Hinge: the part past a plane
    across the longest axis turns about an axis in that plane, blended over a tenth of the
    length so the surface stays smooth. Squash: shorter along the longest axis, wider across
    it (volume kept). All three start near the rest pose and move smoothly, frame to frame.
    """
    v = np.asarray(vertices, dtype=np.float64)
    rng = np.random.default_rng(seed)
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre, extent = 0.5 * (lo + hi), np.maximum(hi - lo, 1e-12)
    main, side, third = np.argsort(extent)[::-1]
    axis_of = np.eye(3)
    u = (v[:, main] - centre[main]) / (0.5 * extent[main])
    cut = rng.uniform(0.1, 0.3)
    hinge_centre = centre.copy()
    hinge_centre[main] += cut * 0.5 * extent[main]
    blend = _smoothstep(cut - 0.1, cut + 0.1, u)
    phase = rng.uniform(-0.3, 0.3, 3)
    cycle = max(n_frames, 16) * rng.uniform(0.9, 1.1)
    amps = np.array([0.35, 0.6, 0.12]) * rng.uniform(0.85, 1.15, 3)
    out = []
    for t in range(n_frames):
        s = np.sin(2 * np.pi * t / cycle + phase) - np.sin(phase)  # exactly the rest pose at t = 0
        p = _rotate(v, axis_of[third], centre, amps[0] * s[0] * u)  # bend
        p = _rotate(p, axis_of[side], hinge_centre, amps[1] * s[1] * blend)  # hinge
        k = 1.0 + amps[2] * s[2]  # squash: k along the main axis, 1/sqrt(k) across
        scale = np.full(3, 1.0 / np.sqrt(k))
        scale[main] = k
        out.append(centre + (p - centre) * scale)
    return np.stack(out)


def twist_turn(vertices, n_frames, seed=0, up=1):
    """Turning at the waist to look round, with a sideways lean: [T,V,3].

    Twist: about the up axis (index `up` of the coordinates) through the box centre, by an angle
    that grows from nothing at the lowest point to its full size at the top, so the feet stay
    planted. Lean: about the front axis (the shorter of the other two), growing the same way.
    Both start exactly at the rest pose and move smoothly. Most of the twist is motion along the
    view for a camera in front, which one view sees only through foreshortening and texture."""
    v = np.asarray(vertices, dtype=np.float64)
    rng = np.random.default_rng(seed)
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre, extent = 0.5 * (lo + hi), np.maximum(hi - lo, 1e-12)
    others = [a for a in range(3) if a != up]
    side, front = sorted(others, key=lambda a: extent[a], reverse=True)
    axis_of = np.eye(3)
    # The same lean whichever order the file's axes come in (a Z-up copy leans as its Y-up one).
    lean_sign = float(np.cross(axis_of[side], axis_of[up]) @ axis_of[front])
    height = (v[:, up] - lo[up]) / extent[up]  # 0 at the feet, 1 at the top
    grow = _smoothstep(0.1, 0.9, height)
    phase = rng.uniform(-0.3, 0.3, 2)
    cycle = max(n_frames, 16) * rng.uniform(0.9, 1.1)
    amps = np.array([0.7, 0.15]) * rng.uniform(0.85, 1.15, 2)
    out = []
    for t in range(n_frames):
        s = np.sin(2 * np.pi * t / cycle + phase) - np.sin(phase)
        p = _rotate(v, axis_of[up], centre, amps[0] * s[0] * grow)  # twist
        p = _rotate(p, axis_of[front], centre, lean_sign * amps[1] * s[1] * grow)  # lean
        out.append(p)
    return np.stack(out)


def wave_limb(vertices, n_frames, seed=0, up=1):
    """One arm raised and waved: [T,V,3].

    The arm is what reaches out along the side axis (the longer of the two axes across `up`) past
    0.55 of the half-width on the + side, within a band round the height where the mesh is widest
    (an ear or a hat brim above it stays put). It turns about the front axis through a shoulder
    at the cut, rising to about a radian over the first third of the clip and then waving about
    that, with a smaller swing forward and back about the up axis; the turn is blended in over
    0.1 of the half-width so the shoulder's surface stays smooth. The body leans away from the
    arm and turns toward it a little as it rises (both growing with height from the feet, as in
    twist_turn), so more than a hand moves. Starts exactly at the rest pose."""
    v = np.asarray(vertices, dtype=np.float64)
    rng = np.random.default_rng(seed)
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre, extent = 0.5 * (lo + hi), np.maximum(hi - lo, 1e-12)
    others = [a for a in range(3) if a != up]
    side = max(others, key=lambda a: extent[a])
    front = min(others, key=lambda a: extent[a])
    axis_of = np.eye(3)
    # Turning about +front carries +side toward +up in a right-handed order of the axes only.
    lift_sign = float(np.cross(axis_of[side], axis_of[up]) @ axis_of[front])
    across = (v[:, side] - centre[side]) / (0.5 * extent[side])
    arm_height = v[np.argmax(v[:, side]), up]
    band = _smoothstep(0.35, 0.25, np.abs(v[:, up] - arm_height) / (0.5 * extent[up]))
    weight = _smoothstep(0.5, 0.6, across) * band
    shoulder = centre.copy()
    shoulder[side] += 0.55 * 0.5 * extent[side]
    shoulder[up] = arm_height
    raise_to = 1.0 * rng.uniform(0.85, 1.15)
    wave_amp, swing_amp = 0.35 * rng.uniform(0.85, 1.15), 0.2 * rng.uniform(0.85, 1.15)
    waves = rng.uniform(1.5, 2.0)  # waves over the clip
    lean, turn = 0.12 * rng.uniform(0.85, 1.15), 0.3 * rng.uniform(0.85, 1.15)
    grow = _smoothstep(0.1, 0.9, (v[:, up] - lo[up]) / extent[up])
    out = []
    for t in range(n_frames):
        x = t / max(n_frames - 1, 1)
        ramp = _smoothstep(0.0, 0.35, np.array([x]))[0]
        lift = ramp * (raise_to + wave_amp * np.sin(2 * np.pi * waves * x))
        p = _rotate(v, axis_of[front], shoulder, lift_sign * weight * lift)
        p = _rotate(p, axis_of[up], shoulder, weight * ramp * swing_amp * np.sin(np.pi * waves * x))
        # The arm's own turn first, about its shoulder; then the body carries it.
        p = _rotate(p, axis_of[front], centre, lift_sign * lean * ramp * grow)
        p = _rotate(p, axis_of[up], centre, turn * ramp * grow)
        out.append(p)
    return np.stack(out)
