"""Shape-key writing benchmark: the add-on's writer against a per-vertex Python loop, in Blender.

    python -m backend bench keys [--vertices 100000] [--frames 16] [--blender BIN | --python PY] [--json PATH]

Writing the result is the one step that runs inside Blender, on the user's main thread, so it
has its own target: 16 shape keys on a 100k-vertex mesh in under 0.2 s. The timing runs
tools/bench_shape_keys.py in Blender: by default with this interpreter when it has the `bpy`
module (the test environment has it), with `--python PY` for another such interpreter, or with
`--blender BIN` in a Blender executable (`blender -b --python ...`). Where none of these has
bpy it says so and exits 0, as the other benchmarks do when their hardware is absent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from .common import write_json

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "bench_shape_keys.py"
TARGET_SECONDS = 0.2


def _command(args) -> list | None:
    bench_args = ["--vertices", str(args.vertices), "--frames", str(args.frames), "--repeat", str(args.repeat)]
    if args.blender:
        return [args.blender, "-b", "--factory-startup", "--python", str(SCRIPT), "--", *bench_args]
    if args.python:
        return [args.python, str(SCRIPT), *bench_args]
    if importlib.util.find_spec("bpy") is None:
        return None
    return [sys.executable, str(SCRIPT), *bench_args]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend bench keys", description=__doc__.split("\n\n")[0])
    p.add_argument("--vertices", type=int, default=100_000)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--blender", help="a Blender executable to run the timing in")
    where.add_argument("--python", help="a Python interpreter with the bpy module")
    p.add_argument("--json", help="also write the result to this JSON file")
    args = p.parse_args(argv)
    if args.vertices < 4 or args.frames < 1:
        p.error("--vertices must be at least 4 and --frames at least 1")
    cmd = _command(args)
    if cmd is None:
        print("bench keys: this Python has no bpy module; pass --blender /path/to/blender or --python "
              "with an interpreter that has bpy (pip install bpy==5.0.1 on Python 3.11). Nothing measured.")
        return 0
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
    lines = [line[len("RESULT: "):] for line in proc.stdout.splitlines() if line.startswith("RESULT: ")]
    if proc.returncode != 0 or not lines:
        print(f"bench keys: the Blender run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return 1
    result = json.loads(lines[-1])
    result["target_seconds"] = TARGET_SECONDS
    result["meets_target"] = result["addon_seconds"] < TARGET_SECONDS
    scaled = f" (timed on {result['loop_frames_timed']} frames, scaled)" if result["loop_scaled"] else ""
    print(f"Blender {result['blender']}: {result['frames']} shape keys on a {result['vertices']:,}-vertex mesh")
    print(f"  add-on writer (foreach_set)  {result['addon_seconds']:8.3f} s   best of {len(result['addon_runs'])}")
    print(f"  per-vertex Python loop       {result['loop_seconds']:8.3f} s{scaled}")
    print(f"  speed-up {result['speedup']}x; target < {TARGET_SECONDS} s: "
          f"{'met' if result['meets_target'] else 'NOT met'}; largest coordinate error {result['max_error']:.1e}")
    if args.json:
        write_json(args.json, result)
    return 0
