"""Batch benchmark: rows per minute of `batch` on this machine's Ray, against running `generate` once
per row in a shell loop (what a studio does without it), in one run.

    python -m backend bench batch [--rows 8] [--frames 8] [--panda DIR] [--json PATH] [--keep DIR]

Every row animates the panda (../shared/examples/panda: panda.glb and its 16-frame clip) by
fitting (`--method fit`, the CPU path, no models), `--frames` frames from its own start and seed,
so the rows differ. The same manifest runs twice, each timed whole from the shell's side:
  ray   `python -m backend batch MANIFEST --out DIR`: a Ray cluster of this machine started, the rows
        as tasks (one CPU each), the cluster stopped; Ray's start and stop are reported apart
  loop  `for each row: python -m backend generate ...` in bash, one after another (each run loads
        Python, torch and the pipeline again, and uses the machine's threads as generate does)
Ray runs first, so the loop meets the warmer file cache. Without the panda it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import write_json
from .register import DEFAULT_PANDA

CLIP_FRAMES = 16


def _rows(panda: Path, rows: int, frames: int) -> list:
    starts = CLIP_FRAMES - frames + 1
    return [{"name": f"row-{i}", "input": str(panda), "mesh": str(panda / "panda.glb"), "method": "fit",
             "frames": frames, "start": (3 * i) % starts, "seed": i} for i in range(rows)]


def _generate_args(row: dict, out: Path) -> list:
    return ["generate", "--input", row["input"], "--mesh", row["mesh"], "--method", "fit", "--frames",
            str(row["frames"]), "--start", str(row["start"]), "--seed", str(row["seed"]), "--out",
            str(out / row["name"])]


def run(panda: Path, rows: int, frames: int, scratch: Path) -> dict:
    table = _rows(panda, rows, frames)
    manifest = scratch / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in table))
    python = shlex.quote(sys.executable)

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "backend", "batch", str(manifest), "--out", str(scratch / "ray"),
                           "--json"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    ray_seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"batch failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    row_seconds = [e["seconds"] for e in map(json.loads, (scratch / "ray" / "batch.jsonl").read_text().splitlines())
                   if e.get("kind") == "row" and e.get("status") == "done"]

    loop = "set -e\n" + "".join(f"{python} -m backend {' '.join(map(shlex.quote, _generate_args(r, scratch / 'loop')))} "
                                "> /dev/null 2>&1\n" for r in table)
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", loop], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True)
    loop_seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"the generate loop failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"rows": rows, "frames": frames, "clip": str(panda),
            "ray": {"seconds": round(ray_seconds, 2), "rows_per_minute": round(60 * rows / ray_seconds, 2),
                    "engine": summary["engine"], "start_seconds": summary["engine_start_seconds"],
                    "stop_seconds": summary["engine_stop_seconds"], "done": summary["done"],
                    "row_seconds_mean": round(sum(row_seconds) / max(len(row_seconds), 1), 2)},
            "loop": {"seconds": round(loop_seconds, 2), "rows_per_minute": round(60 * rows / loop_seconds, 2)}}


def print_table(figures: dict) -> None:
    ray, loop = figures["ray"], figures["loop"]
    print(f"{figures['rows']} rows of generate --method fit, {figures['frames']} frames each ({figures['clip']})")
    print(f"{'engine':<34} {'seconds':>8} {'rows/min':>9}")
    print(f"{'batch, local Ray':<34} {ray['seconds']:>8.1f} {ray['rows_per_minute']:>9.2f}")
    print(f"{'generate in a shell loop':<34} {loop['seconds']:>8.1f} {loop['rows_per_minute']:>9.2f}")
    print(f"speed-up {ray['rows_per_minute'] / loop['rows_per_minute']:.2f}x; {ray['engine']}; "
          f"Ray's start {ray['start_seconds']:.1f} s and stop {ray['stop_seconds']:.1f} s included; a row "
          f"{ray['row_seconds_mean']:.1f} s on average in Ray's workers, {loop['seconds'] / figures['rows']:.1f} s "
          "in the loop (its start included)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend bench batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8, help=f"frames per row, 2-{CLIP_FRAMES} (default 8)")
    parser.add_argument("--panda", default=str(DEFAULT_PANDA.parent), help="the panda's folder (../shared/examples)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--keep", default=None, help="work in this folder and keep the results (default: a "
                                                     "temporary folder, removed)")
    args = parser.parse_args(argv)
    if args.rows < 1 or not 2 <= args.frames <= CLIP_FRAMES:
        parser.error(f"--rows must be at least 1 and --frames 2-{CLIP_FRAMES}")
    panda = Path(args.panda)
    if not (panda / "panda.glb").is_file():
        print(f"nothing to measure: the panda example is not at {panda} (../shared/examples/panda)")
        return 0
    if args.keep:
        scratch = Path(args.keep)
        scratch.mkdir(parents=True, exist_ok=True)
        figures = run(panda, args.rows, args.frames, scratch)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
            figures = run(panda, args.rows, args.frames, Path(tmp))
    print_table(figures)
    if args.json:
        write_json(args.json, figures)
    return 0
