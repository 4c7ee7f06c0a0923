# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender side of `python -m backend bench keys`: time writing an animation as shape keys.

Run with a Python that has the `bpy` module (`python tools/bench_shape_keys.py ...`) or by
Blender itself (`blender -b --python tools/bench_shape_keys.py -- ...`). Prints one line
`RESULT: {json}`.

What is timed, on a grid mesh of about --vertices vertices, --frames frames of random offsets:
- add-on: actionmesh_blender/shape_keys.apply_offsets_as_shape_keys, the function every operator
  uses (keys written with foreach_set, one F-curve per key), best of --repeat runs;
- baseline: the same keys written with a per-vertex Python loop (`kb.data[i].co = ...`), as a
  script without foreach_set would. On large meshes it is timed on --loop-frames frames and
  scaled to all frames (said so in the output), since one frame alone takes seconds.

The module is loaded from its file, not as the add-on package, so the benchmark measures the
same code without registering the extension.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import bpy
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _shape_keys_module():
    spec = importlib.util.spec_from_file_location("_am_shape_keys", REPO / "actionmesh_blender" / "shape_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grid_object(n_vertices: int):
    """A flat grid of side ceil(sqrt(n)) with quads, built through foreach_set (fast)."""
    side = int(np.ceil(np.sqrt(n_vertices)))
    xs, ys = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    co = np.stack([xs.ravel(), ys.ravel(), np.zeros(side * side)], axis=1).astype(np.float32)
    i = np.arange(side - 1)
    a = (i[:, None] * side + i[None, :]).ravel()
    quads = np.stack([a, a + 1, a + side + 1, a + side], axis=1).astype(np.int32)
    mesh = bpy.data.meshes.new("bench_grid")
    mesh.vertices.add(len(co))
    mesh.vertices.foreach_set("co", co.ravel())
    mesh.loops.add(quads.size)
    mesh.loops.foreach_set("vertex_index", quads.ravel())
    mesh.polygons.add(len(quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(quads), 4, dtype=np.int32))
    mesh.update(calc_edges=True)
    obj = bpy.data.objects.new("bench_grid", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _remove_keys(obj) -> None:
    if obj.data.shape_keys is not None:
        obj.shape_key_clear()


def loop_write(obj, offsets: np.ndarray) -> None:
    """The baseline: a per-vertex Python loop, one key per frame."""
    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    base = [v.co.copy() for v in obj.data.vertices]
    for t in range(offsets.shape[0]):
        kb = obj.shape_key_add(name=f"LOOP_{t:03d}", from_mix=False)
        data, frame = kb.data, offsets[t].tolist()
        for i, (dx, dy, dz) in enumerate(frame):
            b = base[i]
            data[i].co = (b.x + dx, b.y + dy, b.z + dz)


def main(argv) -> dict:
    p = argparse.ArgumentParser(prog="bench_shape_keys")
    p.add_argument("--vertices", type=int, default=100_000)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--loop-frames", type=int, default=2,
                   help="frames the per-vertex loop is timed on (scaled to --frames); 0: all frames")
    args = p.parse_args(argv)
    shape_keys = _shape_keys_module()
    obj = grid_object(args.vertices)
    n = len(obj.data.vertices)
    rng = np.random.default_rng(0)
    offsets = (rng.standard_normal((args.frames, n, 3)) * 0.01).astype(np.float32)

    times = []
    for _ in range(max(1, args.repeat)):
        _remove_keys(obj)
        t0 = time.perf_counter()
        names = shape_keys.apply_offsets_as_shape_keys(obj, offsets, start_frame=1)
        times.append(time.perf_counter() - t0)
    assert len(names) == args.frames
    # The keys hold what was asked: the last key's coordinates minus the basis give its offsets.
    got = np.empty(n * 3, dtype=np.float32)
    obj.data.shape_keys.key_blocks[names[-1]].points.foreach_get("co", got)
    base = np.empty(n * 3, dtype=np.float32)
    obj.data.shape_keys.reference_key.points.foreach_get("co", base)
    max_error = float(np.abs((got - base).reshape(n, 3) - offsets[-1]).max())

    _remove_keys(obj)
    loop_frames = args.frames if args.loop_frames <= 0 else min(args.loop_frames, args.frames)
    t0 = time.perf_counter()
    loop_write(obj, offsets[:loop_frames])
    loop_seconds = (time.perf_counter() - t0) * args.frames / loop_frames
    return {"blender": bpy.app.version_string, "vertices": n, "frames": args.frames,
            "addon_seconds": round(min(times), 4), "addon_runs": [round(t, 4) for t in times],
            "loop_seconds": round(loop_seconds, 3), "loop_frames_timed": loop_frames,
            "loop_scaled": loop_frames != args.frames, "speedup": round(loop_seconds / min(times), 1),
            "max_error": max_error}


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    print("RESULT: " + json.dumps(main(argv)), flush=True)
